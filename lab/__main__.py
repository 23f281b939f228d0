"""The command line: python -m lab {sweep,train,results} ..., and the demo's commands (demo-accuracy, space ...)."""

import argparse
import sys
import tomllib
from pathlib import Path

from lab import paths
from lab.checkpoints import CheckpointError
from lab.config import ConfigError, apply_overrides, default_config, run_id
from lab.data import DataError, load_dataset
from lab.executors import ExecutorError
from lab.hub import DEMO_DIR, HubError
from lab.sweep import DEFAULT_PROFILE, SweepError, datasets_for, load_sweeps, run_sweep, train_run

USAGE_ERROR = 2  # bad input: a sweep file, a KEY=VALUE, missing data, a broken run folder
DEMO_CHECKPOINTS = DEMO_DIR / "checkpoints"  # the weights the demo ships


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


def set_threads(threads: int | None) -> None:
    """torch's CPU threads for this process (None: torch's default); results match only at equal thread counts."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads: must be >= 1, got {threads}")
        import torch
        torch.set_num_threads(threads)


def check_executor_options(args: argparse.Namespace) -> None:
    """Refuse bad numbers, and options the chosen executor would silently ignore, before any data is loaded."""
    from lab.executors import resources_with
    from lab.sweep import Resources
    resources_with(Resources(), args.cpus_per_run, args.gpus_per_run)
    if args.executor == "ray" and args.threads is not None:
        raise ExecutorError("--threads is for the local executor; a Ray run trains with its resources.cpus "
                            "threads (set them with [resources] cpus or --cpus-per-run)")
    ray_only = [f"--{k.replace('_', '-')}" for k in ("address", "cpus_per_run", "gpus_per_run")
                if getattr(args, k) is not None]
    if args.executor == "local" and ray_only:
        raise ExecutorError(f"{ray_only[0]} is for --executor ray")


def cmd_sweep(args: argparse.Namespace) -> int:
    check_executor_options(args)
    set_threads(args.threads)  # local only (check_executor_options refuses --threads with ray); before any data
    sweeps = load_sweeps(args.files, args.profile)  # every file validated before anything runs
    runs_dir = paths.runs_dir(args.runs_dir)
    results_dir = paths.results_dir(args.results_dir)
    datasets = datasets_for([r for s in sweeps for r in s.runs], paths.data_dir(args.data_dir))
    from lab.results import summary, write_tables
    from lab.train import pick_device
    failed: list[str] = []
    if args.executor == "ray":
        from lab.executors import run_on_ray
        failed = run_on_ray(sweeps, runs_dir, datasets, args.address, args.device, args.precision,
                            args.cpus_per_run, args.gpus_per_run)
    else:
        device = pick_device(args.device)
    for sweep in sweeps:
        if args.executor == "local":
            run_sweep(sweep, runs_dir, datasets, device, progress=not args.no_progress, precision=args.precision)
        written = write_tables(sweep, runs_dir, results_dir)
        if written:
            print(f"{sweep.name}: {summary(written[0])}\n  table: {written[1]}")
    for failure in failed:
        print(f"failed: {failure}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} run{'s' * (len(failed) > 1)} failed (the tables hold the runs that finished); fix the "
              "cause and run the same command again to train the rest", file=sys.stderr)
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    overrides = dict(parse_assignment(a) for a in args.assignments)
    cfg = apply_overrides(default_config(str(overrides.pop("task", "classifier"))), overrides)
    from lab.models import build_model
    from lab.train import pick_device
    build_model(cfg)  # impossible shapes fail before data loading
    set_threads(args.threads)
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


def cmd_demo_examples(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from lab.redraw import example_digits
    from lab.sweep import write_atomic
    dataset = load_dataset("mnist", paths.data_dir(args.data_dir))
    tensors = example_digits(dataset.test.images, dataset.test.labels, args.per_class)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda p: save_file(tensors, str(p), metadata={"source": "MNIST test set"}))
    print(f"{len(tensors['labels'])} test digits ({args.per_class} per class) -> {out}")
    return 0


def cmd_demo_accuracy(args: argparse.Namespace) -> int:

    import torch

    from lab.checkpoints import CheckpointError, find_checkpoints, load_checkpoint
    from lab.redraw import accuracy_figure, canvas_accuracy, sample_digits
    from lab.sweep import write_json
    torch.set_num_threads(args.threads)
    try:
        if args.checkpoint:
            classifier = load_checkpoint(args.checkpoint)
        else:
            found, _ = find_checkpoints(DEMO_CHECKPOINTS, task="classifier")
            if not found:
                raise CheckpointError(f"{DEMO_CHECKPOINTS}: no classifier; run `make demo-weights`")
            classifier = max(found, key=lambda c: c.metrics["test_accuracy"])
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    dataset = load_dataset("mnist", paths.data_dir(args.data_dir))
    images, labels = sample_digits(dataset.test.images, dataset.test.labels, args.digits, args.seed)
    print(f"{classifier.describe()}: classifying {args.digits} MNIST test digits redrawn on a 280 px canvas, "
          f"one call each (canvas_to_mnist + probabilities, {args.threads} thread)")
    result = canvas_accuracy(classifier, images, labels, seed=args.seed)
    result |= {"checkpoint": classifier.run_id, "seed": args.seed, "threads": args.threads}
    print(f"accuracy {result['accuracy']:.2%} ({len(result['wrong'])} wrong of {result['digits']}); "
          f"latency per call p50 {result['latency_p50_ms']:.2f} ms, p95 {result['latency_p95_ms']:.2f} ms")
    if args.json:
        write_json(Path(args.json), result)
        print(f"  results: {args.json}")
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        accuracy_figure(images, labels, classifier, args.figure, seed=args.seed)
        print(f"  figure: {args.figure}")
    return 0 if not args.min_accuracy or result["accuracy"] >= args.min_accuracy else 1


def cmd_ship_demo_weights(args: argparse.Namespace) -> int:
    from lab.hub import ship_runs
    sweeps = load_sweeps(args.files)
    run_ids = [r.run_id for s in sweeps for r in s.unique_runs()]
    for folder in ship_runs(run_ids, paths.runs_dir(args.runs_dir), Path(args.out)):
        print(f"shipped {folder}")
    return 0


def cmd_space(args: argparse.Namespace) -> int:
    from lab.hub import assemble_space, format_listing, list_files
    out = assemble_space(Path(args.out))
    print(f"Space folder ready: {out}\n{format_listing(list_files(out))}")
    return 0


def cmd_push_space(args: argparse.Namespace) -> int:
    from lab.hub import assemble_space, format_listing, list_files, push_space
    folder = Path(args.folder) if args.folder else assemble_space()
    if not (folder / "app.py").is_file():
        print(f"error: {folder}: no app.py; run `make space` first", file=sys.stderr)
        return USAGE_ERROR
    print(f"{'would upload' if args.dry_run else 'uploading'} {folder} to the Space {args.repo}:")
    print(format_listing(list_files(folder)))
    if not args.dry_run:
        print(f"done: {push_space(args.repo, folder, private=args.private)}")
    return 0


def cmd_push_model(args: argparse.Namespace) -> int:
    from lab.hub import format_listing, push_model
    files, url = push_model(Path(args.run_folder), args.repo, private=args.private, dry_run=args.dry_run)
    print(f"{'would upload' if args.dry_run else 'uploaded'} to the model repo {args.repo}:\n{format_listing(files)}")
    if url:
        print(f"done: {url}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from lab.checkpoints import HEADLINE, load_checkpoint
    from lab.sweep import CONFIG_FILE, METRICS_FILE
    if args.folders:
        folders = [Path(f) for f in args.folders]
    else:
        runs_dir = paths.runs_dir(args.runs_dir)
        if not runs_dir.is_dir():
            raise CheckpointError(f"{runs_dir}: no such runs folder; train runs first or pass --runs-dir DIR")
        folders = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        print(f"verifying {len(folders)} run folders in {runs_dir}")
    counts, broken = {"ok": 0, "unfinished": 0}, []
    for folder in folders:
        if folder.is_dir() and not (folder / METRICS_FILE).exists() and (folder / CONFIG_FILE).exists():
            print(f"unfinished  {folder}: no {METRICS_FILE} yet (training, interrupted or failed); not checked")
            counts["unfinished"] += 1
            continue
        try:
            checkpoint = load_checkpoint(folder)
        except CheckpointError as error:
            print(f"BROKEN      {error}")
            broken.append(str(folder))
            continue
        metric = HEADLINE[checkpoint.task]
        print(f"ok          {folder}: {checkpoint.task} {checkpoint.config.model.preset}, "
              f"{metric} {checkpoint.metrics[metric]:.4f}")
        counts["ok"] += 1
    print(f"{counts['ok']} ok, {counts['unfinished']} unfinished, {len(broken)} broken")
    if broken:
        print(f"error: {len(broken)} broken run folder{'s' if len(broken) > 1 else ''}: {', '.join(broken)}",
              file=sys.stderr)
        return USAGE_ERROR
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
    p.add_argument("--threads", type=int, help="torch threads (local executor; default: torch's default); "
                                               "a run's numbers repeat exactly at the same thread count")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local (default): one run after another here; ray: every run a Ray task")
    p.add_argument("--address", help="Ray cluster to join: auto (the one `ray start` joined here) or HEAD:6379 "
                                     "(default: start Ray on this machine's cores for the sweep)")
    p.add_argument("--cpus-per-run", type=int, help="Ray: CPUs (and torch threads) per run, instead of the "
                                                    "sweep files' [resources] cpus (default 1)")
    p.add_argument("--gpus-per-run", type=float, help="Ray: GPUs per run, e.g. 0.25 to share one, instead of "
                                                      "[resources] gpus (default 0)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("train", help="train one run from KEY=VALUE settings",
                       description="Train one run: defaults, then KEY=VALUE settings, e.g. task=autoencoder "
                                   "model.latent_dim=8 train.epochs=2, or model.preset=simple_cnn train.lr=0.003.")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    _common(p)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default); "
                                               "a run's numbers repeat exactly at the same thread count")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("results", help="rebuild result tables from run folders",
                       description="Rebuild the tables of sweep files (default: all in experiments/) "
                                   "from the run folders, and print each sweep's best run.")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--results-dir", help="tables (default: LAB_RESULTS_DIR or experiments/results)")
    _common(p, data=False)
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("demo-examples", help="save real MNIST test digits for the demo's example buttons",
                       description="Save the first digits of each class of the MNIST test set as safetensors, "
                                   "for the demo's example buttons (the Space has no dataset).")
    p.add_argument("--out", default=str(DEMO_DIR / "examples.safetensors"))
    p.add_argument("--per-class", type=int, default=5)
    p.add_argument("--data-dir", help="dataset root holding MNIST/raw (default: LAB_DATA_DIR or data/)")
    p.set_defaults(func=cmd_demo_examples)

    p = sub.add_parser("demo-accuracy", help="accuracy and latency of the demo's classify path on redrawn digits",
                       description="Redraw MNIST test digits as a user draws them on the demo's 280 px canvas "
                                   "(black on white, off-centre, larger or smaller, thicker or thinner strokes) "
                                   "and classify each through canvas_to_mnist + the classifier, timing each call.")
    p.add_argument("--checkpoint", help="classifier run folder (default: the best in demo/checkpoints)")
    p.add_argument("--digits", type=int, default=2000, help="test digits to redraw (default: 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads, as the demo uses (default: 1)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--figure", help="also save a figure of redrawn digits and the answers (PNG)")
    p.add_argument("--min-accuracy", type=float, default=0.0, help="exit 1 below this accuracy, e.g. 0.98")
    p.add_argument("--data-dir", help="dataset root holding MNIST/raw (default: LAB_DATA_DIR or data/)")
    p.set_defaults(func=cmd_demo_accuracy)

    p = sub.add_parser("ship-demo-weights", help="copy the finished runs of sweep files into demo/checkpoints",
                       description="Copy the runs of the demo's sweep files (JSON and safetensors only) into "
                                   "demo/checkpoints, replacing what was there in one step.")
    p.add_argument("files", nargs="+", metavar="FILE", help="sweep files, e.g. demo/weights_classifier.toml")
    p.add_argument("--out", default=str(DEMO_CHECKPOINTS))
    _common(p, data=False)
    p.set_defaults(func=cmd_ship_demo_weights)

    p = sub.add_parser("space", help="assemble the Hugging Face Space folder (build/space)",
                       description="Copy the demo app, its README and requirements, the shipped weights, the "
                                   "example digits and the lab package into one folder ready to push.")
    p.add_argument("--out", default=str(paths.ROOT / "build" / "space"))
    p.set_defaults(func=cmd_space)

    p = sub.add_parser("push-space", help="create the demo's Space on the Hugging Face Hub and upload it",
                       description="Assemble build/space (or take --folder) and upload it to a Gradio Space, "
                                   "creating it if needed. Token: HF_TOKEN or `hf auth login`.")
    p.add_argument("--repo", required=True, help="USER/NAME of the Space")
    p.add_argument("--folder", help="an assembled Space folder (default: assemble build/space now)")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; no network")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push_space)

    p = sub.add_parser("push-model", help="upload a run folder to a Hugging Face model repo with a model card",
                       description="Upload a finished run's config.json, weights.safetensors and metrics.json with "
                                   "a generated model card (README.md) holding its config and metrics.")
    p.add_argument("run_folder", metavar="RUN_FOLDER")
    p.add_argument("--repo", required=True, help="USER/NAME of the model repo")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; no network")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push_model)

    p = sub.add_parser("verify", help="check run folders: config, weights and metrics load and agree",
                       description="Load each run folder as the demo and report do (JSON and safetensors only) and "
                                   "check that its config, weights and metrics agree. Default: every folder in the "
                                   "runs dir; unfinished runs (no metrics.json) are listed, not checked. Exit "
                                   "status 2 if any folder is broken.")
    p.add_argument("folders", nargs="*", metavar="RUN_FOLDER")
    p.add_argument("--runs-dir", help="run folders (default: LAB_RUNS_DIR or experiments/runs)")
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show up at once in logs and pipes too
    try:
        return args.func(args)
    except (ConfigError, SweepError, DataError, HubError, CheckpointError, ExecutorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
