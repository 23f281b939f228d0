"""The README's results block, written from the committed tables so that no result is copied by hand.

    python -m lab.tools.readme [--check] [--readme PATH] [--results-dir DIR]      (make readme)

Everything between BEGIN and END in README.md is replaced by results_block(); --check only compares and exits 1
when the block is stale (a test runs it, so a table that changes without `make readme` fails the tests).
"""

import argparse
import sys
from pathlib import Path

import pandas as pd

from lab import paths
from lab.report import optimizers as O
from lab.report import reference as R
from lab.report.analysis import (
    AUTOENCODER_SWEEP,
    CLASSIFIER_SWEEPS,
    describe,
    headline,
    headline_markdown,
    read_table,
    read_tables,
    unique_runs,
)

README = paths.ROOT / "README.md"
BEGIN = "<!-- results: begin (written by `make readme` from experiments/results/; do not edit by hand) -->"
END = "<!-- results: end -->"
SWEEPS = paths.EXPERIMENT_SWEEPS  # the default profile, in the order `make experiments` runs them


class StaleError(ValueError):
    """The README has no results block, or a stale one."""


def machine_line(tables: list[pd.DataFrame]) -> str:
    """Where the runs were made: device (the CPU's model where recorded), threads, precision, torch; each once."""
    runs = pd.concat([unique_runs(t) for t in tables], ignore_index=True)

    def where(r) -> str:
        cpu = getattr(r, "cpu", None)
        device = f"{r.device} ({cpu})" if isinstance(cpu, str) and r.device == "cpu" else r.device
        precision = getattr(r, "precision", None)
        return f"{device}, {int(r.threads)} threads, " + (f"{precision}, " if isinstance(precision, str) else "") + \
            f"torch {r.torch_version}"

    return "; ".join(sorted({where(r) for r in runs.itertuples()}))


def wall_time_line(tables: dict[str, pd.DataFrame]) -> str:
    """How long `make experiments` trains, from the runs' recorded total_seconds (fit, evaluations included)."""
    seconds = {name: unique_runs(t)["total_seconds"].sum() for name, t in tables.items()}
    parts = ", ".join(f"`{name}` {s:,.0f} s" for name, s in seconds.items())
    return (f"`make experiments` trained these in **{sum(seconds.values()) / 60:.0f} minutes** of run time "
            f"({parts}; the sum of the runs' `total_seconds`; installing torch and downloading MNIST come on top).")


def results_block(results_dir: str | Path | None = None) -> str:
    """The block's Markdown: the headline table, where the runs were made, and the sweeps' run time."""
    tables = {name: read_table(name, results_dir) for name in SWEEPS}
    missing = [name for name, table in tables.items() if table is None]
    if missing:
        return f"No result tables yet ({', '.join(missing)} missing): run `make experiments`, then `make readme`."
    numbers = headline(read_tables(CLASSIFIER_SWEEPS, results_dir), tables[AUTOENCODER_SWEEP])
    return "\n".join([
        f"From the committed tables in `experiments/results/` (default profile; {machine_line(list(tables.values()))};"
        " MNIST test set of 10,000):",
        "",
        headline_markdown(numbers),
        "",
        wall_time_line(tables),
        *reference_lines(results_dir),
        *other_lines(results_dir),
        "",
        "Every committed table, its runs and their run time (the sum of `total_seconds`; a table made on another "
        "machine or beside other work takes another time):",
        "",
        tables_markdown(results_dir),
    ])


def tables_markdown(results_dir: str | Path | None = None) -> str:
    """One row per committed sweep table (every profile): its runs, their run time in minutes, the machine."""
    lines = ["| table | runs | run time | machine |", "| --- | --- | --- | --- |"]
    folder = paths.results_dir(results_dir)
    for path in sorted(folder.glob("*.csv")):
        if path.stem.endswith("_history") or path.stem.startswith("benchmark"):
            continue
        runs = unique_runs(pd.read_csv(path))
        lines.append(f"| `{path.name}` | {len(runs)} | {runs['total_seconds'].sum() / 60:.0f} min | "
                     f"{machine_line([runs])} |")
    return "\n".join(lines)


def reference_lines(results_dir: str | Path | None = None) -> list[str]:
    """The reference recipe's result and the reference findings' verdicts, where their tables are committed."""
    lines = []
    recipe, findings = read_table(R.RECIPE_SWEEP, results_dir), read_table(R.FINDINGS_SWEEP, results_dir)
    if recipe is not None:
        lines += ["", f"**The reference recipe** (`{R.RECIPE_SWEEP}`; {machine_line([recipe])}): "
                  + R.recipe_sentence(R.recipe_summary(recipe))]
    if findings is not None:
        lines += ["", f"**The reference findings** on `simple_cnn` (`{R.FINDINGS_SWEEP}`; "
                  f"{machine_line([findings])}; see docs/statistics.md):", "", R.verdicts_markdown(
                      R.finding_verdicts(findings))]
    return lines


def render(text: str, block: str) -> str:
    """text with everything between BEGIN and END replaced by block."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise StaleError(f"no results block: the README needs the lines\n{BEGIN}\n{END}")
    return f"{text[:start + len(BEGIN)]}\n{block}\n{text[end:]}"


def other_lines(results_dir: str | Path | None = None) -> list[str]:
    """The stronger autoencoder and the optimiser comparison, where their tables are committed."""
    lines = []
    strong = read_table(f"{AUTOENCODER_SWEEP}-strong", results_dir)
    if strong is not None:
        run = unique_runs(strong).iloc[0]
        lines += ["", f"**A stronger autoencoder** (`{AUTOENCODER_SWEEP}.toml --profile strong`; "
                      f"{machine_line([strong])}): {describe(run)}: test MSE "
                      f"**{run['test_mse']:.4f}** (validation {run['val_mse']:.4f}) in "
                      f"{run['train_seconds'] / 60:.0f} min of training."]
    optimizers = read_table(O.SWEEP, results_dir)
    if optimizers is not None:
        chosen = O.chosen_rates(optimizers)
        lines += ["", f"**Optimisers** (`{O.SWEEP}`; {machine_line([optimizers])}): "
                  + O.optimizer_sentence(chosen, O.against_the_best(chosen))]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.tools.readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale; write nothing")
    parser.add_argument("--readme", default=str(README), help="the README to update (default: README.md)")
    parser.add_argument("--results-dir", help="tables (default: LAB_RESULTS_DIR or experiments/results)")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    text = path.read_text(encoding="utf-8")
    try:
        updated = render(text, results_block(args.results_dir))
    except StaleError as error:
        print(f"error: {path}: {error}", file=sys.stderr)
        return 2
    if updated == text:
        print(f"{path}: the results block is up to date")
        return 0
    if args.check:
        print(f"error: {path}: the results block is stale; run `make readme`", file=sys.stderr)
        return 1
    path.write_text(updated, encoding="utf-8")
    print(f"{path}: results block rewritten from the tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
