"""Fit and evaluate loops over in-memory tensors; they return the model and plain dicts of metrics.

Read top to bottom: the optimiser and schedule, the batcher, one step, evaluation, then fit in its parts
(prepare, shared with the benchmark; the PCA fit; one epoch; the epochs with their checkpoints; the final metrics).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from lab.config import RunConfig, TrainConfig, run_id
from lab.data import (
    Dataset,
    SkeletonStore,
    Split,
    normalize,
    ordered_batches,
    random_affine,
    shuffled_batches,
    stroke_augment,
    to_float,
    train_val_split,
)
from lab.device import autocast, autocast_dtype, precision_name
from lab.models import build_model, count_parameters
from lab.resume import Progress, TrainingParts, resume, save_resume
from lab.run_folder import RESUME_FILE

EpochHook = Callable[[dict], None]  # sees each epoch's history row: the one way out of the loop (lab/tracking.py)
EVAL_BATCH = 256  # images per evaluation step: small enough to stay in cache on a CPU (1024 is 2x slower here)


@dataclass
class FitResult:
    model: nn.Module
    metrics: dict  # final numbers: accuracies or MSE, losses, seconds, parameters
    history: list[dict]  # one dict per epoch


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
        self.skeletons: SkeletonStore | None = None  # the training digits' skeletons, kept (keep_skeletons)

    def keep_skeletons(self, train: Split) -> None:
        """Keep the skeletons of train's digits once made: batches then name their digits (idx) when called."""
        if self.data.strokes:
            self.skeletons = SkeletonStore(train.images)

    def __call__(self, images: torch.Tensor, augment: bool,
                 idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(model input, [0, 1] target image) for a (B, 28, 28) uint8 batch; idx (B,): where the batch's digits are
        in the training split, so their skeletons are made once (without it, each time)."""
        x = to_float(images)  # (B, 1, 28, 28)
        if augment and self.data.strokes:  # some digits drawn again as a mouse draws, before the affine moves them
            store = self.skeletons
            kept = None if store is None or idx is None else lambda picked: store(idx[picked])
            x = stroke_augment(x, images, self.generator, self.data.strokes, kept)
        if augment and self.data.augment:
            x = random_affine(x, self.generator, self.data.rotate, self.data.scale, self.data.translate,
                              self.data.elastic)
        target = x
        if self.standardise:
            x = normalize(x, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, target


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batcher: Batcher, images: torch.Tensor,
               labels: torch.Tensor, task: str, amp_dtype: torch.dtype | None,
               idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a (B, 28, 28) uint8 batch (idx: its place in the training split, see Batcher);
    (loss, correct predictions) as tensors, not synced."""
    x, target = batcher(images, augment=True, idx=idx)
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


@dataclass
class Setup:
    """What a training loop works on, built one way for fit and for the benchmark's throughput runs."""

    cfg: RunConfig
    device: torch.device
    model: nn.Module
    batcher: Batcher
    train: Split
    test: Split
    amp_dtype: torch.dtype | None  # what training steps autocast to; None: fp32
    generator: torch.Generator  # shuffling and augmentation
    val: Split | None = None  # held-out training images (data.val_size); never a gradient step

    @property
    def pca(self) -> bool:
        return self.cfg.task == "autoencoder" and self.cfg.model.arch == "pca"


def prepare(cfg: RunConfig, dataset: Dataset, device: torch.device | str = "cpu", precision: str = "auto") -> Setup:
    """Seed, move the data to the device, build the model and the batcher, and pick the training precision."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)  # model init and dropout
    generator = torch.Generator().manual_seed(cfg.seed)  # shuffling and augmentation
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train, val = train_val_split(dataset.train, cfg.data.train_limit, cfg.data.val_size)
    train, test = train.to(device), dataset.test.to(device)
    val = val.to(device) if val is not None else None
    model = build_model(cfg).to(device)
    batcher = Batcher(cfg, dataset, device, generator)
    batcher.keep_skeletons(train)
    if batcher.channels_last:
        model = model.to(memory_format=torch.channels_last)
    setup = Setup(cfg, device, model, batcher, train, test, None, generator, val)
    # Training steps autocast; every evaluation runs in fp32, as a loaded checkpoint computes, so the recorded
    # accuracies are what the demo and report get back. PCA is exact linear algebra: fp32 throughout.
    if not setup.pca:
        setup.amp_dtype = autocast_dtype(precision, device, cfg.task)
    return setup


def fit_pca(setup: Setup) -> tuple[list[dict], float]:
    """The closed-form PCA fit on [0, 1] pixels: (its one history row, seconds)."""
    t0 = time.perf_counter()
    setup.model.fit(setup.batcher(setup.train.images, augment=False)[1])
    seconds = time.perf_counter() - t0
    row = {"epoch": 1, "train_mse": evaluate(setup.model, setup.train, setup.batcher, setup.cfg.task)["mse"]}
    return [row | held_out_metrics(setup) | {"lr": 0.0, "epoch_seconds": seconds}], seconds


def held_out_metrics(setup: Setup) -> dict:
    """The validation split's numbers (when the run holds one out), then the test split's: val_loss, test_accuracy..."""
    splits = [("val", setup.val), ("test", setup.test)]
    return {f"{name}_{k}": v for name, split in splits if split is not None
            for k, v in evaluate(setup.model, split, setup.batcher, setup.cfg.task).items()}


def train_epoch(setup: Setup, optimizer: torch.optim.Optimizer, scheduler, per_batch: bool, epoch: int,
                progress: bool = True) -> dict:
    """One pass over the training split, then the test split: the epoch's history row."""
    model, train, task, device = setup.model, setup.train, setup.cfg.task, setup.device
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    lr = optimizer.param_groups[0]["lr"]
    bar = tqdm(shuffled_batches(len(train), setup.cfg.train.batch_size, setup.generator), desc=f"epoch {epoch}",
               leave=False, disable=None if progress else True, unit="batch", mininterval=0.5)
    for step, idx in enumerate(bar):
        idx = idx.to(device)
        loss, batch_correct = train_step(model, optimizer, setup.batcher, train.images[idx], train.labels[idx], task,
                                         setup.amp_dtype, idx)
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
    seconds = time.perf_counter() - t0
    row: dict = {"epoch": epoch}
    if task == "classifier":
        row |= {"train_loss": loss_sum.item() / len(train), "train_accuracy": correct.item() / len(train)}
    else:
        row |= {"train_mse": loss_sum.item() / len(train)}
    return row | held_out_metrics(setup) | {"lr": lr, "epoch_seconds": seconds}


def train_epochs(setup: Setup, started: float, progress: bool = True, log: Callable[[str], None] = print,
                 folder: Path | str | None = None,
                 on_epoch: EpochHook | None = None) -> tuple[list[dict], float, float]:
    """Every epoch, resuming from folder's epoch checkpoint when there is one and saving one after each epoch.

    on_epoch(row) sees every epoch's history row once it is saved, the rows a resumed run restores included.
    Returns (history, training seconds, the start time with the seconds before an interruption counted in).
    """
    cfg = setup.cfg
    optimizer = make_optimizer(setup.model.parameters(), cfg.train)
    steps = -(-len(setup.train) // cfg.train.batch_size)
    scheduler, per_batch = make_scheduler(optimizer, cfg.train, steps)
    parts = TrainingParts(setup.model, optimizer, scheduler, setup.generator, setup.device)
    precision = precision_name(setup.amp_dtype)
    resume_path = Path(folder) / RESUME_FILE if folder is not None else None
    history: list[dict] = []
    train_seconds = 0.0
    done = resume(resume_path, run_id(cfg), cfg.train.epochs, precision, parts, log)
    if done:
        history, train_seconds = done.history, done.train_seconds
        started -= done.elapsed_seconds  # total_seconds counts the time before the interruption too
        log(f"  resuming {run_id(cfg)} from epoch {done.epoch}/{cfg.train.epochs} "
            f"(saved {done.saved_at[11:19]} UTC)")  # HH:MM:SS of the ISO time
    for row in history if on_epoch else ():
        on_epoch(row)  # a tracker that missed these epochs (killed before it logged) catches up
    for epoch in range(len(history) + 1, cfg.train.epochs + 1):
        row = train_epoch(setup, optimizer, scheduler, per_batch, epoch, progress)
        train_seconds += row["epoch_seconds"]
        history.append(row)
        if resume_path:  # saved before the log line: a run stopped after that line resumes after this epoch
            save_resume(resume_path, run_id(cfg), precision, parts,
                        Progress(epoch, history, train_seconds, time.perf_counter() - started))
        if on_epoch:
            on_epoch(row)
        numbers = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("train_", "val_", "test_")))
        log(f"  epoch {epoch}/{cfg.train.epochs}  {numbers}  {row['epoch_seconds']:.1f}s")
    return history, train_seconds, started


def final_metrics(setup: Setup, history: list[dict], train_seconds: float, started: float) -> dict:
    """The training split re-measured in eval mode (no dropout, no augmentation), the last test numbers, costs."""
    final_train = evaluate(setup.model, setup.train, setup.batcher, setup.cfg.task)
    metrics = {f"train_{k}": v for k, v in final_train.items()}
    metrics |= {k: v for k, v in history[-1].items() if k.startswith(("val_", "test_"))}
    metrics |= {"val_images": len(setup.val)} if setup.val is not None else {}
    return metrics | {
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - started,
        "parameters": count_parameters(setup.model),
        "epochs": len(history),
        "train_images": len(setup.train),
        "precision": precision_name(setup.amp_dtype),
    }


def fit(cfg: RunConfig, dataset: Dataset, device: torch.device | str = "cpu", progress: bool = True,
        log: Callable[[str], None] = print, precision: str = "auto", folder: Path | str | None = None,
        on_epoch: EpochHook | None = None) -> FitResult:
    """Train the model a run config describes on a dataset, evaluating on its test split after every epoch.

    precision: "auto" (bf16 autocast where it pays), "bf16" or "fp32"; weights, optimiser state and losses stay fp32.
    folder: where to save the training state after every epoch (folder/RESUME_FILE) and resume from it when it is
    there, with the same result as an uninterrupted run; None: no epoch checkpoints.
    on_epoch: called with each epoch's history row (experiment tracking, lab/tracking.py); it must not touch the
    model, and nothing it does changes the run's numbers.
    """
    setup = prepare(cfg, dataset, device, precision)
    started = time.perf_counter()
    if setup.pca:
        history, train_seconds = fit_pca(setup)
        if on_epoch:
            on_epoch(history[0])
    else:
        history, train_seconds, started = train_epochs(setup, started, progress, log, folder, on_epoch)
    metrics = final_metrics(setup, history, train_seconds, started)
    return FitResult(setup.model.to(memory_format=torch.contiguous_format), metrics, history)
