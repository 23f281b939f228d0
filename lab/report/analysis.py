"""Result tables -> the numbers and sentences the report shows: headlines, Pareto fronts, fit flags, ablation effects.

Pure pandas/numpy: every function takes tables (as read from experiments/results/) and returns tables or text,
so the report's claims are computed from the numbers on disk and stay true when the tables change.
"""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from lab import paths
from lab.report import statistics as S
from lab.results import best_classifier_run, chosen_on

CLASSIFIER_SWEEPS = ("cnn_hparams", "cnn_ablations")
AUTOENCODER_SWEEP = "autoencoder"
TARGET_ACCURACY = 0.99  # "fast to 99%": the bar a good MNIST classifier clears
OVERFIT_GAP = 0.005  # train minus test accuracy above this (half a point) counts as overfitting
UNDERFIT_BELOW = 0.99  # final train accuracy below this counts as underfitting: the net has not fit its data yet


# ---------------------------------------------------------------- reading tables

class Missing(Exception):
    """Something a figure or sentence needs is not on disk; the message (Markdown) says what and how to get it."""


def shown_path(path: Path) -> str:
    """A path as a reader should see it: relative to the project, or named by the variable that points there."""
    path = Path(path)
    try:
        return path.resolve().relative_to(paths.ROOT.resolve()).as_posix()
    except ValueError:
        return f"$LAB_RESULTS_DIR/{path.name}"  # a results dir outside the project: never a machine's own path


def need(table: pd.DataFrame | None, name: str) -> pd.DataFrame:
    """The table, or Missing naming the file and the command that writes it."""
    if table is None:
        raise Missing(f"`{shown_path(paths.results_dir() / (name + '.csv'))}` is missing or empty: `make experiments` "
                      f"trains the sweep and writes it (`make results` rebuilds it from existing run folders).")
    return table


def read_table(name: str, results_dir: str | Path | None = None, history: bool = False) -> pd.DataFrame | None:
    """A sweep's runs table (or per-epoch history with history=True) from the results dir; None when absent."""
    path = paths.results_dir(results_dir) / f"{name}{'_history' if history else ''}.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    return None if table.empty else table


def read_tables(names: tuple[str, ...], results_dir: str | Path | None = None,
                history: bool = False) -> pd.DataFrame | None:
    """Several sweeps' tables stacked (each row keeps its `sweep`); None when none of them exists."""
    found = [t for t in (read_table(n, results_dir, history) for n in names) if t is not None]
    return pd.concat(found, ignore_index=True) if found else None


def missing_tables(names: tuple[str, ...], results_dir: str | Path | None = None) -> list[Path]:
    """The table files of these sweeps that are not on disk."""
    folder = paths.results_dir(results_dir)
    return [folder / f"{n}.csv" for n in names if read_table(n, results_dir) is None]


def unique_runs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per run id (a config that stands in several groups appears once, with its first group)."""
    return table.drop_duplicates("run_id").reset_index(drop=True)


def inventory_markdown(tables: dict[str, pd.DataFrame | None]) -> str:
    """What was trained: per sweep, its runs, total training time and the machine, as a Markdown table."""
    lines = ["| Sweep | Task | Runs | Training time | Groups | Machine |", "| --- | --- | ---: | ---: | --- | --- |"]
    for name, table in tables.items():
        if table is None:
            lines.append(f"| `{name}` | | no table | | | |")
            continue
        runs = unique_runs(table)
        where = ", ".join(sorted({f"{getattr(r, 'cpu', r.device)}, {int(r.threads)} threads, "
                                  f"{getattr(r, 'precision', '')}, torch {r.torch_version}".replace(", ,", ",")
                                  for r in runs.itertuples()})) if {"device", "threads", "torch_version"} <= set(runs) \
            else ""
        groups = ", ".join(g.replace("_", " ") for g in dict.fromkeys(table["group"].fillna("")))
        lines.append(f"| `{name}` | {runs['task'].iloc[0]} | {len(runs)} | "
                     f"{runs['train_seconds'].sum() / 60:.1f} min | {groups} | {where} |")
    return "\n".join(lines)


def split_sentence(table: pd.DataFrame) -> str:
    """How a sweep's runs split their data: training images, the validation images choices are made on, test."""
    runs = unique_runs(table)
    dataset = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}.get(str(runs["data.dataset"].iloc[0]),
                                                                       str(runs["data.dataset"].iloc[0]))
    train = int(runs["train_images"].iloc[0]) if "train_images" in runs else None
    val = int(runs["val_images"].max()) if "val_images" in runs and runs["val_images"].notna().any() else 0
    text = f"Every run trains on {train:,} {dataset} training images" if train else f"Every run trains on {dataset}"
    if val:
        return (text + f" and holds out the last {val:,} for validation: every choice on this page (the best run, "
                f"the model shown) is made on the validation numbers, and the numbers reported are final-epoch "
                f"test numbers on the 10,000 test images.")
    return (text + "; these runs predate the validation split, so the best run here is chosen on the test numbers "
            "(final epoch, 10,000 test images).")


def design_sentence(table: pd.DataFrame, effects: pd.DataFrame) -> str:
    """An ablation sweep's design (its table and ablation_effects): network and budget, groups, settings and the
    paired seeds behind each."""
    runs = unique_runs(table)
    seeds = sorted(int(s) for s in runs["seed"].unique())
    tested = effects[~effects["is_base"]]
    epochs = sorted(int(e) for e in runs["train.epochs"].unique())
    budget = " or ".join(map(str, epochs)) + f" epoch{'s' if epochs != [1] else ''}"
    return (f"Design: `{runs['model.preset'].iloc[0]}`, {budget}; {len(tested)} settings in "
            f"{tested['group'].nunique()} groups, each against its base on the same {len(seeds)} seeds "
            f"({', '.join(map(str, seeds))}); {len(runs)} runs in all.")


def points(x: float) -> str:
    """A fraction as signed percentage points with 2 decimals: 0.0012 -> '+0.12'."""
    return f"{100 * x:+.2f}"


def percent_cell(x: float) -> str:
    """An accuracy for a table cell: 0.99123 -> '99.12' (the header says %); blank when missing."""
    return "" if pd.isna(x) else f"{100 * x:.2f}"


def sweep_table(table: pd.DataFrame) -> pd.DataFrame:
    """The classifier sweep for reading: one row per run, accuracies in percent, seconds, parameters."""
    runs = unique_runs(table)
    out = {"Group": runs["group"].str.replace("_", " "), "Setting": runs["label"].map(value_label),
           "Train accuracy (%)": runs["train_accuracy"].map(percent_cell)}
    if "val_accuracy" in runs and runs["val_accuracy"].notna().any():
        out["Validation accuracy (%)"] = runs["val_accuracy"].map(percent_cell)
    out |= {"Test accuracy (%)": runs["test_accuracy"].map(percent_cell),
            "Training time (s)": runs["train_seconds"].map(lambda x: f"{x:.1f}"),
            "Parameters": runs["parameters"].map(lambda x: f"{int(x):,}"),
            "Run": runs["run_id"].map(lambda r: f"`{r}`")}
    return pd.DataFrame(out)


def markdown_table(table: pd.DataFrame) -> str:
    """A Markdown pipe table without an index; columns whose cells all read as numbers are right-aligned."""
    def numeric(column: pd.Series) -> bool:
        text = column.astype(str).str.replace(r"[,%+\s]|^$", "", regex=True)
        return bool(pd.to_numeric(text, errors="coerce").notna().all())

    cells = table.astype(str).replace({"nan": "", "None": ""})
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---:" if numeric(cells[c]) else "---" for c in table.columns) + " |"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def sortable_html(table: pd.DataFrame, table_id: str) -> str:
    """An HTML table whose column headers sort it on click (numbers numerically), with a few lines of plain JS.

    Returned as a Markdown raw-HTML block, so Quarto passes it through as it is and loads no script from a CDN.
    """
    html = table.to_html(index=False, table_id=table_id, classes="table table-sm sortable", border=0, escape=True)
    html = re.sub(r"<code>|</code>", "", html).replace("`", "")
    script = (
        "<script>(function(){const t=document.getElementById('TABLE_ID');if(!t)return;"
        "t.querySelectorAll('th').forEach((th,i)=>{th.style.cursor='pointer';th.title='click to sort';"
        "th.addEventListener('click',()=>{const b=t.tBodies[0],rows=[...b.rows],up=th.dataset.up!=='1';"
        "th.dataset.up=up?'1':'0';const v=r=>{const s=r.cells[i].innerText.replace(/,/g,''),n=parseFloat(s);"
        "return isNaN(n)?s:n};"
        "rows.sort((x,y)=>{const a=v(x),c=v(y);return (a>c?1:a<c?-1:0)*(up?1:-1)});"
        "rows.forEach(r=>b.appendChild(r))})})})();</script>").replace("TABLE_ID", table_id)
    return "```{=html}\n" + html + "\n" + script + "\n```"


# ---------------------------------------------------------------- describing runs

def widths(channels: str) -> str:
    """'[[16], [32], [64]]' or '[32, 64]' (a table's JSON text) -> '16/32/64'."""
    def flat(x):
        return [c for item in x for c in flat(item)] if isinstance(x, list) else [x]

    return "/".join(str(c) for c in flat(json.loads(channels)))


def value_label(label: str) -> str:
    """A grid label without its seed and key prefixes: 'model.norm=layer seed=1' -> 'norm=layer'."""
    # labels are "key=value" pairs joined by spaces, and list values hold spaces too: split on the keys instead
    pairs = [part.split("=", 1) for part in re.split(r" (?=[a-z_.]+=)", str(label)) if "=" in part]
    parts = [f"{key.split('.', 1)[-1]}={widths(value) if value.startswith('[') else value}"
             for key, value in pairs if key != "seed"]
    return " ".join(parts) or "base"


def describe(row: pd.Series) -> str:
    """A run's config in words: model, widths, budget and optimiser, e.g. for the headline table."""
    epochs = int(row["train.epochs"])
    text = f"`{row['model.preset']}` {widths(row['model.channels'])}"
    if row.get("task") == "autoencoder" and row.get("model.arch") != "pca":
        text += f", latent {int(row['model.latent_dim'])}, {row['model.activation']}"
    elif row.get("task") == "autoencoder":
        return f"PCA, {int(row['model.latent_dim'])} components"
    text += f", {epochs} epoch{'s' if epochs != 1 else ''}, {row['train.optimizer']} lr {row['train.lr']:g}"
    if row.get("train.schedule") and row["train.schedule"] != "none":
        text += f" ({row['train.schedule']})"
    return text


def percent(x: float, digits: int = 2) -> str:
    """0.99471 -> '99.47%'."""
    return f"{100 * x:.{digits}f}%"


# ---------------------------------------------------------------- headline numbers

def best_accuracy(classifiers: pd.DataFrame) -> pd.Series:
    """The best classifier run, chosen on validation accuracy (the faster one on a tie); its test numbers are reported.

    Tables made before the validation split have no validation numbers: there the choice falls back on test
    accuracy, and the row's `chosen_on` says so.
    """
    runs = unique_runs(classifiers).set_index("run_id", drop=False)
    best = runs.loc[best_classifier_run(classifiers)].copy()  # the rule the report's artifacts were chosen by
    best["chosen_on"] = chosen_on(runs, "accuracy").split("_")[0]  # "val" or "test"
    return best


def fastest_to(classifiers: pd.DataFrame, target: float = TARGET_ACCURACY) -> pd.Series | None:
    """The run with the least training time whose final accuracy reaches target (on validation where the runs
    hold it out, else on test; its `chosen_on` says which); None if none does."""
    good = unique_runs(classifiers)
    on = chosen_on(good, "accuracy")
    good = good[good[on] >= target]
    if good.empty:
        return None
    fastest = good.sort_values(["train_seconds", on], ascending=[True, False]).iloc[0].copy()
    fastest["chosen_on"] = on.split("_")[0]
    return fastest


def mse_by_latent(autoencoders: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Per latent size: the best conv autoencoder's test MSE (and run), and PCA's at the same size. The best is
    chosen on validation MSE where the runs hold a validation split out, else on test MSE.

    With group, only that grid group's conv runs count (e.g. "latent_dim": one recipe at every size, a fair
    comparison); without, the best conv run of any group at that size (the headline).

    Columns: latent_dim, ae_mse, ae_run_id, ae_seconds, pca_mse, pca_run_id, ae_gain (how much lower the AE's MSE
    is than PCA's, as a fraction of PCA's; NaN where one side is missing).
    """
    runs = unique_runs(autoencoders)
    is_pca = runs["model.arch"] == "pca"
    if group is not None and (autoencoders["group"] == group).any():
        in_group = set(autoencoders.loc[autoencoders["group"] == group, "run_id"])
        runs, is_pca = runs[is_pca | runs["run_id"].isin(in_group)], is_pca[is_pca | runs["run_id"].isin(in_group)]
    rows = []
    for latent, group in runs.groupby("model.latent_dim"):
        conv, pca = group[~is_pca.loc[group.index]], group[is_pca.loc[group.index]]
        row = {"latent_dim": int(latent), "ae_mse": np.nan, "ae_run_id": None, "ae_seconds": np.nan,
               "pca_mse": np.nan, "pca_run_id": None}
        if not conv.empty:
            best = conv.loc[conv[chosen_on(conv, "mse")].idxmin()]
            row |= {"ae_mse": best["test_mse"], "ae_run_id": best["run_id"], "ae_seconds": best["train_seconds"]}
        if not pca.empty:
            best = pca.loc[pca["test_mse"].idxmin()]
            row |= {"pca_mse": best["test_mse"], "pca_run_id": best["run_id"]}
        rows.append(row)
    table = pd.DataFrame(rows)
    table["ae_gain"] = 1 - table["ae_mse"] / table["pca_mse"]
    return table


def headline(classifiers: pd.DataFrame | None, autoencoders: pd.DataFrame | None) -> dict:
    """The overview's numbers: best test accuracy, fastest run to 99%, best MSE per latent size (None if no table)."""
    return {
        "best": None if classifiers is None else best_accuracy(classifiers),
        "fastest": None if classifiers is None else fastest_to(classifiers),
        "latent": None if autoencoders is None else mse_by_latent(autoencoders),
    }


def headline_markdown(numbers: dict, target: float = TARGET_ACCURACY) -> str:
    """The headline numbers as a Markdown table, one line per claim, each naming its run."""
    lines = ["| What | Number | Run |", "| --- | --- | --- |"]
    best, fastest, latent = numbers["best"], numbers["fastest"], numbers["latent"]
    bar = f"{100 * target:g}%"
    if best is not None:
        what = ("best run, chosen on validation: its test accuracy" if best.get("chosen_on") == "val" else
                "best test accuracy (chosen on test: these runs predate the validation split)")
        lines.append(f"| {what} | **{percent(best['test_accuracy'])}** "
                     f"(train {percent(best['train_accuracy'])}, {best['train_seconds']:.0f} s) "
                     f"| {describe(best)} · `{best['run_id']}` |")
        if fastest is None:
            lines.append(f"| fastest to {bar} | no run reached {bar} | |")
        else:
            where = "validation" if fastest["chosen_on"] == "val" else "test"
            lines.append(f"| fastest to {bar} {where} accuracy | **{fastest['train_seconds']:.1f} s** of "
                         f"training (test {percent(fastest['test_accuracy'])}) | {describe(fastest)} · "
                         f"`{fastest['run_id']}` |")
    if latent is not None:
        for row in latent.itertuples():
            if np.isnan(row.ae_mse):
                continue
            pca = f", PCA {row.pca_mse:.4f}" if not np.isnan(row.pca_mse) else ""
            lines.append(f"| best reconstruction MSE, latent {row.latent_dim} | **{row.ae_mse:.4f}**{pca} | "
                         f"`{row.ae_run_id}` |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the accuracy / time trade-off

def pareto_front(table: pd.DataFrame, cost: str = "train_seconds", gain: str = "test_accuracy") -> pd.Series:
    """True for rows no other row beats on both counts (less or equal cost and more gain, one strictly)."""
    order = table.sort_values([cost, gain], ascending=[True, False])
    on_front, best_so_far = pd.Series(False, index=table.index), -np.inf
    for index, value in order[gain].items():
        if value > best_so_far:  # cheaper rows all had less gain
            on_front[index] = True
            best_so_far = value
    return on_front


def pareto_sentence(table: pd.DataFrame) -> str:
    """What the front says: where it starts, where it ends, and what the last step up costs."""
    runs = unique_runs(table)
    front = runs[pareto_front(runs)].sort_values("train_seconds")
    first, last = front.iloc[0], front.iloc[-1]
    def name(row: pd.Series) -> str:
        return f"{value_label(row['label'])} ({describe(row)})"

    text = (f"{len(front)} of the {len(runs)} runs lie on the Pareto front. It starts at {name(first)}, "
            f"{percent(first['test_accuracy'])} in {first['train_seconds']:.0f} s, and ends at {name(last)}, "
            f"{percent(last['test_accuracy'])} in {last['train_seconds']:.0f} s")
    if len(front) >= 2:
        before = front.iloc[-2]
        gain = 100 * (last["test_accuracy"] - before["test_accuracy"])
        factor = last["train_seconds"] / before["train_seconds"]
        text += (f"; its last step buys {gain:.2f} points of test accuracy (one seed) for {factor:.1f}x the training "
                 f"time of the run before it, {name(before)}")
    off = runs[~pareto_front(runs)]
    if not off.empty:
        text += (". Every run off the front is matched by one that trains faster and scores at least as well, "
                 "so its settings are not worth their cost at this budget")
    return text + "."


# ---------------------------------------------------------------- over- and underfitting

def fit_rule(gap: float = OVERFIT_GAP, underfit_below: float = UNDERFIT_BELOW) -> str:
    """The over/underfitting rule in words, as the page states it."""
    return (f"**Overfitting**: final train accuracy (re-measured in eval mode) exceeds test accuracy by more than "
            f"{100 * gap:.1f} points, or test loss rose in the last epoch while train loss fell. "
            f"**Underfitting**: final train accuracy below {percent(underfit_below, 0)}: the network has not yet "
            f"fitted its own training data, so more capacity or training should help.")


def fit_flags(table: pd.DataFrame, history: pd.DataFrame | None, gap: float = OVERFIT_GAP,
              underfit_below: float = UNDERFIT_BELOW) -> pd.DataFrame:
    """One row per run: train/test accuracy, their gap in points, whether test loss rose at the end, and the flag."""
    runs = unique_runs(table)
    rising = {}
    if history is not None and "test_loss" in history:
        for rid, epochs in history.sort_values("epoch").groupby("run_id"):
            if len(epochs) >= 2:
                last, prev = epochs.iloc[-1], epochs.iloc[-2]
                rising[rid] = bool(last["test_loss"] > prev["test_loss"] and last["train_loss"] < prev["train_loss"])
    out = pd.DataFrame({
        "run_id": runs["run_id"], "group": runs["group"], "setting": runs["label"].map(value_label),
        "epochs": runs["train.epochs"], "train_accuracy": runs["train_accuracy"],
        "test_accuracy": runs["test_accuracy"],
        "gap_points": 100 * (runs["train_accuracy"] - runs["test_accuracy"]),
        "test_loss_rising": runs["run_id"].map(lambda r: rising.get(r, False)),
    })
    over = (out["gap_points"] > 100 * gap) | out["test_loss_rising"]
    under = out["train_accuracy"] < underfit_below
    out["flag"] = np.where(over, "overfitting", np.where(under, "underfitting", ""))
    return out


def fit_sentence(flags: pd.DataFrame) -> str:
    """What the flags say about the sweep, in a sentence or two, with how the gap grows with training length."""
    over, under = flags[flags["flag"] == "overfitting"], flags[flags["flag"] == "underfitting"]
    widest = flags.loc[flags["gap_points"].idxmax()]
    if over.empty:
        text = (f"No run overfits by this rule: the widest train-test gap is {widest['gap_points']:.2f} points "
                f"({widest['setting']}) and no run's test loss rose in its last epoch")
    else:
        names = ", ".join(f"{r.setting} ({r.gap_points:.2f} points"
                          f"{', test loss rising' if r.test_loss_rising else ''})" for r in over.itertuples())
        text = f"{len(over)} run{'s' if len(over) != 1 else ''} overfit{'s' if len(over) == 1 else ''}: {names}"
    if under.empty:
        text += "; none underfits."
    else:
        names = ", ".join(f"{r.setting} (train {percent(r.train_accuracy)})" for r in under.itertuples())
        text += f"; {len(under)} underfit{'s' if len(under) == 1 else ''}: {names}."
    by_epochs = flags.groupby("epochs")["gap_points"].mean()
    if len(by_epochs) >= 2:
        first, last = by_epochs.index[0], by_epochs.index[-1]
        trend = "widens" if by_epochs.iloc[-1] > by_epochs.iloc[0] else "does not widen"
        text += (f" The gap {trend} with training length: {by_epochs.iloc[0]:.2f} points on average after {first} "
                 f"epoch{'s' if first != 1 else ''}, {by_epochs.iloc[-1]:.2f} after {last}.")
    return text


def flags_table(flags: pd.DataFrame) -> pd.DataFrame:
    """The flagged runs for reading (empty when none is flagged)."""
    flagged = flags[flags["flag"] != ""]
    return pd.DataFrame({"Group": flagged["group"].str.replace("_", " "), "Setting": flagged["setting"],
                         "Epochs": flagged["epochs"].astype(int),
                         "Train accuracy (%)": flagged["train_accuracy"].map(percent_cell),
                         "Test accuracy (%)": flagged["test_accuracy"].map(percent_cell),
                         "Gap (points)": flagged["gap_points"].map(lambda x: f"{x:.2f}"),
                         "Test loss rose last epoch": flagged["test_loss_rising"].map({True: "yes", False: "no"}),
                         "Flag": flagged["flag"]})


# ---------------------------------------------------------------- ablations

def _base_setting(group: pd.DataFrame, counts: dict[str, int]) -> str:
    """The setting of a group whose runs stand in the most groups: the shared base config (first one on a tie)."""
    score = group.groupby("setting", sort=False)["run_id"].agg(lambda ids: min(counts[i] for i in ids))
    return score.idxmax()


def ablation_effects(table: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per group and setting: the seeds' mean and spread, and the paired effect against the group's base.

    The base of a group is the setting whose runs also stand in other groups (the sweep's base config). The effect
    is the mean over shared seeds of (setting - base), with its 95% t interval, and Holm's correction across every
    comparison of the sweep (lab/report/statistics.py): `verdict` is "effect" only when the corrected interval
    excludes zero; `detectable` is the smallest effect the design finds with 80% power at its corrected level.
    """
    runs = table.assign(setting=table["label"].map(value_label))
    counts = runs.groupby("run_id")["group"].nunique().to_dict()
    cells, comparisons = [], []
    for group, group_runs in runs.groupby("group", sort=False):
        base = _base_setting(group_runs, counts)
        by_seed = {setting: cell.groupby("seed")[metric].mean() for setting, cell in group_runs.groupby("setting")}
        for setting, cell in group_runs.groupby("setting", sort=False):
            values = cell[metric]
            row = {"group": group, "setting": setting, "is_base": setting == base, "mean": values.mean(),
                   "std": values.std(ddof=1) if len(values) > 1 else np.nan, "min": values.min(),
                   "max": values.max(), "values": values.tolist(), "base_mean": by_seed[base].mean()}
            if setting == base:
                cells.append(row | {"seeds": len(values), "effect": 0.0, "verdict": S.BASE})
            else:
                cells.append(row)
                comparisons.append(S.compare(by_seed[base], by_seed[setting]))
    effects = pd.DataFrame(cells)
    if comparisons:  # the comparisons, in the order of the non-base rows, fill those rows' statistics
        tested = S.correct(pd.DataFrame(comparisons)).drop(columns=["differences"])
        tested.index = effects.index[~effects["is_base"]]
        effects = effects.combine_first(tested)
    return effects


def interval_text(row, corrected: bool = True) -> str:
    """"-0.12 points [-0.30, +0.05]": an effect and its (Holm-corrected) 95% interval, in points."""
    low, high = (row.corrected_low, row.corrected_high) if corrected else (row.low, row.high)
    return f"{points(row.effect)} points [{points(low)}, {points(high)}]"


def verdict_text(row) -> str:
    """What a comparison lets the lab say, in words, with the number of seeds behind it."""
    if row.verdict == S.EFFECT:
        return f"an effect ({int(row.seeds)} paired seeds)"
    if row.verdict == S.TOO_FEW:
        return f"not resolvable: {int(row.seeds)} paired seed, an interval needs two"
    return (f"no effect detectable at {int(row.seeds)} seeds (the design finds {100 * row.detectable:.2f} points "
            f"with 80% power)")


def effects_table(effects: pd.DataFrame, metric_name: str = "Test accuracy") -> pd.DataFrame:
    """The tested (non-base) settings of an ablation sweep for reading: means, paired effects, intervals, verdicts."""
    tested = effects[~effects["is_base"]]
    return pd.DataFrame({
        "Group": tested["group"].str.replace("_", " "), "Setting": tested["setting"],
        "Seeds": tested["seeds"].astype(int), f"{metric_name}, base (%)": tested["base_mean"].map(percent_cell),
        f"{metric_name}, setting (%)": tested["mean"].map(percent_cell),
        "Effect (points)": tested["effect"].map(points),
        "Holm-corrected 95% interval (points)": [f"[{points(lo)}, {points(hi)}]" for lo, hi in
                                                 zip(tested["corrected_low"], tested["corrected_high"], strict=True)],
        "Holm p": tested["p_holm"].map(lambda p: f"{p:.3f}"),
        "Verdict": tested["verdict"],
        "Detectable at 80% power (points)": tested["detectable"].map(lambda d: f"{100 * d:.2f}")})


def ablation_sentences(effects: pd.DataFrame, metric_name: str = "test accuracy") -> list[str]:
    """One sentence per ablation group: each setting's paired effect on the metric, its interval and its verdict."""
    sentences = []
    for group, cells in effects.groupby("group", sort=False):
        base = cells[cells["is_base"]].iloc[0]
        others = cells[~cells["is_base"]]
        name = str(group).replace("_", " ")
        head = f"**{name}** (base {base['setting']}: {percent(base['mean'])} mean {metric_name})"
        if others.empty:
            sentences.append(f"{head}: only the base was run.")
            continue
        parts = [f"{r.setting} {interval_text(r)}: {verdict_text(r)}" for r in others.itertuples()]
        sentences.append(f"{head}: " + "; ".join(parts) + ".")
    return sentences


def knobs_sentence(effects: pd.DataFrame) -> str:
    """Which ablated settings have an effect after Holm's correction, largest first, and which do not."""
    tested = effects[~effects["is_base"]]
    found = tested[tested["verdict"] == S.EFFECT].sort_values("effect", key=abs, ascending=False)
    rest = tested[tested["verdict"] != S.EFFECT]
    family = f"{len(tested)} comparisons, Holm-corrected 95% intervals from paired seeds"
    if found.empty:
        return (f"No ablated setting has an effect on test accuracy that survives the correction ({family}); "
                f"each comparison's smallest detectable effect is in the table of effects.")
    text = "Effects (" + family + "): " + "; ".join(f"{r.setting} {interval_text(r)}"
                                                    for r in found.itertuples()) + "."
    if not rest.empty:
        text += " No effect detectable: " + ", ".join(r.setting for r in rest.itertuples()) + "."
    return text


def ranked_groups(effects: pd.DataFrame) -> pd.DataFrame:
    """Groups ordered by their largest absolute effect against the base, and whether any survives the correction."""
    size = effects.groupby("group", sort=False).agg(largest=("effect", lambda d: d.abs().max()),
                                                    any_effect=("verdict", lambda v: (v == S.EFFECT).any()))
    return size.sort_values("largest", ascending=False).reset_index()


# ---------------------------------------------------------------- sweep groups (hyperparameters, autoencoders)

def group_effects(table: pd.DataFrame, group: str, metric: str) -> pd.DataFrame:
    """The runs of one grid group: setting, metric, train seconds, parameters and the change against the base.

    The base is the group's run that also stands in other groups; a group without one (e.g. a different preset)
    is compared with the sweep's base, the run that stands in the most groups.
    """
    runs = table[table["group"] == group].assign(setting=lambda t: t["label"].map(value_label))
    if runs.empty:
        return runs
    counts = table.groupby("run_id")["group"].nunique().to_dict()
    base = _base_setting(runs, counts)
    base_value = runs.loc[runs["setting"] == base, metric].mean()
    shared = max(counts, key=counts.get)
    if max(counts[r] for r in runs["run_id"]) == 1 and counts[shared] > 1:
        base, base_value = None, table.loc[table["run_id"] == shared, metric].iloc[0]
    return pd.DataFrame({"setting": runs["setting"], "is_base": runs["setting"] == base, metric: runs[metric],
                         "delta": runs[metric] - base_value, "train_seconds": runs["train_seconds"],
                         "parameters": runs["parameters"], "run_id": runs["run_id"]}).reset_index(drop=True)


def group_panels(table: pd.DataFrame, groups: tuple[str, ...], metric: str) -> dict[str, pd.DataFrame]:
    """group_effects for each of these groups the table has; Missing when it has none of them."""
    panels = {g: group_effects(table, g, metric) for g in groups if (table["group"] == g).any()}
    if not panels:
        raise Missing(f"The table has none of the groups {', '.join(groups)}, so there is nothing to compare.")
    return panels


def group_sentence(effects: pd.DataFrame, metric: str, lower_is_better: bool, what: str) -> str:
    """Best and worst setting of a group against its base, in words (MSE as relative change, accuracy in points)."""
    what = what.replace("_", " ")
    if effects.empty:
        return f"No runs of the {what} group are in the table."
    order = effects.sort_values(metric, ascending=lower_is_better)
    best, worst = order.iloc[0], order.iloc[-1]
    base = effects[effects["is_base"]].iloc[0] if effects["is_base"].any() else None

    def change(row: pd.Series) -> str:
        against = "the base" if base is not None else "the sweep's base"
        if metric.endswith("mse"):
            base_value = row[metric] - row["delta"]
            return f"{row[metric]:.4f} ({100 * (row[metric] / base_value - 1):+.0f}% against {against})"
        return f"{percent(row[metric])} ({points(row['delta'])} points against {against})"

    if len(effects) == 1:
        return f"The {what} group has one run: {best['setting']}, {change(best)}."
    if base is not None and best["setting"] == base["setting"]:
        return (f"Across {what}, the base ({base['setting']}) is best, and the worst is {worst['setting']} at "
                f"{change(worst)}.")
    return (f"Across {what}, the best is {best['setting']} at {change(best)} and the worst {worst['setting']} at "
            f"{change(worst)}" + (f"; the base is {base['setting']}." if base is not None else "."))


def seed_noise_sentence(effects: pd.DataFrame) -> str:
    """How far one seed moves the ablation base (ablation_effects' rows): the yardstick for single-seed differences
    elsewhere."""
    base = effects[effects["is_base"]].iloc[0]
    values = np.asarray(base["values"], dtype=float)
    return (f"Each run here is one seed. The ablations' base network, trained on {len(values)} seeds, varies by "
            f"{100 * values.std(ddof=1):.2f} points (sd; range {100 * (values.max() - values.min()):.2f} points) "
            f"from seed to seed, so single-seed differences of that size are not resolvable here.")


def latent_table(latent: pd.DataFrame) -> pd.DataFrame:
    """mse_by_latent for reading: per latent size, the autoencoder's and PCA's test MSE and the gain."""
    mse = lambda x: "" if pd.isna(x) else f"{x:.4f}"  # noqa: E731
    return pd.DataFrame({"Latent size": latent["latent_dim"].astype(int),
                         "Autoencoder test MSE": latent["ae_mse"].map(mse), "PCA test MSE": latent["pca_mse"].map(mse),
                         "Autoencoder lower by (%)": latent["ae_gain"].map(lambda g: "" if pd.isna(g) else
                                                                           f"{100 * g:.0f}"),
                         "Autoencoder run": latent["ae_run_id"].map(lambda r: f"`{r}`" if r else "")})


def ae_vs_pca_sentence(latent: pd.DataFrame) -> str:
    """Whether the autoencoder beats PCA at each latent size, and by how much."""
    both = latent.dropna(subset=["ae_mse", "pca_mse"])
    if both.empty:
        return "The table has no latent size with both an autoencoder and a PCA run, so there is nothing to compare."
    wins = both[both["ae_mse"] < both["pca_mse"]]
    detail = ", ".join(f"{abs(100 * r.ae_gain):.0f}% {'lower' if r.ae_gain > 0 else 'higher'} at {r.latent_dim}"
                       for r in both.itertuples())
    if len(wins) == len(both):
        verdict = f"The autoencoder beats PCA at all {len(both)} latent sizes tried"
    elif wins.empty:
        verdict = "PCA beats the autoencoder at every latent size tried"
    else:
        verdict = (f"The autoencoder beats PCA at latent size{'s' if len(wins) > 1 else ''} "
                   f"{', '.join(str(d) for d in wins['latent_dim'])} only")
    big, small = both.loc[both["ae_gain"].idxmax()], both.loc[both["ae_gain"].idxmin()]
    return (f"{verdict}. Its test MSE is {detail} than PCA's; the gain is largest at "
            f"{big.latent_dim} ({big.ae_mse:.4f} against {big.pca_mse:.4f}) and smallest at {small.latent_dim} "
            f"({small.ae_mse:.4f} against {small.pca_mse:.4f}). PCA keeps the directions of largest pixel variance, "
            f"which is optimal among linear codes; the nonlinear decoder's advantage shows where a few linear "
            f"components cannot capture the shapes.")


def confusion(labels: np.ndarray, predictions: np.ndarray, classes: int = 10) -> np.ndarray:
    """Counts (classes, classes): rows the true class, columns the predicted one."""
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def confusion_sentence(matrix: np.ndarray) -> str:
    """How many test digits a classifier gets wrong and which confusions dominate (rows true, columns predicted)."""
    total, errors = matrix.sum(), matrix.sum() - np.trace(matrix)
    if errors == 0:
        return f"It classifies all {total:,} test digits correctly."
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    top = np.dstack(np.unravel_index(np.argsort(-off, axis=None), off.shape))[0][:3]
    pairs = ", ".join(f"{t} read as {p} ({off[t, p]})" for t, p in top if off[t, p] > 0)
    hardest = int(np.argmax(off.sum(1)))
    return (f"It gets {errors} of {total:,} test digits wrong ({percent(errors / total)}). The commonest confusions "
            f"are {pairs}; the hardest true class is {hardest}, with {off[hardest].sum()} mistakes.")


def centroid_hits(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per point, whether the nearest class centroid of a 2-D map is its own class's (how well the map separates)."""
    classes = np.unique(labels)
    centroids = np.stack([points[labels == c].mean(0) for c in classes])  # (classes, 2)
    return classes[((points[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)] == labels


def centroid_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of points whose nearest class centroid is their own class's."""
    return float(centroid_hits(points, labels).mean())


def latent_map_sentence(panels: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    """How well each latent map separates the digits (a nearest-centroid rule), and which digits stand apart."""
    def name(title: str) -> str:  # "latent 2: codes as they are" -> "the latent-2 map"
        return f"the {title.split(':')[0].strip().replace(' ', '-')} map"

    parts = [f"{percent(centroid_accuracy(points, labels), 0)} on {name(title)}" for title, points, labels in panels]
    title, points, labels = panels[0]
    hits = centroid_hits(points, labels)
    recall = pd.Series(hits).groupby(labels).mean().sort_values(ascending=False)
    best = " and ".join(f"{d} ({percent(r, 0)})" for d, r in recall.head(2).items())
    worst = ", ".join(f"{d} ({percent(r, 0)})" for d, r in recall.tail(3).items())
    return (f"A nearest-centroid rule, which knows nothing but where each class's cloud is centred, names the right "
            f"class of the test images {' and '.join(parts)} (chance: 10%). On {name(title)}, {best} "
            f"stand apart, while {worst} lie mostly inside other classes' clouds.")


def callout(text: str, title: str = "Not shown", kind: str = "note") -> str:
    """A Quarto callout block (Markdown) for things the page cannot show, saying what is missing and how to get it."""
    return f"::: {{.callout-{kind}}}\n## {title}\n\n{text}\n:::\n"
