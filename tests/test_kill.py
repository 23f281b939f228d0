"""A sweep killed with SIGKILL at random moments, again and again, ends with exactly an uninterrupted run's results."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sweep_files import SMALL_AUTOENCODER, SMALL_CLASSIFIER, sweep_toml

from lab import paths
from lab.checkpoints import load_checkpoint
from lab.run_folder import CONFIG_FILE, HISTORY_FILE, METRICS_FILE, WEIGHTS_FILE
from lab.sweep import load_sweep

# Two sweeps (one command) of short runs on 2,000 real MNIST images, 4 epochs each: a classifier with augmentation,
# dropout and onecycle AdamW, one with SGD and an exponential schedule, a conv autoencoder, and PCA (no epochs).
CLASSIFIERS = sweep_toml(
    "kill_cnn", "classifier", SMALL_CLASSIFIER | {"data.train_limit": 2000, "train.epochs": 4, "train.batch_size": 100},
    grids=({"group": "augment", "data.augment": [True], "model.dropout": [0.2], "train.optimizer": ["adamw"],
            "train.schedule": ["onecycle"], "train.lr": [0.01]},
           {"group": "sgd", "train.optimizer": ["sgd"], "train.schedule": ["exponential"], "train.lr": [0.05]}))
AUTOENCODERS = sweep_toml(
    "kill_ae", "autoencoder", SMALL_AUTOENCODER | {"data.train_limit": 2000, "model.latent_dim": 4, "train.epochs": 4,
                                                   "train.batch_size": 100, "train.lr": 0.003},
    grids=({"group": "conv", "seed": [0]}, {"group": "pca", "model.preset": ["pca"]}))
KILLS = 8  # SIGKILLs to survive
SEED = int(os.environ.get("LAB_KILL_SEED", "6"))  # of the kill schedule; LAB_KILL_SEED=N tries another
# what may differ between two runs of one config: time, and the environment that records it
TIME_COLUMNS = {"train_seconds", "total_seconds", "epoch_seconds", "finished_at", "git_commit"}


def _start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:  # a file, not a pipe: a killed reader can never block the child
        return subprocess.Popen(cmd, cwd=paths.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(proc: subprocess.Popen, log: Path, pattern: re.Pattern, timeout: float = 120) -> float | None:
    """Poll the child's log until a line matches; the time it matched, or None when the child ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern.search(log.read_text()):
            return time.monotonic()
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    raise AssertionError(f"no {pattern.pattern!r} in {log} after {timeout} s:\n{log.read_text()}")


def _without(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in rows]


@pytest.mark.slow
def test_a_sweep_killed_again_and_again_ends_as_an_uninterrupted_one(tmp_path, data_root):
    files = [tmp_path / "kill_cnn.toml", tmp_path / "kill_ae.toml"]
    files[0].write_text(CLASSIFIERS)
    files[1].write_text(AUTOENCODERS)
    run_ids = [r.run_id for f in files for r in load_sweep(f).unique_runs()]
    # one thread in every child: the thread count changes a CPU result's last digits
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def command(name: str) -> list[str]:
        return [sys.executable, "-m", "lab", "sweep", *map(str, files), "--runs-dir", str(tmp_path / name / "runs"),
                "--results-dir", str(tmp_path / name / "results"), "--data-dir", str(data_root), "--device", "cpu",
                "--no-progress"]

    # The reference, uninterrupted; its log's timing sets the kill schedule's scale on this machine.
    started = time.monotonic()
    reference = _start(command("reference"), env, tmp_path / "reference.log")
    ready = _wait_for(reference, tmp_path / "reference.log", re.compile(r"^sweep kill_cnn", re.M))
    assert reference.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()
    startup, training = ready - started, time.monotonic() - ready

    rng = random.Random(SEED)
    kills, logs = 0, []
    while kills < KILLS:
        log = tmp_path / f"attempt{len(logs) + 1}.log"
        logs.append(log)
        attempt = len(logs)
        proc = _start(command("killed"), env, log)
        if attempt == 1:  # while python starts, imports torch and loads MNIST
            hit = time.monotonic()
            time.sleep(rng.uniform(0, startup))
        elif attempt % 3 == 0:  # right after an epoch checkpoint of an unfinished run (its "epoch k/4" line, k < 4):
            metric = "train_loss" if attempt == 3 else "train_mse"  # of a classifier, later of the autoencoder
            hit = _wait_for(proc, log, re.compile(rf"^  epoch [123]/4  {metric} ", re.M))
            time.sleep(rng.uniform(0, 0.05))
        else:  # any moment of the training, of the writes between runs, or of the tables
            hit = _wait_for(proc, log, re.compile(r"^sweep kill_cnn", re.M))
            time.sleep(rng.uniform(0, training / 4))
        if hit is None or proc.poll() is not None:
            break  # it finished before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    final = tmp_path / f"attempt{len(logs) + 1}.log"
    if kills == KILLS:
        logs.append(final)
        assert _start(command("killed"), env, final).wait(timeout=300) == 0, final.read_text()
    else:
        assert proc.wait() == 0, logs[-1].read_text()

    text = "\n".join(log.read_text() for log in logs)
    resumes = re.findall(r"^  resuming (\S+) from epoch (\d)/4", text, re.M)
    cleaned = sum(int(n) for n in re.findall(r"^  removed (\d+) half-written temp file", text, re.M))
    print(f"\nkill test (seed {SEED}): {kills} SIGKILLs survived in {len(logs)} starts; {len(resumes)} resumes from "
          f"an epoch checkpoint {resumes}; {cleaned} stale temp files removed; reference sweep {startup:.1f} s to "
          f"start + {training:.1f} s to train")
    assert kills >= 6, f"only {kills} kills: the sweep finished too soon for the schedule"
    assert resumes, "no restart resumed from an epoch checkpoint"
    assert re.search(r"to train \(1 from an epoch checkpoint\)", text)  # the sweep's own count at its start

    killed, ref = tmp_path / "killed", tmp_path / "reference"
    assert not [p for p in killed.rglob("*") if p.name.endswith(".tmp")]
    for rid in run_ids:
        folder = killed / "runs" / rid
        assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE,
                                                                   METRICS_FILE]), rid  # no resume file left
        load_checkpoint(folder)  # JSON, safetensors, state dict and finite values all check out
        ours, theirs = load_file(folder / WEIGHTS_FILE), load_file(ref / "runs" / rid / WEIGHTS_FILE)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), rid
        for name in (METRICS_FILE, HISTORY_FILE):
            a = json.loads((folder / name).read_text())
            b = json.loads((ref / "runs" / rid / name).read_text())
            assert _without(a if isinstance(a, list) else [a]) == _without(b if isinstance(b, list) else [b]), rid
    for table in ("kill_cnn.csv", "kill_cnn_history.csv", "kill_ae.csv", "kill_ae_history.csv"):
        a, b = (pd.read_csv(d / "results" / table) for d in (killed, ref))
        keep = [c for c in a.columns if c not in TIME_COLUMNS]
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        pd.testing.assert_frame_equal(a[keep], b[keep])
