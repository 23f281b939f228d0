"""The three tracker adapters lab/tracking.py drives: TensorBoard, MLflow, Weights & Biases.

Each imports its package when a run opens (never at import), and offers the same calls: log_epoch(row),
log_final(metrics), log_image(tag, image, caption, step), close(finished); and last_epoch, the last epoch the tracker's
own files hold when the run opens. That beats lab/tracking.py's ledger, which is written after the tracker flushed: a
process killed between the two would otherwise log that epoch again on resume. Metric names are the run folder's own
(train_loss, val_accuracy, test_mse, lr, epoch_seconds) at step = epoch; the final metrics are "final/<name>".
"""

import json
import logging
import netrc
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrackedRun:
    """What a tracker opens or continues: the run's id and group, its task, its config, and where to write."""

    run_id: str
    group: str  # the sweep's name ("train" for python -m lab train)
    task: str
    config: dict  # flat dotted keys -> str, int, float or bool (lab.tracking.tracked_config)
    root: Path  # <runs>/tracking


# metrics.json's numbers that are not metrics of the model: copied as text (environment) or left out
NOT_METRICS = ("run_id", "task", "finished_at", "precision")
ENVIRONMENT_KEYS = ("torch_version", "device", "threads", "python_version", "machine", "cpu", "cpu_features",
                    "git_commit")
WANDB_PROJECT = "latent-digits-lab"  # WANDB_PROJECT overrides it


def final_numbers(metrics: dict) -> dict[str, float]:
    """metrics.json's numeric model metrics as {"final/<name>": value}."""
    return {f"final/{k}": float(v) for k, v in metrics.items()
            if k not in NOT_METRICS + ENVIRONMENT_KEYS and isinstance(v, int | float) and not isinstance(v, bool)}


def environment_of(metrics: dict) -> dict[str, str]:
    """The environment record metrics.json holds, as text."""
    return {k: str(metrics[k]) for k in ENVIRONMENT_KEYS + ("precision", "finished_at") if k in metrics}


def epoch_numbers(row: dict) -> dict[str, float]:
    """A history row's numbers, the epoch itself left out (it is the step)."""
    return {k: float(v) for k, v in row.items() if k != "epoch"}


def markdown_table(values: dict) -> str:
    return "| key | value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in values.items())


# ------------------------------------------------------------------------------------------------ TensorBoard

def tensorboard_epochs(folder: Path) -> int:
    """The last epoch the event files in folder hold (0: none), read with TensorBoard's own loader: the highest step
    of an epoch scalar (a final/ number or a text is not an epoch). An epoch is one event (log_epoch), so an event
    cut short by a kill loses its whole epoch, which is then logged again."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    last = 0
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            if any(value.HasField("simple_value") and not value.tag.startswith("final/")
                   for value in event.summary.value):
                last = max(last, int(event.step))
    return last


class TensorBoardTracker:
    """Event files in tracking/tensorboard/<sweep>/<run id>/: scalars, the config (text and HPARAMS), pictures.

    A resumed run adds an event file beside the earlier ones (TensorBoard reads them as one run); last_epoch is what
    those earlier files hold. Each epoch's scalars go in one event, so an epoch is on disk whole or not at all.
    """

    def __init__(self, run: TrackedRun):
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
        self.run, self.summary = run, Summary
        folder = run.root / "tensorboard" / run.group / run.run_id
        self.last_epoch = tensorboard_epochs(folder) if folder.is_dir() else 0
        self.writer = SummaryWriter(log_dir=str(folder))
        self.hparams = hparams
        self.writer.add_text("config", markdown_table(run.config))

    def log_epoch(self, row: dict) -> None:
        values = [self.summary.Value(tag=key, simple_value=value) for key, value in epoch_numbers(row).items()]
        self.writer.file_writer.add_summary(self.summary(value=values), row["epoch"])  # one event: all or none
        self.writer.flush()

    def log_final(self, metrics: dict) -> None:
        final = final_numbers(metrics)
        for key, value in final.items():
            self.writer.add_scalar(key, value, metrics["epochs"])
        # the HPARAMS tab: one row per run, its config beside its final numbers
        for summary in self.hparams(self.run.config, final):
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("environment", markdown_table(environment_of(metrics)))
        self.writer.flush()

    def log_image(self, tag: str, image, caption: str, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")
        self.writer.add_text(f"{tag}_caption", caption, step)
        self.writer.flush()

    def close(self, finished: bool = True) -> None:
        self.writer.close()


# ------------------------------------------------------------------------------------------------ MLflow

def mlflow_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set (a server), else a SQLite store under the runs folder."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow' / 'mlflow.db').resolve()}"


def mlflow_epochs(client, run_id: str) -> int:
    """The last epoch an MLflow run holds (0: none): the highest step of its epoch metrics (not final/ ones). An
    epoch's metrics go in one log_batch call, all or none."""
    metrics = [key for key in client.get_run(run_id).data.metrics if not key.startswith("final/")]
    return max((int(m.step) for key in metrics for m in client.get_metric_history(run_id, key)), default=0)


class MLflowTracker:
    """An MLflow experiment per sweep, a run per run id (tag lab.run_id): found again when a run resumes, and then
    asked which epochs it holds (last_epoch)."""

    def __init__(self, run: TrackedRun):
        from mlflow import MlflowClient
        from mlflow.entities import Param
        for name in ("mlflow", "alembic"):  # their INFO lines (database migrations) would drown the epoch lines
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = mlflow_uri(run.root)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(run.group)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            artifacts = (run.root / "mlflow" / "artifacts" / run.group).resolve().as_uri() \
                if "MLFLOW_TRACKING_URI" not in os.environ else None
            experiment_id = self.client.create_experiment(run.group, artifact_location=artifacts)
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`lab.run_id` = '{run.run_id}'",
                                        max_results=1)
        if found:  # a resumed run: continue the same MLflow run
            self.id = found[0].info.run_id
            self.last_epoch = mlflow_epochs(self.client, self.id)
            self.client.update_run(self.id, status="RUNNING")
        else:
            self.id = self.client.create_run(experiment_id, run_name=run.run_id, tags={
                "lab.run_id": run.run_id, "lab.sweep": run.group, "lab.task": run.task}).info.run_id
            self.last_epoch = 0
        self.client.log_batch(self.id, params=[Param(k, str(v)) for k, v in run.config.items()])

    def _metrics(self, numbers: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.id, metrics=[Metric(k, v, now, step) for k, v in numbers.items()])

    def log_epoch(self, row: dict) -> None:
        self._metrics(epoch_numbers(row), row["epoch"])

    def log_final(self, metrics: dict) -> None:
        self._metrics(final_numbers(metrics), metrics["epochs"])
        environment = environment_of(metrics)
        for key, value in environment.items():
            self.client.set_tag(self.id, f"env.{key}", value)
        self.client.log_dict(self.id, environment, "environment.json")

    def log_image(self, tag: str, image, caption: str, step: int) -> None:
        self.client.log_image(self.id, image, artifact_file=f"{tag}.png")
        self.client.set_tag(self.id, f"{tag}_caption", caption)

    def close(self, finished: bool = True) -> None:
        self.client.set_terminated(self.id, status="FINISHED" if finished else "KILLED")  # a resume sets RUNNING


# ------------------------------------------------------------------------------------------------ W&B

def wandb_mode() -> str:
    """WANDB_MODE when set; else online where a W&B key is at hand (WANDB_API_KEY, ~/.netrc), offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


def wandb_offline_epochs(folder: Path, run_id: str) -> int:
    """The last epoch in the earlier offline runs of a run id, as W&B's own inspector reads them (0: none).

    W&B hands a logged row to its service and returns before it is on disk: a killed process can lose its last epoch
    after the ledger counted it, so a resumed offline run asks the files what they hold.
    """
    last = 0
    for run in sorted((folder / "wandb").glob(f"offline-run-*-{run_id}*")):
        if not any(run.glob("*.wandb")):
            continue
        out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run)],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        for line in out.splitlines():
            record = json.loads(line) if line.startswith("{") else {}
            if record.get("type") == "history":
                last = max(last, int(record["history"]["step"]["num"]))
    return last


class WandbTracker:
    """A W&B run per run id (resumed by id) in the sweep's group; offline runs wait in tracking/wandb for wandb sync.

    last_epoch: the epochs W&B already holds (its own count, not the ledger's; see wandb_offline_epochs).
    """

    def __init__(self, run: TrackedRun):
        import wandb
        self.wandb = wandb
        folder = run.root / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        mode = wandb_mode()
        self.last_epoch = wandb_offline_epochs(folder, run.run_id) if mode == "offline" else None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), group=run.group, name=run.run_id, id=run.run_id,
            resume="allow", config=run.config, dir=str(folder), mode=mode, reinit="create_new",
            job_type=run.task,
            # console off: the terminal lines are the run folder's; init_timeout: a dead network fails in 60 s
            settings=wandb.Settings(console="off", silent=True, init_timeout=60))
        if self.last_epoch is None:  # online: a resumed run starts after the last step the server holds
            self.last_epoch = max(self.run.starting_step - 1, 0) if self.run.resumed else 0

    def log_epoch(self, row: dict) -> None:
        self.run.log(epoch_numbers(row) | {"epoch": row["epoch"]}, step=row["epoch"])

    def log_final(self, metrics: dict) -> None:
        self.run.summary.update(final_numbers(metrics))
        self.run.config.update({f"env.{k}": v for k, v in environment_of(metrics).items()}, allow_val_change=True)

    def log_image(self, tag: str, image, caption: str, step: int) -> None:
        self.run.log({tag: self.wandb.Image(image, caption=caption)}, step=step)

    def close(self, finished: bool = True) -> None:
        self.run.finish(exit_code=0 if finished else 1)  # a resume continues the run either way


FACTORIES = {"tensorboard": TensorBoardTracker, "mlflow": MLflowTracker, "wandb": WandbTracker}
