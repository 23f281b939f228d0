"""The local runner: finished runs are skipped, an interrupted sweep resumes where it stopped, SIGKILL loses nothing."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import paths
from lab.results import sweep_tables
from lab.run_folder import METRICS_FILE, is_done
from lab.runner import run_sweep
from lab.sweep import load_sweep


def _snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_does_no_work_and_tables_are_rebuilt(tiny_sweep, tmp_path, mnist):
    runs = tmp_path / "runs"
    sweep = load_sweep(tiny_sweep)
    datasets = {"mnist": mnist}
    assert run_sweep(sweep, runs, datasets, "cpu", progress=False, log=lambda s: None) == {"trained": 3, "skipped": 0}
    for run in sweep.unique_runs():
        folder = runs / run.run_id
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.json", "metrics.json",
                                                             "weights.safetensors"]
        assert json.loads((folder / "config.json").read_text())["seed"] == run.config.seed
    before = _snapshot(runs)
    assert run_sweep(sweep, runs, datasets, "cpu", progress=False, log=lambda s: None) == {"trained": 0, "skipped": 3}
    assert _snapshot(runs) == before
    table, history = sweep_tables(sweep, runs)
    assert len(table) == 4 and list(table["group"]) == ["norm", "norm", "seed", "seed"]
    assert len(history) == 3  # one epoch for each distinct run
    assert table["test_accuracy"].between(0.3, 1.0).all()


def test_interrupted_sweep_resumes_where_it_stopped(tiny_sweep, tmp_path, mnist, monkeypatch):
    import lab.runner

    runs = tmp_path / "runs"
    sweep = load_sweep(tiny_sweep)
    real_fit, calls = lab.runner.fit, []

    def fit_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the second run
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(lab.runner, "fit", fit_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, runs, {"mnist": mnist}, "cpu", progress=False, log=lambda s: None)
    first, second, third = (runs / r.run_id for r in sweep.unique_runs())
    assert is_done(first) and not is_done(second) and not third.exists()
    assert (second / "config.json").exists() and not (second / "weights.safetensors").exists()
    done_before = _snapshot(first)
    monkeypatch.setattr(lab.runner, "fit", real_fit)
    assert run_sweep(sweep, runs, {"mnist": mnist}, "cpu", progress=False, log=lambda s: None) == \
        {"trained": 2, "skipped": 1}
    assert all(is_done(f) for f in (first, second, third))
    assert _snapshot(first) == done_before


@pytest.mark.slow
def test_sigkilled_sweep_process_resumes(tiny_sweep, tmp_path, data_root):
    """A real process killed with SIGKILL mid-sweep leaves no run marked done that is not, and a rerun finishes."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "lab", "sweep", str(tiny_sweep), "--runs-dir", str(runs), "--data-dir",
           str(data_root), "--results-dir", str(tmp_path / "results"), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=paths.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(runs.glob(f"*/{METRICS_FILE}")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in runs.glob(f"*/{METRICS_FILE}")}
    assert 1 <= len(finished) <= 3
    for folder in runs.iterdir():  # no leftover temp files are mistaken for results
        if folder.name in finished:
            json.loads((folder / METRICS_FILE).read_text())
            assert (folder / "weights.safetensors").stat().st_size > 0
    rerun = subprocess.run(cmd, cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} already done" in rerun.stdout
    assert len(list(runs.glob(f"*/{METRICS_FILE}"))) == 3
    assert (tmp_path / "results" / "tiny.csv").exists()
