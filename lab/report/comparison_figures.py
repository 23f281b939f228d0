"""Figures that compare: the reference recipe's seeds against its bars, the reference findings with their intervals,
the optimisers across their learning rates, and MNIST against Fashion-MNIST.

Sized like every report figure: at most 7 inches wide (Quarto's content column at fig-dpi 110) with text of at
least 9 pt at that size.
"""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.report.figures import GREY, MIN_FONT, PAGE_WIDTH, PALETTE, RED, _figure, _styled, plain_log

FONT = MIN_FONT
COLORS = {"mnist": PALETTE[0], "fashion_mnist": PALETTE[1]}
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
VERDICT_COLORS = {"confirmed": PALETTE[2], "contradicted": RED, "effect": RED}  # others: grey


@_styled
def recipe_seeds(runs: pd.DataFrame, history: pd.DataFrame, claimed: float, target: float) -> Figure:
    """Test accuracy per epoch of each seed of the recipe, with the reference's claim and the lab's target."""
    fig = _figure(PAGE_WIDTH, 3.6)
    ax = fig.subplots()
    for i, (rid, epochs) in enumerate(history.sort_values("epoch").groupby("run_id", sort=False)):
        seed = int(runs.loc[runs["run_id"] == rid, "seed"].iloc[0])
        ax.plot(epochs["epoch"], 100 * epochs["test_accuracy"], marker="o", ms=3, color=PALETTE[i % len(PALETTE)],
                label=f"seed {seed}")
    for value, style, name in [(claimed, ":", "reference's claim"), (target, "--", "the lab's target")]:
        ax.axhline(100 * value, color="black", ls=style, lw=1)
        ax.annotate(f"{name} ({100 * value:g}%)", (1, 100 * value), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=FONT)
    low = min(100 * claimed - 0.3, 100 * history.loc[history["epoch"] > 2, "test_accuracy"].min() - 0.1)
    ax.set_ylim(low, 100 * target + 0.25)  # the first two epochs, far below, are left out
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch", fontsize=FONT + 1)
    ax.set_ylabel("test accuracy (%)", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=len(history["run_id"].unique()), fontsize=FONT)
    return fig


@_styled
def findings_forest(verdicts: pd.DataFrame) -> Figure:
    """Each reference finding's paired effect in points with its uncorrected and Holm-corrected 95% intervals."""
    rows = verdicts.reset_index(drop=True)
    fig = _figure(PAGE_WIDTH, 0.55 * len(rows) + 1.4)
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    for yi, r in zip(y, rows.itertuples(), strict=True):
        color = VERDICT_COLORS.get(r.verdict, GREY)
        ax.plot([100 * r.low, 100 * r.high], [yi, yi], color=color, lw=1)
        ax.plot([100 * r.corrected_low, 100 * r.corrected_high], [yi, yi], color=color, lw=4, alpha=0.6)
        ax.plot(100 * r.effect, yi, "o", color=color, ms=6)
    ax.axvline(0, color="black", lw=0.8)
    what = ["train-test gap" if m == "gap" else "test accuracy" for m in rows["metric"]]
    ax.set_yticks(y, [f"{a} vs {b}\n({w}): {v}" for a, b, w, v in
                      zip(rows["alternative"], rows["reference"], what, rows["verdict"], strict=True)], fontsize=FONT)
    ax.set_xlabel("alternative minus the reference's choice, points (thick: Holm-corrected 95% interval)",
                  fontsize=FONT)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(axis="x", alpha=0.3)
    return fig


@_styled
def optimizer_rates(table: pd.DataFrame, chosen: pd.DataFrame) -> Figure:
    """Mean validation accuracy against learning rate per optimiser (bars: the seeds' range), the chosen rate ringed."""
    fig = _figure(PAGE_WIDTH, 3.8)
    ax = fig.subplots()
    for i, (name, runs) in enumerate(table.drop_duplicates("run_id").groupby("train.optimizer", sort=False)):
        by_rate = runs.groupby("train.lr")["val_accuracy"].agg(["mean", "min", "max"])
        x = by_rate.index.to_numpy(dtype=float)
        ax.errorbar(x, 100 * by_rate["mean"], yerr=[100 * (by_rate["mean"] - by_rate["min"]),
                                                    100 * (by_rate["max"] - by_rate["mean"])],
                    marker="o", ms=4, capsize=3, color=PALETTE[i % len(PALETTE)], label=name)
        pick = chosen.loc[chosen["optimizer"] == name, "chosen_lr"].iloc[0]
        ax.plot(pick, 100 * by_rate.loc[pick, "mean"], "o", ms=13, mfc="none", mec=PALETTE[i % len(PALETTE)], mew=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (log scale)", fontsize=FONT + 1)
    ax.set_ylabel("validation accuracy (%)", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right center", fontsize=FONT, title="ringed:\nchosen rate", title_fontsize=FONT)
    return fig


@_styled
def effects_by_dataset(effects: dict[str, pd.DataFrame]) -> Figure:
    """Each ablation setting's paired effect on test accuracy (Holm-corrected 95% interval) on each dataset."""
    tested = {d: e[~e["is_base"]].set_index(["group", "setting"]) for d, e in effects.items()}
    keys = list(dict.fromkeys(k for e in tested.values() for k in e.index))
    fig = _figure(PAGE_WIDTH, 0.5 * len(keys) + 1.5)
    ax = fig.subplots()
    y = np.arange(len(keys))[::-1].astype(float)
    for j, (dataset, e) in enumerate(tested.items()):
        shift = 0.15 * (1 - 2 * j) if len(tested) == 2 else 0.0
        for yi, key in zip(y, keys, strict=True):
            if key not in e.index:
                continue
            r = e.loc[key]
            ax.plot([100 * r["corrected_low"], 100 * r["corrected_high"]], [yi + shift] * 2, color=COLORS[dataset],
                    lw=3, alpha=0.6)
            ax.plot(100 * r["effect"], yi + shift, "o", color=COLORS[dataset], ms=5,
                    label=DATASET_NAMES[dataset] if yi == y[0] or key == keys[0] else None)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [s.replace("_", " ") for _, s in keys], fontsize=FONT)
    ax.set_xlabel("effect on test accuracy against the base, points (Holm-corrected 95% interval)", fontsize=FONT)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    fig.legend(unique.values(), unique.keys(), loc="outside upper center", ncols=2, fontsize=FONT)
    return fig


@_styled
def latent_by_dataset(latent: dict[str, pd.DataFrame]) -> Figure:
    """Test MSE against latent size, autoencoder (solid) and PCA (dashed), one colour per dataset."""
    fig = _figure(PAGE_WIDTH, 3.8)
    ax = fig.subplots()
    for dataset, table in latent.items():
        color, name = COLORS[dataset], DATASET_NAMES[dataset]
        ax.plot(table["latent_dim"], table["ae_mse"], "o-", color=color, label=f"{name}: autoencoder")
        ax.plot(table["latent_dim"], table["pca_mse"], "s--", color=color, mfc="white", label=f"{name}: PCA")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({int(s) for t in latent.values() for s in t["latent_dim"]})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("latent size (components for PCA)", fontsize=FONT + 1)
    ax.set_ylabel("test MSE per pixel (log scale)", fontsize=FONT + 1)
    plain_log(ax.yaxis)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3, which="both")
    fig.legend(loc="outside right center", fontsize=FONT)
    return fig
