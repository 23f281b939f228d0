"""Run a sweep's configs into content-named run folders, one after another, skipping finished runs.

train_run is the one place a run folder is written: config, weights, history, then metrics (the "done" mark).
lab/ray_runner.py submits the same train_run as Ray tasks.
"""

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from safetensors.torch import save_file

from lab.config import RunConfig, canonical_json, run_id
from lab.data import Dataset, load_dataset
from lab.device import environment
from lab.run_folder import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RESUME_FILE,
    WEIGHTS_FILE,
    headline,
    is_done,
    remove_stale_temp_files,
    write_atomic,
    write_json,
)
from lab.sweep import Sweep, SweepRun
from lab.tracking import Tracking
from lab.train import fit


def train_run(cfg: RunConfig, runs_dir: Path, dataset: Dataset, device: torch.device | str, progress: bool = True,
              log: Callable[[str], None] = print, precision: str = "auto", tracking: Tracking | None = None) -> dict:
    """Train one config into runs_dir/<run id>/: config, weights, history, then metrics (the 'done' mark).

    A run stopped part-way resumes from its last finished epoch (lab/resume.py); its resume file goes once it is done.
    tracking: copies the run into experiment trackers as it trains (lab/tracking.py); the folder is the same without.
    """
    folder = Path(runs_dir) / run_id(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).unlink(missing_ok=True)
    stale = remove_stale_temp_files(folder)  # a process killed mid-write leaves them; nothing else writes here now
    if stale:
        log(f"  removed {len(stale)} half-written temp file(s) of a killed write: {', '.join(p.name for p in stale)}")
    write_json(folder / CONFIG_FILE, json.loads(canonical_json(cfg)))
    if tracking:
        tracking.start(cfg)
    try:
        result = fit(cfg, dataset, device, progress=progress, log=log, precision=precision, folder=folder,
                     on_epoch=tracking.epoch if tracking else None)
    except BaseException:
        if tracking:
            tracking.close(finished=False)  # flush what was logged; the resumed run continues the same tracked run
        raise
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    write_atomic(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"run_id": run_id(cfg)}))
    write_json(folder / HISTORY_FILE, result.history)
    metrics = {"run_id": run_id(cfg), "task": cfg.task, **result.metrics, **environment(torch.device(device)),
               "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_json(folder / METRICS_FILE, metrics)
    (folder / RESUME_FILE).unlink(missing_ok=True)
    if tracking:
        tracking.finish(metrics, folder, dataset.test)
    return metrics


def datasets_for(runs: list[SweepRun], data_dir: Path) -> dict[str, Dataset]:
    """Load every dataset the runs need, before any training (a missing dataset fails first)."""
    return {name: load_dataset(name, data_dir) for name in sorted({r.config.data.dataset for r in runs})}


def pending_runs(sweep: Sweep, runs_dir: Path) -> list[SweepRun]:
    """The sweep's unfinished runs, each config once; a resume file left in a finished run is deleted on the way."""
    todo = []
    for run in sweep.unique_runs():
        if is_done(runs_dir / run.run_id):  # a process killed between the metrics and the resume file's deletion
            (runs_dir / run.run_id / RESUME_FILE).unlink(missing_ok=True)
        else:
            todo.append(run)
    return todo


def done_line(task: str, metrics: dict) -> str:
    """"done: <headline metric>  train_seconds ..." for a finished run's progress line."""
    return f"done: {headline(task, metrics)}  train_seconds {metrics['train_seconds']:.1f}"


def run_sweep(sweep: Sweep, runs_dir: Path, datasets: dict[str, Dataset], device: torch.device | str,
              progress: bool = True, log: Callable[[str], None] = print, precision: str = "auto",
              track: tuple[str, ...] = ()) -> dict[str, int]:
    """Train the sweep's unfinished runs, logging its wall time; returns counts of trained and skipped runs.

    track: trackers to copy each run into (lab/tracking.py), grouped under the sweep's name.
    """
    runs = sweep.unique_runs()
    todo = pending_runs(sweep, runs_dir)
    resuming = sum((runs_dir / r.run_id / RESUME_FILE).is_file() for r in todo)
    log(f"sweep {sweep.name} ({sweep.profile}): {len(runs)} runs, {len(runs) - len(todo)} already done, "
        f"{len(todo)} to train" + (f" ({resuming} from an epoch checkpoint)" if resuming else "") + f" -> {runs_dir}")
    tracking = Tracking(track, runs_dir, sweep.name, log) if track and todo else None
    started = time.perf_counter()
    for i, run in enumerate(todo, 1):
        elapsed = time.perf_counter() - started
        eta = f", about {elapsed / (i - 1) * (len(todo) - i + 1) / 60:.1f} min left" if i > 1 else ""
        log(f"[{sweep.name} {i}/{len(todo)}{eta}] {run.title}")
        metrics = train_run(run.config, runs_dir, datasets[run.config.data.dataset], device, progress, log, precision,
                            tracking)
        log(f"  {done_line(sweep.task, metrics)}")
    seconds = time.perf_counter() - started
    log(f"sweep {sweep.name} ({sweep.profile}): trained {len(todo)} runs in {seconds:.0f} s")
    if tracking:
        log(f"  {tracking.summary()}")
    return {"trained": len(todo), "skipped": len(runs) - len(todo)}
