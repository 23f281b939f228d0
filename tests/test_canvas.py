"""canvas_to_mnist: the MNIST recipe (bounding box, 20 px longer side, centre of mass), every input form, errors."""

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from PIL import Image

from lab.demo.canvas import CANVAS_SIDE, MAX_SIDE, MIN_SIDE, CanvasError, canvas_to_mnist, mnist_to_canvas


def blank(side: int = 280) -> np.ndarray:
    return np.full((side, side), 255, dtype=np.uint8)


def with_rect(top: int, left: int, height: int, width: int, side: int = 280) -> np.ndarray:
    canvas = blank(side)
    canvas[top:top + height, left:left + width] = 0
    return canvas


def bbox(image: torch.Tensor) -> tuple[int, int, int, int]:
    rows = torch.nonzero(image.amax(1) > 0.05)[:, 0]
    cols = torch.nonzero(image.amax(0) > 0.05)[:, 0]
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    grid = torch.arange(28, dtype=torch.float32)
    mass = image.sum()
    return float((image.sum(1) * grid).sum() / mass), float((image.sum(0) * grid).sum() / mass)


def test_output_is_28x28_floats_white_on_black():
    out = canvas_to_mnist(with_rect(40, 60, 100, 50))
    assert out.shape == (28, 28) and out.dtype == torch.float32
    assert out.min() == 0 and out.max() <= 1 and out.max() > 0.99  # solid ink -> white, paper -> black
    assert out[0, 0] == 0 and out[-1, -1] == 0


def test_longer_side_is_20_pixels_keeping_the_aspect():
    tall = canvas_to_mnist(with_rect(40, 60, 200, 50))  # 4:1 tall -> 20 x 5
    top, bottom, left, right = bbox(tall)
    assert bottom - top + 1 == 20 and right - left + 1 in (5, 6)
    wide = canvas_to_mnist(with_rect(100, 20, 40, 200))  # 1:5 wide -> 4 x 20
    top, bottom, left, right = bbox(wide)
    assert right - left + 1 == 20 and bottom - top + 1 in (4, 5)


def test_centred_by_centre_of_mass_not_by_bounding_box():
    # an L: most of the ink is in the vertical bar, so the centre of mass lies left of the box's centre
    canvas = blank()
    canvas[20:220, 20:60] = 0
    canvas[180:220, 20:200] = 0
    out = canvas_to_mnist(canvas)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 + 1e-4 and abs(cx - 14) <= 0.5 + 1e-4  # whole-pixel shifts
    top, bottom, left, right = bbox(out)
    assert (left + right) / 2 > 14 + 1  # the box itself is pushed right of the centre


def test_position_on_the_canvas_does_not_matter():
    a = canvas_to_mnist(with_rect(10, 10, 120, 40))
    b = canvas_to_mnist(with_rect(150, 230, 120, 40))
    assert torch.equal(a, b)


def test_mnist_digits_survive_the_round_trip(mnist):
    # MNIST digits are already made this way: drawn big on a canvas, they come back nearly as they were
    correlations = []
    for digit in mnist.test.images[:100]:
        original = digit.float() / 255
        back = canvas_to_mnist(mnist_to_canvas(digit))
        correlations.append(torch.corrcoef(torch.stack([original.flatten(), back.flatten()]))[0, 1])
    # a half-pixel rounding of the centre of mass moves a few by one pixel; shifted by 0.5 px they'd be near 0.75
    assert torch.stack(correlations).median() > 0.93


def test_every_input_form_gives_the_same_digit():
    gray = with_rect(40, 60, 100, 50)
    expected = canvas_to_mnist(gray)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.zeros((280, 280, 4), dtype=np.uint8)  # the canvas: black ink on transparent paper (RGB 0 there)
    rgba[:, :, 3] = 255 - gray
    forms = {
        "rgb": rgb, "rgba": rgba, "gray (H, W, 1)": gray[:, :, None], "float": gray / 255.0,
        "float32": (gray / 255.0).astype(np.float32), "uint16": gray.astype(np.uint16) * 257,
        "int64": gray.astype(np.int64), "bool": gray > 127, "PIL": Image.fromarray(gray),
        "tensor": torch.from_numpy(gray),
        "sketchpad composite": {"background": None, "layers": [], "composite": rgba},
        "sketchpad layers": {"background": blank(), "layers": [rgba], "composite": None},
    }
    for name, value in forms.items():
        assert torch.allclose(canvas_to_mnist(value), expected, atol=1e-4), name


@pytest.mark.parametrize("value, message", [
    (None, "empty"),
    (blank(), "empty"),
    ({"background": None, "layers": [], "composite": None}, "empty"),
    (np.zeros((280, 280), np.uint8), "ink"),
    (blank(MAX_SIDE + 1), "pixels"),
    (blank(4), "pixels"),
    (np.zeros((10, 5000), np.uint8), "pixels"),
    (np.zeros((280, 280, 2), np.uint8), "shape"),
    (np.zeros((1, 280, 280, 3), np.uint8), "shape"),
    (blank().astype(np.complex64), "pixel type"),
    (blank().astype(np.float32), "[0, 1]"),
    (np.full((280, 280), np.nan, np.float32), "NaN"),
    (np.full((280, 280), 300, np.int32), "0-255"),
    ("digit.png", "expected an image"),
    ({"background": blank(), "layers": [blank(100)], "composite": None}, "differ in size"),
])
def test_bad_input_raises_a_message_for_the_user(value, message):
    with pytest.raises(CanvasError, match=message.replace("[", r"\[").replace("]", r"\]")):
        canvas_to_mnist(value)


def test_canvas_error_is_a_value_error():
    assert issubclass(CanvasError, ValueError)


@settings(max_examples=60, deadline=None)
@given(top=st.integers(0, 250), left=st.integers(0, 250), height=st.integers(3, 200), width=st.integers(3, 200),
       side=st.integers(40, 400))
def test_any_stroke_fits_the_mnist_frame(top, left, height, width, side):
    canvas = blank(side)
    height, width = min(height, side // 2), min(width, side // 2)  # at most a quarter of the canvas: not a flood
    canvas[top % side:top % side + height, left % side:left % side + width] = 0
    out = canvas_to_mnist(canvas)
    top, bottom, left, right = bbox(out)
    assert max(bottom - top + 1, right - left + 1) == 20  # the longer side, always 20 px
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 0.5 + 1e-4 and abs(cx - 14) <= 0.5 + 1e-4  # whole-pixel shifts


# ------------------------------------------------------------------------------------- anything the internet sends

DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64, np.float16, np.float32,
          np.float64, np.bool_]


def small_arrays() -> st.SearchStrategy:
    """Fully random small arrays: any shape of 0-4 dims, any dtype, any elements (NaN, inf, extremes)."""
    from hypothesis.extra import numpy as hnp

    dtypes = st.sampled_from([np.dtype(d) for d in DTYPES + [np.complex64]])
    return hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40))


@st.composite
def large_arrays(draw, dtypes=tuple(DTYPES), channel_choices=(None, 1, 2, 3, 4, 5)) -> np.ndarray:
    """Canvas-sized arrays (up to past the size limit) of one of many pixel patterns, made fast by numpy."""
    side = st.one_of(st.integers(0, MAX_SIDE + 16), st.integers(MIN_SIDE, 400))  # often a plausible canvas
    height, width = draw(side), draw(side)
    channels = draw(st.sampled_from(channel_choices))
    shape = (height, width) if channels is None else (height, width, channels)
    if np.prod(shape) > 3_000_000:  # keep one example under a few MB: the shape checks are what matter
        shape = (min(height, 40), width) + shape[2:]
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pattern = draw(st.sampled_from(["noise", "paper", "strokes", "ink", "extremes", "nan"]))
    if pattern == "noise":
        x = rng.random(shape)
    elif pattern == "paper":
        x = np.ones(shape)
    elif pattern == "ink":
        x = np.zeros(shape)
    elif pattern == "nan":
        x = rng.choice([np.nan, np.inf, -np.inf, 0.5], size=shape)
    elif pattern == "extremes":
        x = rng.choice([-1e30, -1.0, 0.0, 1.0, 2.0, 1e30], size=shape)
    else:  # a few dark rectangles on light paper
        x = np.ones(shape)
        for _ in range(rng.integers(1, 4)):
            if height and width:
                top, left = rng.integers(0, height), rng.integers(0, width)
                x[top:top + rng.integers(1, 60), left:left + rng.integers(1, 60)] = 0
    if dtype.kind == "b":
        return x > 0.5
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        scale = 255 if draw(st.booleans()) else info.max
        with np.errstate(invalid="ignore", over="ignore"):
            return np.nan_to_num(x * scale, nan=0, posinf=info.max, neginf=info.min).clip(info.min, info.max) \
                .astype(dtype)
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def junk() -> st.SearchStrategy:
    """Values that are not images at all."""
    return st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=20),
                     st.lists(st.integers(), max_size=5), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                             max_size=3))


def pil_images() -> st.SearchStrategy:
    """PIL images of many modes, as a caller (or Gradio with type="pil") would pass them."""
    modes = st.sampled_from(["1", "L", "P", "I", "F", "LA", "RGB", "RGBA", "I;16"])
    arrays = large_arrays(dtypes=(np.uint8,), channel_choices=(None, 3, 4)).filter(lambda a: a.size > 0)
    return st.builds(lambda mode, array: Image.fromarray(array).convert(mode), modes, arrays)


def odd_dtypes() -> st.SearchStrategy:
    """Arrays whose elements are not numbers: objects, strings, dates."""
    return st.sampled_from(["O", "U1", "datetime64[s]", "S2", "V4"]).map(lambda d: np.zeros((30, 30), d))


def images() -> st.SearchStrategy:
    return st.one_of(small_arrays(), large_arrays(), pil_images(), odd_dtypes(), junk())


def sketchpad_values() -> st.SearchStrategy:
    """Gradio Sketchpad/ImageEditor values with any parts: images, junk, missing keys, odd layer lists."""
    layers = st.one_of(st.none(), st.lists(images(), max_size=3), junk())
    return st.fixed_dictionaries({}, optional={"background": images(), "layers": layers, "composite": images()})


@settings(max_examples=1000, deadline=None)
@given(value=st.one_of(images(), sketchpad_values()))
def test_canvas_preprocessing_never_raises_anything_but_a_message(value):
    """Random arrays, shapes, dtypes and Sketchpad values: a clean MNIST image, or a CanvasError for the user."""
    try:
        out = canvas_to_mnist(value)
    except CanvasError as error:
        assert str(error) and "Traceback" not in str(error)  # a sentence the demo shows as it is
        event("refused")
        return
    event("read as a digit")
    assert out.shape == (28, 28) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert out.max() > 0  # something was drawn: an empty canvas is an error, never a black image


def test_mnist_to_canvas_draws_black_ink_on_white_at_the_demo_size():
    digit = torch.zeros(28, 28, dtype=torch.uint8)
    digit[10:18, 13:15] = 255  # a white stroke on black, as MNIST stores it
    canvas = mnist_to_canvas(digit)  # what the benchmark's latency section hands to canvas_to_mnist
    assert canvas.shape == (CANVAS_SIDE, CANVAS_SIDE) and canvas.dtype == np.uint8
    assert canvas[0, 0] == 255 and canvas[CANVAS_SIDE // 2, CANVAS_SIDE // 2] == 0
