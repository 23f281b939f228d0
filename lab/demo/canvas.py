"""A drawing (dark ink on a light canvas) -> a 28x28 MNIST-style image, made the way the dataset was made.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio (anti-aliased), then
placed in a 28x28 frame so that their centre of mass sits at the centre. canvas_to_mnist does the same to
whatever Gradio's Sketchpad (or a caller) hands over, with numpy and torch array ops only.
"""

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

FRAME = 28  # the MNIST image side
BOX = 20  # the digit's longer side after size normalisation
CENTRE = 14  # where the centre of mass goes, in array indices (as measured on MNIST's test set: 14.0 +- 0.3)
CANVAS_SIDE = 280  # the demo's canvas in pixels: MNIST's 28 x 10
MIN_SIDE, MAX_SIDE = 8, 2048  # accepted canvas sides in pixels
INK_THRESHOLD = 0.2  # ink level in [0, 1] that counts for the bounding box; fainter pixels are paper noise
FULL_FRACTION = 0.7  # more than this share of the canvas inked is a flooded canvas, not a digit
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 weights, as PIL's convert("L")


class CanvasError(ValueError):
    """A drawing that cannot be read as a digit; the message tells the user what to change."""


def _pick_image(image: object) -> object:
    """The image inside Gradio's ImageEditor/Sketchpad value: the composite, else the layers over the background."""
    if not isinstance(image, Mapping):
        return image
    if image.get("composite") is not None:
        return image["composite"]
    layers = image.get("layers") or []
    if not isinstance(layers, (list, tuple)):
        raise CanvasError(f"the sketchpad's layers must be a list of images, got {type(layers).__name__}")
    parts = [image.get("background")] + list(layers)
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    base = _brightness(parts[0])
    for layer in parts[1:]:  # "over" compositing of each layer's ink onto what lies beneath
        ink = 1.0 - _brightness(layer)
        if ink.shape != base.shape:
            raise CanvasError(f"the layers differ in size ({ink.shape} and {base.shape}); send the composite image")
        base = base * (1.0 - ink)
    return base


def _as_float(array: np.ndarray) -> np.ndarray:
    """Any numeric dtype -> float32 in [0, 1]; integers by their 0-255 (or full unsigned) range."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.integer):
        low, high = array.min(), array.max()
        if low < 0 or high > 255:
            raise CanvasError(f"integer pixels must be in 0-255, found {low} to {high}")
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        out = array.astype(np.float32)
        if not np.isfinite(out).all():
            raise CanvasError("the image holds NaN or infinite pixels")
        if out.min() < 0 or out.max() > 1:
            raise CanvasError(f"float pixels must be in [0, 1], found {out.min():.3g} to {out.max():.3g}")
        return out
    raise CanvasError(f"unsupported pixel type {array.dtype}; send uint8 (0-255) or float (0-1) pixels")


def check_size(height: int, width: int) -> None:
    """CanvasError unless an image of this size is a canvas the lab reads (MIN_SIDE to MAX_SIDE pixels a side)."""
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise CanvasError(f"the image is {width}x{height} pixels; use a canvas between {MIN_SIDE} and "
                          f"{MAX_SIDE} pixels on each side (the demo's canvas is {CANVAS_SIDE}x{CANVAS_SIDE})")


def _brightness(image: object) -> np.ndarray:
    """An image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> brightness (H, W) in [0, 1], transparent = white paper."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image, without importing PIL here
        image = np.asarray(image.convert("RGBA"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise CanvasError(f"expected an image (a numpy array or the sketchpad's value), got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise CanvasError(f"unsupported image shape {image.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    check_size(*image.shape[:2])
    pixels = _as_float(image)
    if pixels.ndim == 2:
        return pixels
    gray = pixels[:, :, :3] @ LUMA  # (H, W)
    if pixels.shape[2] == 4:
        # the canvas exports transparent paper with arbitrary colour under alpha 0: composite over white
        alpha = pixels[:, :, 3]
        gray = gray * alpha + (1.0 - alpha)
    return gray


def canvas_to_mnist(image: object) -> torch.Tensor:
    """A drawing, dark ink on light paper -> (28, 28) float32 in [0, 1], white digit on black, centred as MNIST.

    Accepts Gradio's Sketchpad/ImageEditor value (a dict of composite, layers, background), a numpy array
    (H, W), (H, W, 3) or (H, W, 4) of uint8/uint16/int/float/bool pixels, a PIL image, or None (an empty canvas).
    Raises CanvasError with a message for the user when the canvas is empty, flooded, too big or of a bad type.
    """
    image = _pick_image(image)
    if image is None:
        raise CanvasError("the canvas is empty: draw a digit first")
    ink = 1.0 - _brightness(image)  # (H, W): 1 = ink, as MNIST's white digit on black
    inked = ink > INK_THRESHOLD
    count = int(inked.sum())
    if count == 0:
        raise CanvasError("the canvas is empty: draw a digit first")
    if count > FULL_FRACTION * inked.size:
        raise CanvasError(f"the canvas is {count / inked.size:.0%} ink: clear it and draw one digit, dark on light")
    rows, cols = np.flatnonzero(inked.any(1)), np.flatnonzero(inked.any(0))
    crop = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # (h, w): the bounding box
    crop = np.where(crop > INK_THRESHOLD / 2, crop, 0.0).astype(np.float32)  # drop faint paper noise inside it

    # size-normalise: the longer side to 20 px, keeping the aspect ratio, anti-aliased
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    digit = torch.from_numpy(crop)[None, None]  # (1, 1, h, w)
    digit = F.interpolate(digit, size=size, mode="bilinear", antialias=True, align_corners=False)[0, 0]
    digit = digit.clamp_(0.0, 1.0)  # (h', w') with max(h', w') == 20

    # place it in 28x28 with its centre of mass at pixel (14, 14), whole-pixel shifts: MNIST's own digits have
    # theirs within half a pixel of (14, 14), in array indices
    mass = digit.sum()
    centre_y = (digit.sum(1) * torch.arange(size[0])).sum() / mass
    centre_x = (digit.sum(0) * torch.arange(size[1])).sum() / mass
    top = min(max(round(CENTRE - centre_y.item()), 0), FRAME - size[0])
    left = min(max(round(CENTRE - centre_x.item()), 0), FRAME - size[1])
    frame = torch.zeros(FRAME, FRAME)
    frame[top:top + size[0], left:left + size[1]] = digit
    return frame


def mnist_to_canvas(digit: torch.Tensor | np.ndarray, side: int = CANVAS_SIDE) -> np.ndarray:
    """A 28x28 MNIST digit (white on black, uint8 or [0, 1]) -> a (side, side) uint8 canvas, black ink on white."""
    x = torch.as_tensor(np.asarray(digit)).float()
    x = x / 255.0 if x.max() > 1 else x
    x = F.interpolate(x[None, None], size=(side, side), mode="bilinear", align_corners=False)[0, 0]
    return ((1.0 - x.clamp(0, 1)) * 255).round().to(torch.uint8).numpy()
