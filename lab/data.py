"""MNIST and Fashion-MNIST from their IDX files into in-memory uint8 tensors; seeded batches; batched augmentation."""

import contextlib
import functools
import gzip
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F

from lab.errors import LabError
from lab.strokes import FRAME, SKELETON_SCALE, brush_digits, skeletons

# (torchvision class name, folder torchvision uses, mean and std of the training pixels in [0, 1])
DATASET_INFO = {
    "mnist": ("MNIST", 0.1307, 0.3081),
    "fashion_mnist": ("FashionMNIST", 0.2860, 0.3530),
}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# IDX headers: a big-endian magic (0x00 0x00, type 0x08 = unsigned byte, number of dimensions), then one
# big-endian uint32 per dimension, then the data
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
IMAGE_SIZE = 28
ELASTIC_SIGMA = 4.0  # px: how smooth elastic distortions are (data.elastic), as in Simard et al. (2003) for MNIST
SPLIT_SIZES = {"train": 60_000, "t10k": 10_000}  # both datasets have these counts
MAX_IDX_BYTES = 16 + SPLIT_SIZES["train"] * IMAGE_SIZE * IMAGE_SIZE  # the largest file, train-images
FIX = "delete it to download it again, or replace it with the original file"


class DataError(LabError, RuntimeError):
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


def _find(raw: Path, name: str) -> Path | None:
    """raw/name, else raw/name.gz, else None."""
    for path in (raw / name, raw / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def _download(class_name: str, raw: Path, names: list[str]) -> None:
    """Fetch the missing IDX files as torchvision's MNIST.download does (its mirrors and md5s), file by file.

    Each file is downloaded and unpacked in a staging folder and renamed into raw/ only when whole, so a failed
    or interrupted download leaves nothing half-written behind; folders made for it are removed again on failure.
    """
    import torchvision  # only a download needs it (slow to import); reading never does
    from torchvision.datasets.utils import download_and_extract_archive

    dataset_class = getattr(torchvision.datasets, class_name)
    md5s = dict(dataset_class.resources)  # {"train-images-idx3-ubyte.gz": md5, ...}
    made = [p for p in (raw, *raw.parents) if not p.exists()]
    raw.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            staging = Path(tempfile.mkdtemp(dir=raw, prefix=f".{name}."))
            try:
                errors = []
                for mirror in dataset_class.mirrors:
                    try:
                        download_and_extract_archive(f"{mirror}{name}.gz", download_root=str(staging),
                                                     filename=f"{name}.gz", md5=md5s[f"{name}.gz"])
                        break
                    except (RuntimeError, URLError, OSError, EOFError) as error:
                        errors.append(f"{mirror}: {error}")
                else:
                    raise DataError("; ".join(errors) or "no mirrors to download from")
                os.replace(staging / name, raw / name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        for folder in made:  # innermost first: leave the disk as it was
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _read_bytes(path: Path) -> tuple[np.ndarray, str]:
    """The file (gunzipped if it ends in .gz) as a writable uint8 array, and its size in words.

    It reads at most one byte past the largest MNIST file, so a huge file or a gzip bomb costs no more memory.
    """
    limit = MAX_IDX_BYTES + 1
    if path.suffix != ".gz":
        size = path.stat().st_size
        return np.fromfile(path, dtype=np.uint8, count=min(size, limit)), f"{size:,} bytes"
    try:
        with gzip.open(path, "rb") as f:
            data = np.frombuffer(bytearray(f.read(limit)), dtype=np.uint8)
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
        raise DataError(f"{path}: not a valid gzip file ({error}); {FIX}") from None
    return data, f"{len(data):,} bytes unpacked" if len(data) < limit else f"over {MAX_IDX_BYTES:,} bytes unpacked"


def read_idx(path: Path, magic: int, dims: tuple[int, ...]) -> torch.Tensor:
    """An IDX file of unsigned bytes -> a uint8 tensor (N, *dims); DataError naming the file when it is not one."""
    data, size = _read_bytes(path)
    kind = "images" if magic == IMAGES_MAGIC else "labels"
    header_size = 4 * (2 + len(dims))
    if len(data) < header_size:
        raise DataError(f"{path}: {size}, too short for an IDX header; {FIX}")
    header = [int.from_bytes(data[i:i + 4].tobytes(), "big") for i in range(0, header_size, 4)]
    found_magic, count, shape = header[0], header[1], tuple(header[2:])
    if found_magic != magic:
        other = {IMAGES_MAGIC: " (an images file)", LABELS_MAGIC: " (a labels file)"}.get(found_magic, "")
        raise DataError(f"{path}: magic number 0x{found_magic:08x}{other}, expected 0x{magic:08x} for an IDX file "
                        f"of {kind}; it is not the MNIST file of this name, {FIX}")
    if shape != dims:
        raise DataError(f"{path}: {kind} of {'x'.join(map(str, shape))}, expected {'x'.join(map(str, dims))}; {FIX}")
    expected = header_size + count * math.prod(dims)
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{path}: {what}: its header promises {count:,} {kind} ({expected:,} bytes) but it has "
                        f"{size}; {FIX}")
    return torch.from_numpy(data[header_size:]).view(count, *dims)  # (N, *dims), sharing the array's memory


def _read_split(raw: Path, prefix: str) -> Split:
    """The images and labels of one split (prefix train or t10k), checked against each other and MNIST's sizes."""
    image_path, label_path = _find(raw, f"{prefix}-images-idx3-ubyte"), _find(raw, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(image_path, IMAGES_MAGIC, (IMAGE_SIZE, IMAGE_SIZE))  # (N, 28, 28) uint8
    labels = read_idx(label_path, LABELS_MAGIC, ())  # (N,) uint8
    if len(images) != len(labels):
        raise DataError(f"{label_path}: {len(labels):,} labels, but {image_path} holds {len(images):,} images; "
                        f"one of them is not the original file, {FIX}")
    if len(labels) != SPLIT_SIZES[prefix]:
        raise DataError(f"{label_path}: {len(labels):,} labels, expected {SPLIT_SIZES[prefix]:,} "
                        f"(and as many images in {image_path.name}); {FIX}")
    if len(labels) and labels.max().item() > 9:
        raise DataError(f"{label_path}: label {labels.max().item()} out of range 0-9 (at index "
                        f"{labels.argmax().item()}); {FIX}")
    return Split(images.contiguous(), labels.long())


@functools.lru_cache(maxsize=4)
def load_dataset(name: str, root: str | Path) -> Dataset:
    """Load a dataset once per process into uint8 tensors, downloading missing IDX files into root."""
    if name not in DATASET_INFO:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_INFO)}")
    class_name, mean, std = DATASET_INFO[name]
    root = Path(root)
    raw = root / class_name / "raw"
    missing = [n for n in IDX_FILES if _find(raw, n) is None]
    if missing:
        try:
            _download(class_name, raw, missing)
        except Exception as error:  # offline, a mirror down, a folder we may not write: say what to do instead
            raise DataError(_missing_message(name, root, error)) from error
    try:
        train, test = _read_split(raw, "train"), _read_split(raw, "t10k")
    except OSError as error:  # unreadable (permissions, a folder where a file should be)
        raise DataError(f"{error.filename or raw}: cannot read ({error.strerror or error}); {FIX}") from None
    return Dataset(name, train, test, mean, std)


def train_val_split(train: Split, train_limit: int, val_size: int) -> tuple[Split, Split | None]:
    """(what a run learns from, its validation split): the last val_size training images are held out, and training
    takes the first train_limit of the others (0: all of them); disjoint by construction. No validation when 0."""
    if not val_size:
        return train.head(train_limit), None
    rest = len(train) - val_size
    return train.head(rest).head(train_limit), Split(train.images[rest:], train.labels[rest:])


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Standardise [0, 1] pixels with the training set's mean and std (as the classifiers are trained)."""
    return (x - mean) / std


def elastic_field(b: int, h: int, w: int, generator: torch.Generator, rms: float) -> torch.Tensor:
    """A smooth random displacement field (B, H, W, 2) in grid_sample's units (x, y): uniform noise in [-1, 1]
    smoothed by a Gaussian of ELASTIC_SIGMA px (Simard et al., 2003), scaled so that its displacements' rms length
    over the batch is rms pixels. The smoothing's zero padding makes the field weaker at the borders: where the
    digit sits it is about 1.1 times rms, and per image it varies (0.6-1.5 times rms at rms 1.5)."""
    noise = torch.rand(b * 2, 1, h, w, generator=generator, device=generator.device) * 2 - 1
    radius = int(3 * ELASTIC_SIGMA)
    taps = torch.arange(-radius, radius + 1, dtype=noise.dtype, device=noise.device)
    kernel = torch.exp(-taps**2 / (2 * ELASTIC_SIGMA**2))
    kernel = kernel / kernel.sum()
    field = F.conv2d(noise, kernel.view(1, 1, 1, -1), padding=(0, radius))  # along x, then along y
    field = F.conv2d(field, kernel.view(1, 1, -1, 1), padding=(radius, 0)).view(b, 2, h, w)
    field = field * (rms / field.pow(2).sum(1).mean().sqrt().clamp(min=1e-12))  # px
    return torch.stack([field[:, 0] * 2 / w, field[:, 1] * 2 / h], -1)


def random_affine(x: torch.Tensor, generator: torch.Generator, rotate: float, scale: float,
                  translate: float, elastic: float = 0.0) -> torch.Tensor:
    """Rotate, zoom and shift each image of a (B, 1, H, W) batch by its own random amount, in one grid_sample;
    with elastic > 0, also distort it by a smooth random field of that rms length in pixels (elastic_field).

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
    if elastic:
        grid = grid + elastic_field(b, x.shape[2], x.shape[3], generator, elastic).to(x.device, x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class SkeletonStore:
    """The skeletons (lab.strokes.skeletons) of a split's digits, each made the first time it is asked for and kept:
    a digit's skeleton never changes, and making it is most of what redrawing a batch costs. 3 kB a digit, on the CPU
    (188 MB for MNIST's 60,000). It fills as digits are picked for redrawing: at data.strokes 0.25, a quarter of the
    digits in the first epoch, 94% by the tenth; over 30 epochs about 60,000 skeletons are made instead of 450,000."""

    def __init__(self, images: torch.Tensor):
        self.images = images  # (N, 28, 28) uint8
        side = FRAME * SKELETON_SCALE
        self.kept = torch.zeros(len(images), side, side, dtype=torch.bool)
        self.made = torch.zeros(len(images), dtype=torch.bool)

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """The skeletons (b, 56, 56) bool of the digits at idx (b,)."""
        idx = idx.cpu()
        new = idx[~self.made[idx]].unique()
        if len(new):
            self.kept[new] = skeletons(self.images[new.to(self.images.device)].cpu())
            self.made[new] = True
        return self.kept[idx]


def stroke_augment(x: torch.Tensor, images: torch.Tensor, generator: torch.Generator, share: float,
                   skeletons_of: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The batch x (B, 1, 28, 28) in [0, 1] with about share of its digits redrawn along their skeletons with a round
    brush of random width (lab.strokes.brush_digits), as a mouse draws; images (B, 28, 28) uint8 are the digits.
    skeletons_of(picked), given the (B,) bool mask of the digits to redraw, returns their skeletons (a
    SkeletonStore's, kept from earlier epochs); without it they are made here. Either way the result is the same."""
    picked = torch.rand(len(images), generator=generator, device=generator.device).to(images.device) < share
    if not picked.any():
        return x
    found = skeletons_of(picked) if skeletons_of is not None else skeletons(images[picked].cpu())
    drawn = brush_digits(found, generator).to(x.device, x.dtype)  # (b, 1, 28, 28)
    empty = drawn.flatten(1).amax(1) == 0  # a skeleton too small to draw (a dot): keep the digit as it was
    x = x.clone()
    x[picked] = torch.where(empty.view(-1, 1, 1, 1), x[picked], drawn)
    return x


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A fresh random permutation of range(n), cut into index batches (the last may be short)."""
    order = torch.randperm(n, generator=generator, device=generator.device)
    return list(order.split(batch_size))


def ordered_batches(n: int, batch_size: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """range(n) in order, cut into index batches, for evaluation."""
    return list(torch.arange(n, device=device).split(batch_size))
