
import pandas as pd
import pytest

from lab.__main__ import main
from lab.cli import parse_assignment
from lab.results import table_paths, write_tables
from lab.sweep import load_sweep


@pytest.mark.parametrize("args", [[], ["sweep"], ["train"], ["results"], ["verify"], ["demo-accuracy"], ["space"]])
def test_help(args, capsys):
    """Every command's help, in process (tests/test_layout.py runs `python -m lab --help` as a real process)."""
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0 and "usage: python -m lab" in capsys.readouterr().out


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


