"""The benchmark: time to 99% test accuracy (ours against the pytorch/examples MNIST tutorial), throughput and
peak memory per preset, the demo's classify latency, the demo app under load, the default sweeps' wall time, and
what experiment tracking costs.

    python -m lab.tools.bench [--quick] [--out PATH] [--seeds N] [--experiments] [--device D]

Writes PATH (default experiments/results/benchmark.csv: one row per measure), PATH's `_trials.csv` (one row per
seed of the time-to-accuracy runs) and `_env.json` (machine, CPU, torch, threads, device) beside it, atomically.
Every timed piece that counts process start-up runs in a fresh `python -m lab.tools.bench --child ...` process.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from lab import paths
from lab.cli import add_precision
from lab.report.benchmark import (
    SUMMARY_COLUMNS,
    TRIAL_COLUMNS,
    default_out,
    format_table,
    load_results,
    measured_by,
    output_paths,
)

if TYPE_CHECKING:  # lab.train loads in the children that train, not at start-up
    from lab.data import Split
    from lab.train import Setup

# The fastest preset to 99%: fast_cnn (16/32/64, batch norm, max pool), one epoch of one-cycle Adam, bf16 autocast
# where the hardware has it (precision "auto", the default). Batch 64 (938 steps) rather than the sweeps'
# 128: about 1.2x the time per epoch, but every seed tried reached 99.0% (0.9903-0.9917), where batch 128 at lr
# 0.005 left some seeds at 98.9%.
FASTEST = {"model.preset": "fast_cnn", "train.optimizer": "adam", "train.lr": 0.003, "train.schedule": "onecycle",
           "train.batch_size": 64, "train.epochs": 1}
FASTEST_MAX_EPOCHS = 3  # if one epoch falls short, the one-cycle schedule is stretched to 2, then 3 epochs
# The tutorial baseline: https://github.com/pytorch/examples/blob/main/mnist/main.py with its defaults.
BASELINE_BATCH, BASELINE_TEST_BATCH, BASELINE_LR, BASELINE_GAMMA = 64, 1000, 1.0, 0.7
SWEEP_FILES = paths.EXPERIMENT_SWEEPS  # what `make experiments` runs, in its order
# TARGET_ACCURACY (99%) is the report's, lab.report.analysis's; the functions import it when they run, as analysis
# loads pandas and each child's process_seconds counts its imports.
SECTIONS = ("accuracy", "baseline", "throughput", "latency", "load", "experiments", "tracking")
# What tracking costs (python -m lab sweep --track): the fastest config for 2 epochs, once per installed tracker.
TRACKING_RUN = FASTEST | {"train.epochs": 2}
TRACKING_QUICK_IMAGES = 10_000  # --quick trains on the first 10,000 images


# ---------------------------------------------------------------------------------------------- environment

def bench_environment(device: torch.device, precision: str) -> dict:
    """Where the benchmark ran: the training environment plus CPU model, cores, interop threads and the date."""
    from lab.device import autocast_dtype, environment, precision_name

    return environment(device) | {
        "cpu_cores": os.cpu_count(), "interop_threads": torch.get_num_interop_threads(),
        "precision": precision_name(autocast_dtype(precision, device)),
        "platform": platform.platform(), "date": datetime.now(UTC).isoformat(timespec="seconds")}


# ---------------------------------------------------------------------------------------------- children

def run_child(spec: dict, timeout: float) -> dict:
    """Run `python -m lab.tools.bench --child SPEC` in a fresh process; its JSON answer plus process_seconds.

    process_seconds runs from just before the process starts to the moment the child says it reached its goal
    (`reached_at`, a wall-clock time), or to its exit when it has no such moment.
    """
    started = time.time()
    # stdout carries the answer; stderr (progress lines, errors) goes straight to the terminal
    proc = subprocess.run([sys.executable, "-m", "lab.tools.bench", "--child", json.dumps(spec)],
                          stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=paths.ROOT,
                          env=os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [
                              str(paths.ROOT), os.environ.get("PYTHONPATH")]))})
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {spec['kind']} failed (exit {proc.returncode}); its error is above")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    answer["process_seconds"] = (answer.get("reached_at") or ended) - started
    return answer


def child_main(spec: dict) -> dict:
    """What a child process measures (spec["kind"]: fastest, baseline or throughput)."""
    kind = spec["kind"]
    if kind == "fastest":
        return _child_fastest(spec)
    if kind == "baseline":
        return _child_baseline(spec)
    if kind == "throughput":
        return _child_throughput(spec)
    raise ValueError(f"unknown benchmark child {kind!r}")


def _child_fastest(spec: dict) -> dict:
    """Train the fastest config; note the wall time at which each epoch's test accuracy was known."""
    from lab.config import apply_overrides, default_config
    from lab.data import load_dataset
    from lab.train import fit

    device = torch.device(spec["device"])
    dataset = load_dataset("mnist", spec["data_dir"])
    epoch_done: list[float] = []
    earlier_attempts = 0.0  # training seconds of shorter schedules that fell short: they count, as a user pays them
    for epochs in range(spec["epochs"], spec["max_epochs"] + 1):
        cfg = apply_overrides(default_config(), spec["overrides"] | {"seed": spec["seed"], "train.epochs": epochs})
        epoch_done.clear()
        # fit logs one line per epoch right after evaluating it: the moment that epoch's test accuracy exists
        def log(line: str) -> None:
            epoch_done.append(time.time())
            print(f"  {line.strip()}", file=sys.stderr, flush=True)

        result = fit(cfg, dataset, device, progress=False, log=log, precision=spec["precision"])
        accuracies = [row["test_accuracy"] for row in result.history]
        reached = next((i for i, a in enumerate(accuracies) if a >= spec["target"]), None)
        if reached is not None or epochs == spec["max_epochs"]:
            break
        earlier_attempts += result.metrics["train_seconds"]
    seconds = [row["epoch_seconds"] for row in result.history]
    last = reached if reached is not None else len(seconds) - 1
    return {"reached": reached is not None, "epochs": epochs, "test_accuracy": accuracies[last],
            "train_seconds": earlier_attempts + sum(seconds[:last + 1]),
            "reached_at": epoch_done[last] if reached is not None else None, "precision": result.metrics["precision"]}


class Net(nn.Module):
    """The pytorch/examples MNIST network, as the tutorial writes it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 12 * 12, 128)  # 28 -> 26 -> 24 (two 3x3 convs) -> 12 (max pool)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)  # (B, 9216)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def _child_baseline(spec: dict) -> dict:
    """The tutorial pipeline: torchvision MNIST + DataLoader + ToTensor/Normalize, Adadelta, StepLR, batch 64."""
    from torchvision import datasets, transforms

    legacy = Path(spec["data_dir"]) / "MNIST" / "processed"
    if legacy.exists():  # torchvision's MNIST class would unpickle these instead of reading the IDX files
        raise RuntimeError(f"{legacy}: torchvision's legacy .pt files are pickles and are never loaded; delete the "
                           f"folder (the IDX files in MNIST/raw are what the benchmark reads)")
    torch.manual_seed(spec["seed"])
    device = torch.device(spec["device"])
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(spec["data_dir"], train=True, download=True, transform=transform)
    test_set = datasets.MNIST(spec["data_dir"], train=False, transform=transform)
    loader_kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BASELINE_BATCH, shuffle=True, **loader_kwargs)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=BASELINE_TEST_BATCH, **loader_kwargs)
    model = Net().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=BASELINE_LR)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=BASELINE_GAMMA)
    train_seconds, accuracy, reached_at, epochs = 0.0, 0.0, None, 0
    for epoch in range(1, spec["max_epochs"] + 1):
        epochs = epoch
        model.train()
        t0 = time.perf_counter()
        for batch, (data, target) in enumerate(train_loader):
            if spec["max_batches"] and batch >= spec["max_batches"]:
                break
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - t0
        scheduler.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                data, target = data.to(device), target.to(device)
                correct += model(data).argmax(dim=1).eq(target).sum().item()
        accuracy = correct / len(test_set)
        print(f"  baseline epoch {epoch}: test accuracy {accuracy:.4f}, {train_seconds:.1f} s training so far",
              file=sys.stderr, flush=True)
        if accuracy >= spec["target"]:
            reached_at = time.time()
            break
    return {"reached": reached_at is not None, "epochs": epochs, "test_accuracy": accuracy,
            "train_seconds": train_seconds, "reached_at": reached_at}


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return _peak_rss_mb()


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _child_throughput(spec: dict) -> dict:
    """Train steps and inference passes of one config at its batch size: images/s and peak memory."""
    from lab.config import from_dict
    from lab.data import load_dataset
    from lab.device import precision_name
    from lab.train import prepare

    cfg = from_dict(spec["config"])
    setup = prepare(cfg, load_dataset(cfg.data.dataset, spec["data_dir"]), spec["device"], spec["precision"])
    test = setup.test.head(spec["test_images"])
    if setup.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(setup.device)
    rss_before = _rss_mb()
    train_seconds, images = _time_training(setup, spec)
    infer_seconds, passes = _time_inference(setup, test, spec["seconds"])
    peak, above = _peak_memory(setup.device, rss_before)
    return {"train_images_per_s": images / train_seconds, "infer_images_per_s": passes * len(test) / infer_seconds,
            "peak_memory_mb": peak, "peak_above_start_mb": above, "precision": precision_name(setup.amp_dtype)}


def _sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a timer stops when it is done."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time_training(setup: "Setup", spec: dict) -> tuple[float, int]:
    """(seconds, images) of the timed training steps after spec's warm-up steps; PCA: its one closed-form fit."""
    from lab.train import make_optimizer, train_step

    model, train, batcher, task = setup.model, setup.train, setup.batcher, setup.cfg.task
    if setup.pca:  # closed form: one fit on every training image counts as one "step"
        x = batcher(train.images, augment=False)[1]
        t0 = time.perf_counter()
        model.fit(x)
        return time.perf_counter() - t0, len(train)
    bs = setup.cfg.train.batch_size
    model.train()
    optimizer = make_optimizer(model.parameters(), setup.cfg.train)
    order = torch.randperm(len(train), generator=setup.generator).to(setup.device)

    def step(i: int) -> None:
        idx = order[(i * bs) % (len(train) - bs):][:bs]
        train_step(model, optimizer, batcher, train.images[idx], train.labels[idx], task, setup.amp_dtype, idx)

    for i in range(spec["warmup_steps"]):  # first steps pick kernels (oneDNN, cudnn.benchmark)
        step(i)
    _sync(setup.device)
    steps, t0 = 0, time.perf_counter()
    while steps < spec["min_steps"] or time.perf_counter() - t0 < spec["seconds"]:
        step(spec["warmup_steps"] + steps)
        steps += 1
    _sync(setup.device)
    return time.perf_counter() - t0, steps * bs


def _time_inference(setup: "Setup", test: "Split", seconds: float) -> tuple[float, int]:
    """(seconds, passes) of evaluation passes over test, at least one and for at least `seconds`."""
    from lab.train import evaluate

    # a warm-up pass; fp32, as fit's evaluations and checkpoints compute
    evaluate(setup.model, test, setup.batcher, setup.cfg.task)
    _sync(setup.device)
    passes, t0 = 0, time.perf_counter()
    while passes < 1 or time.perf_counter() - t0 < seconds:
        evaluate(setup.model, test, setup.batcher, setup.cfg.task)
        passes += 1
    _sync(setup.device)
    return time.perf_counter() - t0, passes


def _peak_memory(device: torch.device, rss_before: float) -> tuple[float, float | None]:
    """(peak MB, peak above rss_before): torch's allocations on a GPU (no second figure), else the process RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, None
    peak = _peak_rss_mb()
    return peak, max(0.0, peak - rss_before)


# ---------------------------------------------------------------------------------------------- sections

def _row(section: str, name: str, measure: str, value, unit: str, low=None, high=None, n=None, note: str = "") -> dict:
    return {"section": section, "name": name, "measure": measure, "value": value, "low": low, "high": high,
            "n": n, "unit": unit, "note": note}


def _spread(section: str, name: str, measure: str, values: list[float], unit: str, note: str = "") -> dict:
    """Median, min and max of values (NaN when there are none)."""
    if not values:
        return _row(section, name, measure, float("nan"), unit, n=0, note=note)
    return _row(section, name, measure, statistics.median(values), unit, min(values), max(values), len(values), note)


def _time_rows(section: str, name: str, trials: list[dict], note: str) -> list[dict]:
    """Seconds to 99% (over the runs that reached it) and final accuracy (over all) of one pipeline's seeds."""
    from lab.report.analysis import TARGET_ACCURACY

    reached = [t for t in trials if t["reached"]]
    if len(reached) < len(trials):
        note = f"{note}; {len(trials) - len(reached)} of {len(trials)} runs did not reach {TARGET_ACCURACY:.1%}"
    return [
        _spread(section, name, "train_seconds_to_99", [t["train_seconds"] for t in reached], "s", note),
        _spread(section, name, "process_seconds_to_99", [t["process_seconds"] for t in reached], "s",
                "fresh python process: imports, data load, training, test passes"),
        _spread(section, name, "final_test_accuracy", [t["test_accuracy"] for t in trials], "fraction"),
    ]


def bench_fastest(seeds: int, device: torch.device, data_dir: Path, precision: str,
                  log) -> tuple[list[dict], list[dict]]:
    """Item 1: the fastest config to 99% test accuracy, one fresh process per seed."""
    from lab.report.analysis import TARGET_ACCURACY

    name = "fast_cnn, 1 epoch, batch 64"
    trials = []
    for seed in range(seeds):
        spec = {"kind": "fastest", "seed": seed, "device": str(device), "data_dir": str(data_dir),
                "overrides": FASTEST, "epochs": FASTEST["train.epochs"], "max_epochs": FASTEST_MAX_EPOCHS,
                "target": TARGET_ACCURACY, "precision": precision}
        answer = run_child(spec, timeout=1800)
        trials.append({"section": "accuracy", "name": name, "seed": seed} | answer)
        log(f"  ours seed {seed}: test accuracy {answer['test_accuracy']:.4f} after {answer['epochs']} epoch(s), "
            f"{answer['train_seconds']:.1f} s training, {answer['process_seconds']:.1f} s process "
            f"({answer['precision']})")
    precision = trials[0]["precision"] if trials else "?"
    return _time_rows("accuracy", name, trials, f"{precision}, one-cycle Adam lr 0.003, {seeds} seed(s)"), trials


def bench_baseline(seeds: int, device: torch.device, data_dir: Path, max_epochs: int, max_batches: int,
                   log) -> tuple[list[dict], list[dict]]:
    """Item 2: the pytorch/examples tutorial until it reaches 99% (or its epoch/batch cap)."""
    from lab.report.analysis import TARGET_ACCURACY

    name = "pytorch/examples mnist"
    trials = []
    for seed in range(seeds):
        spec = {"kind": "baseline", "seed": seed, "device": str(device), "data_dir": str(data_dir),
                "max_epochs": max_epochs, "max_batches": max_batches, "target": TARGET_ACCURACY}
        answer = run_child(spec, timeout=7200)
        trials.append({"section": "baseline", "name": name, "seed": seed} | answer)
        log(f"  baseline seed {seed}: test accuracy {answer['test_accuracy']:.4f} after {answer['epochs']} epoch(s), "
            f"{answer['train_seconds']:.1f} s training, {answer['process_seconds']:.1f} s process")
    cap = f"capped at {max_batches} batches per epoch" if max_batches else f"at most {max_epochs} epochs"
    return _time_rows("baseline", name, trials, f"Adadelta, batch 64, {seeds} seed(s), {cap}"), trials


def ratio_rows(rows: list[dict]) -> list[dict]:
    """How many times faster ours reaches 99% than the baseline (medians), for training and whole process."""
    out = []
    for measure in ("train_seconds_to_99", "process_seconds_to_99"):
        ours = next((r for r in rows if r["section"] == "accuracy" and r["measure"] == measure), None)
        base = next((r for r in rows if r["section"] == "baseline" and r["measure"] == measure), None)
        ok = ours and base and ours["n"] and base["n"]
        value = base["value"] / ours["value"] if ok else float("nan")
        out.append(_row("ratio", "baseline / ours", measure.replace("_to_99", "_ratio"), value, "x",
                        note="" if ok else "one side did not reach 99%"))
    return out


def throughput_configs() -> list[tuple[str, dict]]:
    """(label, config dict) for each preset at each batch size the sweeps use (default and full profiles)."""
    from lab.config import to_dict
    from lab.sweep import load_sweep

    seen: dict[tuple, tuple[str, dict]] = {}
    for stem in SWEEP_FILES:
        path = paths.EXPERIMENTS_DIR / f"{stem}.toml"
        for profile in ("default", "full"):
            for run in load_sweep(path, profile).runs:
                key = (run.config.task, run.config.model.preset, run.config.train.batch_size)
                if key not in seen:
                    seen[key] = (f"{key[1]} @ {key[2]}", to_dict(run.config))
    return [seen[k] for k in sorted(seen, key=lambda k: (k[0] != "classifier", k[1:]))]  # classifiers first


def bench_throughput(device: torch.device, data_dir: Path, quick: bool, precision: str, log) -> list[dict]:
    """Item 3: images/s training and inferring, and peak memory, one fresh process per preset and batch size."""
    rows = []
    for label, config in throughput_configs():
        if quick and config["train"]["batch_size"] > 512:
            continue  # the GPU batch sizes take long steps on a CPU
        spec = {"kind": "throughput", "config": config, "device": str(device), "data_dir": str(data_dir),
                "warmup_steps": 1 if quick else 3, "min_steps": 2 if quick else 5, "seconds": 0.5 if quick else 4.0,
                "test_images": 1024 if quick else 10_000, "precision": precision}
        answer = run_child(spec, timeout=900)
        memory_note = ("peak RSS of the whole process (torch, MNIST, model, training)"
                       if device.type != "cuda" else "torch.cuda.max_memory_allocated")
        rows += [_row("throughput", label, "train_images_per_s", answer["train_images_per_s"], "images/s",
                      note=answer["precision"]),
                 _row("throughput", label, "infer_images_per_s", answer["infer_images_per_s"], "images/s",
                      note="fp32 evaluation batches, as a loaded checkpoint computes"),
                 _row("throughput", label, "peak_memory_mb", answer["peak_memory_mb"], "MB", note=memory_note)]
        if answer["peak_above_start_mb"] is not None:
            rows.append(_row("throughput", label, "peak_memory_above_start_mb", answer["peak_above_start_mb"], "MB",
                             note="peak RSS minus the RSS after loading data and building the model"))
        log(f"  {label}: train {answer['train_images_per_s']:,.0f} images/s, "
            f"infer {answer['infer_images_per_s']:,.0f} images/s, peak {answer['peak_memory_mb']:,.0f} MB")
    return rows


def bench_latency(calls: int, device: torch.device, data_dir: Path, log) -> list[dict]:
    """Item 4: the demo's classify path, raw 280x280 canvas -> probabilities, p50 and p95 over many calls, on as
    many torch threads as the app gives a request."""
    section, measure = "latency", "classify_ms"
    try:
        from lab.demo import REQUEST_THREADS
        from lab.demo.canvas import mnist_to_canvas
    except ImportError as error:
        return [_row(section, "demo classify", measure, float("nan"), "ms",
                     note=f"skipped: no lab.demo.canvas ({error})")]
    from lab.checkpoints import find_checkpoints
    from lab.data import load_dataset

    folder = paths.demo_checkpoints()
    checkpoints, _ = find_checkpoints(folder, task="classifier", device=device)
    if not checkpoints:
        return [_row(section, "demo classify", measure, float("nan"), "ms",
                     note=f"skipped: no classifier checkpoints in {folder}")]
    canvas = mnist_to_canvas(load_dataset("mnist", str(data_dir)).test.images[0])  # (280, 280) black ink on white
    threads = torch.get_num_threads()
    torch.set_num_threads(REQUEST_THREADS)  # as the app serves each request
    try:
        return _latency_rows(checkpoints, canvas, calls, log, REQUEST_THREADS)
    finally:
        torch.set_num_threads(threads)


def _latency_rows(checkpoints: list, canvas, calls: int, log, threads: int) -> list[dict]:
    """bench_latency's rows for each classifier checkpoint: the plain and the live classify path on canvas, timed on
    threads torch threads (the caller sets them)."""
    from lab.demo.canvas import canvas_to_mnist
    from lab.stats import latency_ms

    section, served = "latency", f"; {threads} torch thread, as the app serves a request"
    rows = []
    for checkpoint in checkpoints:
        times = []
        for _ in range(calls + 10):
            t0 = time.perf_counter()
            probabilities = checkpoint.probabilities(canvas_to_mnist(canvas)[None])  # (1, 10)
            probabilities.cpu()
            times.append(time.perf_counter() - t0)
        stats = latency_ms(times[10:])  # the first calls warm the kernels up
        name = f"{checkpoint.config.model.preset} {checkpoint.run_id[-10:]}"
        rows.append(_row(section, name, "classify_ms_p50", stats["p50_ms"], "ms", low=stats["min_ms"],
                         high=stats["max_ms"], n=stats["n"],
                         note="280x280 grey canvas -> canvas_to_mnist -> probabilities; low/high: min/max" + served))
        rows.append(_row(section, name, "classify_ms_p95", stats["p95_ms"], "ms", n=stats["n"]))
        log(f"  {name}: p50 {stats['p50_ms']:.2f} ms, p95 {stats['p95_ms']:.2f} ms over {calls} calls")
        live = latency_ms(_time_live(checkpoint, canvas, calls))
        rows.append(_row(section, name, "live_ms_p50", live["p50_ms"], "ms", low=live["min_ms"], high=live["max_ms"],
                         n=live["n"], note="what each stroke costs: canvas_to_mnist -> probabilities and saliency "
                                           "(one forward and backward pass) -> the overlay image; low/high: min/max"
                                           + served))
        rows.append(_row(section, name, "live_ms_p95", live["p95_ms"], "ms", n=live["n"]))
        log(f"  {name} live (with saliency): p50 {live['p50_ms']:.2f} ms, p95 {live['p95_ms']:.2f} ms "
            f"(the demo aims at p95 under {LIVE_P95_MS:g} ms)")
    return rows


LIVE_P95_MS = 5.0  # the demo's budget for one stroke's classify, server side (issue: under 5 ms p95)


def _time_live(checkpoint, canvas, calls: int) -> list[float]:
    """Seconds of the demo's live classify compute per call, after 10 warm-up calls: canvas -> 28x28 input ->
    probabilities and saliency in one pass -> the overlay image the app shows."""
    from lab.demo.canvas import canvas_to_mnist
    from lab.demo.explain import overlay, saliency
    times = []
    for _ in range(calls + 10):
        t0 = time.perf_counter()
        image = torch.as_tensor(canvas_to_mnist(canvas))
        probabilities, heat = saliency(checkpoint, image)
        overlay(image, heat, 8)
        probabilities.tolist()
        times.append(time.perf_counter() - t0)
    return times[10:]


def bench_load(clients: int, requests: int, log) -> list[dict]:
    """Item 5: the demo app under load through gradio_client: errors, latency p50/p95, throughput."""
    section = "load"
    try:
        from lab.tools.loadtest import MIX, LoadError, format_summary, load_test
    except ImportError as error:  # gradio_client is in the demo extra
        return [_row(section, "demo app", "latency_ms_p50", float("nan"), "ms", note=f"skipped: {error}")]
    try:
        summary = load_test(clients, requests, log=lambda line: log(f"  {line}"))
    except LoadError as error:
        return [_row(section, "demo app", "latency_ms_p50", float("nan"), "ms", note=f"skipped: {error}")]
    name = f"demo app, {clients} clients x {requests} requests"
    n = summary["requests"]
    mix = ", ".join(f"{endpoint} {share:.0%}" for endpoint, share in MIX)
    everything = summary["endpoints"]["all"]
    rows = [
        _row(section, name, "errors", summary["errors"], "requests", n=n, note="; ".join(summary["error_examples"])),
        _row(section, name, "latency_ms_p50", everything["p50_ms"], "ms", n=everything["n"],
             note=f"gradio_client on 127.0.0.1, one thread per client, mixed endpoints ({mix})"),
        _row(section, name, "latency_ms_p95", everything["p95_ms"], "ms", high=everything["max_ms"],
             n=everything["n"], note="high: the slowest request"),
        _row(section, name, "requests_per_s", summary["requests_per_second"], "requests/s", n=n,
             note=f"{summary['wall_seconds']:.1f} s wall for all requests"),
        _row(section, name, "server_cpu_ms_per_request", summary["server_cpu_ms_per_request"], "ms", n=n,
             note="the app's CPU time (all its threads) over the requests: what one request costs the server"),
        _row(section, name, "client_cpu_ms_per_request", summary["client_cpu_ms_per_request"], "ms", n=n,
             note="the load generator's own CPU time (gradio_client), on the same cores as the app"),
        _row(section, name, "classify_accuracy", summary["classify_accuracy"], "fraction",
             n=summary["endpoints"]["classify"]["n"], note="real MNIST test digits drawn on the 280 px canvas"),
    ]
    for endpoint, _ in MIX:
        stats = summary["endpoints"][endpoint]
        rows.append(_row(section, f"{name}: /{endpoint}", "latency_ms_p50", stats["p50_ms"], "ms", n=stats["n"]))
        rows.append(_row(section, f"{name}: /{endpoint}", "latency_ms_p95", stats["p95_ms"], "ms",
                         high=stats["max_ms"], n=stats["n"]))
    for line in format_summary(summary).splitlines():
        log(f"  {line}")
    return rows


def bench_experiments(run: bool, device: torch.device, data_dir: Path, log, precision: str = "auto") -> list[dict]:
    """Item 5: per-sweep wall time of the default profile: trained now into a temp folder, or from the tables."""
    from lab.runner import datasets_for, run_sweep
    from lab.sweep import load_sweeps

    sweeps = load_sweeps([paths.EXPERIMENTS_DIR / f"{stem}.toml" for stem in SWEEP_FILES])
    rows = []
    if run:
        from lab.results import summary, write_tables

        with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
            runs_dir, results_dir = Path(tmp) / "runs", Path(tmp) / "results"
            datasets = datasets_for([r for s in sweeps for r in s.runs], data_dir)
            for sweep in sweeps:
                t0 = time.perf_counter()
                counts = run_sweep(sweep, runs_dir, datasets, device, progress=False, log=log, precision=precision)
                seconds = time.perf_counter() - t0
                table = write_tables(sweep, runs_dir, results_dir)[0]
                rows.append(_row("experiments", sweep.name, "wall_seconds", seconds, "s", n=counts["trained"],
                                 note=f"trained now; {summary(table)}"))
    else:
        import pandas as pd

        from lab.results import table_paths

        for sweep in sweeps:
            path = table_paths(paths.results_dir(), sweep.name)[0]
            if not path.is_file():
                rows.append(_row("experiments", sweep.name, "wall_seconds", float("nan"), "s",
                                 note=f"no table {path}"))
                continue
            table = pd.read_csv(path).drop_duplicates("run_id")
            rows.append(_row("experiments", sweep.name, "wall_seconds", float(table["total_seconds"].sum()), "s",
                             n=len(table), note=f"sum of the runs' total_seconds in {path.name} (--experiments "
                                               f"retrains and times it)"))
    total = sum(r["value"] for r in rows)
    rows.append(_row("experiments", "make experiments (default)", "wall_seconds", total, "s",
                     n=sum(r["n"] or 0 for r in rows), note=rows[0]["note"].split(";")[0] if run else
                     "from the committed tables"))
    return rows


# ---------------------------------------------------------------------------------------------- output

def bench_tracking(device: torch.device, data_dir: Path, quick: bool, precision: str, log) -> list[dict]:
    """Item 7: what copying a run into each installed tracker costs, per epoch and per run, beside an epoch's time.

    W&B runs offline here (WANDB_MODE=offline, whatever the environment says): a benchmark never uploads.
    """
    import importlib.util

    from lab.config import TRACKERS, apply_overrides, default_config
    from lab.data import load_dataset
    from lab.runner import train_run
    from lab.tracking import Tracking

    section, rows = "tracking", []
    dataset = load_dataset("mnist", data_dir)
    installed = [name for name in TRACKERS if importlib.util.find_spec(name)]
    saved = os.environ.get("WANDB_MODE")
    os.environ["WANDB_MODE"] = "offline"
    try:
        for seed, name in enumerate(installed):
            cfg = apply_overrides(default_config(), TRACKING_RUN | {"seed": seed} |
                                  ({"data.train_limit": TRACKING_QUICK_IMAGES} if quick else {}))
            with tempfile.TemporaryDirectory() as tmp:
                tracking = Tracking((name,), Path(tmp), "bench", log)
                metrics = train_run(cfg, Path(tmp), dataset, device, progress=False, log=lambda _: None,
                                    precision=precision, tracking=tracking)
            epoch = metrics["train_seconds"] / metrics["epochs"]
            per_epoch = tracking.seconds["epoch"][name] / max(tracking.epochs, 1)
            rows += [
                _row(section, name, "seconds_per_epoch", per_epoch, "s", n=tracking.epochs,
                     note=f"copying an epoch's row; {per_epoch / epoch:.2%} of the {epoch:.1f} s the epoch trained"),
                _row(section, name, "seconds_per_run", tracking.seconds["run"][name], "s", n=1,
                     note="opening the tracked run, the final metrics and picture, closing"),
                _row(section, name, "picture_seconds", tracking.picture_seconds, "s", n=1,
                     note="drawing the end picture from the run folder, once per run whichever trackers"),
            ]
            log(f"  {name}: {per_epoch * 1000:.1f} ms per epoch ({per_epoch / epoch:.2%} of an epoch), "
                f"{tracking.seconds['run'][name]:.2f} s per run, picture {tracking.picture_seconds:.2f} s")
    finally:
        os.environ.pop("WANDB_MODE") if saved is None else os.environ.__setitem__("WANDB_MODE", saved)
    return rows or [_row(section, "no tracker", "seconds_per_epoch", float("nan"), "s",
                         note="skipped: no tracker installed (pip install '.[tensorboard]')")]


def keep_other_sections(out: Path, rows: list[dict], trials: list[dict], sections: list[str],
                        env: dict) -> tuple[list[dict], list[dict]]:
    """Rows and trials of the sections not run now, kept from the files at out (a partial run replaces only its own)."""
    import pandas as pd

    old_summary, old_trials, old_env = load_results(out)
    if old_summary is None:
        return rows, trials
    ran = set(sections) | ({"ratio"} if {"accuracy", "baseline"} & set(sections) else set())
    kept = old_summary[~old_summary["section"].isin(ran)]
    if kept.empty:
        return rows, trials
    env["kept_sections"] = sorted(set(kept["section"]))
    env["kept_from"] = {section: measured_by(old_env or {}, section) for section in env["kept_sections"]}
    kept_rows = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in kept.to_dict("records")]
    kept_trials = [] if old_trials is None else old_trials[~old_trials["section"].isin(ran)].to_dict("records")
    order = {s: i for i, s in enumerate(("accuracy", "baseline", "ratio", "throughput", "latency", "load",
                                         "experiments"))}
    merged = sorted(kept_rows + rows, key=lambda r: order.get(r["section"], len(order)))  # stable: keeps row order
    return merged, kept_trials + trials


def write_results(out: Path, rows: list[dict], trials: list[dict], env: dict) -> None:
    """The three files, each atomically."""
    import pandas as pd

    from lab.run_folder import write_atomic, write_json

    summary_path, trials_path, env_path = output_paths(out)
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    trial_table = pd.DataFrame(trials).reindex(columns=TRIAL_COLUMNS)
    write_json(env_path, env)
    write_atomic(trials_path, lambda p: trial_table.to_csv(p, index=False, float_format="%.6g"))
    write_atomic(summary_path, lambda p: summary.to_csv(p, index=False, float_format="%.6g"))


# ---------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    """The command line: what to measure, how long, and where to write it."""
    parser = argparse.ArgumentParser(prog="python -m lab.tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short run for CI (under two minutes): one seed, a capped baseline, short timings")
    parser.add_argument("--out", help="summary CSV (default: LAB_RESULTS_DIR or experiments/results/benchmark.csv)")
    parser.add_argument("--seeds", type=int, help="seeds of the fastest config (default 5; --quick 1)")
    parser.add_argument("--baseline-seeds", type=int, default=1, help="seeds of the tutorial baseline (default 1)")
    parser.add_argument("--baseline-epochs", type=int,
                        help="the baseline's epoch cap (default 14, the tutorial's own; --quick 1)")
    parser.add_argument("--baseline-batches", type=int,
                        help="cap the baseline's batches per epoch (default: none; --quick 200)")
    parser.add_argument("--latency-calls", type=int, help="classify calls timed (default 1000; --quick 200)")
    parser.add_argument("--load-clients", type=int, help="concurrent demo clients of the load test (default 20; "
                                                          "--quick 4)")
    parser.add_argument("--load-requests", type=int, help="requests per client (default 50; --quick 10)")
    parser.add_argument("--experiments", action="store_true",
                        help="train the default profile of the sweeps into a temp folder and time each sweep "
                             "(about 20 minutes on 2 CPU cores); without it the tables' run times are summed")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: cuda, else mps, else cpu)")
    add_precision(parser)
    parser.add_argument("--data-dir", help="dataset root (default: LAB_DATA_DIR or data/)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    return parser


@dataclass
class Settings:
    """The options of one benchmark run, with --quick's or the full run's defaults filled in."""

    sections: list[str]
    quick: bool
    seeds: int
    baseline_seeds: int
    baseline_epochs: int
    baseline_batches: int
    latency_calls: int
    load_clients: int
    load_requests: int
    experiments: bool  # retrain the sweeps rather than sum their tables' run times
    precision: str
    device: torch.device
    data_dir: Path
    out: Path


def check_options(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, or None; checked before any work starts."""
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        return f"--sections: unknown {', '.join(unknown)} (choose from {', '.join(SECTIONS)})"
    for flag in ("seeds", "baseline_seeds", "baseline_epochs", "latency_calls", "load_clients", "load_requests"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            return f"--{flag.replace('_', '-')}: must be at least 1, got {value}"
    return None


def settings_from(args: argparse.Namespace) -> Settings:
    """Checked options -> Settings: the defaults (shorter with --quick), the device, the data and output paths."""
    from lab.device import pick_device

    quick = args.quick
    return Settings(
        sections=[s.strip() for s in args.sections.split(",") if s.strip()], quick=quick,
        seeds=args.seeds or (1 if quick else 5), baseline_seeds=args.baseline_seeds,
        baseline_epochs=args.baseline_epochs or (1 if quick else 14),
        baseline_batches=args.baseline_batches if args.baseline_batches is not None else (200 if quick else 0),
        latency_calls=args.latency_calls or (200 if quick else 1000),
        load_clients=args.load_clients or (4 if quick else 20),
        load_requests=args.load_requests or (10 if quick else 50),
        experiments=args.experiments, precision=args.precision, device=pick_device(args.device),
        data_dir=paths.data_dir(args.data_dir), out=Path(args.out) if args.out else default_out())


def run_sections(s: Settings, log) -> tuple[list[dict], list[dict]]:
    """(summary rows, per-seed trials) of the chosen sections, in the order the table shows them."""
    from lab.report.analysis import TARGET_ACCURACY

    rows: list[dict] = []
    trials: list[dict] = []
    if "accuracy" in s.sections:
        log(f"1. time to {TARGET_ACCURACY:.1%}: fastest config, {s.seeds} seed(s)")
        new_rows, new_trials = bench_fastest(s.seeds, s.device, s.data_dir, s.precision, log)
        rows, trials = rows + new_rows, trials + new_trials
    if "baseline" in s.sections:
        log(f"2. the same for the pytorch/examples tutorial, {s.baseline_seeds} seed(s)")
        new_rows, new_trials = bench_baseline(s.baseline_seeds, s.device, s.data_dir, s.baseline_epochs,
                                              s.baseline_batches, log)
        rows, trials = rows + new_rows, trials + new_trials
        if "accuracy" in s.sections:
            rows += ratio_rows(rows)
    if "throughput" in s.sections:
        log("3. throughput and peak memory per preset and batch size")
        rows += bench_throughput(s.device, s.data_dir, s.quick, s.precision, log)
    if "latency" in s.sections:
        log(f"4. demo classify latency, {s.latency_calls} calls")
        rows += bench_latency(s.latency_calls, s.device, s.data_dir, log)
    if "load" in s.sections:
        log(f"5. the demo app under load: {s.load_clients} clients x {s.load_requests} requests through gradio_client")
        rows += bench_load(s.load_clients, s.load_requests, log)
    if "experiments" in s.sections:
        log("6. default make experiments profile, per sweep" + (" (training it now)" if s.experiments else ""))
        rows += bench_experiments(s.experiments, s.device, s.data_dir, log, s.precision)
    if "tracking" in s.sections:
        log("7. experiment tracking: seconds per epoch and per run of each installed tracker")
        rows += bench_tracking(s.device, s.data_dir, s.quick, s.precision, log)
    return rows, trials


def save_and_show(s: Settings, rows: list[dict], trials: list[dict], env: dict) -> None:
    """Write the three files (keeping the sections not run now) and print the table."""
    if set(s.sections) != set(SECTIONS):
        rows, trials = keep_other_sections(s.out, rows, trials, s.sections, env)
    write_results(s.out, rows, trials, env)
    print()
    print(format_table(rows))
    print(f"\nwritten: {', '.join(str(p) for p in output_paths(s.out))} ({env['bench_seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    """The benchmark's command line; with --child, one measurement of a parent run."""
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0
    error = check_options(args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from lab.data import load_dataset

    settings = settings_from(args)
    load_dataset("mnist", settings.data_dir)  # missing data fails (or downloads) before anything is timed
    env = bench_environment(settings.device, settings.precision) | {"quick": settings.quick,
                                                                     "sections": settings.sections}
    print(f"benchmark on {env['cpu']} ({env['cpu_cores']} cores), {env['device']}, torch {env['torch_version']}, "
          f"{env['threads']} threads, {env['precision']}{', quick' if settings.quick else ''}", flush=True)
    started = time.perf_counter()
    rows, trials = run_sections(settings, log=lambda line: print(line, flush=True))
    env["bench_seconds"] = round(time.perf_counter() - started, 1)
    save_and_show(settings, rows, trials, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
