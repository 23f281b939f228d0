import subprocess
import sys

import pandas as pd
import pytest

from lab import paths
from lab.__main__ import main
from lab.cli import parse_assignment
from lab.results import table_paths, write_tables
from lab.sweep import load_sweep


@pytest.mark.parametrize("args", [[], ["sweep"], ["train"], ["results"]])
def test_help(args):
    out = subprocess.run([sys.executable, "-m", "lab", *args, "--help"], capture_output=True, text=True,
                         cwd=paths.ROOT, timeout=120)
    assert out.returncode == 0 and "usage: python -m lab" in out.stdout


def test_parse_assignment():
    assert parse_assignment("train.lr=0.01") == ("train.lr", 0.01)
    assert parse_assignment("model.channels=[[8],[16]]") == ("model.channels", [[8], [16]])
    assert parse_assignment("data.augment=true") == ("data.augment", True)
    assert parse_assignment("model.activation=gelu") == ("model.activation", "gelu")


@pytest.mark.parametrize("args,message", [
    (["train", "train.lr"], "expected KEY=VALUE"),
    (["train", "train.lr=fast"], "train.lr: expected float"),
    (["train", "model.colour=red"], "model.colour: unknown key"),
    (["train", "model.channels=[[4]]", "model.kernel_sizes=[30]", "model.padding=valid"], "shrinks to nothing"),
])
def test_train_rejects_bad_settings(args, message, tmp_path, capsys):
    assert main([*args, "--runs-dir", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_train_one_run(tmp_path, data_root, capsys):
    status = main(["train", "task=autoencoder", "model.latent_dim=3", "data.train_limit=300", "train.epochs=1",
                   "--runs-dir", str(tmp_path), "--data-dir", str(data_root), "--no-progress"])
    assert status == 0
    out = capsys.readouterr().out
    assert "test_mse" in out
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("conv_ae-") and (folder / "metrics.json").exists()


def test_results_rebuilds_tables_and_keeps_them_when_no_runs(tiny_sweep, tmp_path, data_root, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    assert main(["results", str(tiny_sweep), "--runs-dir", str(runs), "--results-dir", str(results)]) == 0
    assert "no finished runs" in capsys.readouterr().out and not results.exists()
    assert main(["sweep", str(tiny_sweep), "--runs-dir", str(runs), "--results-dir", str(results),
                 "--data-dir", str(data_root), "--no-progress"]) == 0
    table_path, history_path = table_paths(results, "tiny")
    table = pd.read_csv(table_path)
    assert len(table) == 4 and {"train_accuracy", "test_accuracy", "train_seconds", "parameters",
                                "model.norm", "seed", "torch_version"} <= set(table.columns)
    assert len(pd.read_csv(history_path)) == 3
    table_path.unlink()
    assert main(["results", str(tiny_sweep), "--runs-dir", str(runs), "--results-dir", str(results)]) == 0
    assert pd.read_csv(table_path).equals(table)
    empty = tmp_path / "no-runs"
    assert write_tables(load_sweep(tiny_sweep), empty, results) is None
    assert pd.read_csv(table_path).equals(table)  # an empty runs dir never wipes a table


def test_committed_tables_meet_the_lab_targets():
    """The tables a fresh clone ships: complete; best classifier >= 99.3%; the 32-latent autoencoder beats PCA-32."""
    hparams = pd.read_csv(table_paths(paths.EXPERIMENTS_DIR / "results", "cnn_hparams")[0])
    ablations = pd.read_csv(table_paths(paths.EXPERIMENTS_DIR / "results", "cnn_ablations")[0])
    best = max(hparams["test_accuracy"].max(), ablations["test_accuracy"].max())
    assert best >= 0.993
    ae = pd.read_csv(table_paths(paths.EXPERIMENTS_DIR / "results", "autoencoder")[0])
    at32 = ae[ae["model.latent_dim"] == 32]
    conv = at32[at32["model.arch"] == "conv"]["test_mse"].min()
    pca = at32[at32["model.arch"] == "pca"]["test_mse"].min()
    assert conv < pca
    for name, table in [("cnn_hparams", hparams), ("cnn_ablations", ablations), ("autoencoder", ae)]:
        sweep = load_sweep(paths.EXPERIMENTS_DIR / f"{name}.toml")
        assert list(table["run_id"]) == [r.run_id for r in sweep.runs]  # complete, and from the current sweep file
