"""Run folders -> result tables (CSV): one row per sweep cell, and one row per epoch."""

import json
import sys
from pathlib import Path

import pandas as pd

from lab.config import flatten
from lab.run_folder import (
    CONFIG_FILE,
    HEADLINE_METRIC,
    HISTORY_FILE,
    LOWER_IS_BETTER,
    METRICS_FILE,
    headline,
    remove_stale_temp_files,
    write_atomic,
)
from lab.sweep import DEFAULT_PROFILE, Sweep

# the columns a reader looks at first; the config and environment follow
LEAD_COLUMNS = ["sweep", "profile", "group", "label", "run_id", "task", "model.preset",
                "train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss",
                "train_mse", "val_mse", "test_mse",
                "train_seconds", "parameters", "epochs", "seed"]


def read_run(folder: Path) -> dict | None:
    """A finished run's config, metrics and history, or None when it is not finished or cannot be read."""
    try:
        metrics = json.loads((folder / METRICS_FILE).read_text())
        config = json.loads((folder / CONFIG_FILE).read_text())
        history = json.loads((folder / HISTORY_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        print(f"warning: skipping unreadable run {folder}: {error}", file=sys.stderr)
        return None
    return {"config": config, "metrics": metrics, "history": history}


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value  # lists (channels) as JSON text


def sweep_tables(sweep: Sweep, runs_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs table, per-epoch history table) of a sweep's finished runs, in sweep order."""
    rows, epochs = [], []
    cache: dict[str, dict | None] = {}
    for run in sweep.runs:
        if run.run_id not in cache:
            cache[run.run_id] = read_run(Path(runs_dir) / run.run_id)
        found = cache[run.run_id]
        if found is None:
            continue
        row = {"sweep": sweep.name, "profile": sweep.profile, "group": run.group, "label": run.label,
               "run_id": run.run_id}
        row |= {k: _cell(v) for k, v in flatten(found["config"]).items()}
        row |= {k: _cell(v) for k, v in found["metrics"].items() if k not in row}
        rows.append(row)
    for rid, found in cache.items():
        if found is not None:
            epochs += [{"sweep": sweep.name, "run_id": rid, **epoch} for epoch in found["history"]]
    table = pd.DataFrame(rows)
    if not table.empty:
        lead = [c for c in LEAD_COLUMNS if c in table.columns]
        table = table[lead + [c for c in table.columns if c not in lead]]
    return table, pd.DataFrame(epochs)


def table_paths(results_dir: Path, name: str, profile: str = DEFAULT_PROFILE) -> tuple[Path, Path]:
    """Where a sweep's runs table and history table live: <name>.csv, or <name>-<profile>.csv for other profiles."""
    stem = name if profile == DEFAULT_PROFILE else f"{name}-{profile}"
    return Path(results_dir) / f"{stem}.csv", Path(results_dir) / f"{stem}_history.csv"


def write_tables(sweep: Sweep, runs_dir: Path, results_dir: Path) -> tuple[pd.DataFrame, Path] | None:
    """Rebuild a sweep's tables from its run folders; None (tables left alone) when none of its runs is finished."""
    table, history = sweep_tables(sweep, runs_dir)
    if table.empty:
        return None
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    runs_path, history_path = table_paths(results_dir, sweep.name, sweep.profile)
    remove_stale_temp_files(results_dir, {runs_path.name, history_path.name})  # left by a process killed mid-write
    write_atomic(history_path, lambda p: history.to_csv(p, index=False, float_format="%.6g"))
    write_atomic(runs_path, lambda p: table.to_csv(p, index=False, float_format="%.6g"))
    return table, runs_path


def chosen_on(table: pd.DataFrame, metric: str) -> str:
    """The column a choice is made on: val_<metric> where the runs held out a validation split, else test_<metric>
    (tables made before the split). metric: "accuracy" or "mse"."""
    val = f"val_{metric}"
    return val if val in table and table[val].notna().any() else f"test_{metric}"


def best_classifier_run(table: pd.DataFrame) -> str:
    """The run id with the best validation accuracy (test where there is none); the faster one on a tie."""
    on = chosen_on(table, "accuracy")
    runs = table[table[on].notna()].drop_duplicates("run_id")
    return str(runs.sort_values([on, "train_seconds"], ascending=[False, True]).iloc[0]["run_id"])


def summary(table: pd.DataFrame) -> str:
    """One line on a sweep's best run: chosen on validation where the runs hold it out, its test number shown."""
    task = table["task"].iloc[0]
    metric = HEADLINE_METRIC[task]
    on = chosen_on(table, metric.removeprefix("test_"))
    best = table.loc[table[on].idxmin() if LOWER_IS_BETTER[metric] else table[on].idxmax()]
    text = f"best{' on validation' if on.startswith('val_') else ''}: {headline(task, best)} ({best['run_id']}, " \
           f"{best['label'] or 'base'}"
    return text + (f", {best['train_seconds']:.0f}s)" if task == "classifier" else ")")
