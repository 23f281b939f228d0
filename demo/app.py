"""The demo: draw a digit and watch a classifier read it, and why; walk and map an autoencoder's latent space.

    python demo/app.py [--checkpoints DIR | --hub-repo ID] [--host 127.0.0.1] [--port N] [--share]

It loads finished run folders (config.json, weights.safetensors, metrics.json) and never trains. By default
it loads the small weights shipped in demo/checkpoints/ (made by `make demo-weights`).
"""

import argparse
import hashlib
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the lab package lies beside app.py in the Space folder (make space), one level up in the repository
for _root in (HERE, HERE.parent):
    if (_root / "lab" / "__init__.py").is_file():
        sys.path.insert(0, str(_root))
        break

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from lab import paths  # noqa: E402
from lab.checkpoints import Checkpoint, CheckpointError, find_checkpoints, load_checkpoint  # noqa: E402
from lab.demo import REQUEST_THREADS  # noqa: E402
from lab.demo.canvas import (  # noqa: E402
    CANVAS_SIDE,
    MAX_SIDE,
    MIN_SIDE,
    CanvasError,
    canvas_to_mnist,
    check_size,
    mnist_to_canvas,
)
from lab.demo.explain import HOW_TO_READ, saliency  # noqa: E402
from lab.demo.explain import overlay as saliency_overlay  # noqa: E402
from lab.demo.latent_map import LatentMap, build_map, with_markers  # noqa: E402
from lab.demo.unsure import is_unsure, read_measurement  # noqa: E402
from lab.run_folder import best_first, is_done, write_atomic  # noqa: E402

DEFAULT_CHECKPOINTS = HERE / paths.CHECKPOINTS_FOLDER
EXAMPLES_FILE = HERE / paths.EXAMPLES_FILE  # real MNIST test digits, made by `make demo-weights`
BRUSH_RADIUS = 9  # pixels: a digit drawn across most of the canvas gets MNIST-like strokes (about 2 px of 20)
SHOW_SCALE = 8  # 28x28 images are shown 224 px wide, in crisp pixels
STEPS = (2, 16)  # the interpolation strip's length, ends included
MAX_QUEUE = 32  # requests waiting beyond this are refused with "queue full" rather than piling up
CONCURRENCY = 2  # the CPU has 2 cores; each request runs its small model on one thread
MAX_FILE_SIZE = "2mb"  # a 280 px PNG is a few kB; anything far bigger is not a drawing
DRAWING = "my drawing"
# Gradio has no option for the editor's starting tool: pick the brush in the page, so drawing starts at once
SELECT_BRUSH = """() => setTimeout(() => document.querySelectorAll('button[aria-label="Brush"]').forEach(
    (b) => { if (b.offsetParent !== null && !b.classList.contains("selected")) b.click(); }), 500)"""
TEST_DIGIT = "test digit {}"
SURE, UNSURE = "sure", "unsure"  # the bars' colour column: orange when the rule trusts the answer, grey when not
BAR_COLOURS = {SURE: "#f97316", UNSURE: "#9ca3af"}


@dataclass
class Models:
    classifiers: dict[str, Checkpoint] = field(default_factory=dict)  # picker label -> checkpoint
    autoencoders: dict[str, Checkpoint] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # one message per run folder that could not be loaded
    source: str = ""  # the folder the checkpoints came from, for the log
    name: str = ""  # the same for the page: relative to the app, or the folder's name (no machine path)
    unsure: dict[str, dict] = field(default_factory=dict)  # classifier label -> its measured unsure rule, if any
    maps: dict[str, LatentMap] = field(default_factory=dict)  # autoencoder label -> its latent map, once drawn


def shown(folder: Path) -> str:
    """A folder as the page names it: relative to the app when inside it, else its own name; never a machine path."""
    folder = Path(folder)
    return str(folder.relative_to(HERE)) if folder.is_relative_to(HERE) else folder.name


def load_models(folder: Path) -> Models:
    """Every loadable run folder in folder (or folder itself when it is one run); broken ones are named in skipped."""
    models = Models(source=str(folder), name=shown(folder))
    if not folder.is_dir():
        models.skipped.append(f"{models.name}: no such folder of run folders")
        return models
    if is_done(folder):  # a single run, e.g. a model repository from push-model
        try:
            loaded, skipped = [load_checkpoint(folder)], []
        except CheckpointError as error:
            loaded, skipped = [], [str(error)]
    else:
        loaded, skipped = find_checkpoints(folder)
    models.skipped += [m.replace(str(folder), models.name) for m in skipped]  # the page shows them: no machine path
    for checkpoint in loaded:
        if checkpoint.task == "classifier":
            models.classifiers[checkpoint.describe()] = checkpoint
            models.unsure[checkpoint.describe()] = read_measurement(checkpoint.folder, checkpoint.run_id)
        elif checkpoint.config.model.arch == "conv":  # PCA is a baseline of the lab, not a model to show
            models.autoencoders[checkpoint.describe()] = checkpoint
    # best first: the picker's default is the most accurate classifier and the lowest-error autoencoder
    models.classifiers = dict(best_first("classifier", list(models.classifiers.items()), lambda kv: kv[1].metrics))
    models.autoencoders = dict(best_first("autoencoder", list(models.autoencoders.items()), lambda kv: kv[1].metrics))
    return models


def load_examples(path: Path = EXAMPLES_FILE) -> dict[int, torch.Tensor]:
    """Real MNIST test digits by class: {digit: (K, 28, 28) uint8}; empty when the file is missing."""
    if not path.is_file():
        return {}
    tensors = load_file(str(path))
    images, labels = tensors["images"], tensors["labels"]
    return {d: images[labels == d] for d in range(10) if (labels == d).any()}


def show(image: torch.Tensor) -> np.ndarray:
    """(..., 28, W) floats in [0, 1] -> uint8 pixels SHOW_SCALE times larger, for gr.Image."""
    pixels = (image.squeeze().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return pixels.repeat(SHOW_SCALE, 0).repeat(SHOW_SCALE, 1)  # numpy's repeat: faster than torch's here


def cache_png(pixels: np.ndarray, folder: str | Path) -> str:
    """Pixels (H, W) or (H, W, 3) uint8 as a PNG in folder/<its content's hash>/image.png, written once, atomically;
    its path. Gradio's own cache rewrites such a file in place on every answer, so two identical answers at once
    could cut one user's download of it short; a file written once and renamed into place is always whole."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    data = buffer.getvalue()
    path = Path(folder) / hashlib.sha256(data).hexdigest()[:32] / "image.png"
    if path.is_file():
        os.utime(path)  # handed out again: fresh for Gradio's cache clean-up (delete_cache), its content untouched
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: tmp.write_bytes(data), durable=False)
    return str(path)


def picture(value: np.ndarray | None = None, **kwargs) -> gr.Image:
    """An output image (PNG, not editable) whose answers reach Gradio's cache through cache_png. Its postprocess is
    set on the instance, as checked_preprocess is on a Sketchpad, not in a subclass (which makes Gradio write a .pyi
    beside the app); the value it is built with is written once, at start, Gradio's own way. Handlers answer with
    uint8 arrays, never gr.update(...) or a new component, which Gradio would keep in place of this instance."""
    image = gr.Image(value, interactive=False, format="png", **kwargs)
    postprocess = image.postprocess

    def cached(answer):
        if isinstance(answer, np.ndarray) and answer.dtype == np.uint8:  # anything else: Gradio converts it
            answer = cache_png(answer, image.GRADIO_CACHE)  # in the cache already: Gradio serves it as it is
        return postprocess(answer)

    image.postprocess = cached
    return image


def strip(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) -> one (28, N*30 - 2) row with 2 px gaps."""
    gap = torch.full((images.shape[0], 28, 2), 0.5)
    row = torch.cat([images[:, 0], gap], 2).permute(1, 0, 2).reshape(28, -1)  # (28, N * 30)
    return row[:, :-2]


def _pick(choices: dict[str, Checkpoint], label: str | None, kind: str, source: str) -> Checkpoint:
    """The checkpoint a picker names (a label, never a path); the first when none is named."""
    if not choices:
        raise gr.Error(f"No {kind} checkpoint is loaded (looked in {source}). Start the app with --checkpoints DIR "
                       f"holding finished run folders, or --hub-repo ID.")
    if not label:
        return next(iter(choices.values()))
    if label not in choices:
        raise gr.Error(f"Unknown {kind} {label!r}; choose one of the picker's entries.")
    return choices[label]


def _digit(canvas: object, what: str = "drawing") -> torch.Tensor:
    """The canvas as a (28, 28) MNIST-style image; a CanvasError becomes a message in the UI."""
    try:
        return canvas_to_mnist(canvas)
    except CanvasError as error:
        raise gr.Error(f"{what[0].upper()}{what[1:]}: {error}") from None


def check_upload(path: str) -> None:
    """gr.Error unless the file is an image of a size the lab reads; only its header is read, nothing decoded."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # a small file that would decode to hundreds of millions of pixels
        raise gr.Error(f"Drawing: the image is far too large; use a canvas between {MIN_SIDE} and {MAX_SIDE:,} pixels "
                       "a side.") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise gr.Error("Drawing: the upload is not an image; draw on the canvas, or upload a PNG or JPEG.") from None
    try:
        check_size(height, width)
    except CanvasError as error:
        raise gr.Error(f"Drawing: {error}") from None


def checked_preprocess(preprocess):
    """A Sketchpad's preprocess with its uploads checked from their headers first and any decoding error made a
    message: the user reads what to send, and no image of millions of pixels is decoded only to be refused.

    Set on the instance (pad.preprocess = ...) rather than in a subclass: Gradio writes a .pyi file beside the
    module of every Component subclass, and picks the browser component by the class's name.
    """
    def wrapped(payload):
        if payload is not None:
            for part in [payload.background, payload.composite, *(payload.layers or [])]:
                if getattr(part, "path", None):
                    check_upload(part.path)
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Exception as error:  # anything the decoder still refuses: say so rather than "an exception"
            raise gr.Error(f"Drawing: the image could not be read ({type(error).__name__}); draw on the canvas, "
                           "or upload a PNG or JPEG.") from None
    return wrapped


def verdict(probabilities: list[float], measured: dict | None) -> tuple[str, bool]:
    """One line on the answer, and whether the unsure rule fired; the rule's threshold is the measured one."""
    digit = max(range(10), key=lambda d: probabilities[d])
    top = probabilities[digit]
    if measured is None:
        return (f"Reads as **{digit}** ({top:.0%}). No unsure rule is measured for this checkpoint "
                "(`python -m lab demo-unsure --checkpoint RUN`)."), False
    threshold = measured["threshold"]
    if is_unsure(probabilities, threshold):
        return (f"⚠️ **Not sure: this may not be a digit.** The best guess, {digit}, has {top:.0%}, below the "
                f"{threshold:.0%} the demo trusts."), True
    return f"Reads as **{digit}** ({top:.0%}, at least the {threshold:.0%} the demo trusts).", False


def classify(models: Models, canvas: object, classifier: str | None,
             ) -> tuple[np.ndarray, dict, pd.DataFrame, np.ndarray, str]:
    """Sketchpad -> (the 28x28 image the model sees, top classes, all ten probabilities, why: a saliency map over
    the input, a verdict line that says when the model is unsure)."""
    checkpoint = _pick(models.classifiers, classifier, "classifier", models.name)
    image = _digit(canvas)
    probabilities, heat = saliency(checkpoint, image)  # one forward and backward pass: (10,), (28, 28)
    probabilities = probabilities.tolist()
    line, unsure = verdict(probabilities, models.unsure.get(checkpoint.describe()))
    table = pd.DataFrame({"digit": [str(d) for d in range(10)], "probability": probabilities,
                          "reading": UNSURE if unsure else SURE})
    return (show(image), {str(d): p for d, p in enumerate(probabilities)}, table,
            saliency_overlay(image, heat, SHOW_SCALE), line)


def classify_live(models: Models, canvas: object, classifier: str | None):
    """classify on every stroke; an empty canvas clears the outputs instead of raising."""
    try:
        return classify(models, canvas, classifier)
    except gr.Error as error:
        if "empty" in str(error):
            return None, None, None, None, ""
        raise


def endpoint(examples: dict[int, torch.Tensor], canvas: object, choice: str | None, what: str) -> torch.Tensor:
    """An interpolation end as a (28, 28) image: the drawing, or the test digit the dropdown names."""
    if choice in (None, "", DRAWING):
        return _digit(canvas, what)
    for d, images in examples.items():
        if choice == TEST_DIGIT.format(d):
            return images[0].float() / 255.0
    raise gr.Error(f"{what}: unknown choice {choice!r}; pick '{DRAWING}' or a test digit")


def interpolate(models: Models, examples: dict[int, torch.Tensor], start_canvas: object, end_canvas: object,
                start: str | None, end: str | None, steps: float,
                autoencoder: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Two digits -> (decoded straight line between their latent codes, pixel cross-fade), as strips."""
    checkpoint = _pick(models.autoencoders, autoencoder, "autoencoder", models.name)
    if steps is None or not STEPS[0] <= steps <= STEPS[1] or steps != int(steps):
        raise gr.Error(f"Steps must be a whole number from {STEPS[0]} to {STEPS[1]}, got {steps}.")
    ends = torch.stack([endpoint(examples, start_canvas, start, "start digit"),
                        endpoint(examples, end_canvas, end, "end digit")])
    t = torch.linspace(0, 1, int(steps)).view(-1, 1)  # (S, 1)
    codes = checkpoint.encode(ends)  # (2, latent_dim)
    decoded = checkpoint.decode((1 - t) * codes[0] + t * codes[1]).cpu()  # (S, 1, 28, 28)
    t = t.view(-1, 1, 1, 1)  # (S, 1, 1, 1)
    faded = (1 - t) * ends[0] + t * ends[1]  # (S, 1, 28, 28)
    return show(strip(decoded)), show(strip(faded))


def reconstruct(models: Models, canvas: object, autoencoder: str | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Sketchpad -> (the 28x28 input, the autoencoder's reconstruction, their MSE per pixel)."""
    checkpoint = _pick(models.autoencoders, autoencoder, "autoencoder", models.name)
    image = _digit(canvas)
    output = checkpoint.reconstruct(image[None]).cpu()[0, 0]  # (28, 28)
    return show(image), show(output), round(float(((output - image) ** 2).mean()), 5)


def map_digits(examples: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every shipped test digit, (N, 28, 28) uint8, and its label (N,): what the latent map shows."""
    images = torch.cat([examples[d] for d in sorted(examples)])
    labels = torch.cat([torch.full((len(examples[d]),), d) for d in sorted(examples)])
    return images, labels


def latent_map(models: Models, examples: dict[int, torch.Tensor]) -> tuple[Checkpoint, LatentMap]:
    """The autoencoder of the map (a latent-2 one when loaded, else the best) and its map of the shipped test
    digits, drawn once and kept."""
    checkpoint = _pick(models.autoencoders, None, "autoencoder", models.name)
    checkpoint = next((c for c in models.autoencoders.values() if c.config.model.latent_dim == 2), checkpoint)
    if not examples:
        raise gr.Error("No test digits are shipped with this demo (examples.safetensors), so there is no map.")
    label = checkpoint.describe()
    if label not in models.maps:
        models.maps[label] = build_map(checkpoint, *map_digits(examples))
    return checkpoint, models.maps[label]


def place(models: Models, examples: dict[int, torch.Tensor], canvas: object, marks: dict) -> tuple[np.ndarray, dict]:
    """Explore: the drawing's code placed on the map (a ring), the clicked point kept; live as strokes arrive."""
    checkpoint, found = latent_map(models, examples)
    try:
        image = _digit(canvas)
    except gr.Error as error:
        if "empty" not in str(error):
            raise
        drawing = None  # a cleared canvas takes its ring off the map
    else:
        drawing = found.place(checkpoint.encode(image[None])[0]).tolist()
    marks = dict(marks or {}) | {"drawing": drawing}
    return with_markers(found, drawing, marks.get("click")), marks


def decode_click(models: Models, examples: dict[int, torch.Tensor], marks: dict,
                 evt: gr.SelectData) -> tuple[np.ndarray, np.ndarray, dict]:
    """Explore: a click on the map (pixel column, row) -> the map marked there, and that point decoded (28x28)."""
    checkpoint, found = latent_map(models, examples)
    column, row = evt.index[:2]
    point = found.to_point(column, row)
    decoded = checkpoint.decode(found.code(point)[None]).cpu()[0, 0]  # (28, 28)
    marks = dict(marks or {}) | {"click": point.tolist()}
    return with_markers(found, marks.get("drawing"), point), show(decoded), marks


def pad_value(examples: dict[int, torch.Tensor], choice: str | None) -> dict | None:
    """An interpolation end's canvas: the chosen test digit drawn on it, or a blank canvas for 'my drawing'."""
    for d, images in examples.items():
        if choice == TEST_DIGIT.format(d):
            canvas = mnist_to_canvas(images[0], CANVAS_SIDE)
            return {"background": canvas, "layers": [], "composite": canvas}
    return None


def example_value(examples: dict[int, torch.Tensor], digit: int, counts: dict) -> tuple[dict, dict]:
    """The next test digit of a class as a canvas value (black on white), and the updated click counts."""
    if digit not in examples:
        raise gr.Error(f"No test digit {digit} is shipped with this demo.")
    counts = dict(counts or {})
    index = counts.get(digit, 0) % len(examples[digit])
    counts[digit] = counts.get(digit, 0) + 1
    canvas = mnist_to_canvas(examples[digit][index], CANVAS_SIDE)
    return {"background": canvas, "layers": [], "composite": canvas}, counts


def sketchpad(label: str, value: dict | None = None) -> gr.Sketchpad:
    """A black-brush canvas of CANVAS_SIDE pixels whose uploads are checked before they are decoded."""
    pad = gr.Sketchpad(value, label=label, canvas_size=(CANVAS_SIDE, CANVAS_SIDE), image_mode="L", type="numpy",
                       brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=BRUSH_RADIUS),
                       layers=False, transforms=(), height=CANVAS_SIDE + 120)
    pad.preprocess = checked_preprocess(pad.preprocess)  # Gradio calls the instance's preprocess
    return pad


def example_buttons(pad: gr.Sketchpad, examples: dict[int, torch.Tensor], then: tuple | None = None) -> None:
    """One button per shipped test digit that loads it into pad, then runs the event then names, if any."""
    if not examples:
        return
    counts = gr.State({})
    with gr.Row():
        gr.Markdown("Load a real test digit:")
        for d in sorted(examples):
            button = gr.Button(str(d), size="sm", min_width=40)
            event = button.click(lambda c, d=d: example_value(examples, d, c), counts, [pad, counts],
                                 api_visibility="private")
            if then is not None:
                event.then(*then, api_visibility="private")


def picker(choices: dict[str, Checkpoint], kind: str) -> gr.Dropdown:
    """A dropdown of checkpoint labels, the best one chosen."""
    return gr.Dropdown(list(choices), value=next(iter(choices), None), label=f"{kind} checkpoint",
                       interactive=True)


def bind(fn: Callable, *args: object) -> partial:
    """fn with its first arguments bound, under fn's name and docstring (Gradio names events and the API by them)."""
    bound = partial(fn, *args)  # no __wrapped__: the API's parameters are the ones left unbound
    bound.__name__, bound.__doc__ = fn.__name__, fn.__doc__
    return bound


def classify_tab(models: Models, examples: dict[int, torch.Tensor]) -> gr.Tab:
    """The Classify tab: a canvas and a classifier in; what the model sees, why, its verdict and the classes out."""
    with gr.Tab("Classify") as tab:
        if not models.classifiers:
            gr.Markdown(f"**No classifier checkpoint loaded from `{models.name}`.**")
        with gr.Row():
            with gr.Column():
                pad = sketchpad("Draw a digit: it is read as you draw")
                classifier = picker(models.classifiers, "classifier")
                button = gr.Button("Classify", variant="secondary")  # for API clients; drawing needs no button
            with gr.Column():
                with gr.Row():
                    seen = picture(label="What the model sees (28x28)", height=240, width=240)
                    why = picture(label="Why this digit", height=240, width=240, elem_id="why")
                gr.Markdown(HOW_TO_READ)
                line = gr.Markdown(elem_id="verdict")
                top = gr.Label(num_top_classes=3, label="Prediction")
                bars = gr.BarPlot(x="digit", y="probability", color="reading", color_map=BAR_COLOURS, color_title="",
                                  y_lim=[0, 1], label="All ten probabilities (grey when the model is unsure)",
                                  sort="x", height=220)
        run = bind(classify, models)  # (canvas, classifier), the API's parameters
        outputs = [seen, top, bars, why, line]
        button.click(run, [pad, classifier], outputs, api_name="classify")
        # on every stroke, the last one winning: strokes that arrive while one is read are folded into the next
        pad.change(bind(classify_live, models), [pad, classifier], outputs, api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
        example_buttons(pad, examples, then=(run, [pad, classifier], outputs))  # a loaded value fires no change
    return tab


def interpolate_tab(models: Models, examples: dict[int, torch.Tensor]) -> gr.Tab:
    """The Interpolate tab: two digits, drawn or picked, and the autoencoder's path between them."""
    with gr.Tab("Interpolate") as tab:
        if not models.autoencoders:
            gr.Markdown(f"**No autoencoder checkpoint loaded from `{models.name}`.**")
        choices = [DRAWING] + [TEST_DIGIT.format(d) for d in sorted(examples)]
        ends = []
        with gr.Row():
            for what, digit in (("Start", 3), ("End", 8)):
                with gr.Column():
                    choice = TEST_DIGIT.format(digit) if digit in examples else DRAWING
                    pad = sketchpad(f"{what} digit: the test digit chosen below, or your drawing",
                                    pad_value(examples, choice))
                    menu = gr.Dropdown(choices, value=choice, label=what)
                    menu.change(lambda c: pad_value(examples, c), menu, pad, api_visibility="private")
                    ends.append((pad, menu))
        (start_pad, start), (end_pad, end) = ends
        with gr.Row():
            steps = gr.Slider(STEPS[0], STEPS[1], value=8, step=1, label="Steps")
            autoencoder = picker(models.autoencoders, "autoencoder")
        go = gr.Button("Interpolate", variant="primary")
        latent_strip = picture(label="Decoded along the straight line between the latent codes")
        pixel_strip = picture(label="Pixel-space cross-fade, for contrast")
        run = bind(interpolate, models, examples)  # (start_canvas, end_canvas, start, end, steps, autoencoder)
        go.click(run, [start_pad, end_pad, start, end, steps, autoencoder], [latent_strip, pixel_strip],
                 api_name="interpolate")
    return tab


def explore_tab(models: Models, examples: dict[int, torch.Tensor]) -> gr.Tab:
    """The Explore tab: a map of test digits' codes; a drawing placed on it; a click on it decoded."""
    with gr.Tab("Explore") as tab:
        if not models.autoencoders or not examples:
            gr.Markdown("**No map: it needs an autoencoder checkpoint and the shipped test digits.**")
            return tab
        checkpoint, found = latent_map(models, examples)
        dims = checkpoint.config.model.latent_dim
        plane = ("its code is two numbers, drawn as they are" if dims == 2 else
                 f"the plane of the two directions along which its {dims}-number codes vary most, by PCA")
        gr.Markdown(f"Each dot is a real MNIST test digit, placed by the code the autoencoder "
                    f"`{checkpoint.describe()}` gives it ({plane}). Draw a digit to see where yours lands; "
                    "**click anywhere on the map** to decode that point.")
        marks = gr.State({})
        with gr.Row():
            with gr.Column(scale=1):
                pad = sketchpad("Draw a digit")
            with gr.Column(scale=2):
                shown_map = picture(with_markers(found), elem_id="latent-map", height=500, buttons=[],
                                    label="Latent map: MNIST test digits' codes, coloured by digit")
            with gr.Column(scale=1):
                decoded = picture(label="Decoded at the click", height=240, width=240, elem_id="decoded")
        run = bind(place, models, examples)  # (canvas, marks)
        pad.change(run, [pad, marks], [shown_map, marks], api_visibility="private", trigger_mode="always_last",
                   show_progress="hidden")
        def clicked(marks_now: dict, evt: gr.SelectData):  # a closure: Gradio finds SelectData by annotation
            return decode_click(models, examples, marks_now, evt)

        shown_map.select(clicked, marks, [shown_map, decoded, marks], api_visibility="private",
                         show_progress="hidden")
        example_buttons(pad, examples, then=(run, [pad, marks], [shown_map, marks]))
    return tab


def reconstruct_tab(models: Models, examples: dict[int, torch.Tensor]) -> gr.Tab:
    """The Reconstruct tab: a canvas and an autoencoder in; the digit, its reconstruction and their MSE out."""
    with gr.Tab("Reconstruct") as tab:
        with gr.Row():
            with gr.Column():
                pad = sketchpad("Draw a digit")
                autoencoder = picker(models.autoencoders, "autoencoder")
                button = gr.Button("Reconstruct", variant="primary")
            with gr.Column():
                with gr.Row():
                    digit = picture(label="Your digit (28x28)")
                    output = picture(label="Reconstruction")
                mse = gr.Number(label="MSE per pixel", interactive=False)
        run = bind(reconstruct, models)  # (canvas, autoencoder), the API's parameters
        inputs, outputs = [pad, autoencoder], [digit, output, mse]
        button.click(run, inputs, outputs, api_name="reconstruct")
        example_buttons(pad, examples, then=(run, inputs, outputs))
    return tab


def build_demo(models: Models, examples: dict[int, torch.Tensor] | None = None) -> gr.Blocks:
    """The Gradio app: Classify, Interpolate, Explore and Reconstruct tabs over the loaded checkpoints."""
    examples = load_examples() if examples is None else examples
    with gr.Blocks(title="latent-digits-lab demo") as demo:
        gr.Markdown("# latent-digits-lab\nDraw a digit, black on white, the way MNIST's writers did. The drawing is "
                    "cropped to its ink, scaled to 20 px and centred by its centre of mass in 28x28, as MNIST was "
                    f"made. Checkpoints from `{models.name}`.")
        if models.skipped:
            gr.Markdown("**Skipped checkpoints** (not loadable):\n" + "\n".join(f"- `{m}`" for m in models.skipped))
        tabs = [classify_tab(models, examples), interpolate_tab(models, examples), explore_tab(models, examples),
                reconstruct_tab(models, examples)]
        demo.load(None, js=SELECT_BRUSH)
        for tab in tabs:
            tab.select(None, js=SELECT_BRUSH)
    # bounded on purpose: a busy demo answers "queue full" instead of growing without limit
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=MAX_QUEUE)
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python demo/app.py", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoints", type=Path, help=f"folder of run folders (default: {DEFAULT_CHECKPOINTS})")
    source.add_argument("--hub-repo", help="Hugging Face Hub model repo holding run folders (safetensors + JSON)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="address to listen on (default: 127.0.0.1; Spaces sets GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    args = parser.parse_args(argv)
    if args.hub_repo:
        from lab.demo.hub import HubError, download_runs
        try:
            folder = download_runs(args.hub_repo)
        except HubError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    else:
        folder = args.checkpoints or DEFAULT_CHECKPOINTS
    models = load_models(folder.resolve())
    print(f"checkpoints from {models.source}: {len(models.classifiers)} classifiers, "
          f"{len(models.autoencoders)} autoencoders")
    for message in models.skipped:
        print(f"skipped: {message}", file=sys.stderr)
    torch.set_num_threads(REQUEST_THREADS)  # one thread per request keeps CONCURRENCY requests apart
    build_demo(models).launch(server_name=args.host, server_port=args.port, share=args.share,
                              max_file_size=MAX_FILE_SIZE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
