"""Sweeps on Ray: the same run folders and tables as the local executor, byte for byte at the same thread count."""

import json
import logging
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from sweep_files import SMALL_CLASSIFIER, sweep_toml

from lab.__main__ import main
from lab.config import run_id
from lab.ray_runner import MARKER_PREFIX, train_task
from lab.results import table_paths
from lab.run_folder import METRICS_FILE
from lab.sweep import Resources, SweepError, load_sweep

ray = pytest.importorskip("ray")

# what differs between two trainings of one config: wall times, the moment, and (for tables) nothing else
TIME_KEYS = {"train_seconds", "total_seconds", "epoch_seconds", "finished_at"}

CLASSIFIERS = sweep_toml(
    "ray_cls", "classifier", SMALL_CLASSIFIER | {"data.train_limit": 600, "model.preset": "fast_cnn", "train.epochs": 1,
                                                "train.batch_size": 100},
    grids=({"train.lr": [0.003, 0.01]},), resources={"cpus": 1})
AUTOENCODER = sweep_toml(
    "ray_ae", "autoencoder",
    {"data.train_limit": 300, "model.latent_dim": 4, "train.epochs": 1, "train.batch_size": 100},
    resources={"cpus": 1})


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray of 2 CPUs for the module; the executor uses it as it finds it and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def threads_kept():
    """--threads sets torch's threads in this process: put them back after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sweep_files(tmp_path) -> list[Path]:
    files = []
    for name, text in (("ray_cls", CLASSIFIERS), ("ray_ae", AUTOENCODER)):
        files.append(tmp_path / f"{name}.toml")
        files[-1].write_text(text)
    return files


def _sweep(files: list[Path], out: Path, data_root: Path, *options: str) -> int:
    return main(["sweep", *map(str, files), "--runs-dir", str(out / "runs"), "--results-dir", str(out / "results"),
                 "--data-dir", str(data_root), "--no-progress", *options])


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_ray_sweep_equals_local_sweep(sweep_files, tmp_path, data_root, ray_instance, threads_kept, capsys):
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert _sweep(sweep_files, local, data_root, "--threads", "1") == 0
    capsys.readouterr()
    assert _sweep(sweep_files, remote, data_root, "--executor", "ray") == 0
    out = capsys.readouterr().out
    assert "submitted 3 runs to Ray" in out and out.count(" done: ") == 3
    assert "[ray_cls 2/2, about" in out and "[ray_ae 1/1, about" in out

    run_ids = sorted(p.name for p in (local / "runs").iterdir())
    assert len(run_ids) == 3 and sorted(p.name for p in (remote / "runs").iterdir()) == run_ids  # no marker left
    for rid in run_ids:
        a, b = local / "runs" / rid, remote / "runs" / rid
        metrics_a, metrics_b = (json.loads((f / METRICS_FILE).read_text()) for f in (a, b))
        assert metrics_a["threads"] == metrics_b["threads"] == 1
        assert {k: v for k, v in metrics_a.items() if k not in TIME_KEYS} == \
            {k: v for k, v in metrics_b.items() if k not in TIME_KEYS}
        history_a, history_b = (json.loads((f / "history.json").read_text()) for f in (a, b))
        assert [{k: v for k, v in e.items() if k != "epoch_seconds"} for e in history_a] == \
            [{k: v for k, v in e.items() if k != "epoch_seconds"} for e in history_b]
        assert (a / "weights.safetensors").read_bytes() == (b / "weights.safetensors").read_bytes()
        assert (a / "config.json").read_text() == (b / "config.json").read_text()

    for name in ("ray_cls", "ray_ae"):
        for table_a, table_b in zip(table_paths(local / "results", name), table_paths(remote / "results", name)):
            a, b = pd.read_csv(table_a), pd.read_csv(table_b)
            assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
            same = [c for c in a.columns if c not in TIME_KEYS]
            pd.testing.assert_frame_equal(a[same], b[same])
    assert pd.read_csv(table_paths(remote / "results", "ray_cls")[0])["test_accuracy"].between(0.2, 1).all()

    # a rerun finds every run done: nothing is submitted, no folder is touched, the tables are rebuilt the same
    before = _snapshot(remote / "runs")
    assert _sweep(sweep_files, remote, data_root, "--executor", "ray") == 0
    out = capsys.readouterr().out
    assert "0 to train on Ray" in out and "submitted" not in out
    assert _snapshot(remote / "runs") == before


@pytest.mark.slow
def test_on_ray_each_task_tracks_its_own_run(sweep_files, tmp_path, data_root, ray_instance, capsys):
    from tracker_readers import read_tensorboard
    assert _sweep(sweep_files[:1], tmp_path, data_root, "--executor", "ray", "--track", "tensorboard") == 0
    assert "warning" not in capsys.readouterr().out
    for run in load_sweep(sweep_files[0]).unique_runs():
        history = json.loads((tmp_path / "runs" / run.run_id / "history.json").read_text())
        got = read_tensorboard(tmp_path / "runs", "ray_cls", run.run_id)
        assert got["epochs"]["test_accuracy"] == [(r["epoch"], pytest.approx(r["test_accuracy"])) for r in history]
        assert got["images"] == ["test_mistakes"]


@pytest.mark.slow
def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, data_root, ray_instance, capsys):
    path = tmp_path / "ray_cls.toml"
    path.write_text(CLASSIFIERS)
    blocked, fine = (r.run_id for r in load_sweep(path).unique_runs())
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    (runs / blocked).write_text("a file where the run folder should be\n")
    assert _sweep([path], tmp_path / "out", data_root, "--executor", "ray") == 1
    captured = capsys.readouterr()
    assert f"{blocked}  train.lr=0.003  FAILED: FileExistsError" in captured.out
    assert f"failed: {blocked}: FileExistsError" in captured.err and "1 run failed" in captured.err
    assert (runs / fine / METRICS_FILE).is_file()
    table = pd.read_csv(table_paths(tmp_path / "out" / "results", "ray_cls")[0])
    assert list(table["run_id"]) == [fine]  # the tables hold what finished


def test_a_node_without_the_run_folders_says_so(tmp_path, mnist):
    cfg = load_sweep(_write(tmp_path, CLASSIFIERS)).runs[0].config
    with pytest.raises(RuntimeError, match=r"node .* cannot reach the driver's run folders at .*\(no such folder here"):
        train_task(cfg, run_id(cfg), str(tmp_path / "elsewhere"), f"{MARKER_PREFIX}x", mnist, None, "fp32", 1, 0.0)
    with pytest.raises(RuntimeError, match="a folder of that name, but not the driver's"):
        train_task(cfg, run_id(cfg), str(tmp_path), f"{MARKER_PREFIX}x", mnist, None, "fp32", 1, 0.0)
    with pytest.raises(RuntimeError, match="install the same version of the lab on every node"):
        train_task(cfg, "fast_cnn-0000000000", str(tmp_path), f"{MARKER_PREFIX}x", mnist, None, "fp32", 1, 0.0)
    assert [p.name for p in tmp_path.iterdir()] == ["ray_cls.toml"]  # nothing trained or written


def _write(folder: Path, text: str, name: str = "ray_cls.toml") -> Path:
    (folder / name).write_text(text)
    return folder / name


def test_resources_come_from_the_profile_and_stay_out_of_the_run_id(tmp_path):
    text = CLASSIFIERS + "\n[profiles.gpu.resources]\ngpus = 0.25\n"
    default, gpu = load_sweep(_write(tmp_path, text)), load_sweep(tmp_path / "ray_cls.toml", "gpu")
    assert default.resources == Resources(cpus=1, gpus=0.0) and gpu.resources == Resources(cpus=1, gpus=0.25)
    bare = load_sweep(_write(tmp_path, CLASSIFIERS.replace("[resources]\ncpus = 1\n", ""), "bare.toml"))
    assert bare.resources == Resources()
    assert [r.run_id for r in bare.runs] == [r.run_id for r in default.runs] == [r.run_id for r in gpu.runs]


BAD_RESOURCES = {
    "unknown_key": ("[resources]\nmemory = 4\n", "resources.memory: unknown key"),
    "cpus_zero": ("[resources]\ncpus = 0\n", "resources.cpus: must be >= 1"),
    "cpus_float": ("[resources]\ncpus = 1.5\n", "resources.cpus: expected an integer"),
    "cpus_bool": ("[resources]\ncpus = true\n", "resources.cpus: expected an integer"),
    "gpus_negative": ("[resources]\ngpus = -0.5\n", "resources.gpus: must be a number >= 0"),
    "gpus_string": ('[resources]\ngpus = "all"\n', "resources.gpus: expected a number"),
    "gpus_nan": ("[resources]\ngpus = nan\n", "resources.gpus: must be a number >= 0"),
    "gpus_part_of_two": ("[resources]\ngpus = 1.5\n", "resources.gpus: a share of one GPU"),
    "not_a_table": ("resources = 2\n", "resources: must be a table"),
    "profile": ("[profiles.full.resources]\ncpu = 2\n", "profiles.full.resources.cpu: unknown key"),
    "profile_value": ("[profiles.full.resources]\ncpus = -1\n", "profiles.full.resources.cpus: must be >= 1"),
}


@pytest.mark.parametrize("case", BAD_RESOURCES, ids=str)
def test_bad_resources_stop_before_anything_runs(case, tmp_path, capsys):
    text, expected = BAD_RESOURCES[case]
    path = _write(tmp_path, f'name = "x"\ntask = "classifier"\n{text}', "x.toml")
    with pytest.raises(SweepError) as error:
        load_sweep(path)
    assert str(error.value).startswith(f"{path}: {expected}")
    status = main(["sweep", str(path), "--executor", "ray", "--runs-dir", str(tmp_path / "runs"),
                   "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert status == 2 and f"{path}: {expected}" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("options,message", [
    (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run: must be >= 1, got 0"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run: must be a number >= 0"),
    (["--executor", "ray", "--threads", "2"], "--threads is for the local executor"),
    (["--address", "auto"], "--address is for --executor ray"),
    (["--cpus-per-run", "2"], "--cpus-per-run is for --executor ray"),
    (["--threads", "0"], "--threads: must be >= 1"),
])
def test_executor_options_that_cannot_apply_are_refused(options, message, tiny_sweep, tmp_path, capsys):
    assert main(["sweep", str(tiny_sweep), "--runs-dir", str(tmp_path / "runs"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_an_address_where_nothing_answers_fails_at_once(tiny_sweep, tmp_path, data_root, capsys):
    status = main(["sweep", str(tiny_sweep), "--executor", "ray", "--address", "127.0.0.1:1", "--runs-dir",
                   str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"), "--data-dir", str(data_root)])
    err = capsys.readouterr().err
    assert status == 2 and "--address 127.0.0.1:1: nothing answers at 127.0.0.1:1" in err and "ray start --head" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_without_ray_the_message_says_how_to_install_it(tiny_sweep, tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError, as where it is missing
    status = main(["sweep", str(tiny_sweep), "--executor", "ray", "--runs-dir", str(tmp_path / "runs"),
                   "--results-dir", str(tmp_path / "results"), "--data-dir", str(data_root)])
    err = capsys.readouterr().err
    assert status == 2 and "--executor ray needs Ray" in err and "pip install '.[ray]'" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()
