"""MNIST and Fashion-MNIST as in-memory uint8 tensors; seeded batches; batched random-affine augmentation."""

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

# (torchvision class name, folder torchvision uses, mean and std of the training pixels in [0, 1])
DATASET_INFO = {
    "mnist": ("MNIST", 0.1307, 0.3081),
    "fashion_mnist": ("FashionMNIST", 0.2860, 0.3530),
}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataError(RuntimeError):
    """The dataset could not be found, fetched or read; the message says which folder and how to fill it."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 28, 28) uint8, white digit on black
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))

    def head(self, n: int) -> "Split":
        """The first n samples (all of them when n is 0)."""
        return self if n <= 0 else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    mean: float
    std: float


def _missing_message(name: str, root: Path, error: Exception) -> str:
    folder = root / DATASET_INFO[name][0] / "raw"
    return (
        f"could not load {name} from {root} ({type(error).__name__}: {error}).\n"
        f"Either let torchvision download it (needs internet), or put the four IDX files\n"
        f"  {', '.join(IDX_FILES)}\n"
        f"(optionally .gz) in {folder}, or point the lab at a folder that has them with\n"
        f"--data-dir DIR or LAB_DATA_DIR=DIR (DIR holds MNIST/raw and FashionMNIST/raw)."
    )


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, root: str | Path) -> Dataset:
    """Load a dataset once per process into uint8 tensors, downloading it into root if it is missing."""
    import torchvision  # imported here: it is slow to import and only loading needs it

    if name not in DATASET_INFO:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_INFO)}")
    class_name, mean, std = DATASET_INFO[name]
    root = Path(root)
    dataset_class = getattr(torchvision.datasets, class_name)
    splits = []
    for train in (True, False):
        try:
            ds = dataset_class(str(root), train=train, download=True)
        except Exception as error:  # download (network) or parse errors: say what to do instead
            raise DataError(_missing_message(name, root, error)) from error
        images, labels = ds.data, ds.targets
        if images.dtype != torch.uint8 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"{root / class_name / 'raw'}: unexpected {name} contents {tuple(images.shape)}")
        splits.append(Split(images.contiguous(), labels.long()))
    return Dataset(name, splits[0], splits[1], mean, std)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Standardise [0, 1] pixels with the training set's mean and std (as the classifiers are trained)."""
    return (x - mean) / std


def random_affine(x: torch.Tensor, generator: torch.Generator, rotate: float, scale: float,
                  translate: float) -> torch.Tensor:
    """Rotate, zoom and shift each image of a (B, 1, H, W) batch by its own random amount, in one grid_sample.

    Pixels are [0, 1] with a black (0) background, so the zero padding of grid_sample is the background.
    """
    b = x.shape[0]
    u = torch.rand(b, 4, generator=generator, device=generator.device).to(x.device) * 2 - 1  # (B, 4) in [-1, 1]
    angle = u[:, 0] * math.radians(rotate)
    zoom = 1 + u[:, 1] * scale
    # affine_grid maps output to input coordinates in [-1, 1], so invert the zoom and move by 2 * fraction
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = u[:, 2:] * 2 * translate  # (B, 2)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A fresh random permutation of range(n), cut into index batches (the last may be short)."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    return list(order.split(batch_size))


def ordered_batches(n: int, batch_size: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """range(n) in order, cut into index batches, for evaluation."""
    return list(torch.arange(n, device=device).split(batch_size))
