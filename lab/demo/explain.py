"""Why this digit: a saliency map of the predicted class over the 28x28 input, from the classifier checkpoint itself.

The map is the gradient of the predicted class's logit with respect to the input pixels (Simonyan et al., 2014):
a bright pixel is one whose change would move that score most. One forward and one backward pass of the demo's
small CNN, so the probabilities come from the same pass and the live path stays a single call.
"""

import copy
import weakref

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

SMOOTH = 3  # px: a box blur of the gradient's magnitude, so the map reads as regions rather than speckle
SHARPEN = 2  # the map is raised to this power: the strongest pixels stand out of the faint spread around them
OVERLAY = (1.0, 0.25, 0.0)  # the map's colour (RGB in [0, 1]): orange-red over the grey digit
STRENGTH = 0.85  # how opaque the map is where it is strongest
DIGIT_GREY = 0.6  # the digit's white is dimmed to this grey, so the colour stands out on it
HOW_TO_READ = ("Orange marks the pixels whose change would most move the score of the predicted digit: where the "
               "model looks. It is the gradient of that digit's score with respect to each of the 28x28 pixels.")


_FOLDED: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def folded(model: nn.Module) -> nn.Module:
    """The model with each batch norm that comes straight after a convolution in an nn.Sequential folded into it:
    the same function to float rounding, in fewer ops a call. Made once per model, from its weights then (a
    checkpoint's never change), and kept while the model lives; a model with any part in training mode (its norms
    still learning) is used as it is. Nothing is traced, so requests running other models meanwhile are untouched."""
    if any(part.training for part in model.modules()):
        return model
    found = _FOLDED.get(model)
    if found is None:
        found = _FOLDED[model] = _fold(copy.deepcopy(model))
    return found


def _fold(model: nn.Module) -> nn.Module:
    """model (an eval-mode copy) with every Conv2d -> BatchNorm2d pair inside a Sequential made one Conv2d."""
    for block in model.modules():
        if isinstance(block, nn.Sequential):
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    block[i], block[i + 1] = fuse_conv_bn_eval(block[i], block[i + 1]), nn.Identity()
    return model


def saliency(classifier, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(28, 28) image in [0, 1] -> (probabilities (10,), saliency (28, 28) in [0, 1]) for the predicted class."""
    x = classifier._input(image[None]).detach().requires_grad_(True)  # (1, 1, 28, 28), normalised as in training
    with torch.enable_grad():
        logits = folded(classifier.model)(x)[0]  # (10,)
        # autograd.grad, not backward: nothing accumulates in the weights' .grad, which concurrent requests share
        (grad,) = torch.autograd.grad(logits[logits.argmax()], x)
    grad = grad[0].abs()  # (1, 28, 28)
    grad = F.avg_pool2d(grad[None], SMOOTH, stride=1, padding=SMOOTH // 2, count_include_pad=False)[0, 0]
    peak = grad.max()
    return logits.detach().softmax(0), (grad / peak if peak > 0 else grad) ** SHARPEN


def overlay(image: torch.Tensor, heat: torch.Tensor, scale: int) -> np.ndarray:
    """The digit in grey with the saliency map blended over it -> (28*scale, 28*scale, 3) uint8, crisp pixels."""
    grey = image.clamp(0, 1).numpy()[..., None] * DIGIT_GREY  # (28, 28, 1): the digit, dimmed
    alpha = heat.clamp(0, 1).numpy()[..., None] * STRENGTH  # (28, 28, 1)
    rgb = grey * (1 - alpha) + np.asarray(OVERLAY, dtype=np.float32) * alpha  # (28, 28, 3)
    pixels = np.rint(rgb * 255).astype(np.uint8)
    return pixels.repeat(scale, 0).repeat(scale, 1)  # numpy's repeat: faster than torch's repeat_interleave here
