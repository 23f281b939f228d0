"""Not a digit: when the demo says it is unsure, by a rule on the probabilities whose threshold is measured.

The rule: the classifier is unsure when its highest probability is below a threshold. The threshold is chosen on
validation digits (the last VAL_DIGITS MNIST training digits, redrawn as on the canvas; never the test set) so that
it fires on TARGET_FALSE_ALARM of them; they are held out only if the classifier trained with data.val_size of at
least VAL_DIGITS, and measure() records whether they were (a classifier sure of digits it saw gets a threshold that
fires more often on new ones). measure() then counts how often it fires on MNIST test digits (false alarms)
and on drawings that are not digits: Fashion-MNIST items, random scribbles, letters and two digits side by side, all
put through the canvas pipeline. `python -m lab demo-unsure` writes the result as UNSURE_FILE in the classifier's
run folder, where the app reads the threshold: the number lives in that file only.
"""

import json
import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from lab.demo.canvas import CANVAS_SIDE, CanvasError, canvas_to_mnist
from lab.demo.redraw import redraw_digits

UNSURE_FILE = "unsure.json"  # in the classifier's run folder: the threshold and the rates it was measured at
TARGET_FALSE_ALARM = 0.02  # share of validation digits the rule may flag
VAL_DIGITS = 5000  # the last training digits: lab's validation convention (data.val_size)
BRUSH_WIDTH = 18  # px: the demo's brush (radius 9) on its 280 px canvas
STROKES = (1, 4)  # a scribble has this many strokes (inclusive) ...
POINTS = (3, 8)  # ... each through this many random points
LETTER_SIZE = (110, 230)  # px: a letter's font size on the canvas


def is_unsure(probabilities: torch.Tensor | list[float], threshold: float) -> bool:
    """The rule: the top probability is below the threshold."""
    return float(torch.as_tensor(probabilities).max()) < threshold


def top_probabilities(classifier, canvases: np.ndarray) -> np.ndarray:
    """Canvases (N, H, W) uint8 -> the top probability of each through the demo's classify path; NaN where the
    canvas itself is refused (empty or flooded: the app shows a message there, not a prediction)."""
    out = np.full(len(canvases), np.nan)
    for i, canvas in enumerate(canvases):
        try:
            image = canvas_to_mnist(canvas)
        except CanvasError:
            continue
        out[i] = float(classifier.probabilities(image[None])[0].max())
    return out


def _drawn(n: int, generator: torch.Generator, side: int,
           draw_one: Callable[[ImageDraw.ImageDraw, np.random.Generator], None]) -> np.ndarray:
    """n white canvases (n, side, side) uint8, each drawn on by draw_one with one random generator seeded from
    generator, in turn."""
    rand = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
    out = np.empty((n, side, side), np.uint8)
    for i in range(n):
        image = Image.new("L", (side, side), 255)
        draw_one(ImageDraw.Draw(image), rand)
        out[i] = np.asarray(image)
    return out


def scribbles(n: int, generator: torch.Generator, side: int = CANVAS_SIDE) -> np.ndarray:
    """n canvases of random strokes drawn with the demo's round brush: (n, side, side) uint8, black on white."""
    def scribble(draw: ImageDraw.ImageDraw, rand: np.random.Generator) -> None:
        for _ in range(rand.integers(STROKES[0], STROKES[1] + 1)):
            points = rand.uniform(0.1 * side, 0.9 * side, size=(rand.integers(POINTS[0], POINTS[1] + 1), 2))
            draw.line([tuple(p) for p in points], fill=0, width=BRUSH_WIDTH, joint="curve")
            for x, y in points[[0, -1]]:  # round ends, as the brush's
                draw.ellipse([x - BRUSH_WIDTH / 2, y - BRUSH_WIDTH / 2, x + BRUSH_WIDTH / 2, y + BRUSH_WIDTH / 2], 0)
    return _drawn(n, generator, side, scribble)


def letters(n: int, generator: torch.Generator, side: int = CANVAS_SIDE) -> np.ndarray:
    """n canvases of a random capital letter (Pillow's own font) at a random size and place: (n, side, side) uint8."""
    def letter(draw: ImageDraw.ImageDraw, rand: np.random.Generator) -> None:
        font = ImageFont.load_default(size=int(rand.integers(*LETTER_SIZE)))
        text = string.ascii_uppercase[rand.integers(26)]
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        x, y = rand.uniform(0, max(1, side - (x1 - x0))), rand.uniform(0, max(1, side - (y1 - y0)))
        draw.text((x - x0, y - y0), text, fill=0, font=font)
    return _drawn(n, generator, side, letter)


def two_digits(images: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    """Pairs of MNIST digits side by side, redrawn on the canvas: (N // 2, CANVAS_SIDE, CANVAS_SIDE) uint8."""
    pairs = images[: len(images) // 2 * 2].view(-1, 2, 28, 28)
    wide = torch.zeros(len(pairs), 56, 56, dtype=images.dtype)  # square, as redraw_digits expects
    wide[:, 14:42, :28], wide[:, 14:42, 28:] = pairs[:, 0], pairs[:, 1]
    return redraw_digits(wide, generator).numpy()


def _rate(top: np.ndarray, threshold: float) -> dict:
    """How often the rule fires on the canvases that were classified; refused canvases counted apart."""
    classified = top[~np.isnan(top)]
    flagged = int((classified < threshold).sum())
    return {"n": len(top), "classified": len(classified), "refused": int(np.isnan(top).sum()),
            "flagged": flagged, "rate": flagged / len(classified) if len(classified) else float("nan")}


def measure(classifier, mnist, fashion, digits: int, non_digits: int, seed: int = 0,
            false_alarm: float = TARGET_FALSE_ALARM) -> dict:
    """Choose the threshold on redrawn validation digits, then count how often it fires on each kind of drawing."""
    held_out = held_out_digits(classifier)
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(VAL_DIGITS, generator=generator)[:digits] + len(mnist.train.labels) - VAL_DIGITS
    val = top_probabilities(classifier, redraw_digits(mnist.train.images[pick], generator).numpy())
    threshold = float(np.quantile(val[~np.isnan(val)], false_alarm))
    test_pick = torch.randperm(len(mnist.test.labels), generator=generator)
    sets = {
        "test_digits": redraw_digits(mnist.test.images[test_pick[:digits]], generator).numpy(),
        "fashion_mnist": redraw_digits(fashion.test.images[test_pick[:non_digits]], generator).numpy(),
        "scribbles": scribbles(non_digits, generator),
        "letters": letters(non_digits, generator),
        "two_digits": two_digits(mnist.test.images[test_pick[-2 * non_digits:]], generator),
    }
    rates = {"validation_digits": _rate(val, threshold)}
    rates |= {name: _rate(top_probabilities(classifier, canvases), threshold) for name, canvases in sets.items()}
    return {"checkpoint": classifier.run_id, "rule": "unsure when the top probability is below the threshold",
            "threshold": threshold, "target_false_alarm": false_alarm, "seed": seed,
            "chosen_on": f"{digits} of the last {VAL_DIGITS} MNIST training digits, redrawn as on the canvas",
            "held_out": held_out, "rates": rates}


def held_out_digits(classifier) -> bool:
    """Whether the classifier never trained on the last VAL_DIGITS MNIST training digits (its data.val_size held them
    out), so that a threshold chosen on them is chosen on unseen digits."""
    data = classifier.config.data
    return data.dataset == "mnist" and data.val_size >= VAL_DIGITS


def read_measurement(folder: Path, run_id: str) -> dict | None:
    """The unsure rule measured for this run (UNSURE_FILE in its folder); None when absent, unreadable or made for
    another run (a retrained classifier needs `python -m lab demo-unsure` again)."""
    try:
        measured = json.loads((Path(folder) / UNSURE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(measured, dict) or measured.get("checkpoint") != run_id:
        return None
    threshold = measured.get("threshold")
    return measured if isinstance(threshold, (int, float)) and 0 < threshold < 1 else None
