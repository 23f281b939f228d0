"""MNIST test digits redrawn as a user draws them on the demo's canvas, and the demo's accuracy on them.

A user draws black on white on the demo's canvas (280 px a side), off-centre, larger or smaller than MNIST's 20 px
box, with a thicker or thinner pen. Two redraws make such canvases from real digits (a batch at a time, with torch
ops): redraw_digits ("pen") thickens or thins the digit's own strokes; brush_redraw ("brush") draws the digit's
skeleton again with a round brush of one width, tilted, as a mouse draws. canvas_accuracy runs them through the
demo's own classify path (canvas_to_mnist, then the classifier).
"""

import math
import time

import torch
import torch.nn.functional as F

from lab.demo.canvas import CANVAS_SIDE, canvas_to_mnist
from lab.stats import latency_ms, wilson
from lab.strokes import draw_strokes, extent, holes, skeletons, stroke_points

UPSCALE = 4  # strokes are thickened or thinned at 4x MNIST's resolution (112 px), so a step is 1/4 pixel
THRESHOLDS = (0.2, 0.5)  # binarisation level of the upscaled digit: lower -> thicker strokes
PEN_STEPS = (-1, 3)  # erode (negative) or dilate (positive) by this many 112-px pixels, uniform over the range
DIGIT_SIDE = (0.3, 0.9)  # the drawn digit's longer side as a share of the canvas (84-252 px)
MARGIN = 0.04  # keep the drawing this far (share of the half canvas) inside the edges
BRUSH_WIDTHS = (12.0, 24.0)  # brush widths in canvas pixels, uniform: the demo's brush is 18 px (radius 9)
TILT = 10.0  # degrees, uniform in [-TILT, TILT]: how far a drawing leans beyond the digit's own slant
LOCAL = 64  # each brushed digit is drawn in a square of 64 px, then scaled onto the canvas (0.3 MNIST px per px)


def _morph(x: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """Dilate (steps > 0) or erode (steps < 0) each (1, H, W) image of x (B, 1, H, W) by |steps| pixels."""
    out = x.clone()
    for step in range(1, int(steps.abs().max().item()) + 1):
        grow, shrink = steps >= step, steps <= -step
        if grow.any():
            out[grow] = F.max_pool2d(out[grow], 3, stride=1, padding=1)
        if shrink.any():
            out[shrink] = -F.max_pool2d(-out[shrink], 3, stride=1, padding=1)
    return out


def pen_draws(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The random choices of n pen redraws, each (N,): ink level, pen steps, longer side (share of the canvas) and
    place (N, 2: two uniforms, x then y, each scaled to the room the digit leaves)."""
    rand = torch.rand(n, 6, generator=generator)
    steps = (PEN_STEPS[0] + rand[:, 1] * (PEN_STEPS[1] - PEN_STEPS[0] + 1)).floor().clamp(max=PEN_STEPS[1])
    return {"threshold": THRESHOLDS[0] + rand[:, 0] * (THRESHOLDS[1] - THRESHOLDS[0]), "steps": steps.long(),
            "longer": DIGIT_SIDE[0] + rand[:, 2] * (DIGIT_SIDE[1] - DIGIT_SIDE[0]), "place": rand[:, 3:5]}


def redraw_digits(images: torch.Tensor, generator: torch.Generator, side: int = CANVAS_SIDE) -> torch.Tensor:
    """MNIST digits (N, 28, 28) uint8 -> canvases (N, side, side) uint8, black ink on white, as a user would draw."""
    return pen_canvases(images, pen_draws(images.shape[0], generator), side)


def pen_canvases(images: torch.Tensor, draws: dict[str, torch.Tensor], side: int = CANVAS_SIDE) -> torch.Tensor:
    """redraw_digits with its random choices given (pen_draws)."""
    n = images.shape[0]
    x = images.float().div(255.0).unsqueeze(1)  # (N, 1, 28, 28)
    x = F.interpolate(x, scale_factor=UPSCALE, mode="bilinear", align_corners=False)  # (N, 1, 112, 112)
    pen = (x > draws["threshold"].view(n, 1, 1, 1)).float()  # binary strokes, like a pen's
    pen = _morph(pen, draws["steps"])
    empty = pen.flatten(1).amax(1) == 0  # a digit eroded away entirely keeps its unthickened strokes
    pen[empty] = (x[empty] > THRESHOLDS[0]).float()
    pen = F.avg_pool2d(pen, 3, stride=1, padding=1)  # soft pen edges, as the canvas anti-aliases them

    # the bounding box of each digit in grid_sample's coordinates [-1, 1] (pixel centres, align_corners=False)
    size = pen.shape[-1]
    inked = pen[:, 0] > 0  # (N, 112, 112)
    coords = (torch.arange(size).float() + 0.5) / size * 2 - 1
    big = torch.tensor(2.0)

    def extent(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # (N, 112) -> lowest, highest inked coord
        return torch.where(mask, coords, big).amin(1), torch.where(mask, coords, -big).amax(1)

    y0, y1 = extent(inked.any(2))
    x0, x1 = extent(inked.any(1))
    # zoom so the longer side spans DIGIT_SIDE of the canvas, then shift anywhere that keeps it inside the margins
    zoom = 2 * draws["longer"] / torch.maximum(y1 - y0, x1 - x0).clamp(min=1e-3)
    low_x, high_x = -1 + MARGIN - zoom * x0, 1 - MARGIN - zoom * x1
    low_y, high_y = -1 + MARGIN - zoom * y0, 1 - MARGIN - zoom * y1
    shift_x = low_x + draws["place"][:, 0] * (high_x - low_x).clamp(min=0)
    shift_y = low_y + draws["place"][:, 1] * (high_y - low_y).clamp(min=0)
    # affine_grid maps canvas coordinates u to digit coordinates v = (u - shift) / zoom
    zeros = torch.zeros(n)
    theta = torch.stack([torch.stack([1 / zoom, zeros, -shift_x / zoom], 1),
                         torch.stack([zeros, 1 / zoom, -shift_y / zoom], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, 1, side, side], align_corners=False)  # (N, side, side, 2)
    ink = F.grid_sample(pen, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return ((1 - ink.clamp(0, 1)) * 255).round().to(torch.uint8)  # (N, side, side), black on white


def _tilt(points: torch.Tensor, index: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Points (M, 2) as (y, x) turned by angle[index] (radians) about the origin."""
    cos, sin = torch.cos(angle)[index], torch.sin(angle)[index]
    return torch.stack([cos * points[:, 0] - sin * points[:, 1], sin * points[:, 0] + cos * points[:, 1]], 1)


def brush_draws(n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The random choices of n brush redraws, each (N,): brush width (canvas px), the drawing's longer side (share
    of the canvas), tilt (radians) and place (N, 2: two uniforms, y then x, each scaled to the room the drawing
    leaves)."""
    rand = torch.rand(n, 5, generator=generator)
    return {"width": BRUSH_WIDTHS[0] + rand[:, 0] * (BRUSH_WIDTHS[1] - BRUSH_WIDTHS[0]),
            "longer": DIGIT_SIDE[0] + rand[:, 1] * (DIGIT_SIDE[1] - DIGIT_SIDE[0]),
            "tilt": (rand[:, 2] * 2 - 1) * math.radians(TILT), "place": rand[:, 3:5]}


def brush_redraw(images: torch.Tensor, generator: torch.Generator, side: int = CANVAS_SIDE) -> torch.Tensor:
    """MNIST digits (N, 28, 28) uint8 -> canvases (N, side, side) uint8, each digit's skeleton drawn with a round
    brush of one width (BRUSH_WIDTHS), tilted (TILT), sized (DIGIT_SIDE) and placed at random, black on white."""
    return brush_canvases(images, brush_draws(images.shape[0], generator), side)


def brush_canvases(images: torch.Tensor, draws: dict[str, torch.Tensor], side: int = CANVAS_SIDE) -> torch.Tensor:
    """brush_redraw with its random choices given (brush_draws)."""
    n = images.shape[0]
    width = draws["width"]  # (N,) canvas px
    longer = draws["longer"] * side  # the drawing's longer side, px
    angle = draws["tilt"]
    index, points = stroke_points(skeletons(images))  # (M,), (M, 2) in MNIST px
    points = _tilt(points, index, angle)
    low, high = extent(index, points, n)  # (N, 2) each
    zoom = (longer - width) / (high - low).amax(1).clamp(min=1.0)  # canvas px per MNIST px; the brush adds a width
    # draw each in a LOCAL-px square of side span canvas px centred on its bounding box
    span = longer + 2.0
    scale = (LOCAL / span) * zoom  # local px per MNIST px
    middle = (low + high) / 2
    theta = torch.cat([torch.diag_embed(scale.unsqueeze(1).expand(n, 2)),
                       (LOCAL / 2 - scale.unsqueeze(1) * middle).unsqueeze(2)], 2)  # (N, 2, 3)
    ink = draw_strokes(index, points, theta, width / 2 * LOCAL / span, LOCAL)  # (N, 1, LOCAL, LOCAL)
    # the square's centre anywhere that keeps the drawing inside the margins; (y, x) canvas px
    half = zoom.unsqueeze(1) * (high - low) / 2 + width.unsqueeze(1) / 2  # (N, 2)
    margin = MARGIN * side / 2
    centre = margin + half + draws["place"] * (side - 2 * (margin + half)).clamp(min=0)
    # affine_grid maps canvas coordinates u in [-1, 1] to the square's v = (u * side / 2 + side / 2 - centre) * 2 / span
    zeros = torch.zeros(n)
    ratio = side / span
    theta = torch.stack([torch.stack([ratio, zeros, (side - 2 * centre[:, 1]) / span], 1),
                         torch.stack([zeros, ratio, (side - 2 * centre[:, 0]) / span], 1)], 1)  # (N, 2, 3), (x, y)
    grid = F.affine_grid(theta, [n, 1, side, side], align_corners=False)  # (N, side, side, 2)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return ((1 - ink.clamp(0, 1)) * 255).round().to(torch.uint8)  # (N, side, side), black on white


# how canvas_accuracy redraws the digits, by name: (its random choices, the canvases drawn with them)
DRAWS = {"pen": (pen_draws, pen_canvases), "brush": (brush_draws, brush_canvases)}


def described_draws(style: str, draws: dict[str, torch.Tensor], side: int = CANVAS_SIDE) -> dict[str, torch.Tensor]:
    """The random choices of a redraw that could make it harder to read, each (N,) float, by a name with its unit.

    For the brush, the stroke's width relative to the drawing: the classifier sees the drawing's longer side scaled
    to MNIST's 20 px box, so a brush of width w on a drawing of longer side L reaches it about 20 w / L px wide."""
    longer = draws["longer"] * side
    if style == "pen":
        return {"ink level": draws["threshold"], "pen steps (1/4 px)": draws["steps"].float(),
                "longer side (canvas px)": longer}
    return {"brush width (canvas px)": draws["width"], "longer side (canvas px)": longer,
            "tilt (degrees)": torch.rad2deg(draws["tilt"]),
            "stroke width (px of a 20 px digit)": 20 * draws["width"] / longer}


def canvas_accuracy(classifier, images: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                    batch_size: int = 250, style: str = "pen", keep_wrong: bool = False) -> dict:
    """Redraw digits as canvases (style: a key of DRAWS) and classify each through canvas_to_mnist + the
    classifier, one canvas per call.

    Returns the accuracy, the number of digits, the wrong ones as (index, label, predicted, top probability), the
    per-call latency (canvas -> probabilities) p50/p95 in ms, and "by_draw": how often digits were read wrong at each
    third of every random choice of the redraw (miss_rates of described_draws) and "by_holes": by whether the redraw
    has as many loops as its digit (hole_rates; lab.strokes.holes of MNIST's digit and of the 28x28 input); with
    keep_wrong also "wrong_seen", what the classifier saw of each wrong one, (k, 28, 28) in [0, 1]. The same seed
    redraws the same canvases.
    """
    choose, render = DRAWS[style]
    generator = torch.Generator().manual_seed(seed)
    correct, latencies, wrong, seen, described, changed = 0, [], [], [], [], []
    for start in range(0, len(labels), batch_size):
        batch = images[start:start + batch_size]
        draws = choose(len(batch), generator)
        described.append(described_draws(style, draws))
        canvases = render(batch, draws).numpy()
        inputs = []
        for i, canvas in enumerate(canvases):
            began = time.perf_counter()
            mnist = canvas_to_mnist(canvas)
            probabilities = classifier.probabilities(mnist[None])[0]  # one call, as the app
            latencies.append(time.perf_counter() - began)
            inputs.append(torch.as_tensor(mnist))
            predicted = int(probabilities.argmax())
            if predicted == int(labels[start + i]):
                correct += 1
            else:
                wrong.append((start + i, int(labels[start + i]), predicted, round(float(probabilities.max()), 4)))
                seen.append(inputs[-1])
        changed.append(holes(torch.stack(inputs)) - holes(batch.float().div(255.0)))  # both at 28 px
    latency = latency_ms(latencies)
    missed = torch.zeros(len(labels), dtype=torch.bool)
    missed[[w[0] for w in wrong]] = True
    values = {name: torch.cat([d[name] for d in described]) for name in described[0]}
    result = {"accuracy": correct / len(labels), "digits": len(labels), "wrong": wrong,
              "latency_p50_ms": latency["p50_ms"], "latency_p95_ms": latency["p95_ms"],
              "by_draw": miss_rates(values, missed), "by_holes": hole_rates(torch.cat(changed), missed)}
    if keep_wrong:
        result["wrong_seen"] = torch.stack(seen) if seen else torch.zeros(0, 28, 28)
    return result


def miss_rates(values: dict[str, torch.Tensor], missed: torch.Tensor, parts: int = 3) -> list[dict]:
    """For each named value (N,), the digits split at its quantiles into `parts` ranges of about equal count (equal
    values stay in one range, so a value with few levels may give fewer): each range's lowest and highest value, its
    digits, how many were missed (missed: (N,) bool) and that share with its Wilson 95% interval. Flat rates mean
    the misses do not follow that choice."""
    rows = []
    for name, value in values.items():
        value = value.double()
        cuts = torch.quantile(value, torch.arange(1, parts, dtype=torch.double) / parts).unique()
        part = torch.bucketize(value, cuts, right=True)  # ranges (.., cut1), [cut1, cut2), ...; ties stay together
        for k in part.unique().tolist():
            inside = part == k
            rows.append({"draw": name, "from": float(value[inside].min()), "to": float(value[inside].max()),
                         **_miss_rate(missed, inside)})
    return rows


def hole_rates(changed: torch.Tensor, missed: torch.Tensor) -> list[dict]:
    """How often digits were read wrong (missed: (N,) bool) by how their redraw's loops compare with the digit's
    (changed: (N,) the redraw's holes less the digit's, lab.strokes.holes), each share with its Wilson 95% interval:
    "fewer" (a loop closed up or opened), "kept" (as many), "more" (a loop made). A redraw that changes its digit's
    loops may have stopped being that digit; one that keeps them may still have (a bold 3's prong thinned away)."""
    return [{"holes": name, **_miss_rate(missed, inside)}
            for name, inside in (("fewer", changed < 0), ("kept", changed == 0), ("more", changed > 0))]


def _miss_rate(missed: torch.Tensor, inside: torch.Tensor) -> dict:
    """The digits inside (N,) bool, how many of them were missed, that share (0 of none) and its Wilson interval."""
    digits, wrong = int(inside.sum()), int(missed[inside].sum())
    low, high = wilson(wrong, digits)
    return {"digits": digits, "wrong": wrong, "rate": wrong / digits if digits else 0.0, "low": low, "high": high}


def sample_indices(count: int, n: int, seed: int = 0) -> torch.Tensor:
    """n of a split's count digits drawn at random (seeded, without replacement): (n,) indices into the split."""
    if not 1 <= n <= count:
        raise ValueError(f"n: must be in [1, {count}], got {n}")
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n]


def example_digits(images: torch.Tensor, labels: torch.Tensor, per_class: int = 5) -> dict[str, torch.Tensor]:
    """The first per_class digits of each class, for the demo's example buttons: images (10K, 28, 28), labels (10K,)."""
    picked = torch.cat([torch.nonzero(labels == d)[:per_class, 0] for d in range(10)])
    return {"images": images[picked].contiguous(), "labels": labels[picked].long().contiguous()}


def accuracy_figure(images: torch.Tensor, labels: torch.Tensor, classifier, path, seed: int = 0, count: int = 24,
                    style: str = "pen", split: str = "test") -> None:
    """A figure of redrawn canvases, what the model sees and its answer (red when wrong), saved to path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    choose, render = DRAWS[style]
    shown = images[:count]
    canvases = render(shown, choose(len(shown), torch.Generator().manual_seed(seed)))
    fig, axes = plt.subplots(2, count, figsize=(count * 0.9, 2.2))
    for i in range(count):
        seen = canvas_to_mnist(canvases[i].numpy())
        predicted = int(classifier.probabilities(seen[None])[0].argmax())
        axes[0, i].imshow(canvases[i], cmap="gray", vmin=0, vmax=255)
        axes[1, i].imshow(seen, cmap="gray", vmin=0, vmax=1)
        axes[1, i].set_title(str(predicted), color="black" if predicted == int(labels[i]) else "red", fontsize=9)
        for ax in axes[:, i]:
            ax.set_axis_off()
    how = "redrawn with a round brush along their skeletons" if style == "brush" else "redrawn"
    fig.suptitle(f"MNIST {split} digits {how} on a {CANVAS_SIDE} px canvas (top), what the classifier sees and its "
                 "answer", fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def mistakes_figure(images: torch.Tensor, result: dict, path, title: str, columns: int = 20) -> None:
    """Each wrong digit of a canvas_accuracy(..., keep_wrong=True) result: the MNIST digit over what the classifier
    saw of its redraw, titled label -> answer (its probability); images are the digits it measured. Saved to path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    wrong = result["wrong"]
    if not wrong:
        raise ValueError("no wrong digits to show")
    rows = -(-len(wrong) // columns)
    fig, axes = plt.subplots(2 * rows, columns, figsize=(columns * 0.75, rows * 1.75), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for k, (index, label, predicted, probability) in enumerate(wrong):
        row, column = divmod(k, columns)
        axes[2 * row, column].imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        axes[2 * row, column].set_title(str(label), fontsize=8)
        axes[2 * row + 1, column].imshow(result["wrong_seen"][k], cmap="gray_r", vmin=0, vmax=1)
        axes[2 * row + 1, column].set_title(f"→{predicted} {probability:.2f}", fontsize=7, color="firebrick")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
