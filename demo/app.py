"""The demo: draw a digit and watch a classifier read it; walk an autoencoder's latent space between two digits.

    python demo/app.py [--checkpoints DIR | --hub-repo ID] [--host 127.0.0.1] [--port N] [--share]

It loads finished run folders (config.json, weights.safetensors, metrics.json) and never trains. By default
it loads the small weights shipped in demo/checkpoints/ (made by `make demo-weights`).
"""

import argparse
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
from lab.demo.canvas import (  # noqa: E402
    CANVAS_SIDE,
    MAX_SIDE,
    MIN_SIDE,
    CanvasError,
    canvas_to_mnist,
    check_size,
    mnist_to_canvas,
)
from lab.run_folder import best_first, is_done  # noqa: E402

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


@dataclass
class Models:
    classifiers: dict[str, Checkpoint] = field(default_factory=dict)  # picker label -> checkpoint
    autoencoders: dict[str, Checkpoint] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # one message per run folder that could not be loaded
    source: str = ""


def load_models(folder: Path) -> Models:
    """Every loadable run folder in folder (or folder itself when it is one run); broken ones are named in skipped."""
    models = Models(source=str(folder))
    if not folder.is_dir():
        models.skipped.append(f"{folder}: no such folder of run folders")
        return models
    if is_done(folder):  # a single run, e.g. a model repository from push-model
        try:
            loaded, skipped = [load_checkpoint(folder)], []
        except CheckpointError as error:
            loaded, skipped = [], [str(error)]
    else:
        loaded, skipped = find_checkpoints(folder)
    models.skipped += skipped
    for checkpoint in loaded:
        if checkpoint.task == "classifier":
            models.classifiers[checkpoint.describe()] = checkpoint
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
    pixels = (image.squeeze().clamp(0, 1) * 255).round().to(torch.uint8)
    return pixels.repeat_interleave(SHOW_SCALE, 0).repeat_interleave(SHOW_SCALE, 1).numpy()


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


def classify(models: Models, canvas: object, classifier: str | None) -> tuple[np.ndarray, dict, pd.DataFrame]:
    """Sketchpad -> (the 28x28 image the model sees, top classes, all ten probabilities)."""
    checkpoint = _pick(models.classifiers, classifier, "classifier", models.source)
    image = _digit(canvas)
    probabilities = checkpoint.probabilities(image[None])[0].tolist()  # (10,)
    table = pd.DataFrame({"digit": [str(d) for d in range(10)], "probability": probabilities})
    return show(image), {str(d): p for d, p in enumerate(probabilities)}, table


def classify_live(models: Models, canvas: object, classifier: str | None):
    """classify on every stroke; an empty canvas clears the outputs instead of raising."""
    try:
        return classify(models, canvas, classifier)
    except gr.Error as error:
        if "empty" in str(error):
            return None, None, None
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
    checkpoint = _pick(models.autoencoders, autoencoder, "autoencoder", models.source)
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
    checkpoint = _pick(models.autoencoders, autoencoder, "autoencoder", models.source)
    image = _digit(canvas)
    output = checkpoint.reconstruct(image[None]).cpu()[0, 0]  # (28, 28)
    return show(image), show(output), round(float(((output - image) ** 2).mean()), 5)


def example_value(examples: dict[int, torch.Tensor], digit: int, counts: dict) -> tuple[dict, dict]:
    """The next test digit of a class as a canvas value (black on white), and the updated click counts."""
    if digit not in examples:
        raise gr.Error(f"No test digit {digit} is shipped with this demo.")
    counts = dict(counts or {})
    index = counts.get(digit, 0) % len(examples[digit])
    counts[digit] = counts.get(digit, 0) + 1
    canvas = mnist_to_canvas(examples[digit][index], CANVAS_SIDE)
    return {"background": canvas, "layers": [], "composite": canvas}, counts


def sketchpad(label: str) -> gr.Sketchpad:
    """A black-brush canvas of CANVAS_SIDE pixels whose uploads are checked before they are decoded."""
    pad = gr.Sketchpad(label=label, canvas_size=(CANVAS_SIDE, CANVAS_SIDE), image_mode="L", type="numpy",
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
    """The Classify tab: a canvas and a classifier in; what the model sees, its top classes and all ten out."""
    with gr.Tab("Classify") as tab:
        if not models.classifiers:
            gr.Markdown(f"**No classifier checkpoint loaded from `{models.source}`.**")
        with gr.Row():
            with gr.Column():
                pad = sketchpad("Draw a digit")
                classifier = picker(models.classifiers, "classifier")
                button = gr.Button("Classify", variant="primary")
            with gr.Column():
                seen = gr.Image(label="What the model sees (28x28)", height=240, width=240, interactive=False,
                                format="png")
                top = gr.Label(num_top_classes=3, label="Prediction")
                bars = gr.BarPlot(x="digit", y="probability", y_lim=[0, 1], label="All ten probabilities",
                                  sort="x", height=220)
        run = bind(classify, models)  # (canvas, classifier), the API's parameters
        outputs = [seen, top, bars]
        button.click(run, [pad, classifier], outputs, api_name="classify")
        pad.change(bind(classify_live, models), [pad, classifier], outputs, api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
        example_buttons(pad, examples, then=(run, [pad, classifier], outputs))  # a loaded value fires no change
    return tab


def interpolate_tab(models: Models, examples: dict[int, torch.Tensor]) -> gr.Tab:
    """The Interpolate tab: two digits, drawn or picked, and the autoencoder's path between them."""
    with gr.Tab("Interpolate") as tab:
        if not models.autoencoders:
            gr.Markdown(f"**No autoencoder checkpoint loaded from `{models.source}`.**")
        choices = [DRAWING] + [TEST_DIGIT.format(d) for d in sorted(examples)]
        with gr.Row():
            with gr.Column():
                start_pad = sketchpad("Start digit (used when 'my drawing' is chosen)")
                start = gr.Dropdown(choices, value=TEST_DIGIT.format(3) if 3 in examples else DRAWING,
                                    label="Start")
            with gr.Column():
                end_pad = sketchpad("End digit (used when 'my drawing' is chosen)")
                end = gr.Dropdown(choices, value=TEST_DIGIT.format(8) if 8 in examples else DRAWING,
                                  label="End")
        with gr.Row():
            steps = gr.Slider(STEPS[0], STEPS[1], value=8, step=1, label="Steps")
            autoencoder = picker(models.autoencoders, "autoencoder")
        go = gr.Button("Interpolate", variant="primary")
        latent_strip = gr.Image(label="Decoded along the straight line between the latent codes",
                                interactive=False, format="png")
        pixel_strip = gr.Image(label="Pixel-space cross-fade, for contrast", interactive=False, format="png")
        run = bind(interpolate, models, examples)  # (start_canvas, end_canvas, start, end, steps, autoencoder)
        go.click(run, [start_pad, end_pad, start, end, steps, autoencoder], [latent_strip, pixel_strip],
                 api_name="interpolate")
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
                    digit = gr.Image(label="Your digit (28x28)", interactive=False, format="png")
                    output = gr.Image(label="Reconstruction", interactive=False, format="png")
                mse = gr.Number(label="MSE per pixel", interactive=False)
        run = bind(reconstruct, models)  # (canvas, autoencoder), the API's parameters
        inputs, outputs = [pad, autoencoder], [digit, output, mse]
        button.click(run, inputs, outputs, api_name="reconstruct")
        example_buttons(pad, examples, then=(run, inputs, outputs))
    return tab


def build_demo(models: Models, examples: dict[int, torch.Tensor] | None = None) -> gr.Blocks:
    """The Gradio app: Classify, Interpolate and Reconstruct tabs over the loaded checkpoints."""
    examples = load_examples() if examples is None else examples
    with gr.Blocks(title="latent-digits-lab demo") as demo:
        gr.Markdown("# latent-digits-lab\nDraw a digit, black on white, the way MNIST's writers did. The drawing is "
                    "cropped to its ink, scaled to 20 px and centred by its centre of mass in 28x28, as MNIST was "
                    f"made. Checkpoints from `{models.source}`.")
        if models.skipped:
            gr.Markdown("**Skipped checkpoints** (not loadable):\n" + "\n".join(f"- `{m}`" for m in models.skipped))
        tabs = [classify_tab(models, examples), interpolate_tab(models, examples), reconstruct_tab(models, examples)]
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
    torch.set_num_threads(1)  # the models are tiny; one thread per request keeps CONCURRENCY requests apart
    build_demo(models).launch(server_name=args.host, server_port=args.port, share=args.share,
                              max_file_size=MAX_FILE_SIZE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
