"""The report's figures: tables and arrays in, matplotlib Figures out (no pyplot state, so nothing leaks between cells).

Images are numpy arrays (N, 28, 28) of floats in [0, 1], white digit on black, shown as dark ink on white paper.
"""

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

from lab.report.analysis import pareto_front, percent, unique_runs, value_label

INK = "gray_r"  # digits as dark strokes on white, as a reader writes them
PCA_COLOR, AE_COLOR = "#7f7f7f", "#1f77b4"


def _plain_log(axis) -> None:
    """Log scale with plain numbers on the major ticks and unlabelled minor ticks (no '2x10^0' clutter)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def _digits_axis(ax, image: np.ndarray, title: str | None = None, color: str = "black") -> None:
    ax.imshow(image, cmap=INK, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8, color=color)


def accuracy_vs_time(table: pd.DataFrame) -> Figure:
    """Test accuracy against training seconds, one colour per grid group, the Pareto front joined and labelled."""
    runs = unique_runs(table)
    front = pareto_front(runs)
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    for group, points in runs.groupby("group", sort=False):
        ax.scatter(points["train_seconds"], 100 * points["test_accuracy"], s=40, label=group, alpha=0.85)
    best = runs[front].sort_values("train_seconds")
    ax.plot(best["train_seconds"], 100 * best["test_accuracy"], "k--", lw=1, label="Pareto front", zorder=0)
    for row in best.itertuples():
        ax.annotate(value_label(row.label), (row.train_seconds, 100 * row.test_accuracy), fontsize=7,
                    xytext=(4, -10), textcoords="offset points")
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def training_curves(history: pd.DataFrame, table: pd.DataFrame, flags: pd.DataFrame,
                    metric: str = "accuracy") -> Figure:
    """Per-epoch train (dashed) and test (solid) error, one panel per grid group; flagged runs say so in the legend.

    Train error is the running value during each epoch (train mode, with augmentation and dropout), test error is
    measured after the epoch. A run that stands in several groups (the base) is drawn in each.
    """
    flag = dict(zip(flags["run_id"], flags["flag"]))
    groups = list(dict.fromkeys(table["group"]))
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, group in zip(axes, groups):
        for i, run in enumerate(table[table["group"] == group].itertuples()):
            epochs = history[history["run_id"] == run.run_id].sort_values("epoch")
            if epochs.empty:
                continue
            color = f"C{i % 10}"
            label = value_label(run.label) + (f" [{flag[run.run_id]}]" if flag.get(run.run_id) else "")
            ax.plot(epochs["epoch"], 100 * (1 - epochs[f"test_{metric}"]), "-o", color=color, ms=3, label=label)
            ax.plot(epochs["epoch"], 100 * (1 - epochs[f"train_{metric}"]), "--x", color=color, ms=3, alpha=0.7)
        ax.set_title(group, fontsize=10)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        last = int(history.loc[history["run_id"].isin(table.loc[table["group"] == group, "run_id"]), "epoch"].max())
        ax.set_xticks(range(1, last + 1))
        ax.set_xlabel("epoch")
        ax.set_ylabel("error (%, log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.suptitle("train (dashed, x) and test (solid, o) error per epoch", fontsize=10)
    return fig


def ablation_effects(effects: pd.DataFrame, metric_name: str = "test accuracy") -> Figure:
    """A forest plot: each setting's paired effect against its group's base, with its Holm-corrected 95% interval
    (thick) and uncorrected one (thin); red where the corrected interval excludes zero."""
    tested = effects[~effects["is_base"]].reset_index(drop=True)
    fig = Figure(figsize=(7, 0.32 * len(tested) + 1.3), layout="constrained")
    ax = fig.subplots()
    for y, row in enumerate(tested.itertuples()):
        color = "C3" if row.verdict == "effect" else "C0"
        ax.plot([100 * row.low, 100 * row.high], [y, y], color=color, lw=1, alpha=0.6)
        ax.plot([100 * row.corrected_low, 100 * row.corrected_high], [y, y], color=color, lw=3.5, alpha=0.5)
        ax.plot(100 * row.effect, y, "o", color=color, ms=5)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(tested)), [f"{r.group}: {r.setting.split('=', 1)[-1]} ({int(r.seeds)} seeds)"
                                       for r in tested.itertuples()], fontsize=9)
    ax.invert_yaxis()
    ax.set_xscale("symlog", linthresh=1)  # intervals from two seeds are tens of points wide; effects are tenths
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:+g}" if x else "0"))
    ax.set_xlabel(f"change in {metric_name} against the base, points (log scale beyond ±1)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return fig


def confusion_matrix(matrix: np.ndarray, title: str = "") -> Figure:
    """A 10x10 confusion matrix (rows true, columns predicted), log-coloured so the rare mistakes show."""
    fig = Figure(figsize=(5.6, 5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if i == j else ("darkred" if count >= 5 else "black"))
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title, fontsize=9)
    return fig


def misclassified(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, title: str = "",
                  columns: int = 6) -> Figure:
    """Each misclassified digit above its softmax bars: the true class in green, the prediction in red."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig = Figure(figsize=(1.6 * columns, 2.6 * rows), layout="constrained")
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[1.4, 1] * rows)
    for k in range(n):
        r, c = divmod(k, columns)
        pred = int(probabilities[k].argmax())
        _digits_axis(fig.add_subplot(grid[2 * r, c]), images[k], f"true {labels[k]}, said {pred}", "darkred")
        bars = fig.add_subplot(grid[2 * r + 1, c])
        colors = ["C2" if d == labels[k] else ("C3" if d == pred else "lightgray") for d in range(10)]
        bars.bar(range(10), probabilities[k], color=colors)
        bars.set_ylim(0, 1)
        bars.set_xticks(range(10), [str(d) for d in range(10)], fontsize=6)
        bars.tick_params(axis="y", labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def augmentation_preview(originals: np.ndarray, augmented: np.ndarray, captions: list[list[str]] | None = None,
                         title: str = "") -> Figure:
    """Originals in the first column, random affine draws of each beside it; optional caption per draw."""
    n, draws = augmented.shape[:2]  # augmented: (N, draws, 28, 28)
    fig = Figure(figsize=(1.2 * (draws + 1), 1.3 * n), layout="constrained")
    axes = fig.subplots(n, draws + 1, squeeze=False)
    for i in range(n):
        _digits_axis(axes[i, 0], originals[i], "original" if i == 0 else None)
        for j in range(draws):
            _digits_axis(axes[i, j + 1], augmented[i, j], captions[i][j] if captions else None)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def mse_overview(autoencoders: pd.DataFrame, latent: pd.DataFrame) -> Figure:
    """Left: test MSE against training seconds for every run (PCA in grey). Right: test MSE against latent size."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    runs = unique_runs(autoencoders)
    pca = runs["model.arch"] == "pca"
    for i, (group, points) in enumerate(runs[~pca].groupby("group", sort=False)):
        left.scatter(points["train_seconds"], points["test_mse"], s=36, color=f"C{i % 10}", label=group)
    left.scatter(runs.loc[pca, "train_seconds"], runs.loc[pca, "test_mse"], s=36, marker="s", color=PCA_COLOR,
                 label="PCA")
    left.set_xscale("log")
    left.set_yscale("log")
    _plain_log(left.xaxis)
    left.set_xlabel("training time (s, log)")
    left.set_ylabel("test MSE per pixel (log)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3, which="both")
    right.plot(latent["latent_dim"], latent["ae_mse"], "-o", color=AE_COLOR, label="autoencoder")
    right.plot(latent["latent_dim"], latent["pca_mse"], "-s", color=PCA_COLOR, label="PCA, same size")
    for row in latent.dropna(subset=["ae_mse", "pca_mse"]).itertuples():
        right.annotate(f"{100 * row.ae_gain:.0f}% lower", (row.latent_dim, row.ae_mse), fontsize=7,
                       xytext=(0, -12), textcoords="offset points", ha="center")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(latent["latent_dim"], [str(d) for d in latent["latent_dim"]])
    right.set_xlabel("latent size")
    right.set_ylabel("test MSE per pixel (log)")
    right.legend(fontsize=8)
    right.grid(alpha=0.3, which="both")
    return fig


def group_bars(panels: dict[str, pd.DataFrame], metric: str = "test_mse") -> Figure:
    """One bar panel per grid group (e.g. activation, channels): the metric per setting, the base hatched."""
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    for ax, (name, effects) in zip(axes, panels.items()):
        names = [s.split("=", 1)[-1] for s in effects["setting"]]
        bars = ax.bar(names, effects[metric], color=[f"C{i % 10}" for i in range(len(effects))])
        for bar, is_base, value in zip(bars, effects["is_base"], effects[metric]):
            bar.set_hatch("//" if is_base else "")
            ax.annotate(f"{value:.4f}", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom",
                        fontsize=7)
        ax.set_title(f"{name} (hatched: base)", fontsize=10)
        ax.set_ylabel(metric.replace("_", " "))
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    return fig


def gallery(originals: np.ndarray, rows: list[tuple[str, np.ndarray]], title: str = "") -> Figure:
    """Originals on top, then one row of reconstructions per model, labelled on the left."""
    n = len(originals)
    fig = Figure(figsize=(0.8 * n + 2.6, 0.85 * (len(rows) + 1) + 0.3), layout="constrained")
    axes = fig.subplots(len(rows) + 1, n, squeeze=False)
    for j in range(n):
        _digits_axis(axes[0, j], originals[j])
    axes[0, 0].set_ylabel("original", rotation=0, ha="right", va="center", fontsize=8)
    for i, (label, images) in enumerate(rows, 1):
        for j in range(n):
            _digits_axis(axes[i, j], images[j])
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def interpolation_strips(strips: list[tuple[str, np.ndarray]]) -> Figure:
    """Rows of decoded images walking in a straight line through latent space from one test digit to another.

    strips: (label, images (steps, 28, 28)); the first and last images are the decoded end points.
    """
    steps = max(len(images) for _, images in strips)
    fig = Figure(figsize=(0.75 * steps + 2.6, 0.8 * len(strips) + 0.3), layout="constrained")
    axes = fig.subplots(len(strips), steps, squeeze=False)
    for i, (label, images) in enumerate(strips):
        for j in range(steps):
            if j < len(images):
                _digits_axis(axes[i, j], images[j])
            else:
                axes[i, j].set_visible(False)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def latent_map(panels: list[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """Scatter of 2-D codes (N, 2) coloured by digit, one panel per (title, codes, labels), digit names at centroids."""
    fig = Figure(figsize=(5.2 * len(panels), 5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
    for ax, (title, codes, labels) in zip(axes, panels):
        points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=2, alpha=0.5,
                            rasterized=True)
        for digit in range(10):
            if (labels == digit).any():
                cx, cy = np.median(codes[labels == digit], axis=0)
                ax.text(cx, cy, str(digit), fontsize=13, weight="bold", ha="center", va="center",
                        bbox={"boxstyle": "circle", "fc": "white", "alpha": 0.7, "lw": 0})
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(points, ax=axes.tolist(), ticks=range(10), label="digit", shrink=0.8)
    return fig


def accuracy_label(probabilities: np.ndarray, labels: np.ndarray) -> str:
    """'98.70% correct' for a batch of class probabilities (N, 10) and true labels (N,)."""
    return f"{percent(float((probabilities.argmax(1) == labels).mean()))} correct"
