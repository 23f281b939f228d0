"""What every command of `python -m lab` shares: the folder and device options, KEY=VALUE parsing, threads.

Standard library only at import time, so `python -m lab --help` starts at once; each command imports what it uses.
"""

import argparse
import tomllib

from lab.config import PRECISIONS, TRACKERS, ConfigError

THREADS_HELP = "a run's numbers repeat exactly at the same thread count"


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", help="run folders (default: LAB_RUNS_DIR or experiments/runs)")


def add_results_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", help="tables (default: LAB_RESULTS_DIR or experiments/results)")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="dataset root holding MNIST/raw, FashionMNIST/raw "
                                           "(default: LAB_DATA_DIR or data/; downloaded there if missing)")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """--runs-dir, --data-dir, --device, --no-progress, --precision: what a command that trains takes."""
    add_runs_dir(parser)
    add_data_dir(parser)
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda, else mps, else cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines still print)")
    add_precision(parser)
    parser.add_argument("--track", nargs="+", choices=(*TRACKERS, "none"), metavar="TRACKER",
                        help=f"also copy each run into experiment trackers as it trains: {', '.join(TRACKERS)} "
                             "(several allowed; each an extra: pip install '.[tensorboard]'); none: no tracking, "
                             "whatever a sweep file's track says. Written under <runs>/tracking/; see README")


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default=PRECISIONS[0], choices=PRECISIONS,
                        help="auto (default): bf16 autocast where the hardware computes bf16 natively (CUDA; CPUs "
                             "with AVX-512 BF16 or AMX; autoencoders stay fp32 on a CPU), else fp32")


def parse_assignment(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as TOML (0.01, true, [[16],[32]]), else as a bare string (relu)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{text!r}: expected KEY=VALUE, e.g. train.lr=0.01")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def set_threads(threads: int | None) -> None:
    """torch's CPU threads for this process (None: torch's default); results match only at equal thread counts."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads: must be >= 1, got {threads}")
        import torch
        torch.set_num_threads(threads)
