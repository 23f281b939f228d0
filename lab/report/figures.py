"""The report's figures: tables and arrays in, matplotlib Figures out (no pyplot state, so nothing leaks between cells).

Every figure is drawn at most PAGE_WIDTH wide, the width the page shows it at, so that its text, at MIN_FONT points
or more, reads at that size; legends sit outside the data, and labels go where they overlap no other label.
Images are numpy arrays (N, 28, 28) of floats in [0, 1], white digit on black, shown as dark ink on white paper.
"""

import functools
import json
import textwrap
from collections.abc import Callable

import matplotlib
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, MultipleLocator, NullFormatter
from matplotlib.transforms import Bbox, ScaledTranslation

from lab.report import statistics as S
from lab.report.analysis import Missing, pareto_front, percent, unique_runs, value_label, widths

PAGE_WIDTH = 7.0  # inches: Quarto's content column (~780 px) at fig-dpi 110
MIN_FONT = 9  # points: the smallest text on any figure, at PAGE_WIDTH
# Paul Tol's "muted" scheme (colour-blind safe), darkest first; MARKERS give each series a second cue beside colour
PALETTE = ("#332288", "#CC6677", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499", "#DDCC77")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
GREY = "#777777"  # baselines (PCA) and guides
RED = "#CC3311"  # Tol's red: the one thing a figure wants the eye on (an effect)
DIGIT_COLORS = ListedColormap(PALETTE + ("#555555",), name="digits")  # ten classes, in digit order
INK = "gray_r"  # digits as dark strokes on white, as a reader writes them
PCA_COLOR, AE_COLOR = GREY, PALETTE[0]
CONFIG_PREFIXES = ("data", "model", "train")  # table columns "model.lr" etc. are the run's config
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "figure.titlesize": 11,
         "xtick.labelsize": MIN_FONT, "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT,
         "legend.title_fontsize": MIN_FONT, "axes.prop_cycle": cycler(color=PALETTE), "legend.frameon": False}


def page_style():
    """A context in which matplotlib draws with the report's fonts (MIN_FONT and up) and palette."""
    return matplotlib.rc_context(STYLE)


def _styled(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw a figure under page_style: every text it creates takes its size from there."""
    @functools.wraps(draw)
    def styled(*args, **kwargs) -> Figure:
        with page_style():
            return draw(*args, **kwargs)
    return styled


def _figure(width: float, height: float) -> Figure:
    """A constrained-layout Figure no wider than the page, with an Agg canvas to measure text on."""
    fig = Figure(figsize=(min(width, PAGE_WIDTH), height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plain_log(axis) -> None:
    """Log scale with plain numbers (0.005, 20, 10,000) at 1-2-5 steps, or at powers of ten alone when the view spans
    more than 200x (so the labels never crowd), and unlabelled minor ticks (no '10^1')."""
    def plain(x: float, _) -> str:
        low, high = sorted(axis.get_view_interval())
        if x <= 0 or (high > 200 * low > 0 and abs(np.log10(x) - round(np.log10(x))) > 1e-6):
            return ""
        return f"{x:,.0f}" if x >= 1 else f"{x:g}"

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_formatter(NullFormatter())


def _digits_axis(ax, image: np.ndarray, title: str | None = None, color: str = "black") -> None:
    ax.imshow(image, cmap=INK, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=MIN_FONT, color=color, pad=2)


def _metric_axis(metric: str) -> tuple[float, str]:
    """(scale, axis label with its unit) for a metric column: accuracies in percent, MSE per pixel, seconds."""
    words = metric.replace("_", " ")
    if metric.endswith("accuracy"):
        return 100.0, f"{words} (%)"
    if metric.endswith("mse"):
        return 1.0, words.replace("mse", "MSE") + " per pixel"
    return 1.0, f"{words} (s)" if metric.endswith("seconds") else words


GROUP_WORDS = {"latent_dim": "latent size", "width_epochs": "width and epochs", "lr": "learning rate"}


def _words(name) -> str:
    """A grid group's name (or a label) as a reader says it: 'learning_rate' -> 'learning rate'."""
    return GROUP_WORDS.get(str(name), str(name).replace("_", " "))


def _lower_is_better(metric: str) -> bool:
    return any(word in metric for word in ("mse", "loss", "seconds"))


# ---------------------------------------------------------------- labels that do not collide

_NEAR = ((6, 5), (-6, 5), (6, -5), (-6, -5), (0, 9), (0, -9), (9, 0), (-9, 0))  # points, nearest first
_RINGS = (1, 1.8, 2.6, 3.4, 4.5, 6, 8, 10)  # how far out the candidates go, in multiples of _NEAR
_ALIGN_X, _ALIGN_Y = {1: "left", 0: "center", -1: "right"}, {1: "bottom", 0: "center", -1: "top"}
_LEADER = {"arrowstyle": "-", "color": GREY, "lw": 0.6, "shrinkA": 1, "shrinkB": 4}


def _offsets(centred: bool) -> list[tuple[float, float]]:
    """Candidate label offsets from a point, in points: rings of _NEAR, and the point itself first when centred."""
    rings = [(r * dx, r * dy) for r in _RINGS for dx, dy in _NEAR]
    return [(0, 0)] + rings if centred else rings


def _squares(pixels: np.ndarray, pad: float) -> list[Bbox]:
    return [Bbox.from_extents(x - pad, y - pad, x + pad, y + pad) for x, y in pixels if np.isfinite([x, y]).all()]


def _along(a: np.ndarray, b: np.ndarray, every: float = 4) -> np.ndarray:
    """Display points every few pixels from a to b, (K, 2)."""
    return a + np.linspace(0, 1, max(2, int(np.hypot(*(b - a)) // every)))[:, None] * (b - a)


def _obstacles(ax, points, lines, radius: float = 3) -> list[Bbox]:
    """Display-space squares of `radius` points around data points (N, 2), and of 3 points along polylines (M, 2):
    what a label should not cover."""
    scale = ax.get_figure(root=True).dpi / 72
    dots = []
    if points is not None and len(points):
        dots = _squares(ax.transData.transform(np.asarray(points, float)), radius * scale)
    for line in lines or []:
        if len(line) < 2:  # a one-point "line" (a front of one run) is no segment to keep off
            continue
        ends = ax.transData.transform(np.asarray(line, float))
        dots += _squares(np.concatenate([_along(a, b) for a, b in zip(ends[:-1], ends[1:])]), 3 * scale)
    return dots


def _best_offset(probe, anchor: np.ndarray, candidates, renderer, frame: Bbox, placed: list[Bbox],
                 dots: np.ndarray) -> tuple[tuple[float, float], Bbox]:
    """The candidate offset whose label (probe, moved there) costs least: 100 per label it overlaps or for leaving
    the axes, 10 per label its leader crosses, 1 per obstacle (dots: extents (N, 4)) it covers or its leader
    crosses; the first free one wins."""
    best = None
    for dx, dy in candidates:
        probe.xyann = (dx, dy)
        probe.set_horizontalalignment(_ALIGN_X[np.sign(dx)])
        probe.set_verticalalignment(_ALIGN_Y[np.sign(dy)])
        probe.update_positions(renderer)
        box = Text.get_window_extent(probe, renderer).padded(2)  # the text alone, 2 px apart at any dpi
        inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        leader = _along(anchor, np.clip(anchor, [box.x0, box.y0], [box.x1, box.y1]))[2:]
        cost = 100 * (sum(box.overlaps(other) for other in placed) + (not inside))
        cost += 10 * sum(any(other.contains(x, y) for x, y in leader) for other in placed)
        covered = (dots[:, 0] < box.x1) & (dots[:, 2] > box.x0) & (dots[:, 1] < box.y1) & (dots[:, 3] > box.y0)
        crossed = _hits(dots, leader).any(axis=0) if abs(dx) + abs(dy) > 12 else False  # a leader is drawn
        cost += int((covered | crossed).sum())
        if best is None or cost < best[0]:
            best = (cost, (dx, dy), box, leader)
        if cost == 0:
            break
    return best[1:]


def _hits(dots: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(K, N): whether each of K display points lies in each of N boxes (extents x0, y0, x1, y1)."""
    x, y = points[:, :1], points[:, 1:]
    return (dots[:, 0] <= x) & (x <= dots[:, 2]) & (dots[:, 1] <= y) & (y <= dots[:, 3])


def _place_labels(ax, points, texts: list[str], avoid=None, lines=None, centred: bool = False, clearance: float = 3,
                  **style) -> list:
    """Label each data point (x, y) with its text at the nearest offset that overlaps no label placed before it and
    stays inside the axes, covering as little as it can of the `avoid` points (N, 2), `clearance` points around
    them, and `lines` (each (M, 2)); greedy, measured in display space. A label moved off its point gets a leader
    line back to it (not when centred), and the leader too keeps off the obstacles.

    Call it last: it settles the layout first, and its labels stay out of the layout so the layout holds.
    """
    fig = ax.get_figure(root=True)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    frame, dots, placed, labels = ax.get_window_extent(renderer), _obstacles(ax, avoid, lines, clearance), [], []
    for xy, text in zip(points, texts):
        probe = ax.annotate(text, xy, xytext=(0, 0), textcoords="offset points", **style)
        anchor = ax.transData.transform(np.asarray(xy, float))
        obstacles = np.array([dot.extents for dot in dots]).reshape(-1, 4)
        (dx, dy), box, leader = _best_offset(probe, anchor, _offsets(centred), renderer, frame, placed, obstacles)
        probe.remove()
        far = abs(dx) + abs(dy) > 12 and not centred
        label = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=_ALIGN_X[np.sign(dx)],
                            va=_ALIGN_Y[np.sign(dy)], arrowprops=_LEADER if far else None, **style)
        label.set_in_layout(False)
        placed.append(box)
        dots += _squares(leader, 1) if far else []  # later labels keep off this leader
        labels.append(label)
    return labels


# ---------------------------------------------------------------- classifier sweeps

@_styled
def accuracy_vs_time(table: pd.DataFrame) -> Figure:
    """Test accuracy against training seconds, one colour and marker per grid group, the Pareto front joined and its
    runs labelled."""
    runs = unique_runs(table)
    best = runs[pareto_front(runs)].sort_values("train_seconds")
    fig = _figure(PAGE_WIDTH, 5.0)
    ax = fig.subplots()
    for i, (group, points) in enumerate(runs.groupby("group", sort=False)):
        ax.scatter(points["train_seconds"], 100 * points["test_accuracy"], s=36, label=_words(group), alpha=0.9,
                   zorder=2, color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)])
    ax.plot(best["train_seconds"], 100 * best["test_accuracy"], "--", color="black", lw=1, label="Pareto front",
            zorder=1)
    ax.set_xscale("log")
    plain_log(ax.xaxis)
    ax.margins(x=0.2, y=0.15)  # room inside the axes for the labels
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(4, runs["group"].nunique() + 1), title="grid group")
    _place_labels(ax, list(zip(best["train_seconds"], 100 * best["test_accuracy"])),
                  [_words(value_label(label)) for label in best["label"]],
                  avoid=np.column_stack([runs["train_seconds"], 100 * runs["test_accuracy"]]),
                  lines=[np.column_stack([best["train_seconds"], 100 * best["test_accuracy"]])])
    return fig


def _curves_panel(ax, history: pd.DataFrame, runs: pd.DataFrame, flag: dict, metric: str) -> None:
    """One group's train (dashed) and test (solid) error per epoch, its legend to the right of the axes."""
    for i, run in enumerate(runs.itertuples()):
        epochs = history[history["run_id"] == run.run_id].sort_values("epoch")
        if epochs.empty:
            continue
        color, marker = PALETTE[i % len(PALETTE)], MARKERS[i // len(PALETTE) % len(MARKERS)]
        label = _words(value_label(run.label)) + (f"\n({flag[run.run_id]})" if flag.get(run.run_id) else "")
        ax.plot(epochs["epoch"], 100 * (1 - epochs[f"test_{metric}"]), "-", marker=marker, color=color, ms=4,
                label=label)
        ax.plot(epochs["epoch"], 100 * (1 - epochs[f"train_{metric}"]), "--x", color=color, ms=4, alpha=0.7)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    last = history.loc[history["run_id"].isin(runs["run_id"]), "epoch"].max()
    ax.set_xticks(range(1, int(last) + 1) if pd.notna(last) else [])
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%, log scale)")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))


@_styled
def training_curves(history: pd.DataFrame, table: pd.DataFrame, flags: pd.DataFrame,
                    metric: str = "accuracy") -> Figure:
    """Per-epoch train (dashed) and test (solid) error, one panel per grid group stacked down the page; flagged runs
    say so in the legend.

    Train error is the running value during each epoch (train mode, with augmentation and dropout), test error is
    measured after the epoch. A run that stands in several groups (the base) is drawn in each.
    """
    flag = dict(zip(flags["run_id"], flags["flag"]))
    groups = list(dict.fromkeys(table["group"]))
    heights = [max(2.2, 0.3 * (table["group"] == g).sum() + 0.6) for g in groups]  # each legend fits its panel
    fig = _figure(PAGE_WIDTH, sum(heights) + 0.4)
    axes = fig.subplots(len(groups), 1, squeeze=False, height_ratios=heights).ravel()
    for ax, group in zip(axes, groups):
        _curves_panel(ax, history, table[table["group"] == group], flag, metric)
        ax.set_title(_words(group), loc="left")
    fig.suptitle("train (dashed, x) and test (solid) error per epoch")
    return fig


LINEAR_EFFECTS = 3.0  # points: effect axes whose intervals all lie within this are linear, wider ones symlog


def _effect_axis(ax, points: np.ndarray) -> str:
    """Scale, ticks and limits of a forest plot's x axis for every value it shows (points, NaN ignored): linear
    with ticks every 0.1 to 1 point while all lie within ±LINEAR_EFFECTS, symlog beyond ±1 otherwise; the limits
    hold every value with a margin. Returns how the axis label should describe the scale."""
    points = points[np.isfinite(points)]
    low, high = min(points.min(initial=0.0), 0.0), max(points.max(initial=0.0), 0.0)  # zero is always shown
    if max(-low, high) <= LINEAR_EFFECTS:
        step = next((s for s in (0.1, 0.2, 0.5) if (high - low) / s <= 10), 1.0)
        margin = max(0.04 * (high - low), 0.25 * step)
        ax.set_xlim(low - margin, high + margin)
        ax.xaxis.set_major_locator(MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:+.{1 if step < 1 else 0}f}".replace("-", "\u2212")
                                                   if abs(x) > step / 100 else "0"))
        return "points"
    ax.set_xscale("symlog", linthresh=1)  # intervals from two seeds are tens of points wide; effects are tenths
    scale = ax.xaxis.get_transform()
    left, right = scale.transform([low, high])
    margin = 0.04 * (right - left)
    low, high = scale.inverted().transform([left - margin, right + margin])
    ax.set_xlim(low, high)
    steps = np.outer(10.0 ** np.arange(0, 4), [1, 2, 5]).ravel()  # 1, 2, 5, 10, 20, 50, ...
    ax.set_xticks([t for t in np.concatenate([-steps, [-0.5, 0, 0.5], steps]) if low <= t <= high])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:+g}".replace("-", "\u2212") if x else "0"))
    return "points; log scale beyond ±1"


@_styled
def ablation_effects(effects: pd.DataFrame, metric_name: str = "test accuracy") -> Figure:
    """A forest plot: each setting's paired effect against its group's base, with its Holm-corrected 95% interval
    (thick) and uncorrected one (thin); red and filled where the corrected interval excludes zero. The seed count
    is said once, in the axis label, when every setting shares it."""
    tested = effects[~effects["is_base"]].reset_index(drop=True)
    fig = _figure(PAGE_WIDTH, 0.32 * len(tested) + 1.3)
    ax = fig.subplots()
    for y, row in enumerate(tested.itertuples()):
        found = row.verdict == S.EFFECT
        color = RED if found else PALETTE[0]
        ax.plot([100 * row.low, 100 * row.high], [y, y], color=color, lw=1, alpha=0.6)
        ax.plot([100 * row.corrected_low, 100 * row.corrected_high], [y, y], color=color, lw=3.5, alpha=0.5)
        ax.plot(100 * row.effect, y, "o", color=color, ms=5, mfc=color if found else "white")
    ax.axvline(0, color="black", lw=0.8)
    seeds = tested["seeds"].dropna().astype(int).unique()
    names = [f"{_words(r.group)}: {_words(r.setting.split('=', 1)[-1])}" for r in tested.itertuples()]
    if len(seeds) > 1:  # say each row's count only where they differ
        names = [f"{name} ({int(n)} seeds)" if pd.notna(n) else name for name, n in zip(names, tested["seeds"])]
    ax.set_yticks(range(len(tested)), names)
    ax.invert_yaxis()
    columns = ["low", "high", "corrected_low", "corrected_high", "effect"]
    scale = _effect_axis(ax, 100 * tested[columns].to_numpy(float).ravel())
    seeds_text = f", {seeds[0]} seeds each" if len(seeds) == 1 else ""
    ax.set_xlabel(f"change in {metric_name} against the base\n({scale}{seeds_text})")
    ax.grid(axis="x", alpha=0.3)
    return fig


@_styled
def confusion_matrix(matrix: np.ndarray, title: str = "") -> Figure:
    """A 10x10 confusion matrix (rows true, columns predicted), log-coloured so the rare mistakes show."""
    fig = _figure(5.6, 5.4)
    ax = fig.subplots()
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=MIN_FONT,
                    color="white" if i == j else ("darkred" if count >= 5 else "black"))
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title)
    return fig


@_styled
def misclassified(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, title: str = "",
                  columns: int = 6) -> Figure:
    """Each misclassified digit above its softmax bars: the true class in green, the prediction in red.

    At most five columns fit the page with readable digit labels under the bars.
    """
    n = len(images)
    columns = max(1, min(columns, int(PAGE_WIDTH // 1.4), n))  # a column needs 1.4 in for ten 9 pt bar labels
    rows = max(1, -(-n // columns))
    fig = _figure(1.4 * columns, 2.4 * rows + (0.3 if title else 0))
    grid = fig.add_gridspec(2 * rows, columns, height_ratios=[1.4, 1] * rows)
    for k in range(n):
        r, c = divmod(k, columns)
        pred = int(probabilities[k].argmax())
        _digits_axis(fig.add_subplot(grid[2 * r, c]), images[k], f"true {labels[k]}, said {pred}", "darkred")
        bars = fig.add_subplot(grid[2 * r + 1, c])
        colors = [PALETTE[2] if d == labels[k] else (RED if d == pred else "lightgray") for d in range(10)]
        bars.bar(range(10), probabilities[k], color=colors)
        bars.set_ylim(0, 1)
        bars.set_xticks(range(10), [str(d) for d in range(10)])
        bars.tick_params(axis="x", length=0, pad=1)
        bars.set_yticks([0, 1], ["0", "1"] if c == 0 else [])
        if c == 0:
            bars.set_ylabel("softmax", labelpad=0)
    if title:
        fig.suptitle(title)
    return fig


@_styled
def augmentation_preview(originals: np.ndarray, augmented: np.ndarray, captions: list[list[str]] | None = None,
                         title: str = "") -> Figure:
    """Originals in the first column, random affine draws of each beside it; optional caption per draw."""
    n, draws = augmented.shape[:2]  # augmented: (N, draws, 28, 28)
    cell = min(1.1, PAGE_WIDTH / (draws + 1))  # inches per image
    fig = _figure(cell * (draws + 1), (cell + 0.2) * n + (0.3 if title else 0))
    axes = fig.subplots(n, draws + 1, squeeze=False)
    for i in range(n):
        _digits_axis(axes[i, 0], originals[i], "original" if i == 0 else None)
        for j in range(draws):
            _digits_axis(axes[i, j + 1], augmented[i, j], captions[i][j] if captions else None)
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------- autoencoders

@_styled
def mse_overview(autoencoders: pd.DataFrame, latent: pd.DataFrame) -> Figure:
    """Top: test MSE against training seconds for every run (PCA as grey squares). Bottom: test MSE against latent
    size, the autoencoder against PCA of the same size, labelled with how much lower the autoencoder's error is."""
    fig = _figure(PAGE_WIDTH, 7.6)
    top, bottom = fig.subplots(2, 1)
    runs = unique_runs(autoencoders)
    pca = runs["model.arch"] == "pca"
    for i, (group, points) in enumerate(runs[~pca].groupby("group", sort=False)):
        top.scatter(points["train_seconds"], points["test_mse"], s=36, color=PALETTE[i % len(PALETTE)],
                    marker=MARKERS[i % len(MARKERS)], label=_words(group))
    top.scatter(runs.loc[pca, "train_seconds"], runs.loc[pca, "test_mse"], s=36, marker="s", color=PCA_COLOR,
                label="PCA")
    top.set_xscale("log")
    top.set_yscale("log")
    plain_log(top.xaxis)
    plain_log(top.yaxis)
    top.set_xlabel("training time (s, log scale)")
    top.set_ylabel("test MSE per pixel (log scale)")
    top.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title="run")
    top.grid(alpha=0.3, which="both")
    bottom.plot(latent["latent_dim"], latent["ae_mse"], "-o", color=AE_COLOR, label="autoencoder")
    bottom.plot(latent["latent_dim"], latent["pca_mse"], "-s", color=PCA_COLOR, label="PCA, same size")
    bottom.set_xscale("log", base=2)
    bottom.set_yscale("log")
    plain_log(bottom.yaxis)
    bottom.set_xticks(latent["latent_dim"], [str(d) for d in latent["latent_dim"]])
    bottom.set_xlim(latent["latent_dim"].min() / 2 ** 1.2, latent["latent_dim"].max() * 2 ** 0.3)  # label room
    bottom.margins(y=0.2)
    bottom.set_xlabel("latent size (numbers per code, log scale)")
    bottom.set_ylabel("test MSE per pixel (log scale)")
    bottom.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    bottom.grid(alpha=0.3, which="both")
    gains = latent.dropna(subset=["ae_mse", "pca_mse"])
    curves = [latent[["latent_dim", column]].dropna().to_numpy() for column in ("ae_mse", "pca_mse")]
    _place_labels(bottom, list(zip(gains["latent_dim"], gains["ae_mse"])),
                  [f"{100 * g:.0f}% lower" for g in gains["ae_gain"]], lines=curves, clearance=8,
                  avoid=latent[["latent_dim", "pca_mse"]].dropna().to_numpy())  # labels keep clear of PCA's marks
    return fig


def _setting_name(setting: str) -> str:
    """'model.channels=[16, 32]' -> '16/32'; 'model.activation=gelu' -> 'gelu'."""
    value = setting.split("=", 1)[-1]
    return widths(value) if value.startswith("[") else value


@_styled
def group_bars(panels: dict[str, pd.DataFrame], metric: str = "test_mse") -> Figure:
    """One horizontal bar panel per grid group (e.g. activation, channels), stacked on one x axis from zero so bars
    compare across panels: the metric per setting, one colour, the base hatched, each bar labelled with its value."""
    heights = [0.32 * len(effects) + 0.75 for effects in panels.values()]
    fig = _figure(PAGE_WIDTH, sum(heights) + 0.5)
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True, height_ratios=heights).ravel()
    scale, label = _metric_axis(metric)
    top = max(float(scale * effects[metric].max()) for effects in panels.values())
    for ax, (name, effects) in zip(axes, panels.items()):
        y = np.arange(len(effects))
        bars = ax.barh(y, scale * effects[metric], color=PALETTE[0], edgecolor="white")
        for bar, is_base in zip(bars, effects["is_base"]):
            bar.set_hatch("//" if is_base else "")
        ax.bar_label(bars, fmt="%.4f" if scale == 1 else "%.2f", padding=3, fontsize=MIN_FONT)
        ax.set_yticks(y, [_words(_setting_name(s)) for s in effects["setting"]])
        ax.invert_yaxis()
        ax.set_title(_words(name), loc="left")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_xlim(0, 1.15 * top)  # shared by every panel; the margin holds the value labels
    axes[0].xaxis.set_major_locator(MaxNLocator(6, steps=[1, 2, 5, 10]))
    axes[-1].set_xlabel(f"{label} (hatched: the base)")
    return fig


def _strip_rows(fig: Figure, rows: list[tuple[str, np.ndarray]], columns: int) -> None:
    """One row of digit images per (label, images), the label to the left of the row."""
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for i, (label, images) in enumerate(rows):
        for j in range(columns):
            if j < len(images):
                _digits_axis(axes[i, j], images[j])
            else:
                axes[i, j].set_visible(False)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=MIN_FONT)


def _strip_size(rows: list[tuple[str, np.ndarray]], columns: int) -> tuple[float, float]:
    """(width, height) in inches of image strips whose row labels take the left ~1.9 in: images up to 0.8 in."""
    label = 1.9
    cell = min(0.8, (PAGE_WIDTH - label) / columns)
    lines = max(str(text).count("\n") + 1 for text, _ in rows)
    return label + cell * columns, len(rows) * max(cell, 0.2 * lines) + 0.3


@_styled
def gallery(originals: np.ndarray, rows: list[tuple[str, np.ndarray]], title: str = "") -> Figure:
    """Originals on top, then one row of reconstructions per model, labelled on the left."""
    everything = [("original", originals), *rows]
    fig = _figure(*_strip_size(everything, len(originals)))
    _strip_rows(fig, everything, len(originals))
    if title:
        fig.suptitle(title)
    return fig


@_styled
def interpolation_strips(strips: list[tuple[str, np.ndarray]]) -> Figure:
    """Rows of decoded images walking in a straight line through latent space from one test digit to another.

    strips: (label, images (steps, 28, 28)); the first and last images are the decoded end points.
    """
    steps = max(len(images) for _, images in strips)
    fig = _figure(*_strip_size(strips, steps))
    _strip_rows(fig, strips, steps)
    return fig


@_styled
def latent_map(panels: list[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """Scatter of 2-D codes (N, 2) coloured by digit, one panel per (title, codes, labels), two panels a row; each
    digit's name at the median of its codes, outlined in white, nudged off any other digit's name."""
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    side = min(4.2, (PAGE_WIDTH - 0.9) / columns)  # inches per square panel; the colourbar takes 0.9
    fig = _figure(side * columns + 0.9, (side + 0.4) * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, codes, labels) in zip(axes, panels):
        points = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap=DIGIT_COLORS, vmin=-0.5, vmax=9.5, s=4,
                            alpha=0.8, rasterized=True, linewidths=0)
        ax.set_title(textwrap.fill(title, int(side * 12)))  # ~12 characters an inch at 10 pt
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("code 1")
        ax.set_ylabel("code 2")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(points, ax=axes.tolist(), ticks=range(10), label="digit", shrink=0.8)
    for ax, (_, codes, labels) in zip(axes, panels):
        digits = [d for d in range(10) if (labels == d).any()]
        centres = [np.median(codes[labels == d], axis=0) for d in digits]
        _place_labels(ax, centres, [str(d) for d in digits], centred=True, fontsize=13, weight="bold",
                      path_effects=[withStroke(linewidth=3, foreground="white")])
    return fig


def accuracy_label(probabilities: np.ndarray, labels: np.ndarray) -> str:
    """'98.70% correct' for a batch of class probabilities (N, 10) and true labels (N,)."""
    return f"{percent(float((probabilities.argmax(1) == labels).mean()))} correct"


# ---------------------------------------------------------------- sweep tools: any sweep's table

def varying_parameters(table: pd.DataFrame) -> list[str]:
    """The config columns (data.*, model.*, train.*; never the seed) whose value differs between the table's runs.

    A column that splits the runs exactly as an earlier one does is left out: a preset that changes the head, the
    kernels and the padding together is one parameter of the sweep, not four.
    """
    runs = unique_runs(table)
    chosen, splits = [], set()
    for column in runs.columns:
        if column.split(".", 1)[0] not in CONFIG_PREFIXES or "." not in column:
            continue
        split = tuple(pd.factorize(runs[column].astype(str))[0])  # the same partition gives the same codes
        if len(set(split)) > 1 and split not in splits:
            chosen.append(column)
            splits.add(split)
    return chosen


def _scored_runs(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The table's runs (each run id once) that have a value of metric; Missing when none has."""
    runs = unique_runs(table)
    if metric not in runs or runs[metric].isna().all():
        raise Missing(f"The table has no `{metric}` values to compare its runs on.")
    return runs.dropna(subset=[metric]).reset_index(drop=True)


def parameter_importance_scores(table: pd.DataFrame, metric: str = "test_accuracy") -> pd.DataFrame:
    """Per varying parameter, the share of the metric's variance across runs that grouping on it explains.

    The score is eta-squared of a one-way ANOVA: the between-level sum of squares over the total sum of squares, in
    [0, 1]. Each run counts once. Caveats: parameters are scored one at a time, so in a one-at-a-time grid (where
    parameters are not crossed) every other parameter's spread sits inside this one's base level and lowers its
    score; and with few runs per level eta-squared overstates (a parameter with a level per run scores 1).
    Returns columns parameter, importance, levels, most important first.
    """
    runs = _scored_runs(table, metric)
    values = runs[metric].astype(float)
    total = float(((values - values.mean()) ** 2).sum())
    rows = []
    for parameter in varying_parameters(runs):
        levels = values.groupby(runs[parameter].astype(str))
        between = float((levels.size() * (levels.mean() - values.mean()) ** 2).sum())
        rows.append({"parameter": parameter, "importance": between / total if total > 0 else 0.0,
                     "levels": int(levels.ngroups)})
    scores = pd.DataFrame(rows, columns=["parameter", "importance", "levels"])
    return scores.sort_values(["importance", "parameter"], ascending=[False, True], ignore_index=True)


def _short(parameter: str) -> str:
    """'train.weight_decay' -> 'weight decay'."""
    return parameter.split(".", 1)[-1].replace("_", " ")


def _value_text(value) -> str:
    """A config value as a tick label: channel lists as '16/32/64', numbers in their shortest form."""
    if isinstance(value, str) and value.startswith("["):
        try:
            return widths(value)
        except (ValueError, json.JSONDecodeError):
            return value
    return f"{value:g}" if isinstance(value, float) else _words(value)


def _thin(ticks: list[tuple[float, str]], gap: float = 0.08) -> list[tuple[float, str]]:
    """Ticks (height in [0, 1], label) without those closer than gap to the one kept below them."""
    kept = []
    for height, label in sorted(ticks):
        if not kept or height - kept[-1][0] >= gap:
            kept.append((height, label))
    return kept


def _coordinate(values: pd.Series) -> tuple[np.ndarray, list[tuple[float, str]], bool]:
    """A parameter column -> each run's height on its axis in [0, 1], the axis' (height, label) ticks, and whether it
    is a log axis. Categories are evenly spaced in order of first appearance; numbers are placed by value, on a log
    scale when all are positive and they span more than 10x."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and not values.isna().any():
        numbers = values.to_numpy(float)
        log = bool((numbers > 0).all() and numbers.max() > 10 * numbers.min())

        def place(v):
            return np.log10(v) if log else v

        low, span = place(numbers).min(), np.ptp(place(numbers)) or 1.0
        ticks = [(float((place(v) - low) / span), f"{v:g}") for v in np.unique(numbers)]
        return (place(numbers) - low) / span, _thin(ticks), log
    text = values.map(_value_text)
    levels = list(dict.fromkeys(text))
    height = {v: i / max(1, len(levels) - 1) for i, v in enumerate(levels)}
    return text.map(height).to_numpy(float), _thin([(h, v) for v, h in height.items()]), False


def _metric_coordinate(values: np.ndarray) -> tuple[np.ndarray, list[tuple[float, str]], bool]:
    """The metric's axis: heights in [0, 1] from its range, ticks at round numbers inside it."""
    low, high = values.min(), values.max()
    span = (high - low) or 1.0
    ticks = [(float((t - low) / span), f"{t:g}") for t in MaxNLocator(5).tick_values(low, high) if low <= t <= high]
    return (values - low) / span, _thin(ticks), False


@_styled
def parallel_coordinates(table: pd.DataFrame, metric: str = "test_accuracy") -> Figure:
    """A sweep as W&B's parallel-coordinates panel: one vertical axis per varying parameter and a last one for the
    metric, one line per run coloured by the metric (colourbar on the right), the best runs drawn on top."""
    runs = _scored_runs(table, metric)
    parameters = varying_parameters(runs)
    scale, metric_label = _metric_axis(metric)
    scores = scale * runs[metric].to_numpy(float)
    coordinates = [_coordinate(runs[p]) for p in parameters] + [_metric_coordinate(scores)]
    names = [_short(p) + (" (log)" if log else "") for p, (_, _, log) in zip(parameters, coordinates)]
    heights = np.column_stack([height for height, _, _ in coordinates])  # (runs, axes)
    fig = _figure(PAGE_WIDTH, 4.6)
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis_r" if _lower_is_better(metric) else "viridis"]  # best runs bright
    norm = Normalize(scores.min(), scores.max())
    order = np.argsort(-scores if _lower_is_better(metric) else scores, kind="stable")  # best last: on top
    x = np.arange(len(coordinates))
    for rank, i in enumerate(order):
        ax.plot(x, heights[i], color=cmap(norm(scores[i])), lw=1.5, alpha=0.85, zorder=2 + rank / len(order))
    for k, (_, ticks, _) in enumerate(coordinates):
        ax.axvline(k, color="#444444", lw=1, zorder=1)
        outer = k == len(coordinates) - 1  # the metric's ticks on the outer side, off the fan of lines
        for height, label in ticks:
            ax.text(k + (0.03 if outer else -0.03), height, label, ha="left" if outer else "right", va="center",
                    fontsize=MIN_FONT, zorder=4, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"})
    ax.set_xlim(-0.05, len(coordinates) - 0.95)
    ax.set_ylim(-0.04, 1.04)
    ax.set_axis_off()
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label=metric_label, pad=0.03, shrink=0.9)
    _axis_names(ax, names + [metric_label])
    return fig


def _two_lines(name: str, longest: int = 10) -> str:
    """A name longer than `longest` characters broken at the space nearest its middle: 'weight\ndecay'."""
    spaces = [i for i, c in enumerate(name) if c == " "]
    if len(name) <= longest or not spaces:
        return name
    cut = min(spaces, key=lambda i: abs(i - len(name) / 2))
    return name[:cut] + "\n" + name[cut + 1:]


def _axis_names(ax, names: list[str]) -> None:
    """Each name above its axis (x = 0, 1, ...), all at one height, long ones on two lines; only where neighbours
    would still touch, every other one a row higher."""
    texts = [ax.text(k, 1.05, _two_lines(name), ha="center", va="bottom", fontsize=MIN_FONT, weight="bold")
             for k, name in enumerate(names)]
    fig = ax.get_figure(root=True)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer).padded(2) for text in texts]  # a space apart at least
    if any(a.overlaps(b) for a, b in zip(boxes[:-1], boxes[1:])):
        rise = max(box.height for box in boxes[::2]) / fig.dpi  # inches: the lower row's tallest name
        for text in texts[1::2]:
            text.set_transform(ax.transData + ScaledTranslation(0, rise, fig.dpi_scale_trans))


@_styled
def parameter_importance(table: pd.DataFrame, metric: str = "test_accuracy") -> Figure:
    """Each varying parameter's importance for the metric (parameter_importance_scores: the share of its variance
    that grouping on the parameter explains), as horizontal bars, most important on top."""
    scores = parameter_importance_scores(table, metric)
    if scores.empty:
        raise Missing("No parameter varies between the table's runs, so none can be ranked.")
    fig = _figure(PAGE_WIDTH, 0.4 * len(scores) + 1.2)
    ax = fig.subplots()
    y = np.arange(len(scores))
    bars = ax.barh(y, scores["importance"], color=PALETTE[0])
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=MIN_FONT)
    ax.set_yticks(y, [f"{_short(p)} ({n} levels)" for p, n in zip(scores["parameter"], scores["levels"])])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)  # the scores lie in [0, 1]; the margin holds the value labels
    ax.set_xlabel(f"share of the variance of {_metric_axis(metric)[1].split(' (')[0]} explained "
                  "(eta squared, 0 to 1)")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{len(_scored_runs(table, metric))} runs, each counted once", loc="left")
    return fig
