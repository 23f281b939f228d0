"""The benchmark's files, read and drawn for the report: the columns, where they lie, the table as text, figures.

`python -m lab.tools.bench` writes them (experiments/results/benchmark.csv, its `_trials.csv` and `_env.json`);
this module only reads them, so the report page imports it without the benchmark's training code.
"""

import json
from pathlib import Path

from lab import paths

# pandas and matplotlib load inside the functions: every benchmark child process imports this module, and its
# whole-process time counts imports.

SUMMARY_COLUMNS = ["section", "name", "measure", "value", "low", "high", "n", "unit", "note"]
TRIAL_COLUMNS = ["section", "name", "seed", "reached", "epochs", "train_seconds", "process_seconds",
                 "test_accuracy"]


def output_paths(out: Path) -> tuple[Path, Path, Path]:
    """(summary CSV, per-seed trials CSV, environment JSON) for an --out path."""
    out = Path(out)
    return out, out.with_name(f"{out.stem}_trials.csv"), out.with_name(f"{out.stem}_env.json")


def default_out() -> Path:
    """The summary CSV's usual place: benchmark.csv in the results dir (LAB_RESULTS_DIR or experiments/results)."""
    return paths.results_dir() / "benchmark.csv"


PROVENANCE = ("date", "cpu", "device", "threads", "precision")  # what names the run a kept section's rows came from


def measured_by(env: dict, section: str) -> dict:
    """Which run measured section's rows in the files whose environment is env: that run itself, or, for a section
    it kept from an earlier one, the earlier one ({date, cpu, device, threads, precision})."""
    kept_from = env.get("kept_from") or {}
    if section in env.get("kept_sections", []):
        if isinstance(kept_from.get(section), dict):
            return kept_from[section]
        if "date" in kept_from:  # files written before provenance was kept per section named one run for all
            return kept_from
    return {k: env.get(k) for k in PROVENANCE}


def earlier_runs(env: dict) -> str:
    """The sections env's run kept from earlier runs, grouped by the run that measured them, for a reader."""
    groups: dict[tuple, list[str]] = {}
    for section in env.get("kept_sections", []):
        source = measured_by(env, section)
        groups.setdefault((source.get("cpu"), source.get("date")), []).append(section)
    return "; ".join(f"{', '.join(sections)} on {cpu} ({str(date)[:10]})" for (cpu, date), sections in groups.items())


def load_results(out: str | Path | None = None):
    """(summary, trials, environment) as written by the benchmark, or (None, None, None) when it has not run."""
    import pandas as pd

    summary_path, trials_path, env_path = output_paths(Path(out) if out else default_out())
    if not summary_path.is_file():
        return None, None, None
    trials = pd.read_csv(trials_path) if trials_path.is_file() else None
    env = json.loads(env_path.read_text()) if env_path.is_file() else None
    return pd.read_csv(summary_path), trials, env


def reading_table(rows):
    """The summary for reading: what was measured, the median, the lowest-highest, n, the unit and a note."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS) if not isinstance(rows, pd.DataFrame) else rows

    def number(v) -> str:
        if v is None or pd.isna(v):
            return "-"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"

    fraction = table["unit"] == "fraction"  # accuracies: shown in percent, as on every other page
    scale = fraction.map({True: 100.0, False: 1.0})
    value, low, high = table["value"] * scale, table["low"] * scale, table["high"] * scale
    repeated = table["n"].fillna(1) > 1
    return pd.DataFrame({
        "Section": table["section"], "What": table["name"], "Measure": table["measure"].str.replace("_", " "),
        "Median": [f"{v:.2f}" if f else number(v) for v, f in zip(value, fraction, strict=True)],
        "Lowest-highest": [f"{number(lo)} to {number(hi)}" if r and not (pd.isna(lo) or pd.isna(hi)) else ""
                           for lo, hi, r in zip(low, high, repeated, strict=True)],
        "n": table["n"].map(lambda v: "" if pd.isna(v) else f"{int(v)}"),
        "Unit": table["unit"].fillna("").replace({"fraction": "%"}), "Note": table["note"].fillna("")})


def format_table(rows) -> str:
    """The summary as aligned text (the benchmark's terminal output)."""
    return reading_table(rows).to_string(index=False, justify="left")


def plot_time_to_accuracy(trials):
    """Figure: seconds to 99% per seed, ours against the baseline (training and whole process), page width."""
    import matplotlib.pyplot as plt

    from lab.report.figures import MARKERS, PAGE_WIDTH, PALETTE, page_style, plain_log

    reached = trials[trials["reached"].astype(bool)]
    names = list(dict.fromkeys(trials["name"]))
    with page_style():
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 0.6 * len(names) + 1.6), layout="constrained")
        for i, (measure, label) in enumerate([("train_seconds", "training"), ("process_seconds", "whole process")]):
            for j, name in enumerate(names):
                values = reached.loc[reached["name"] == name, measure]
                ax.scatter(values, [j + 0.15 * (i * 2 - 1)] * len(values), label=label if j == 0 else None,
                           marker=MARKERS[i], color=PALETTE[i], alpha=0.85)
        ax.set_yticks(range(len(names)), names)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_xscale("log")
        plain_log(ax.xaxis)
        ax.set_xlabel("seconds to 99.0% test accuracy (log scale; one mark per seed)")
        ax.grid(axis="x", alpha=0.3, which="both")
        fig.legend(loc="outside lower center", ncols=2)
    return fig


def plot_throughput(summary):
    """Figure: training and inference images/s per preset and batch size, page width."""
    import matplotlib.pyplot as plt

    from lab.report.figures import PAGE_WIDTH, page_style, plain_log

    table = summary[summary["section"] == "throughput"]
    pivot = table.pivot_table(index="name", columns="measure", values="value", sort=False)
    columns = [c for c in ("train_images_per_s", "infer_images_per_s") if c in pivot]
    with page_style():
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 0.45 * len(pivot) + 1.2), layout="constrained")
        pivot[columns].rename(columns={"train_images_per_s": "training", "infer_images_per_s": "inference"}
                              ).plot.barh(ax=ax, logx=True)
        plain_log(ax.xaxis)
        ax.set_xlabel("images per second (log scale)")
        ax.set_ylabel("")
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3, which="both")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_load(summary):
    """Figure: the demo's latency under load, p50 and p95 per endpoint (and all requests), in ms, page width."""
    import matplotlib.pyplot as plt

    from lab.report.figures import PAGE_WIDTH, page_style

    table = summary[(summary["section"] == "load") & summary["measure"].isin(["latency_ms_p50", "latency_ms_p95"])]
    table = table.assign(endpoint=[n.split(": ")[1] if ": " in n else "all requests" for n in table["name"]])
    pivot = table.pivot_table(index="endpoint", columns="measure", values="value", sort=False)
    with page_style():
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH, 0.45 * len(pivot) + 1.3), layout="constrained")
        pivot.rename(columns={"latency_ms_p50": "p50", "latency_ms_p95": "p95"}).plot.barh(ax=ax)
        ax.set_xlabel("milliseconds from request to answer, as a client sees it")
        ax.set_ylabel("")
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title=None)
    return fig
