"""The demo's commands of `python -m lab`: example digits, accuracy on redrawn digits, the unsure rule, shipped
weights, the Hub.

Each command's parser sits beside its handler; lab/__main__.py registers DEMO_COMMANDS. Only argparse and the
lab's path and option helpers are imported here; each handler imports what it uses.
"""

import argparse
import sys
from pathlib import Path

from lab import paths
from lab.cli import add_data_dir, add_runs_dir
from lab.demo import REQUEST_THREADS
from lab.errors import USAGE_ERROR, LabError

# ------------------------------------------------------------------------------------------------ demo-examples


def cmd_demo_examples(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from lab.data import load_dataset
    from lab.demo.redraw import example_digits
    from lab.run_folder import write_atomic
    dataset = load_dataset("mnist", paths.data_dir(args.data_dir))
    tensors = example_digits(dataset.test.images, dataset.test.labels, args.per_class)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, lambda p: save_file(tensors, str(p), metadata={"source": "MNIST test set"}))
    print(f"{len(tensors['labels'])} test digits ({args.per_class} per class) -> {out}")
    return 0


def add_demo_examples(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-examples", help="save real MNIST test digits for the demo's example buttons and map",
                       description="Save the first digits of each class of the MNIST test set as safetensors, "
                                   "for the demo's example buttons and its latent map (the Space has no dataset).")
    p.add_argument("--out", default=str(paths.DEMO_DIR / paths.EXAMPLES_FILE))
    p.add_argument("--per-class", type=int, default=100,
                   help="digits of each class (default: 100; the latent map shows them all)")
    add_data_dir(p)
    p.set_defaults(func=cmd_demo_examples)


# ------------------------------------------------------------------------------------------------ demo-accuracy

def demo_classifier(checkpoint: str | None):
    """The named classifier run folder, else the best classifier the demo ships; CheckpointError if none."""
    from lab.checkpoints import CheckpointError, find_checkpoints, load_checkpoint
    from lab.run_folder import best_first
    if checkpoint:
        return load_checkpoint(checkpoint)
    folder = paths.demo_checkpoints()
    found, _ = find_checkpoints(folder, task="classifier")
    if not found:
        raise CheckpointError(f"{folder}: no classifier; run `make demo-weights`")
    return best_first("classifier", found, lambda c: c.metrics)[0]


def cmd_demo_accuracy(args: argparse.Namespace) -> int:
    import torch

    from lab.checkpoints import load_checkpoint
    from lab.data import load_dataset
    from lab.demo.canvas import CANVAS_SIDE
    from lab.demo.redraw import accuracy_figure, canvas_accuracy, mistakes_figure, sample_indices
    from lab.run_folder import write_json
    torch.set_num_threads(args.threads)
    classifier = demo_classifier(args.checkpoint)
    other = load_checkpoint(args.also) if args.also else None  # before the long part: a bad path fails at once
    dataset = load_dataset("mnist", paths.data_dir(args.data_dir))
    compared = [classifier] + ([other] if other is not None else [])
    split = dataset.test if args.split == "test" else held_out_split(compared, dataset)
    if not 1 <= args.digits <= len(split):
        raise LabError(f"--digits: the {args.split} split has {len(split):,} digits; ask for 1 to {len(split):,}")
    picked = sample_indices(len(split), args.digits, args.seed)
    images, labels = split.images[picked], split.labels[picked]
    print(f"{classifier.describe()}: classifying {args.digits} MNIST {args.split} digits redrawn ({args.style}) on a "
          f"{CANVAS_SIDE} px canvas, one call each (canvas_to_mnist + probabilities, {args.threads} thread)")
    result = canvas_accuracy(classifier, images, labels, seed=args.seed, style=args.style,
                             keep_wrong=bool(args.mistakes))
    seen = result.pop("wrong_seen", None)
    # "wrong" counts positions in this seed's draw of the split; "wrong_digits" names the same digits by their index
    # in the split (MNIST's test set, or the held-out digits), so runs at other seeds can be compared
    result |= {"checkpoint": classifier.run_id, "split": args.split, "seed": args.seed, "threads": args.threads,
               "style": args.style, "wrong_digits": [int(picked[w[0]]) for w in result["wrong"]]}
    print(f"accuracy {result['accuracy']:.2%} ({len(result['wrong'])} wrong of {result['digits']}); "
          f"latency per call p50 {result['latency_p50_ms']:.2f} ms, p95 {result['latency_p95_ms']:.2f} ms")
    print_misses(result)
    if other is not None:  # the same seed redraws the same canvases for it
        theirs = canvas_accuracy(other, images, labels, seed=args.seed, style=args.style)
        both = sorted({w[0] for w in result["wrong"]} & {w[0] for w in theirs["wrong"]})
        result["also"] = {"checkpoint": other.run_id, "accuracy": theirs["accuracy"], "wrong": theirs["wrong"],
                          "both_wrong": both}
        print(f"{other.describe()}: accuracy {theirs['accuracy']:.2%} ({len(theirs['wrong'])} wrong); "
              f"wrong for both: {len(both)}")
    if args.mistakes and not result["wrong"]:
        print("  mistakes: none to show, no figure written")
    elif args.mistakes:
        Path(args.mistakes).parent.mkdir(parents=True, exist_ok=True)
        mistakes_figure(images, result | {"wrong_seen": seen}, args.mistakes,
                        f"{classifier.run_id}: the {len(result['wrong'])} of {result['digits']} MNIST {args.split} "
                        f"digits ({args.style} redraws, seed {args.seed}) it reads wrong; each digit over what it saw, "
                        "and its answer")
        print(f"  mistakes: {args.mistakes}")
    if args.json:
        write_json(Path(args.json), result)
        print(f"  results: {args.json}")
    if args.figure:
        Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
        accuracy_figure(images, labels, classifier, args.figure, seed=args.seed, style=args.style, split=args.split)
        print(f"  figure: {args.figure}")
    return 0 if not args.min_accuracy or result["accuracy"] >= args.min_accuracy else 1


def held_out_split(classifiers: list, dataset):
    """The MNIST training digits the classifiers held out for validation (data.val_size): where one is chosen
    without the test set. LabError unless all of them held out the same digits."""
    from lab.data import train_val_split
    size = classifiers[0].config.data.val_size
    for run in classifiers:
        data = run.config.data
        if data.dataset != "mnist" or not data.val_size:
            raise LabError(f"{run.folder}: held no MNIST validation digits out (data.dataset = {data.dataset}, "
                           f"data.val_size = {data.val_size}); use --split test, or train it with data.val_size = "
                           "5000")
        if data.val_size != size:
            raise LabError(f"{run.folder}: held out data.val_size = {data.val_size} digits, the other "
                           f"{size}: --split val compares classifiers on digits both held out")
    return train_val_split(dataset.train, 0, size)[1]


def print_misses(result: dict) -> None:
    """Print how canvas_accuracy's misses split by the redraw's random choices and by the redraw's loops."""
    print("  read wrong by the redraw's random choices (each split at its thirds, fewer where a choice takes few "
          "values; Wilson 95% intervals):")
    for line in miss_rate_lines(result["by_draw"]):
        print("    " + line)
    print("  read wrong by the loops of the 28x28 input against its MNIST digit's (fewer, as many, more; "
          "lab.strokes.holes; Wilson 95% intervals):")
    for row in result["by_holes"]:
        print(f"    {row['holes']:<6} {rate_text(row)}")


def miss_rate_lines(rows: list[dict]) -> list[str]:
    """lab.demo.redraw.miss_rates' rows as a table: the choice (once), its range, the miss rate and its interval."""
    width = max((len(row["draw"]) for row in rows), default=0)
    lines, last = [], None
    for row in rows:
        name = row["draw"] if row["draw"] != last else ""
        last = row["draw"]
        span = f"{row['from']:.4g}" + (f" to {row['to']:.4g}" if row["to"] != row["from"] else "")
        lines.append(f"{name:<{width}}  {span:<16} {rate_text(row)}")
    return lines


def rate_text(row: dict) -> str:
    """A miss rate with its count and interval, e.g. ' 0.92%  (82 of 8875; 0.75%-1.15%)'."""
    return f"{row['rate']:6.2%}  ({row['wrong']} of {row['digits']}; {row['low']:.2%}-{row['high']:.2%})"


def add_demo_accuracy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-accuracy", help="accuracy and latency of the demo's classify path on redrawn digits",
                       description="Redraw MNIST digits as a user draws them on the demo's canvas "
                                   "(black on white, off-centre, larger or smaller, thicker or thinner strokes) "
                                   "and classify each through canvas_to_mnist + the classifier, timing each call.")
    p.add_argument("--checkpoint", help="classifier run folder (default: the best in demo/checkpoints)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test: MNIST's test digits; val: the training digits the classifier held out "
                        "(data.val_size), to choose between classifiers without the test set (default: test)")
    p.add_argument("--digits", type=int, default=2000, help="digits to redraw (default: 2000)")
    p.add_argument("--seed", type=int, default=0)
    add_style(p)
    p.add_argument("--threads", type=int, default=REQUEST_THREADS,
                   help=f"torch threads, as the demo serves a request (default: {REQUEST_THREADS})")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--figure", help="also save a figure of redrawn digits and the answers (PNG)")
    p.add_argument("--mistakes", help="also save a figure of every digit read wrong: the digit over what the "
                                      "classifier saw of its redraw (PNG)")
    p.add_argument("--also", metavar="CHECKPOINT",
                   help="a second classifier on the same redraws: its accuracy and the digits both get wrong")
    p.add_argument("--min-accuracy", type=float, default=0.0, help="exit 1 below this accuracy, e.g. 0.98")
    add_data_dir(p)
    p.set_defaults(func=cmd_demo_accuracy)


def add_style(p: argparse.ArgumentParser) -> None:
    """--style: how test digits are redrawn (the keys of lab.demo.redraw.DRAWS, named here to keep --help fast)."""
    p.add_argument("--style", choices=("pen", "brush"), default="pen",
                   help="pen: the digit's own strokes thickened or thinned; brush: its skeleton drawn again with a "
                        "round brush of one width, tilted, as a mouse draws (default: pen)")


# ------------------------------------------------------------------------------------------------ demo-unsure

def cmd_demo_unsure(args: argparse.Namespace) -> int:
    import torch

    from lab.data import load_dataset
    from lab.demo.unsure import TARGET_FALSE_ALARM, UNSURE_FILE, VAL_DIGITS, measure
    from lab.run_folder import write_json
    torch.set_num_threads(args.threads)
    false_alarm = TARGET_FALSE_ALARM if args.false_alarm is None else args.false_alarm
    classifier = demo_classifier(args.checkpoint)
    root = paths.data_dir(args.data_dir)
    mnist, fashion = load_dataset("mnist", root), load_dataset("fashion_mnist", root)
    print(f"{classifier.describe()}: choosing the unsure threshold for a {false_alarm:.1%} false-alarm rate on "
          f"{args.digits} redrawn validation digits, then measuring it")
    result = measure(classifier, mnist, fashion, args.digits, args.non_digits, args.seed, false_alarm)
    if not result["held_out"]:
        print(f"warning: {classifier.run_id} trained on these validation digits (data.val_size "
              f"{classifier.config.data.val_size}, under {VAL_DIGITS}), so it is surer of them than of new digits and "
              f"the rule will fire on more than {false_alarm:.1%} of test digits; train it with data.val_size = "
              f"{VAL_DIGITS} for a threshold set on unseen digits")
    print(f"unsure when the top probability is below {result['threshold']:.4f}; it fires on")
    for name, rate in result["rates"].items():
        refused = f", {rate['refused']} refused by the canvas" if rate["refused"] else ""
        counts = f"{rate['flagged']} of {rate['classified']}{refused}"
        print(f"  {name.replace('_', ' '):18} {rate['rate']:6.1%}  ({counts})")
    out = Path(args.out) if args.out else classifier.folder / UNSURE_FILE
    write_json(out, result)
    print(f"  written: {out}")
    return 0


def add_demo_unsure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-unsure", help="measure the demo's 'unsure' rule and write its threshold for the app",
                       description="Choose the threshold of the demo's unsure rule (top probability below it) on "
                                   "redrawn MNIST validation digits, measure how often it fires on redrawn test "
                                   "digits and on non-digits (Fashion-MNIST, scribbles, letters, two digits), and "
                                   "write the result into the classifier's run folder, where the app reads it.")
    p.add_argument("--checkpoint", help="classifier run folder (default: the best in demo/checkpoints)")
    p.add_argument("--digits", type=int, default=2000, help="validation and test digits, each (default: 2000)")
    p.add_argument("--non-digits", type=int, default=1000, help="drawings of each non-digit kind (default: 1000)")
    p.add_argument("--false-alarm", type=float, help="target rate on validation digits (default: 2%%)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=REQUEST_THREADS,
                   help=f"torch threads, as the demo serves a request (default: {REQUEST_THREADS})")
    p.add_argument("--out", help="where to write the JSON (default: unsure.json in the classifier's run folder)")
    add_data_dir(p)
    p.set_defaults(func=cmd_demo_unsure)


# ------------------------------------------------------------------------------------------------ ship-demo-weights

def cmd_ship_demo_weights(args: argparse.Namespace) -> int:
    from lab.demo.hub import ship_runs
    from lab.sweep import load_sweeps
    sweeps = load_sweeps(args.files)
    run_ids = [r.run_id for s in sweeps for r in s.unique_runs()]
    for folder in ship_runs(run_ids, paths.runs_dir(args.runs_dir), Path(args.out)):
        print(f"shipped {folder}")
    return 0


def add_ship_demo_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ship-demo-weights", help="copy the finished runs of sweep files into demo/checkpoints",
                       description="Copy the runs of the demo's sweep files (JSON and safetensors only) into "
                                   "demo/checkpoints, replacing what was there in one step.")
    p.add_argument("files", nargs="+", metavar="FILE", help="sweep files, e.g. demo/weights_classifier.toml")
    p.add_argument("--out", default=str(paths.demo_checkpoints()))
    add_runs_dir(p)
    p.set_defaults(func=cmd_ship_demo_weights)


# ------------------------------------------------------------------------------------------------ the Hub

def cmd_space(args: argparse.Namespace) -> int:
    from lab.demo.hub import assemble_space, format_listing, list_files
    out = assemble_space(Path(args.out))
    print(f"Space folder ready: {out}\n{format_listing(list_files(out))}")
    return 0


def add_space(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="assemble the Hugging Face Space folder (build/space)",
                       description="Copy the demo app, its README and requirements, the shipped weights, the "
                                   "example digits and the lab modules the app uses into one folder ready to push.")
    p.add_argument("--out", default=str(paths.SPACE_DIR))
    p.set_defaults(func=cmd_space)


def cmd_push_space(args: argparse.Namespace) -> int:
    from lab.demo.hub import assemble_space, format_listing, list_files, push_space
    folder = Path(args.folder) if args.folder else assemble_space()
    if not (folder / "app.py").is_file():
        print(f"error: {folder}: no app.py; run `make space` first", file=sys.stderr)
        return USAGE_ERROR
    print(f"{'would upload' if args.dry_run else 'uploading'} {folder} to the Space {args.repo}:")
    print(format_listing(list_files(folder)))
    if not args.dry_run:
        print(f"done: {push_space(args.repo, folder, private=args.private)}")
    return 0


def add_push_space(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push-space", help="create the demo's Space on the Hugging Face Hub and upload it",
                       description="Assemble build/space (or take --folder) and upload it to a Gradio Space, "
                                   "creating it if needed. Token: HF_TOKEN or `hf auth login`.")
    p.add_argument("--repo", required=True, help="USER/NAME of the Space")
    p.add_argument("--folder", help="an assembled Space folder (default: assemble build/space now)")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; no network")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push_space)


def cmd_push_model(args: argparse.Namespace) -> int:
    from lab.demo.hub import format_listing, push_model
    files, url = push_model(Path(args.run_folder), args.repo, private=args.private, dry_run=args.dry_run)
    print(f"{'would upload' if args.dry_run else 'uploaded'} to the model repo {args.repo}:\n{format_listing(files)}")
    if url:
        print(f"done: {url}")
    return 0


def add_push_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push-model", help="upload a run folder to a Hugging Face model repo with a model card",
                       description="Upload a finished run's config.json, weights.safetensors and metrics.json with "
                                   "a generated model card (README.md) holding its config and metrics.")
    p.add_argument("run_folder", metavar="RUN_FOLDER")
    p.add_argument("--repo", required=True, help="USER/NAME of the model repo")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; no network")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=cmd_push_model)


DEMO_COMMANDS = (add_demo_examples, add_demo_accuracy, add_demo_unsure, add_ship_demo_weights, add_space,
                 add_push_space, add_push_model)
