"""Copies of each run in experiment trackers (TensorBoard, Weights & Biases, MLflow): optional, never needed.

    python -m lab sweep FILE --track tensorboard [wandb mlflow]     (or track = [...] in a sweep file's profile)

The run folder stays the source of truth; a tracker gets a copy of what it holds, while the run trains: the config
as flat hyperparameters, every epoch's row of history.json (train, validation and test numbers, learning rate,
epoch seconds), the final metrics, the environment record, and a picture at the end (the test digits a classifier
gets wrong, an autoencoder's reconstructions). A tracker that fails (not installed at run time, no network, bad
credentials, a full disk) prints one warning and is off for the rest of the sweep; the sweep goes on and its tables
are the same. Nothing here is read back: tables and the report never need a tracker.

Runs are grouped by sweep and named by their run id, so a resumed run continues its tracked run. Everything is
written under the runs folder (lab/trackers.py has the adapters):

    tracking/tensorboard/<sweep>/<run id>/   event files             tensorboard --logdir <runs>/tracking/tensorboard
    tracking/mlflow/mlflow.db, artifacts/    MLflow's local store    mlflow ui --backend-store-uri sqlite:///...
    tracking/wandb/wandb/offline-run-*/      W&B runs (offline unless logged in or WANDB_MODE=online): wandb sync
    tracking/epochs/<run id>.json            the last epoch each tracker holds, so a resumed run logs each once
"""

import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lab.config import TRACKERS, ConfigError, RunConfig, flatten, run_id, to_dict
from lab.run_folder import TRACKING_FOLDER, write_json
from lab.trackers import FACTORIES, TrackedRun

INSTALL = {name: f"pip install 'latent-digits-lab[{name}]' (in a clone: pip install '.[{name}]')" for name in TRACKERS}
NONE = "none"  # --track none: no tracking, whatever the sweep file says
MISTAKES_SHOWN = 24  # test digits in a classifier's mistakes picture (the most confident mistakes first)
IMAGE_TAGS = {"classifier": "test_mistakes", "autoencoder": "test_reconstructions"}


def check_trackers(names: list[str] | tuple[str, ...] | None, where: str = "--track") -> tuple[str, ...]:
    """Tracker names, each known and installed, in order and once; () for none. ConfigError saying how to fix it."""
    names = tuple(dict.fromkeys(names or ()))
    if NONE in names:
        if len(names) > 1:
            raise ConfigError(f"{where}: {NONE} turns tracking off; it cannot go with {', '.join(set(names) - {NONE})}")
        return ()
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"{where}: unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
        if importlib.util.find_spec(name) is None:
            raise ConfigError(f"{where}: {name} is not installed here; install it with {INSTALL[name]}")
    return names


def tracked_config(cfg: RunConfig) -> dict[str, str | int | float | bool]:
    """The config as flat dotted-key hyperparameters; lists (channel widths) as their TOML-like text."""
    return {k: v if isinstance(v, str | int | float | bool) else json.dumps(v)
            for k, v in flatten(to_dict(cfg)).items()}


class Tracking:
    """The trackers of one sweep: opens each run in every tracker, copies epochs and the end into them.

    Every call into a tracker is guarded: the first exception of a tracker prints one warning and closes it for the
    rest of the sweep. Seconds spent in each are counted, so the sweep's last line can say what tracking cost.
    """

    def __init__(self, names: tuple[str, ...], runs_dir: Path, group: str, log: Callable[[str], None] = print,
                 factories: dict[str, Callable[[TrackedRun], object]] | None = None):
        self.names, self.group, self.log = tuple(names), group, log
        self.root = Path(runs_dir) / TRACKING_FOLDER
        self.factories = factories if factories is not None else FACTORIES
        self.failed: set[str] = set()
        self.open: dict[str, object] = {}
        self.seconds = {"epoch": dict.fromkeys(self.names, 0.0), "run": dict.fromkeys(self.names, 0.0)}
        self.epochs = self.runs = 0  # epoch rows copied and runs opened, over the sweep
        self.picture_seconds = 0.0  # drawing the end pictures, shared by the trackers
        self.run: TrackedRun | None = None
        self.ledger: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.names)

    def _guarded(self, name: str, call: Callable[[], object], cost: str = "run") -> bool:
        """Run one tracker call; on an exception warn once, close that tracker and keep it off. True if it worked.

        cost: what the seconds are counted to: "epoch" (copying epochs) or "run" (opening, the end, closing).
        """
        t0 = time.perf_counter()
        try:
            call()
            return True
        except Exception as error:  # a copy must never stop the sweep, whatever its library raises
            self.failed.add(name)
            tracker = self.open.pop(name, None)
            self.log(f"warning: {name} tracking failed ({type(error).__name__}: {str(error).splitlines()[0][:300]}); "
                     f"{name} is off for the rest of this sweep, which goes on (the run folders hold everything)")
            if tracker is not None:
                try:
                    tracker.close(False)
                except Exception:
                    pass
            return False
        finally:
            self.seconds[cost][name] += time.perf_counter() - t0

    def start(self, cfg: RunConfig) -> None:
        """Open (or, for a resumed run, continue) the run in every tracker that has not failed."""
        rid = run_id(cfg)
        self.run = TrackedRun(rid, self.group, cfg.task, tracked_config(cfg), self.root)
        self.ledger = self._read_ledger()
        self.open = {}
        self.runs += 1
        for name in (n for n in self.names if n not in self.failed):
            made: list = []
            if self._guarded(name, lambda name=name, made=made: made.append(self.factories[name](self.run))):
                self.open[name] = made[0]
                if getattr(made[0], "last_epoch", None) is not None:  # the tracker's own count beats the ledger
                    self.ledger[name] = made[0].last_epoch

    def epoch(self, row: dict) -> None:
        """The training loop's hook: copy one epoch's history row into every tracker that lacks it.

        Called for every row, those restored by a resumed run included, so a tracker that missed an epoch (the
        process was killed before it logged, or it was turned on mid-run) catches up, and none logs one twice.
        """
        lacking = {n: t for n, t in self.open.items() if self.ledger.get(n, 0) < row["epoch"]}
        for name, tracker in lacking.items():
            self._guarded(name, lambda name=name, tracker=tracker: self._copy(name, tracker, row), "epoch")
        self.epochs += bool(lacking)

    def _copy(self, name: str, tracker, row: dict) -> None:
        """Log one row, then record it in the ledger: after the tracker flushed, so a kill loses no epoch."""
        tracker.log_epoch(row)
        self.ledger[name] = row["epoch"]
        write_json(self._ledger_path(), self.ledger)

    def finish(self, metrics: dict, folder: Path, test) -> None:
        """Copy the final metrics, the environment and the end picture, then close every tracker's run."""
        if not self.open:
            return
        t0 = time.perf_counter()
        picture = self._picture(folder, test)
        self.picture_seconds += time.perf_counter() - t0
        for name, tracker in list(self.open.items()):
            if self._guarded(name, lambda tracker=tracker: tracker.log_final(metrics)) and picture is not None:
                self._guarded(name, lambda tracker=tracker: tracker.log_image(*picture, metrics["epochs"]))
        self.close()

    def close(self, finished: bool = True) -> None:
        """Close every open tracker; finished=False after an interruption or a failed run (what was logged stays)."""
        for name, tracker in list(self.open.items()):
            self._guarded(name, lambda tracker=tracker: tracker.close(finished))
        self.open = {}

    def _picture(self, folder: Path, test) -> tuple[str, np.ndarray, str] | None:
        """(tag, RGB image, caption) of the finished run, from its folder; None (with a warning) if it can't be made."""
        try:
            from lab.checkpoints import load_checkpoint
            checkpoint = load_checkpoint(folder)
            if checkpoint.task == "classifier":
                image, caption = mistakes_picture(checkpoint, test)
            else:
                image, caption = reconstructions_picture(checkpoint, test)
            return IMAGE_TAGS[checkpoint.task], image, caption
        except Exception as error:
            self.log(f"warning: tracking: no end picture for {folder.name} ({type(error).__name__}: {error})")
            return None

    def _ledger_path(self) -> Path:
        return self.root / "epochs" / f"{self.run.run_id}.json"

    def _read_ledger(self) -> dict[str, int]:
        path = self._ledger_path()
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            return {}
        try:
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError):
            return {}  # unreadable: copy every epoch again rather than none

    def summary(self) -> str:
        """What tracking cost, per tracker: seconds per copied epoch, and per run (opening, end picture, closing)."""
        epochs, runs = max(self.epochs, 1), max(self.runs, 1)
        parts = [f"{n} {self.seconds['epoch'][n] / epochs:.3f} s per epoch + {self.seconds['run'][n] / runs:.2f} s "
                 f"per run{' (failed)' if n in self.failed else ''}" for n in self.names]
        return (f"tracking over {self.epochs} epochs of {self.runs} runs: {', '.join(parts)}; drawing the end "
                f"pictures {self.picture_seconds / runs:.2f} s per run")


# ------------------------------------------------------------------------------------------------ end pictures

def _grid(images: np.ndarray, titles: list[str], columns: int) -> np.ndarray:
    """uint8 (N, 28, 28) images in a grid with a title over each -> an RGB array (H, W, 3); one axes, so it is quick."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    rows, cell, title = max(1, -(-len(images) // columns)), 32, 14  # a cell: the 28 px digit, 4 px apart; title rows
    sheet = np.full((rows * (cell + title), columns * cell), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top = r * (cell + title) + title
        sheet[top:top + 28, c * cell + 2:c * cell + 30] = 255 - image  # dark ink on white
    fig = Figure(figsize=(sheet.shape[1] * 3 / 100, sheet.shape[0] * 3 / 100), dpi=100)  # 3 screen px per pixel
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(sheet, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    for i, text in enumerate(titles):
        r, c = divmod(i, columns)
        ax.text(c * cell + cell / 2, r * (cell + title) + title - 2, text, ha="center", va="bottom", fontsize=9)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def mistakes_picture(checkpoint, test) -> tuple[np.ndarray, str]:
    """The test digits a classifier gets wrong, most confident first, titled 'true→predicted probability'."""
    from lab.artifacts import as_float, confident_mistakes, probabilities
    probs = probabilities(checkpoint, as_float(test.images))  # (N, 10)
    predicted = probs.argmax(1)
    wrong = confident_mistakes(probs, test.labels, MISTAKES_SHOWN)
    titles = [f"{test.labels[i]}→{predicted[i]} {probs[i].max():.2f}" for i in wrong.tolist()]
    caption = (f"{int((predicted != test.labels).sum())} of {len(test)} test digits wrong; the "
               f"{len(wrong)} most confident, titled true→predicted and its probability")
    return _grid(test.images[wrong].numpy(), titles, columns=8), caption


def reconstructions_picture(checkpoint, test) -> tuple[np.ndarray, str]:
    """The first test digit of each class (top row) over the autoencoder's reconstruction of it (bottom row)."""
    from lab.artifacts import as_float, as_uint8, first_of_each
    shown = first_of_each(test.labels, tuple(range(10)))
    originals = test.images[shown].numpy()
    rebuilt = as_uint8(checkpoint.reconstruct(as_float(test.images[shown]))[:, 0])
    images = np.concatenate([originals, rebuilt])
    titles = [f"test {test.labels[i]}" for i in shown] + ["rebuilt"] * len(shown)
    return _grid(images, titles, columns=len(shown)), "test digits (top) and their reconstructions (bottom)"
