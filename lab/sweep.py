"""Sweep files (TOML) -> validated run configs; run them into content-named folders, skipping finished runs."""

import itertools
import json
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from lab.config import (
    TASKS,
    ConfigError,
    RunConfig,
    apply_overrides,
    canonical_json,
    default_config,
    flatten,
    run_id,
    to_dict,
)
from lab.data import Dataset, load_dataset
from lab.models import build_model
from lab.resume import RESUME_FILE
from lab.train import environment, fit

SWEEP_KEYS = {"name", "task", "description", "base", "grid", "profiles", "resources"}
PROFILE_KEYS = {"description", "base", "grid", "resources"}
RESOURCE_KEYS = ("cpus", "gpus")
DEFAULT_PROFILE = "default"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# the files of a run folder; metrics.json is written last, and its presence means the run is done. While a run
# trains, its folder also holds RESUME_FILE (lab/resume.py), its state after the last finished epoch.
CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"
HISTORY_FILE, METRICS_FILE = "history.json", "metrics.json"
# write_atomic's temp files: "." + the file's name + "." + mkstemp's 8 random characters + ".tmp"
TEMP_FILE_PATTERN = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")


class SweepError(ValueError):
    """A sweep file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class SweepRun:
    group: str  # the [[grid]] table it came from (its `group` key), e.g. "norm" in an ablation
    label: str  # the grid values that made it, e.g. "model.norm=layer seed=1"
    config: RunConfig

    @property
    def run_id(self) -> str:
        return run_id(self.config)

    @property
    def title(self) -> str:
        """The run id, its group and the grid values that made it, for progress lines."""
        return f"{self.run_id}  {self.group + ': ' if self.group else ''}{self.label}"


@dataclass(frozen=True)
class Resources:
    """What one run asks a Ray cluster for; how a run is computed, not what it is, so never part of its id."""

    cpus: int = 1  # CPU cores, and the torch threads the run trains with
    gpus: float = 0.0  # GPUs; a fraction (0.25) lets small models share one


def check_resources(cpus: Any, gpus: Any) -> Resources:
    """Resources from raw values, or ValueError saying which key is wrong and why."""
    if isinstance(cpus, bool) or not isinstance(cpus, int):
        raise ValueError(f"cpus: expected an integer, got {cpus!r}")
    if cpus < 1:
        raise ValueError(f"cpus: must be >= 1, got {cpus}")
    if isinstance(gpus, bool) or not isinstance(gpus, int | float):
        raise ValueError(f"gpus: expected a number, got {gpus!r}")
    if not (0 <= gpus < float("inf")):  # also catches nan
        raise ValueError(f"gpus: must be a number >= 0, got {gpus}")
    if gpus > 1 and gpus != int(gpus):  # Ray shares a GPU between runs, never splits runs across part-GPUs
        raise ValueError(f"gpus: a share of one GPU (0 to 1) or a whole number of GPUs, got {gpus}")
    return Resources(cpus, float(gpus))


def _resources(value: Any, where: str, inherited: Resources, fail: Callable[[str], SweepError]) -> Resources:
    """A [resources] table on top of the inherited values; errors name `where`.key."""
    if value is None:
        return inherited
    if not isinstance(value, dict):
        raise fail(f"{where}: must be a table [{where}] with cpus and gpus")
    unknown = set(value) - set(RESOURCE_KEYS)
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}: unknown key (allowed: {', '.join(RESOURCE_KEYS)})")
    try:
        return check_resources(value.get("cpus", inherited.cpus), value.get("gpus", inherited.gpus))
    except ValueError as error:
        raise fail(f"{where}.{error}") from None


@dataclass(frozen=True)
class Sweep:
    name: str
    task: str
    description: str
    path: Path
    profile: str
    profiles: tuple[str, ...]
    runs: tuple[SweepRun, ...]
    resources: Resources = Resources()  # per run, for the Ray executor; the chosen profile's, else the file's

    def unique_runs(self) -> list[SweepRun]:
        """Each distinct config once (one config may stand in several groups)."""
        seen: dict[str, SweepRun] = {}
        for run in self.runs:
            seen.setdefault(run.run_id, run)
        return list(seen.values())


def _grids(value: Any, where: str, fail: Callable[[str], SweepError]) -> list[dict]:
    """[grid] (one table) or [[grid]] (several) as a list of tables; none means one run of the base."""
    if value is None:
        return [{}]
    grids = [value] if isinstance(value, dict) else value
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise fail(f"{where}: must be a table [grid] or an array of tables [[grid]]")
    if not grids:
        raise fail(f"{where}: empty grid list: nothing to run")
    return grids


def _label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in point.items())


def _expand(path: Path, task: str, base: dict, grid_value: Any, where: str, base_where: str) -> list[SweepRun]:
    """Every grid point on top of base; errors name `where` (the grid) or `base_where`, whichever set the key."""
    def fail(message: str) -> SweepError:
        return SweepError(f"{path}: {message}")

    runs: list[SweepRun] = []
    checked_models: set[str] = set()
    for g, grid in enumerate(_grids(grid_value, where, fail)):
        grid_where = f"{where}[{g}]" if isinstance(grid_value, list) else where
        grid = dict(grid)
        group = grid.pop("group", "")
        if not isinstance(group, str):
            raise fail(f"{grid_where}: group: expected a string, got {group!r}")
        axes = flatten(grid)
        for key, values in axes.items():
            if key == "task":
                raise fail(f"{grid_where}: task: the task is set once, at the top of the file")
            if not isinstance(values, list):
                raise fail(f"{grid_where}: {key}: expected a list of values to sweep, got {values!r}")
            if not values:
                raise fail(f"{grid_where}: {key}: empty list: the grid has no runs")
        for combo in itertools.product(*axes.values()):
            point = dict(zip(axes, combo))
            try:
                cfg = apply_overrides(default_config(task), base | point)
                model_key = json.dumps(to_dict(cfg.model), sort_keys=True)
                if model_key not in checked_models:  # impossible shapes fail here, before any training
                    build_model(cfg)
                    checked_models.add(model_key)
            except ConfigError as error:
                origin = grid_where if str(error).split(":")[0] in point else base_where
                raise fail(f"{origin}: {error}") from None
            runs.append(SweepRun(group, _label(point), cfg))
    return runs


def load_sweep(path: str | Path, profile: str = DEFAULT_PROFILE) -> Sweep:
    """Read and validate a sweep file (every profile of it) and expand the chosen profile into runs."""
    path = Path(path)

    def fail(message: str) -> SweepError:
        return SweepError(f"{path}: {message}")

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail("no such sweep file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise fail(f"TOML syntax error: {error}") from None
    unknown = set(doc) - SWEEP_KEYS
    if unknown:
        raise fail(f"{sorted(unknown)[0]}: unknown key (allowed: {', '.join(sorted(SWEEP_KEYS))})")
    name, task = doc.get("name"), doc.get("task")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail(f"name: needs a name of lowercase letters, digits, '_' and '-', got {name!r}")
    if task not in TASKS:
        raise fail(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise fail(f"description: expected a string, got {description!r}")
    base = doc.get("base", {})
    if not isinstance(base, dict):
        raise fail("base: must be a table [base]")
    profiles = doc.get("profiles", {})
    if not isinstance(profiles, dict) or not all(isinstance(p, dict) for p in profiles.values()):
        raise fail("profiles: must hold tables, e.g. [profiles.full.base]")
    if DEFAULT_PROFILE in profiles:
        raise fail(f"profiles.{DEFAULT_PROFILE}: the top-level base and grid are the default profile")
    flat_base = flatten(base)
    if "task" in flat_base:
        raise fail("base.task: the task is set once, at the top of the file")

    expanded = {DEFAULT_PROFILE: _expand(path, task, flat_base, doc.get("grid"), "grid", "base")}
    resources = {DEFAULT_PROFILE: _resources(doc.get("resources"), "resources", Resources(), fail)}
    for pname, prof in profiles.items():
        where = f"profiles.{pname}"
        if not NAME_PATTERN.match(pname):
            raise fail(f"{where}: profile names use lowercase letters, digits, '_' and '-'")
        bad = set(prof) - PROFILE_KEYS
        if bad:
            raise fail(f"{where}.{sorted(bad)[0]}: unknown key (allowed: {', '.join(sorted(PROFILE_KEYS))})")
        if not isinstance(prof.get("base", {}), dict):
            raise fail(f"{where}.base: must be a table")
        prof_base = flat_base | flatten(prof.get("base", {}))
        expanded[pname] = _expand(path, task, prof_base, prof.get("grid", doc.get("grid")), f"{where}.grid",
                                  f"{where}.base")
        resources[pname] = _resources(prof.get("resources"), f"{where}.resources", resources[DEFAULT_PROFILE], fail)
    if profile not in expanded:
        raise fail(f"no profile {profile!r} (this file has: {', '.join(expanded)})")
    return Sweep(name, task, description, path, profile, tuple(expanded), tuple(expanded[profile]),
                 resources[profile])


def load_sweeps(paths: list[str | Path], profile: str = DEFAULT_PROFILE) -> list[Sweep]:
    """Load and validate several sweep files; two with one name would write one table, so refuse that too."""
    sweeps = [load_sweep(p, profile) for p in paths]
    seen: dict[str, Path] = {}
    for sweep in sweeps:
        if sweep.name in seen and seen[sweep.name] != sweep.path:
            raise SweepError(f"{sweep.path}: name: {sweep.name!r} is also the name of {seen[sweep.name]}")
        seen[sweep.name] = sweep.path
    return sweeps


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder, then rename: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(folder: Path, names: Collection[str] | None = None) -> list[Path]:
    """Delete the temp files a killed write_atomic left in folder (of the named files only, if given); returns them."""
    stale = [p for p in Path(folder).iterdir() if (m := TEMP_FILE_PATTERN.match(p.name)) and p.is_file()
             and (names is None or m.group(1) in names)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(path: Path, data: Any) -> None:
    """JSON, atomically."""
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def is_done(folder: Path) -> bool:
    """A run is done when its metrics file, written last, exists."""
    return (folder / METRICS_FILE).is_file()


def train_run(cfg: RunConfig, runs_dir: Path, dataset: Dataset, device: torch.device | str, progress: bool = True,
              log: Callable[[str], None] = print, precision: str = "auto") -> dict:
    """Train one config into runs_dir/<run id>/: config, weights, history, then metrics (the 'done' mark).

    A run stopped part-way resumes from its last finished epoch (lab/resume.py); its resume file goes once it is done.
    """
    folder = Path(runs_dir) / run_id(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).unlink(missing_ok=True)
    stale = remove_stale_temp_files(folder)  # a process killed mid-write leaves them; nothing else writes here now
    if stale:
        log(f"  removed {len(stale)} half-written temp file(s) of a killed write: {', '.join(p.name for p in stale)}")
    write_json(folder / CONFIG_FILE, json.loads(canonical_json(cfg)))
    result = fit(cfg, dataset, device, progress=progress, log=log, precision=precision, folder=folder)
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    write_atomic(folder / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"run_id": run_id(cfg)}))
    write_json(folder / HISTORY_FILE, result.history)
    metrics = {"run_id": run_id(cfg), "task": cfg.task, **result.metrics, **environment(torch.device(device)),
               "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
    write_json(folder / METRICS_FILE, metrics)
    (folder / RESUME_FILE).unlink(missing_ok=True)
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
    headline = (f"test_accuracy {metrics['test_accuracy']:.4f}" if task == "classifier"
                else f"test_mse {metrics['test_mse']:.5f}")
    return f"done: {headline}  train_seconds {metrics['train_seconds']:.1f}"


def run_sweep(sweep: Sweep, runs_dir: Path, datasets: dict[str, Dataset], device: torch.device | str,
              progress: bool = True, log: Callable[[str], None] = print, precision: str = "auto") -> dict[str, int]:
    """Train the sweep's unfinished runs, logging its wall time; returns counts of trained and skipped runs."""
    runs = sweep.unique_runs()
    todo = pending_runs(sweep, runs_dir)
    resuming = sum((runs_dir / r.run_id / RESUME_FILE).is_file() for r in todo)
    log(f"sweep {sweep.name} ({sweep.profile}): {len(runs)} runs, {len(runs) - len(todo)} already done, "
        f"{len(todo)} to train" + (f" ({resuming} from an epoch checkpoint)" if resuming else "") + f" -> {runs_dir}")
    started = time.perf_counter()
    for i, run in enumerate(todo, 1):
        elapsed = time.perf_counter() - started
        eta = f", about {elapsed / (i - 1) * (len(todo) - i + 1) / 60:.1f} min left" if i > 1 else ""
        log(f"[{sweep.name} {i}/{len(todo)}{eta}] {run.title}")
        metrics = train_run(run.config, runs_dir, datasets[run.config.data.dataset], device, progress, log, precision)
        log(f"  {done_line(sweep.task, metrics)}")
    seconds = time.perf_counter() - started
    log(f"sweep {sweep.name} ({sweep.profile}): trained {len(todo)} runs in {seconds:.0f} s")
    return {"trained": len(todo), "skipped": len(runs) - len(todo)}
