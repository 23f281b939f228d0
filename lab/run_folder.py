"""A run folder on disk: file names, atomic writes, stale-temp cleanup, "is this run done". Standard library only.

    experiments/runs/<preset>-<hash>/
      config.json          the config, complete
      weights.safetensors  the trained weights
      history.json         one row per epoch
      metrics.json         final numbers and the environment; written last, so its presence means "done"
      resume.safetensors   only while a run trains: its state after the last finished epoch (lab/resume.py)
    experiments/runs/tracking/   copies of the runs in TensorBoard, W&B or MLflow (lab/tracking.py); not a run
"""

import json
import os
import re
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

CONFIG_FILE, WEIGHTS_FILE = "config.json", "weights.safetensors"
HISTORY_FILE, METRICS_FILE = "history.json", "metrics.json"
RESUME_FILE = "resume.safetensors"
TRACKING_FOLDER = "tracking"  # beside the run folders: what `--track` writes (lab/tracking.py)
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE, METRICS_FILE)  # what a finished run folder holds
# write_atomic's temp files: "." + the file's name + "." + mkstemp's 8 random characters + ".tmp"
TEMP_FILE_PATTERN = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")


def write_atomic(path: Path, write: Callable[[Path], None], durable: bool = True) -> None:
    """Write through a temp file in the same folder, then rename: a reader sees the old file or the new one.
    durable: flush it to disk first, so a crash cannot leave the new name on an empty file (not needed for a cache)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """JSON, atomically."""
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def remove_stale_temp_files(folder: Path, names: Collection[str] | None = None) -> list[Path]:
    """Delete the temp files a killed write_atomic left in folder (of the named files only, if given); returns them."""
    stale = [p for p in Path(folder).iterdir() if (m := TEMP_FILE_PATTERN.match(p.name)) and p.is_file()
             and (names is None or m.group(1) in names)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def is_done(folder: Path) -> bool:
    """A run is done when its metrics file, written last, exists."""
    return (Path(folder) / METRICS_FILE).is_file()


def is_unfinished(folder: Path) -> bool:
    """A run folder that was started (it has a config) but has no metrics file yet."""
    folder = Path(folder)
    return folder.is_dir() and (folder / CONFIG_FILE).exists() and not (folder / METRICS_FILE).exists()


# the number a finished run of each task is judged by (metrics.json always holds it), and which way is better
HEADLINE_METRIC = {"classifier": "test_accuracy", "autoencoder": "test_mse"}
LOWER_IS_BETTER = {"test_accuracy": False, "test_mse": True}
HEADLINE_DIGITS = {"test_accuracy": 4, "test_mse": 5}


def headline(task: str, metrics: dict) -> str:
    """A finished run's headline number as "test_accuracy 0.9912" or "test_mse 0.00650", for progress lines."""
    metric = HEADLINE_METRIC[task]
    return f"{metric} {metrics[metric]:.{HEADLINE_DIGITS[metric]}f}"


def best_first(task: str, runs: list, metrics: Callable[[Any], dict] = lambda run: run) -> list:
    """Runs sorted best first by their task's headline metric; metrics(run) gives a run's metrics dict."""
    metric = HEADLINE_METRIC[task]
    sign = 1 if LOWER_IS_BETTER[metric] else -1
    return sorted(runs, key=lambda run: sign * metrics(run)[metric])
