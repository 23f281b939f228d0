"""Run folders -> models for inference: config and metrics from JSON, weights from safetensors (never pickle)."""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from lab.config import ConfigError, RunConfig, from_dict, run_id
from lab.data import DATASET_INFO, normalize
from lab.errors import LabError
from lab.models import build_model
from lab.run_folder import CONFIG_FILE, HEADLINE_METRIC, METRICS_FILE, WEIGHTS_FILE, is_done


class CheckpointError(LabError, ValueError):
    """A run folder that cannot be loaded; the message names the file and says what is wrong with it."""


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    config: RunConfig
    metrics: dict
    model: nn.Module  # in eval mode, on the device it was loaded to

    @property
    def run_id(self) -> str:
        return run_id(self.config)

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def device(self) -> torch.device:
        return next(iter(self.model.state_dict().values())).device

    def describe(self) -> str:
        """A short label for pickers and captions, with the run's headline metric."""
        model = self.config.model
        if self.task == "classifier":
            return f"{model.preset} {self.run_id[-10:]}: test accuracy {self.metrics['test_accuracy']:.2%}"
        return f"{model.preset} latent {model.latent_dim} {self.run_id[-10:]}: test MSE {self.metrics['test_mse']:.4f}"

    def _input(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) or (N, 28, 28) floats in [0, 1], white on black -> what the model was trained on."""
        x = images.float().to(self.device)
        x = x.unsqueeze(1) if x.dim() == 3 else x  # (N, 1, 28, 28)
        if self.task == "classifier":
            _, mean, std = DATASET_INFO[self.config.data.dataset]
            x = normalize(x, mean, std)
        return x

    @torch.inference_mode()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, 10) for images in [0, 1]."""
        self._need("classifier")
        return self.model(self._input(images)).softmax(1)

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latent codes (N, latent_dim) for images in [0, 1]."""
        self._need("autoencoder")
        return self.model.encode(self._input(images))

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, 28, 28) in [0, 1] for latent codes (N, latent_dim)."""
        self._need("autoencoder")
        return self.model.decode(latents.float().to(self.device))

    @torch.inference_mode()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions (N, 1, 28, 28) in [0, 1] of images in [0, 1]."""
        return self.decode(self.encode(images))

    def _need(self, task: str) -> None:
        if self.task != task:
            raise CheckpointError(f"{self.folder}: is a {self.task} run, not a {task}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; a finished run folder holds {CONFIG_FILE}, {WEIGHTS_FILE} "
                              f"and {METRICS_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not readable JSON ({error}); retrain the run or restore the file") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _read_weights(weights_path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a safetensors file and the run id in its header (None if it has none).

    Only safetensors is read: its header is JSON and its data raw numbers, so no file can run code when loaded.
    """
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing; retrain the run (python -m lab sweep ...)")
    try:
        state = load_file(str(weights_path), device="cpu")
        with safe_open(str(weights_path), framework="pt") as f:  # the header names the config trained from
            trained_as = (f.metadata() or {}).get("run_id")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({error}); it may be truncated or "
                              f"corrupt, retrain the run or restore the file") from None
    return state, trained_as


def _check_tensors(state: dict[str, torch.Tensor], config: RunConfig, weights_path: Path, config_path: Path) -> None:
    """Every tensor the config's model has, with its shape and dtype, and nothing else; all values finite.

    The model is built on the meta device, so a config tampered into a huge net allocates nothing. Safetensors
    has no checksum: a flipped bit inside the tensor data that leaves a finite number of the right type cannot be
    told from a trained weight by any format check; only its effect on the metrics would show it.
    """
    try:
        with torch.device("meta"):
            expected = build_model(config).state_dict()
    except ConfigError as error:  # e.g. a net that shrinks the image to nothing
        raise CheckpointError(f"{config_path}: {error}") from None
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        what = "; ".join(part for part in (missing and f"missing {', '.join(missing[:3])}",
                                           unexpected and f"unexpected {', '.join(unexpected[:3])}") if part)
        raise CheckpointError(f"{weights_path}: its tensors do not match the model {config_path} describes "
                              f"({what}); one of the files was changed, restore it or retrain the run")
    for name, want in expected.items():
        got = state[name]
        if got.shape != want.shape:
            raise CheckpointError(f"{weights_path}: {name} has shape {tuple(got.shape)}, but {config_path} makes "
                                  f"it {tuple(want.shape)}; one of the files was changed, restore it or retrain")
        if got.dtype != want.dtype:
            raise CheckpointError(f"{weights_path}: {name} is {got.dtype}, expected {want.dtype}; restore the file")
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{weights_path}: non-finite values in {', '.join(bad[:3])}; retrain the run or "
                              f"restore the file")


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a finished run folder; raise CheckpointError naming the file when any part is missing or inconsistent."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such run folder")
    config_path, weights_path, metrics_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE, folder / METRICS_FILE
    try:
        config = from_dict(_read_json(config_path))
    except ConfigError as error:
        raise CheckpointError(f"{config_path}: {error}; restore the file or retrain the run") from None
    metrics = _read_json(metrics_path)
    state, trained_as = _read_weights(weights_path)
    if trained_as is None:  # train_run writes it into every header; without it the file is not the run's own
        raise CheckpointError(f"{weights_path}: its header has no run_id (the lab writes one with every run's "
                              f"weights); it was altered or comes from elsewhere, retrain the run or restore the file")
    if trained_as != run_id(config):
        raise CheckpointError(f"{weights_path}: trained as {trained_as}, but {config_path} describes "
                              f"{run_id(config)}; the config was edited after training (or the header altered)")
    if metrics.get("run_id", run_id(config)) != run_id(config):
        raise CheckpointError(f"{metrics_path}: run_id {metrics['run_id']!r}, but {config_path} describes "
                              f"{run_id(config)}; the files come from different runs")
    headline = HEADLINE_METRIC[config.task]
    value = metrics.get(headline)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckpointError(f"{metrics_path}: {headline}: expected a finite number, got {value!r}; retrain the "
                              f"run or restore the file")
    _check_tensors(state, config, weights_path, config_path)
    model = build_model(config)
    model.load_state_dict(state, strict=True)  # names, shapes and dtypes were checked above
    return Checkpoint(folder, config, metrics, model.to(device).eval())


def find_checkpoints(runs_dir: str | Path, task: str | None = None, device: torch.device | str = "cpu",
                     ) -> tuple[list[Checkpoint], list[str]]:
    """Every loadable finished run under runs_dir (optionally of one task), and one message per folder skipped."""
    loaded, skipped = [], []
    runs_dir = Path(runs_dir)
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for folder in folders:
        if not is_done(folder):
            continue  # unfinished (or not a run): nothing to report
        try:
            checkpoint = load_checkpoint(folder, device)
        except CheckpointError as error:
            skipped.append(str(error))
            continue
        if task is None or checkpoint.task == task:
            loaded.append(checkpoint)
    return loaded, skipped
