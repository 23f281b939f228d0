"""Sweep files (TOML) -> validated run configs: a [base], a grid expanded with itertools.product, named profiles.

Every profile of every file is checked before anything trains: unknown keys, wrong types, impossible values and
networks that shrink the image to nothing fail here, naming the file and the key. lab/runner.py trains the runs.
"""

import itertools
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import (
    TASKS,
    TRACKERS,
    ConfigError,
    RunConfig,
    apply_overrides,
    default_config,
    flatten,
    run_id,
    to_dict,
)
from lab.errors import LabError

SWEEP_KEYS = {"name", "task", "description", "base", "grid", "profiles", "resources", "track"}
PROFILE_KEYS = {"description", "base", "grid", "resources", "track"}
RESOURCE_KEYS = ("cpus", "gpus")
DEFAULT_PROFILE = "default"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class SweepError(LabError, ValueError):
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
    track: tuple[str, ...] = ()  # trackers each run is copied into (lab/tracking.py) unless --track says otherwise

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


def _axes(grid: dict, grid_where: str, fail: Callable[[str], SweepError]) -> tuple[str, dict[str, list]]:
    """(group name, {dotted key: values}) of one grid table, each key checked to hold a non-empty list."""
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
    return group, axes


def _check_shape(cfg: RunConfig, checked: set[str]) -> None:
    """Build each distinct model once, so a network that shrinks the image to nothing fails before any training."""
    from lab.models import build_model  # torch is imported when a sweep is expanded, not by `python -m lab --help`

    model_key = json.dumps(to_dict(cfg.model), sort_keys=True)
    if model_key not in checked:
        build_model(cfg)
        checked.add(model_key)


def _expand(path: Path, task: str, base: dict, grid_value: Any, where: str, base_where: str) -> list[SweepRun]:
    """Every grid point on top of base; errors name `where` (the grid) or `base_where`, whichever set the key."""
    def fail(message: str) -> SweepError:
        return SweepError(f"{path}: {message}")

    runs: list[SweepRun] = []
    checked: set[str] = set()
    for g, grid in enumerate(_grids(grid_value, where, fail)):
        grid_where = f"{where}[{g}]" if isinstance(grid_value, list) else where
        group, axes = _axes(grid, grid_where, fail)
        for combo in itertools.product(*axes.values()):
            point = dict(zip(axes, combo))
            try:
                cfg = apply_overrides(default_config(task), base | point)
                _check_shape(cfg, checked)
            except ConfigError as error:
                origin = grid_where if str(error).split(":")[0] in point else base_where
                raise fail(f"{origin}: {error}") from None
            runs.append(SweepRun(group, _label(point), cfg))
    return runs


def _read_toml(path: Path, fail: Callable[[str], SweepError]) -> dict:
    """The parsed file, or a SweepError saying why it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail("no such sweep file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise fail(f"cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise fail(f"TOML syntax error: {error}") from None


def _check_top(doc: dict, fail: Callable[[str], SweepError]) -> tuple[str, str, str, dict, dict]:
    """(name, task, description, flattened base, profiles) of a parsed file, each checked."""
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
    return name, task, description, flat_base, profiles


def _track(value: Any, where: str, inherited: tuple[str, ...], fail: Callable[[str], SweepError]) -> tuple[str, ...]:
    """A track = ["tensorboard", ...] list (names checked, not whether they are installed); inherited when absent."""
    if value is None:
        return inherited
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{where}: expected a list of tracker names, e.g. {where} = [\"tensorboard\"], got {value!r}")
    unknown = [v for v in value if v not in TRACKERS]
    if unknown:
        raise fail(f"{where}: unknown tracker {unknown[0]!r} (known: {', '.join(TRACKERS)})")
    return tuple(dict.fromkeys(value))


def _expand_profiles(path: Path, doc: dict, task: str, flat_base: dict, profiles: dict,
                     fail: Callable[[str], SweepError]) -> tuple[dict[str, list[SweepRun]], dict[str, tuple]]:
    """Every profile's runs, resources and trackers: the default from the top level, the others on top of it."""
    expanded = {DEFAULT_PROFILE: _expand(path, task, flat_base, doc.get("grid"), "grid", "base")}
    resources = {DEFAULT_PROFILE: (_resources(doc.get("resources"), "resources", Resources(), fail),
                                   _track(doc.get("track"), "track", (), fail))}
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
        resources[pname] = (
            _resources(prof.get("resources"), f"{where}.resources", resources[DEFAULT_PROFILE][0], fail),
            _track(prof.get("track"), f"{where}.track", resources[DEFAULT_PROFILE][1], fail))
    return expanded, resources


def load_sweep(path: str | Path, profile: str = DEFAULT_PROFILE) -> Sweep:
    """Read and validate a sweep file (every profile of it) and expand the chosen profile into runs."""
    path = Path(path)

    def fail(message: str) -> SweepError:
        return SweepError(f"{path}: {message}")

    doc = _read_toml(path, fail)
    name, task, description, flat_base, profiles = _check_top(doc, fail)
    expanded, resources = _expand_profiles(path, doc, task, flat_base, profiles, fail)
    if profile not in expanded:
        raise fail(f"no profile {profile!r} (this file has: {', '.join(expanded)})")
    return Sweep(name, task, description, path, profile, tuple(expanded), tuple(expanded[profile]),
                 *resources[profile])


def load_sweeps(paths: list[str | Path], profile: str = DEFAULT_PROFILE) -> list[Sweep]:
    """Load and validate several sweep files; two with one name would write one table, so refuse that too."""
    sweeps = [load_sweep(p, profile) for p in paths]
    seen: dict[str, Path] = {}
    for sweep in sweeps:
        if sweep.name in seen and seen[sweep.name] != sweep.path:
            raise SweepError(f"{sweep.path}: name: {sweep.name!r} is also the name of {seen[sweep.name]}")
        seen[sweep.name] = sweep.path
    return sweeps
