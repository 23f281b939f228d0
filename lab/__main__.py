"""The command line: python -m lab {sweep,train,results} ..."""

import argparse
import sys
import tomllib

from lab import paths
from lab.config import ConfigError, apply_overrides, default_config, run_id
from lab.data import DataError, load_dataset
from lab.sweep import DEFAULT_PROFILE, SweepError, datasets_for, load_sweeps, run_sweep, train_run

USAGE_ERROR = 2  # bad input: a sweep file, a KEY=VALUE, missing data


def _common(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument("--runs-dir", help="run folders (default: LAB_RUNS_DIR or experiments/runs)")
    if data:
        parser.add_argument("--data-dir", help="dataset root holding MNIST/raw, FashionMNIST/raw "
                                               "(default: LAB_DATA_DIR or data/; downloaded there if missing)")
        parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: cuda, else mps, else cpu)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines still print)")
        parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                            help="auto (default): bf16 autocast where the hardware computes bf16 natively, else fp32")


def parse_assignment(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as TOML (0.01, true, [[16],[32]]), else as a bare string (relu)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{text!r}: expected KEY=VALUE, e.g. train.lr=0.01")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def cmd_sweep(args: argparse.Namespace) -> int:
    sweeps = load_sweeps(args.files, args.profile)  # every file validated before anything runs
    runs_dir = paths.runs_dir(args.runs_dir)
    results_dir = paths.results_dir(args.results_dir)
    datasets = datasets_for([r for s in sweeps for r in s.runs], paths.data_dir(args.data_dir))
    from lab.results import summary, write_tables
    from lab.train import pick_device
    device = pick_device(args.device)
    for sweep in sweeps:
        run_sweep(sweep, runs_dir, datasets, device, progress=not args.no_progress, precision=args.precision)
        written = write_tables(sweep, runs_dir, results_dir)
        if written:
            print(f"{sweep.name}: {summary(written[0])}\n  table: {written[1]}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = dict(parse_assignment(a) for a in args.assignments)
    cfg = apply_overrides(default_config(str(overrides.pop("task", "classifier"))), overrides)
    from lab.models import build_model
    from lab.train import pick_device
    build_model(cfg)  # impossible shapes fail before data loading
    dataset = load_dataset(cfg.data.dataset, paths.data_dir(args.data_dir))
    runs_dir = paths.runs_dir(args.runs_dir)
    print(f"run {run_id(cfg)} -> {runs_dir / run_id(cfg)}")
    metrics = train_run(cfg, runs_dir, dataset, pick_device(args.device), progress=not args.no_progress,
                        precision=args.precision)
    for key in ("train_accuracy", "test_accuracy", "train_mse", "test_mse", "train_seconds", "parameters"):
        if key in metrics:
            print(f"{key:>15}: {metrics[key]:.4f}" if isinstance(metrics[key], float) else f"{key:>15}: {metrics[key]}")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from lab.results import summary, write_tables
    files = args.files or sorted(paths.EXPERIMENTS_DIR.glob("*.toml"))
    sweeps = load_sweeps(files, args.profile)
    runs_dir, results_dir = paths.runs_dir(args.runs_dir), paths.results_dir(args.results_dir)
    for sweep in sweeps:
        written = write_tables(sweep, runs_dir, results_dir)
        if written is None:
            print(f"{sweep.name}: no finished runs in {runs_dir}; table left as it was")
        else:
            table, path = written
            print(f"{sweep.name}: {len(table)} of {len(sweep.runs)} cells -> {path}\n  {summary(table)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sweep", help="train the runs of sweep files, skipping finished ones; rebuild their tables",
                       description="Train every unfinished run of the sweep files (all are checked first), "
                                   "then rebuild their tables. Interrupt it any time: rerun to resume.")
    p.add_argument("files", nargs="+", metavar="FILE", help="sweep files, e.g. experiments/cnn_hparams.toml")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="profile in the file, e.g. full (default: default)")
    p.add_argument("--results-dir", help="tables (default: LAB_RESULTS_DIR or experiments/results)")
    _common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("train", help="train one run from KEY=VALUE settings",
                       description="Train one run: defaults, then KEY=VALUE settings, e.g. task=autoencoder "
                                   "model.latent_dim=8 train.epochs=2, or model.preset=simple_cnn train.lr=0.003.")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("results", help="rebuild result tables from run folders",
                       description="Rebuild the tables of sweep files (default: all in experiments/) "
                                   "from the run folders, and print each sweep's best run.")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--results-dir", help="tables (default: LAB_RESULTS_DIR or experiments/results)")
    _common(p, data=False)
    p.set_defaults(func=cmd_results)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once in logs and pipes too
    try:
        return args.func(args)
    except (ConfigError, SweepError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
