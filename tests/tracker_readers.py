"""Read back what lab/tracking.py wrote, each with its tracker's own reader, into one shape for the tests.

    {"runs": tracked runs found for the run id, "config": {key: text}, "epochs": {metric: [(step, value)]},
     "final": {"final/<metric>": value}, "images": [tags]}
"""

import json
import subprocess
import sys
from pathlib import Path

from lab.run_folder import TRACKING_FOLDER


def read_tensorboard(runs_dir: Path, group: str, run_id: str) -> dict:
    """TensorBoard's EventAccumulator over the run's folder (every event file in it)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    folder = Path(runs_dir) / TRACKING_FOLDER / "tensorboard" / group / run_id
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    scalars = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in tags["scalars"]}
    start = plugin_data_pb2.HParamsPluginData.FromString(
        events.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    config = {k: v.string_value if v.HasField("string_value") else v.bool_value if v.HasField("bool_value")
              else v.number_value for k, v in start.hparams.items()}
    return {"runs": [folder.name] if folder.is_dir() else [], "config": config,
            "epochs": {k: v for k, v in scalars.items() if not k.startswith("final/")},
            "final": {k: v[-1][1] for k, v in scalars.items() if k.startswith("final/")}, "images": tags["images"]}


def read_mlflow(runs_dir: Path, group: str, run_id: str) -> dict:
    """MLflow's client on the local store: the runs tagged with the run id, their params, metric histories, files."""
    from mlflow import MlflowClient

    from lab.trackers import mlflow_uri
    client = MlflowClient(tracking_uri=mlflow_uri(Path(runs_dir) / TRACKING_FOLDER))
    experiment = client.get_experiment_by_name(group)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`lab.run_id` = '{run_id}'")
    run = runs[0]
    histories = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)]
                 for k in run.data.metrics}
    return {"runs": [r.info.run_id for r in runs], "config": dict(run.data.params),
            "epochs": {k: v for k, v in histories.items() if not k.startswith("final/")},
            "final": {k: v[-1][1] for k, v in histories.items() if k.startswith("final/")},
            "images": [Path(a.path).stem for a in client.list_artifacts(run.info.run_id) if a.path.endswith(".png")],
            "status": run.info.status}


def wandb_records(offline_run: Path) -> list[dict]:
    """The records of a W&B offline run, as W&B's own inspector prints them (`wandb leet inspect --json`)."""
    wandb = Path(sys.executable).with_name("wandb")
    out = subprocess.run([str(wandb), "leet", "inspect", "--json", str(offline_run)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def read_wandb(runs_dir: Path, group: str, run_id: str) -> dict:
    """Every offline run folder of the run id (a resumed run writes one per process), merged in order."""
    folders = sorted((Path(runs_dir) / TRACKING_FOLDER / "wandb" / "wandb").glob(f"offline-run-*-{run_id}*"))
    out: dict = {"runs": [], "config": {}, "epochs": {}, "final": {}, "images": [], "groups": set()}
    for folder in folders:
        for record in wandb_records(folder):
            kind = record["type"]
            if kind == "run":
                out["runs"].append(record["run"]["run_id"])
                out["groups"].add(record["run"].get("run_group"))
                out["config"] |= {k: v for k, v in record["run"]["config"]["update"].items() if k != "_wandb"}
            elif kind == "history":
                item, step = record["history"]["item"], int(record["history"]["step"]["num"])
                images = {k.rsplit(".", 1)[0] for k, v in item.items() if k.endswith("._type") and v == "image-file"}
                out["images"] += sorted(images)
                for key, value in item.items():
                    if not key.startswith("_") and key != "epoch" and key.split(".")[0] not in images:
                        out["epochs"].setdefault(key, []).append((step, value))
            elif kind == "summary":
                out["final"] |= {k: v for k, v in record["summary"].get("update", {}).items() if k.startswith("final/")}
    return out


READERS = {"tensorboard": read_tensorboard, "mlflow": read_mlflow, "wandb": read_wandb}
