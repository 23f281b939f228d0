"""The report's artifacts (lab/artifacts.py): what is chosen, what is stored, and that it loads without pickle."""

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lab import artifacts as AR
from lab.data import Split
from lab.results import best_classifier_run


def test_the_best_classifier_is_chosen_on_validation_then_on_time():
    table = pd.DataFrame([
        {"run_id": "val_best", "val_accuracy": 0.995, "test_accuracy": 0.990, "train_seconds": 30.0},
        {"run_id": "test_best", "val_accuracy": 0.993, "test_accuracy": 0.997, "train_seconds": 10.0},
        {"run_id": "tie_faster", "val_accuracy": 0.995, "test_accuracy": 0.989, "train_seconds": 20.0},
        {"run_id": "val_best", "val_accuracy": 0.995, "test_accuracy": 0.990, "train_seconds": 30.0},  # a repeat
    ])
    assert best_classifier_run(table) == "tie_faster"
    assert best_classifier_run(table.drop(columns="val_accuracy")) == "test_best"  # older tables: test


def test_augmentation_settings_come_from_the_augmented_runs():
    plain = pd.DataFrame([{"data.augment": False, "data.rotate": 30.0, "data.scale": 0.3, "data.translate": 0.3}])
    assert AR.augmentation_settings(plain) == {"rotate": 10.0, "scale": 0.1, "translate": 0.1}  # the defaults
    augmented = pd.concat([plain, plain.assign(**{"data.augment": True, "data.rotate": 15.0})])
    assert AR.augmentation_settings(augmented) == {"rotate": 15.0, "scale": 0.3, "translate": 0.3}


def test_augment_is_seeded_and_moves_pixels():
    images = (torch.rand(3, 28, 28) * 255).to(torch.uint8)
    settings = {"rotate": 10.0, "scale": 0.1, "translate": 0.1}
    a, b = AR.augment(images, 4, settings, seed=1), AR.augment(images, 4, settings, seed=1)
    assert a.shape == (3, 4, 28, 28) and torch.equal(a, b)
    assert not torch.allclose(a[:, 0], images.float() / 255)


def test_project_2d_keeps_2d_codes_and_projects_wider_ones():
    codes = torch.randn(100, 2)
    points, kept = AR.project_2d(codes)
    assert kept == 1.0 and np.allclose(points, codes.numpy())
    flat = torch.randn(200, 2) @ torch.randn(2, 6)  # rank 2 in 6-D: two components keep everything
    points, kept = AR.project_2d(flat)
    assert points.shape == (200, 2) and kept == pytest.approx(1.0, abs=1e-6)
    assert 0 < AR.project_2d(torch.randn(300, 16))[1] < 0.5


def test_images_are_stored_as_uint8_and_come_back_within_half_a_level():
    x = torch.rand(5, 28, 28)
    stored = AR.as_uint8(x)
    assert stored.dtype == np.uint8 and np.abs(stored / 255 - x.numpy()).max() <= 0.5 / 255 + 1e-6
    assert AR.as_uint8(torch.tensor([-0.2, 1.3])).tolist() == [0, 255]  # clamped


def test_artifacts_are_written_atomically_and_read_without_pickle(tmp_path, monkeypatch):
    """No pickled object in the file: numpy refuses to load object arrays when allow_pickle is False."""
    arrays = {"best_run": np.array("fast_cnn-0123456789"), "labels": np.arange(10, dtype=np.uint8)}
    monkeypatch.setattr(AR, "table_artifacts", lambda table, runs_dir, test: arrays)
    path = AR.write_artifacts(pd.DataFrame(), tmp_path / "sweep.csv", tmp_path, None)
    assert path == tmp_path / "sweep_artifacts.npz" and not list(tmp_path.glob(".*tmp"))
    back = AR.read_artifacts(path)
    assert str(back["best_run"]) == "fast_cnn-0123456789" and back["labels"].tolist() == list(range(10))
    np.savez(tmp_path / "evil.npz", obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        AR.read_artifacts(tmp_path / "evil.npz")


def test_a_run_not_on_disk_writes_no_artifacts_and_says_why(tmp_path, capsys):
    table = pd.DataFrame([{"sweep": "s", "task": "classifier", "run_id": "fast_cnn-0000000000",
                           "test_accuracy": 0.99, "train_seconds": 1.0}])
    test = Split(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4))
    assert AR.write_artifacts(table, tmp_path / "s.csv", tmp_path, test) is None
    assert "no report artifacts for s" in capsys.readouterr().out and not (tmp_path / "s_artifacts.npz").exists()


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("experiments/results/*_artifacts.npz")),
                         ids=lambda p: p.name)
def test_committed_artifacts_are_small_numeric_and_match_their_tables(path):
    with zipfile.ZipFile(path) as z:  # every member a plain .npy array
        assert all(name.endswith(".npy") for name in z.namelist())
    arrays = AR.read_artifacts(path)
    assert path.stat().st_size < 1_500_000
    table = pd.read_csv(path.with_name(path.name.replace(AR.ARTIFACTS_SUFFIX, ".csv")))
    if "best_run" in arrays:  # a classifier table: its best run, and that run's recorded test accuracy
        row = table.drop_duplicates("run_id").set_index("run_id").loc[str(arrays["best_run"])]
        assert str(arrays["best_run"]) == best_classifier_run(table)
        assert (arrays["predictions"] == arrays["labels"]).mean() == pytest.approx(row["test_accuracy"], abs=2e-4)
    else:
        assert set(arrays["runs"]) == set(table["run_id"])
        for rid in arrays["runs"]:
            assert arrays[f"reconstructions.{rid}"].shape == (10, 28, 28)
