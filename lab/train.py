"""Fit and evaluate loops over in-memory tensors; they return the model and plain dicts of metrics."""

import contextlib
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from lab.config import ConfigError, RunConfig, TrainConfig, run_id
from lab.data import Dataset, Split, normalize, ordered_batches, random_affine, shuffled_batches, to_float
from lab.models import build_model, count_parameters
from lab.paths import ROOT
from lab.resume import RESUME_FILE, Progress, TrainingParts, resume, save_resume

EVAL_BATCH = 256  # images per evaluation step: small enough to stay in cache on a CPU (1024 is 2x slower here)
# Like the device, precision is how a run is computed, not what it is: it is recorded in metrics.json, not hashed
# into the run id. auto: bf16 autocast where the hardware computes bf16 natively, else fp32.
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class FitResult:
    model: nn.Module
    metrics: dict  # final numbers: accuracies or MSE, losses, seconds, parameters
    history: list[dict]  # one dict per epoch


def pick_device(name: str | None = None) -> torch.device:
    """The given device, else cuda, else mps, else cpu."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 matmuls and convs in hardware (emulated bf16 would be slower than fp32)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)  # Ampere or newer
        except TypeError:  # older torch: no emulation to rule out
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu  # AVX-512 BF16 (e.g. AMD Zen 4, Intel Cooper Lake) or AMX (Intel Sapphire Rapids)
        return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                     "_is_amx_tile_supported"))
    return False


def autocast_dtype(precision: str, device: torch.device, task: str = "classifier") -> torch.dtype | None:
    """The dtype a model's convs and matmuls autocast to for a precision setting, or None for plain float32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    # auto keeps autoencoders in fp32 on a CPU: in the default sweep their training was slower in bf16
    # (conv_ae runs: 399 s of training in bf16, 354 s in fp32, same afternoon); classifiers trained 1.2-1.4x faster
    auto_bf16 = native_bf16(device) and not (task == "autoencoder" and device.type == "cpu")
    if precision == "bf16" or (precision == "auto" and auto_bf16):
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """"bf16" or "fp32": what a run computed in, for its metrics."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """torch.autocast to dtype on the device, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def environment(device: torch.device) -> dict:
    """What produced a result: versions, device, threads, the project's git commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "torch_version": torch.__version__,
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "git_commit": commit,
    }


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam, AdamW (decoupled weight decay) or SGD with Nesterov momentum."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """(scheduler or None, whether it steps per batch rather than per epoch)."""
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                   steps_per_epoch=steps_per_epoch), True
    if cfg.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay), False
    return None, False


class Batcher:
    """Turns index batches of a uint8 split into model inputs: float, augmented if asked, normalised if asked."""

    def __init__(self, cfg: RunConfig, dataset: Dataset, device: torch.device, generator: torch.Generator):
        self.data, self.device, self.generator = cfg.data, device, generator
        self.mean, self.std = dataset.mean, dataset.std
        self.standardise = cfg.task == "classifier"  # classifiers see standardised pixels, autoencoders [0, 1]
        self.channels_last = cfg.task == "classifier" and device.type != "mps"

    def __call__(self, images: torch.Tensor, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(model input, [0, 1] target image) for a (B, 28, 28) uint8 batch."""
        x = to_float(images)  # (B, 1, 28, 28)
        if augment and self.data.augment:
            x = random_affine(x, self.generator, self.data.rotate, self.data.scale, self.data.translate)
        target = x
        if self.standardise:
            x = normalize(x, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, target


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batcher: Batcher, images: torch.Tensor,
               labels: torch.Tensor, task: str, amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a (B, 28, 28) uint8 batch; (loss, correct predictions) as tensors, not synced."""
    x, target = batcher(images, augment=True)
    with autocast(batcher.device, amp_dtype):
        out = model(x)
    out = out.float()  # (B, 10) or (B, 1, 28, 28); the loss and its gradient start in float32
    if task == "classifier":
        loss = F.cross_entropy(out, labels)
        correct = (out.detach().argmax(1) == labels).sum()
    else:
        loss = F.mse_loss(out, target)
        correct = torch.zeros((), dtype=torch.long, device=out.device)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, correct


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, batcher: Batcher, task: str, amp_dtype: torch.dtype | None = None) -> dict:
    """Mean loss and accuracy (classifier) or mean squared error per pixel (autoencoder) over a split."""
    model.eval()
    loss_sum = torch.zeros((), device=batcher.device, dtype=torch.float64)
    correct = torch.zeros((), device=batcher.device, dtype=torch.long)
    for idx in ordered_batches(len(split), EVAL_BATCH, split.images.device):
        x, target = batcher(split.images[idx], augment=False)
        with autocast(batcher.device, amp_dtype):
            out = model(x)
        out = out.float()  # losses in float32 whatever the model computed in
        if task == "classifier":
            loss_sum += F.cross_entropy(out, split.labels[idx], reduction="sum").double()
            correct += (out.argmax(1) == split.labels[idx]).sum()
        else:
            loss_sum += F.mse_loss(out, target, reduction="sum").double() / target[0].numel()
    n = len(split)
    if task == "classifier":
        return {"loss": loss_sum.item() / n, "accuracy": correct.item() / n}
    return {"mse": loss_sum.item() / n}


def fit(cfg: RunConfig, dataset: Dataset, device: torch.device | str = "cpu", progress: bool = True,
        log: Callable[[str], None] = print, precision: str = "auto", folder: Path | str | None = None) -> FitResult:
    """Train the model a run config describes on a dataset, evaluating on its test split after every epoch.

    precision: "auto" (bf16 autocast where native), "bf16" or "fp32"; weights, optimiser state and losses stay fp32.
    folder: where to save the training state after every epoch (folder/RESUME_FILE) and resume from it when it is
    there, with the same result as an uninterrupted run; None: no epoch checkpoints.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed)  # model init and dropout
    generator = torch.Generator().manual_seed(cfg.seed)  # shuffling and augmentation
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train, test = dataset.train.head(cfg.data.train_limit).to(device), dataset.test.to(device)
    model = build_model(cfg).to(device)
    batcher = Batcher(cfg, dataset, device, generator)
    if batcher.channels_last:
        model = model.to(memory_format=torch.channels_last)
    task = cfg.task
    pca = task == "autoencoder" and cfg.model.arch == "pca"
    # Training steps autocast; every evaluation runs in fp32, as a loaded checkpoint computes, so the recorded
    # accuracies are what the demo and report get back. PCA is exact linear algebra: fp32 throughout.
    amp_dtype = autocast_dtype(precision, device, task)
    amp_dtype = None if pca else amp_dtype
    history: list[dict] = []
    train_seconds = 0.0
    start = time.perf_counter()

    if pca:
        t0 = time.perf_counter()
        model.fit(batcher(train.images, augment=False)[1])  # closed form, on [0, 1] pixels
        train_seconds = time.perf_counter() - t0
        history.append({"epoch": 1, "train_mse": evaluate(model, train, batcher, task)["mse"],
                        "test_mse": evaluate(model, test, batcher, task)["mse"], "lr": 0.0,
                        "epoch_seconds": train_seconds})
    else:
        optimizer = make_optimizer(model.parameters(), cfg.train)
        steps = -(-len(train) // cfg.train.batch_size)
        scheduler, per_batch = make_scheduler(optimizer, cfg.train, steps)
        parts = TrainingParts(model, optimizer, scheduler, generator, device)
        resume_path = Path(folder) / RESUME_FILE if folder is not None else None
        done = resume(resume_path, run_id(cfg), cfg.train.epochs, precision_name(amp_dtype), parts, log)
        if done:
            history, train_seconds = done.history, done.train_seconds
            start -= done.elapsed_seconds  # total_seconds counts the time before the interruption too
            log(f"  resuming {run_id(cfg)} from epoch {done.epoch}/{cfg.train.epochs} "
                f"(saved {done.saved_at[11:19]} UTC)")  # HH:MM:SS of the ISO time
        for epoch in range(len(history) + 1, cfg.train.epochs + 1):
            model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            correct = torch.zeros((), device=device, dtype=torch.long)
            lr = optimizer.param_groups[0]["lr"]
            bar = tqdm(shuffled_batches(len(train), cfg.train.batch_size, generator), desc=f"epoch {epoch}",
                       leave=False, disable=None if progress else True, unit="batch", mininterval=0.5)
            for step, idx in enumerate(bar):
                idx = idx.to(device)
                loss, batch_correct = train_step(model, optimizer, batcher, train.images[idx], train.labels[idx], task,
                                                 amp_dtype)
                correct += batch_correct
                if per_batch:
                    scheduler.step()
                loss_sum += loss.detach().double() * len(idx)
                if progress and step % 20 == 0:
                    bar.set_postfix(loss=f"{loss.item():.4f}")
            if scheduler is not None and not per_batch:
                scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            row = {"epoch": epoch}
            if task == "classifier":
                row |= {"train_loss": loss_sum.item() / len(train), "train_accuracy": correct.item() / len(train)}
                test_metrics = evaluate(model, test, batcher, task)
                row |= {"test_loss": test_metrics["loss"], "test_accuracy": test_metrics["accuracy"]}
            else:
                row |= {"train_mse": loss_sum.item() / len(train),
                        "test_mse": evaluate(model, test, batcher, task)["mse"]}
            row |= {"lr": lr, "epoch_seconds": epoch_seconds}
            history.append(row)
            if resume_path:  # saved before the log line: a run stopped after that line resumes after this epoch
                save_resume(resume_path, run_id(cfg), precision_name(amp_dtype), parts,
                            Progress(epoch, history, train_seconds, time.perf_counter() - start))
            numbers = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("train_", "test_")))
            log(f"  epoch {epoch}/{cfg.train.epochs}  {numbers}  {epoch_seconds:.1f}s")

    # Final numbers: the training split re-measured in eval mode (no dropout, no augmentation), and the test split.
    final_train = evaluate(model, train, batcher, task)
    metrics = {f"train_{k}": v for k, v in final_train.items()}
    metrics |= {k: v for k, v in history[-1].items() if k.startswith("test_")}
    metrics |= {
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "parameters": count_parameters(model),
        "epochs": len(history),
        "train_images": len(train),
        "precision": precision_name(amp_dtype),
    }
    return FitResult(model.to(memory_format=torch.contiguous_format), metrics, history)
