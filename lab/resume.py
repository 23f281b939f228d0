"""Epoch checkpoints: a run's whole training state in one safetensors file, so a killed run resumes from its last epoch.

The file (RESUME_FILE in the run folder, see lab/run_folder.py) holds tensors as safetensors entries: the model's
state (BatchNorm buffers included) under "model/", the optimiser's state tensors under "optimizer/<param index>/<name>",
and the random number generators' states under "rng/". Everything else (epoch, history, seconds, optimiser
hyperparameters, the learning-rate schedule's state) is JSON in the safetensors metadata, under the key
"lab_resume". It is written atomically after every epoch: safetensors and JSON only, no pickle.
"""

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from lab.run_folder import write_atomic

FORMAT = "lab-resume/1"
META_KEY = "lab_resume"


class ResumeError(ValueError):
    """A resume file that cannot be used for this run; the message says why."""


@dataclass
class TrainingParts:
    """The live objects of a training loop whose state an epoch checkpoint holds."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch.optim.lr_scheduler scheduler, or None
    generator: torch.Generator  # shuffling and augmentation
    device: torch.device


@dataclass
class Progress:
    """How far a run got: the last finished epoch, its history, and the seconds spent so far."""

    epoch: int
    history: list[dict]
    train_seconds: float
    elapsed_seconds: float  # wall time of fit so far, evaluations included (metrics' total_seconds)
    saved_at: str = ""  # ISO time in UTC


def _own(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy with its own storage (safetensors refuses views and shared storage)."""
    return tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)


def _device_rng_state(device: torch.device) -> torch.Tensor | None:
    """The accelerator's RNG state (dropout on it draws from there), or None on a CPU."""
    if device.type == "cuda":
        return torch.cuda.get_rng_state(device)
    if device.type == "mps":
        return torch.mps.get_rng_state()
    return None


def _set_device_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    elif device.type == "mps":
        torch.mps.set_rng_state(state)


def _rng_states(parts: TrainingParts) -> dict[str, torch.Tensor]:
    states = {"rng/generator": parts.generator.get_state(), "rng/torch": torch.get_rng_state()}
    device_state = _device_rng_state(parts.device)
    if device_state is not None:
        states["rng/device"] = device_state
    return {k: _own(v) for k, v in states.items()}


def save_resume(path: Path, run_id: str, precision: str, parts: TrainingParts, progress: Progress) -> None:
    """Write the training state after an epoch to path, atomically (the old file stays until the new one is whole)."""
    tensors = {f"model/{k}": _own(v) for k, v in parts.model.state_dict().items()}
    optimizer_state = parts.optimizer.state_dict()
    scalars: dict[str, dict] = {}  # optimiser state that is not a tensor (none in torch's Adam and SGD today)
    for index, state in optimizer_state["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = _own(value)
            else:
                scalars.setdefault(str(index), {})[name] = value
    tensors |= _rng_states(parts)
    info = {
        "format": FORMAT,
        "run_id": run_id,
        "epoch": progress.epoch,
        "precision": precision,
        "device": parts.device.type,
        "history": progress.history,
        "train_seconds": progress.train_seconds,
        "elapsed_seconds": progress.elapsed_seconds,
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
        "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else None,
    }
    metadata = {META_KEY: json.dumps(info)}
    write_atomic(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(the JSON part, the tensors) of a resume file."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ResumeError(f"not a readable safetensors file ({error}); it may be truncated") from None
    try:
        info = json.loads(metadata[META_KEY])
    except (KeyError, json.JSONDecodeError):
        raise ResumeError(f"no readable training state in its metadata (key {META_KEY!r})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ResumeError(f"not a {FORMAT} file")
    return info, tensors


def _check_progress(info: dict, run_id: str, epochs: int, precision: str, device: torch.device) -> Progress:
    """The saved progress, after checking it belongs to this run and is consistent."""
    if info.get("run_id") != run_id:
        raise ResumeError(f"saved by run {info.get('run_id')!r}, not {run_id!r}")
    epoch, history = info.get("epoch"), info.get("history")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch <= epochs:
        raise ResumeError(f"epoch {epoch!r} is not in 1..{epochs}")
    if not isinstance(history, list) or [row.get("epoch") if isinstance(row, dict) else None
                                         for row in history] != list(range(1, epoch + 1)):
        raise ResumeError(f"its history does not list epochs 1..{epoch}")
    if info.get("precision") != precision:
        raise ResumeError(f"trained in {info.get('precision')}, this run computes in {precision}")
    if info.get("device") != device.type:
        raise ResumeError(f"trained on {info.get('device')}, this run is on {device.type}")
    seconds = [info.get("train_seconds"), info.get("elapsed_seconds")]
    if not all(isinstance(s, (int, float)) and math.isfinite(s) and s >= 0 for s in seconds):
        raise ResumeError(f"bad seconds {seconds}")
    return Progress(epoch, history, float(seconds[0]), float(seconds[1]), str(info.get("saved_at", "")))


def _check_tensors(tensors: dict[str, torch.Tensor], parts: TrainingParts, info: dict) -> None:
    """Model and optimiser tensors match the live ones in names and shapes, are finite; RNG states fit."""
    model_state = parts.model.state_dict()
    saved_model = {k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")}
    if set(saved_model) != set(model_state):
        diff = sorted(set(saved_model) ^ set(model_state))
        raise ResumeError(f"its model keys do not match this run's model (e.g. {diff[:3]})")
    for name, value in saved_model.items():
        if value.shape != model_state[name].shape or value.dtype != model_state[name].dtype:
            raise ResumeError(f"model/{name}: {tuple(value.shape)} {value.dtype}, the model has "
                              f"{tuple(model_state[name].shape)} {model_state[name].dtype}")
    params = [p for group in parts.optimizer.param_groups for p in group["params"]]
    groups = info.get("optimizer", {}).get("param_groups")
    live_groups = parts.optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups) or \
            [(sorted(g), len(g.get("params", []))) for g in groups] != \
            [(sorted(g), len(g["params"])) for g in live_groups]:
        raise ResumeError("its optimiser parameter groups do not match this run's (another optimiser or schedule?)")
    for key, value in tensors.items():
        if not key.startswith("optimizer/"):
            continue
        _, index, name = key.split("/", 2)
        if not index.isdigit() or int(index) >= len(params):
            raise ResumeError(f"{key}: no such optimiser parameter")
        if value.dim() > 0 and value.shape != params[int(index)].shape:
            raise ResumeError(f"{key}: shape {tuple(value.shape)}, the parameter has {tuple(params[int(index)].shape)}")
    bad = [k for k, v in tensors.items() if k.startswith(("model/", "optimizer/")) and v.is_floating_point()
           and not torch.isfinite(v).all()]
    if bad:
        raise ResumeError(f"non-finite values in {', '.join(bad[:3])}")
    for key, live in _rng_states(parts).items():
        if key not in tensors or tensors[key].shape != live.shape or tensors[key].dtype != live.dtype:
            raise ResumeError(f"{key}: missing or not a random number generator state")
    if (parts.scheduler is None) != (info.get("scheduler") is None):
        raise ResumeError("its learning-rate schedule does not match this run's")


def _apply(tensors: dict[str, torch.Tensor], parts: TrainingParts, info: dict) -> None:
    """Load the checked state into the live objects."""
    parts.model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
    params = [p for group in parts.optimizer.param_groups for p in group["params"]]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            param = params[int(index)]
            # empty_like keeps the parameter's memory layout (channels_last), as the state of an uninterrupted run has
            state.setdefault(int(index), {})[name] = (torch.empty_like(param).copy_(value) if value.dim() > 0
                                                      else value.to(param.device if name != "step" else "cpu"))
    for index, scalars in info["optimizer"]["scalars"].items():
        state.setdefault(int(index), {}).update(scalars)
    # JSON turned tuples (Adam's betas) into lists; give them back as tuples
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in info["optimizer"]["param_groups"]]
    parts.optimizer.load_state_dict({"state": state, "param_groups": groups})
    if parts.scheduler is not None:
        parts.scheduler.load_state_dict(info["scheduler"])
    parts.generator.set_state(tensors["rng/generator"])
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/device" in tensors:
        _set_device_rng_state(parts.device, tensors["rng/device"])


def _snapshot(parts: TrainingParts) -> tuple:
    return ({k: v.clone() for k, v in parts.model.state_dict().items()}, copy.deepcopy(parts.optimizer.state_dict()),
            copy.deepcopy(parts.scheduler.state_dict()) if parts.scheduler is not None else None,
            _rng_states(parts))


def _restore(parts: TrainingParts, snapshot: tuple) -> None:
    model_state, optimizer_state, scheduler_state, rng = snapshot
    parts.model.load_state_dict(model_state)
    parts.optimizer.load_state_dict(optimizer_state)
    if parts.scheduler is not None:
        parts.scheduler.load_state_dict(scheduler_state)
    parts.generator.set_state(rng["rng/generator"])
    torch.set_rng_state(rng["rng/torch"])
    if "rng/device" in rng:
        _set_device_rng_state(parts.device, rng["rng/device"])


def load_resume(path: Path, run_id: str, epochs: int, precision: str, parts: TrainingParts) -> Progress:
    """Check a resume file against this run and load it into the parts; ResumeError (parts untouched) if unusable."""
    info, tensors = _read(path)
    progress = _check_progress(info, run_id, epochs, precision, parts.device)
    _check_tensors(tensors, parts, info)
    before = _snapshot(parts)
    try:
        _apply(tensors, parts, info)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as error:
        _restore(parts, before)  # a half-loaded state would train something that is neither run
        raise ResumeError(f"does not fit this run ({type(error).__name__}: {error})") from None
    return progress


def resume(path: Path | None, run_id: str, epochs: int, precision: str, parts: TrainingParts,
           log: Callable[[str], None] = print) -> Progress | None:
    """The progress saved in path, loaded into the parts; None when there is no file or (after a warning) a bad one."""
    if path is None or not path.is_file():
        return None
    try:
        return load_resume(path, run_id, epochs, precision, parts)
    except ResumeError as error:
        log(f"  warning: {path}: {error}; deleting it and training {run_id} from scratch")
        path.unlink(missing_ok=True)
        return None
