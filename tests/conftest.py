"""Shared fixtures: the real MNIST (from LAB_DATA_DIR, data/ or ../shared/datasets) and tiny sweep files."""

from pathlib import Path

import pytest
from sweep_files import SMALL_CLASSIFIER, sweep_toml

from lab import paths
from lab.data import DataError, load_dataset

SHARED = paths.ROOT.parent / "shared" / "datasets"


def _data_root() -> Path | None:
    for root in (paths.data_dir(), SHARED):
        if (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists() or \
                (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").exists():
            return root
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """A folder with MNIST; where none has it, torchvision downloads it into data/ (LAB_DATA_DIR)."""
    root = _data_root()
    if root is None:
        try:
            load_dataset("mnist", paths.data_dir())
        except DataError as error:
            pytest.skip(f"no MNIST and no download: set LAB_DATA_DIR to a folder holding MNIST/raw ({error})")
        root = paths.data_dir()
    return root


@pytest.fixture(scope="session")
def mnist(data_root):
    try:
        return load_dataset("mnist", data_root)
    except DataError as error:
        pytest.skip(str(error))


TINY_SWEEP = sweep_toml(
    "tiny", "classifier", SMALL_CLASSIFIER | {"data.train_limit": 500, "train.epochs": 1, "train.batch_size": 50,
                                             "train.lr": 0.01},
    grids=({"group": "norm", "model.norm": ["batch", "none"]}, {"group": "seed", "seed": [0, 1]}),
    description="two small runs on 500 images")


@pytest.fixture
def tiny_sweep(tmp_path) -> Path:
    """A sweep of three distinct runs (norm=batch appears in both groups) that trains in about a second."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SWEEP)
    return path
