"""The command line: python -m lab {sweep,train,results,verify} ..., and the demo's commands (lab/demo/commands.py)."""

import argparse
import sys
from pathlib import Path

from lab import paths
from lab.cli import (
    THREADS_HELP,
    add_data_dir,
    add_results_dir,
    add_runs_dir,
    add_training_options,
    parse_assignment,
    set_threads,
)
from lab.config import apply_overrides, default_config, run_id
from lab.errors import USAGE_ERROR, LabError
from lab.sweep import DEFAULT_PROFILE

# ------------------------------------------------------------------------------------------------ sweep


def check_executor_options(args: argparse.Namespace) -> None:
    """Refuse bad numbers, and options the chosen executor would silently ignore, before any data is loaded."""
    from lab.ray_runner import ExecutorError, resources_with
    from lab.sweep import Resources
    resources_with(Resources(), args.cpus_per_run, args.gpus_per_run)
    if args.executor == "ray" and args.threads is not None:
        raise ExecutorError("--threads is for the local executor; a Ray run trains with its resources.cpus "
                            "threads (set them with [resources] cpus or --cpus-per-run)")
    ray_only = [f"--{k.replace('_', '-')}" for k in ("address", "cpus_per_run", "gpus_per_run")
                if getattr(args, k) is not None]
    if args.executor == "local" and ray_only:
        raise ExecutorError(f"{ray_only[0]} is for --executor ray")


def sweep_trackers(sweep, track: list[str] | None) -> tuple[str, ...]:
    """The trackers a sweep's runs are copied into: --track when given, else the sweep file's track; all installed."""
    from lab.tracking import check_trackers
    if track is not None:
        return check_trackers(track)
    return check_trackers(sweep.track, f"{sweep.path}: track")


def cmd_sweep(args: argparse.Namespace) -> int:
    from lab.device import pick_device
    from lab.results import summary, write_tables
    from lab.runner import datasets_for, run_sweep
    from lab.sweep import load_sweeps
    check_executor_options(args)
    set_threads(args.threads)  # local only (check_executor_options refuses --threads with ray); before any data
    sweeps = load_sweeps(args.files, args.profile)  # every file validated before anything runs
    tracks = {s.name: sweep_trackers(s, args.track) for s in sweeps}  # a missing tracker package fails here
    runs_dir = paths.runs_dir(args.runs_dir)
    results_dir = paths.results_dir(args.results_dir)
    datasets = datasets_for([r for s in sweeps for r in s.runs], paths.data_dir(args.data_dir))
    failed: list[str] = []
    if args.executor == "ray":
        from lab.ray_runner import run_on_ray
        failed = run_on_ray(sweeps, runs_dir, datasets, args.address, args.device, args.precision,
                            args.cpus_per_run, args.gpus_per_run, tracks=tracks)
    else:
        device = pick_device(args.device)
    for sweep in sweeps:
        if args.executor == "local":
            run_sweep(sweep, runs_dir, datasets, device, progress=not args.no_progress, precision=args.precision,
                      track=tracks[sweep.name])
        written = write_tables(sweep, runs_dir, results_dir)
        if written:
            print(f"{sweep.name}: {summary(written[0])}\n  table: {written[1]}")
            report_artifacts(*written, runs_dir, lambda name: datasets[name].test)
    for failure in failed:
        print(f"failed: {failure}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} run{'s' * (len(failed) > 1)} failed (the tables hold the runs that finished); fix the "
              "cause and run the same command again to train the rest", file=sys.stderr)
    return 1 if failed else 0


def add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train the runs of sweep files, skipping finished ones; rebuild their tables",
                       description="Train every unfinished run of the sweep files (all are checked first), "
                                   "then rebuild their tables. Interrupt it any time: rerun to resume.")
    p.add_argument("files", nargs="+", metavar="FILE", help="sweep files, e.g. experiments/cnn_hparams.toml")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="profile in the file, e.g. full (default: default)")
    add_results_dir(p)
    add_training_options(p)
    p.add_argument("--threads", type=int, help=f"torch threads (local executor; default: torch's default); "
                                               f"{THREADS_HELP}")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default): one run after another here; ray: every run a Ray task")
    p.add_argument("--address", help="Ray cluster to join: auto (the one `ray start` joined here) or HEAD:6379 "
                                     "(default: start Ray on this machine's cores for the sweep)")
    p.add_argument("--cpus-per-run", type=int, help="Ray: CPUs (and torch threads) per run, instead of the "
                                                    "sweep files' [resources] cpus (default 1)")
    p.add_argument("--gpus-per-run", type=float, help="Ray: GPUs per run, e.g. 0.25 to share one, instead of "
                                                      "[resources] gpus (default 0)")
    p.set_defaults(func=cmd_sweep)


# ------------------------------------------------------------------------------------------------ train

TRAIN_GROUP = "train"  # the tracked group (W&B group, MLflow experiment, TensorBoard folder) of single runs
TRAIN_PRINTED = ("train_accuracy", "test_accuracy", "train_mse", "test_mse", "train_seconds", "parameters")


def cmd_train(args: argparse.Namespace) -> int:
    from lab.data import load_dataset
    from lab.device import pick_device
    from lab.models import build_model
    from lab.runner import train_run
    from lab.tracking import Tracking, check_trackers
    overrides = dict(parse_assignment(a) for a in args.assignments)
    cfg = apply_overrides(default_config(str(overrides.pop("task", "classifier"))), overrides)
    build_model(cfg)  # impossible shapes fail before data loading
    track = check_trackers(args.track)
    set_threads(args.threads)
    dataset = load_dataset(cfg.data.dataset, paths.data_dir(args.data_dir))
    runs_dir = paths.runs_dir(args.runs_dir)
    print(f"run {run_id(cfg)} -> {runs_dir / run_id(cfg)}")
    tracking = Tracking(track, runs_dir, TRAIN_GROUP) if track else None
    metrics = train_run(cfg, runs_dir, dataset, pick_device(args.device), progress=not args.no_progress,
                        precision=args.precision, tracking=tracking)
    for key in (k for k in TRAIN_PRINTED if k in metrics):
        print(f"{key:>15}: {metrics[key]:.4f}" if isinstance(metrics[key], float) else f"{key:>15}: {metrics[key]}")
    if tracking:
        print(tracking.summary())
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run from KEY=VALUE settings",
                       description="Train one run: defaults, then KEY=VALUE settings, e.g. task=autoencoder "
                                   "model.latent_dim=8 train.epochs=2, or model.preset=simple_cnn train.lr=0.003.")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    add_training_options(p)
    p.add_argument("--threads", type=int, help=f"torch threads (default: torch's default); {THREADS_HELP}")
    p.set_defaults(func=cmd_train)


# ------------------------------------------------------------------------------------------------ results

def report_artifacts(table, table_path: Path, runs_dir: Path, test_split) -> None:
    """Write the report's artifacts beside a table (lab/artifacts.py); a warning, not a failure, when they can't be."""
    from lab.artifacts import write_artifacts
    from lab.data import DataError
    try:
        test = test_split(str(table["data.dataset"].iloc[0]))
    except DataError as error:
        print(f"warning: no report artifacts for {table_path.name}: {str(error).splitlines()[0]}")
        return
    written = write_artifacts(table, table_path, runs_dir, test)
    if written:
        print(f"  report artifacts: {written}")


def cmd_results(args: argparse.Namespace) -> int:
    from lab.data import load_dataset
    from lab.results import summary, write_tables
    from lab.sweep import load_sweeps
    files = args.files or sorted(paths.EXPERIMENTS_DIR.glob("*.toml"))
    sweeps = load_sweeps(files, args.profile)
    runs_dir, results_dir = paths.runs_dir(args.runs_dir), paths.results_dir(args.results_dir)
    data_dir = paths.data_dir(args.data_dir)
    for sweep in sweeps:
        written = write_tables(sweep, runs_dir, results_dir)
        if written is None:
            print(f"{sweep.name}: no finished runs in {runs_dir}; table left as it was")
        else:
            table, path = written
            print(f"{sweep.name}: {len(table)} of {len(sweep.runs)} cells -> {path}\n  {summary(table)}")
            if not args.no_artifacts:
                report_artifacts(table, path, runs_dir, lambda name: load_dataset(name, data_dir).test)
    return 0


def add_results(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("results", help="rebuild result tables from run folders",
                       description="Rebuild the tables of sweep files (default: all in experiments/) "
                                   "from the run folders, and print each sweep's best run.")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--no-artifacts", action="store_true",
                   help="tables only: skip the report's <table>_artifacts.npz (they need the run folders and the "
                        "test set)")
    add_results_dir(p)
    add_runs_dir(p)
    add_data_dir(p)
    p.set_defaults(func=cmd_results)


# ------------------------------------------------------------------------------------------------ verify

def verify_folders(args: argparse.Namespace) -> list[Path]:
    """The folders named on the command line, else every run folder in the runs dir."""
    from lab.checkpoints import CheckpointError
    if args.folders:
        return [Path(f) for f in args.folders]
    from lab.run_folder import TRACKING_FOLDER
    runs_dir = paths.runs_dir(args.runs_dir)
    if not runs_dir.is_dir():
        raise CheckpointError(f"{runs_dir}: no such runs folder; train runs first or pass --runs-dir DIR")
    folders = sorted(p for p in runs_dir.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name != TRACKING_FOLDER)
    print(f"verifying {len(folders)} run folders in {runs_dir}")
    return folders


def cmd_verify(args: argparse.Namespace) -> int:
    from lab.checkpoints import CheckpointError, load_checkpoint
    from lab.run_folder import METRICS_FILE, headline, is_unfinished
    counts, broken = {"ok": 0, "unfinished": 0}, []
    for folder in verify_folders(args):
        if is_unfinished(folder):
            print(f"unfinished  {folder}: no {METRICS_FILE} yet (training, interrupted or failed); not checked")
            counts["unfinished"] += 1
            continue
        try:
            checkpoint = load_checkpoint(folder)
        except CheckpointError as error:
            print(f"BROKEN      {error}")
            broken.append(str(folder))
            continue
        print(f"ok          {folder}: {checkpoint.task} {checkpoint.config.model.preset}, "
              f"{headline(checkpoint.task, checkpoint.metrics)}")
        counts["ok"] += 1
    print(f"{counts['ok']} ok, {counts['unfinished']} unfinished, {len(broken)} broken")
    if broken:
        print(f"error: {len(broken)} broken run folder{'s' if len(broken) > 1 else ''}: {', '.join(broken)}",
              file=sys.stderr)
        return USAGE_ERROR
    return 0


def add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check run folders: config, weights and metrics load and agree",
                       description="Load each run folder as the demo and report do (JSON and safetensors only) and "
                                   "check that its config, weights and metrics agree. Default: every folder in the "
                                   "runs dir; unfinished runs (no metrics.json) are listed, not checked. Exit "
                                   "status 2 if any folder is broken.")
    p.add_argument("folders", nargs="*", metavar="RUN_FOLDER")
    add_runs_dir(p)
    p.set_defaults(func=cmd_verify)


# ------------------------------------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, each registered by the function beside its handler."""
    from lab.demo.commands import DEMO_COMMANDS  # argparse only at import: --help stays instant

    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_sweep, add_train, add_results, add_verify, *DEMO_COMMANDS):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once in logs and pipes too
    try:
        return args.func(args)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
