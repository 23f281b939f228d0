"""Every report figure read as the page shows it: at most PAGE_WIDTH wide, no text under MIN_FONT points, no two
labels on top of each other, legends off the data; and the sweep tools' importance on tables with a known answer."""

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from test_reference import findings_table

from lab import paths
from lab.report import analysis as A
from lab.report import benchmark as B
from lab.report import comparison_figures as C
from lab.report import figures as F
from lab.report import optimizers as O
from lab.report import reference as R
from lab.report import statistics as S

matplotlib.use("Agg")

PAGE_DPI = 110  # report/_quarto.yml fig-dpi: text is measured at the size the page renders it
RESULTS = paths.ROOT / "experiments" / "results"  # the committed tables, whatever LAB_RESULTS_DIR says
SWEEPS = ("cnn_hparams", "cnn_ablations", "cnn_hparams-fashion", "optimizers")


# ---------------------------------------------------------------- small inputs

def classifier_row(run_id, group, label, test, seconds=10.0, seed=0, epochs=2, **config):
    """One classifier run as a sweep table holds it (copied down from tests/test_report_analysis.py)."""
    return {"sweep": "s", "group": group, "label": label, "run_id": run_id, "task": "classifier",
            "model.preset": "fast_cnn", "model.channels": "[[16], [32]]", "model.activation": "relu",
            "train.epochs": epochs, "train.lr": 0.005, "train.schedule": "onecycle", "test_accuracy": test,
            "train_accuracy": test + 0.002, "train_seconds": seconds, "parameters": 1000, "seed": seed} | config


def crowded_front() -> pd.DataFrame:
    """Eight runs on the Pareto front, close together in time and accuracy, with long labels; four runs off it."""
    rows = [classifier_row(f"w{i}", "width_epochs", f"model.channels=[[{8 << i % 3}], [{16 << i % 3}], "
                           f"[{32 << i % 3}]] train.epochs={1 + i}", 0.985 + 0.0003 * i, seconds=5.0 + 0.5 * i)
            for i in range(8)]
    rows += [classifier_row(f"a{i}", "activation", f"model.activation={a}", 0.984 + 0.001 * i, seconds=9.0 + i)
             for i, a in enumerate(["relu", "gelu", "tanh"])]
    rows.append(classifier_row("bad", "activation", "model.activation=tanh train.lr=1", 0.95, seconds=12.0))
    return pd.DataFrame(rows)  # the bad run stretches the accuracy axis: the front's labels stack up


def ablation_table(seeds: int = 3) -> pd.DataFrame:
    """Base runs stand in both groups; 'bad' costs two points on every seed."""
    rows = []
    for group, setting, prefix, shift in [("norm", "batch", "b", 0.0), ("norm", "none", "n", 0.001),
                                          ("schedule", "onecycle", "b", 0.0), ("schedule", "bad", "s", -0.02)]:
        key = "model.norm" if group == "norm" else "train.schedule"
        rows += [classifier_row(f"{prefix}{seed}", group, f"{key}={setting} seed={seed}",
                                0.99 + shift + 0.001 * (seed - 1) * (1 + (prefix == "n")), seed=seed,
                                **{key: setting}) for seed in range(seeds)]
    return pd.DataFrame(rows)


def history_of(table: pd.DataFrame, epochs: int = 4) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": r, "epoch": e, "train_accuracy": 0.9 + e / 50, "test_accuracy": 0.9 + e / 45,
                          "train_loss": 1 / e, "test_loss": 1 / e} for r in table["run_id"].unique()
                         for e in range(1, epochs + 1)])


def autoencoder_table() -> pd.DataFrame:
    """A latent-size sweep with PCA at every size, and two other groups."""
    rows = []
    for latent, mse in zip([2, 4, 8, 16, 32, 64], [0.05, 0.037, 0.024, 0.013, 0.007, 0.004]):
        rows.append(("latent_dim", "conv", latent, mse, 20.0 + latent / 8))
        rows.append(("pca", "pca", latent, mse * (1.1 + latent / 40), 1.5))
    rows += [("activation", "conv", 8, 0.026, 25.0), ("activation", "conv", 8, 0.023, 27.0)]
    return pd.DataFrame([{"group": group, "label": f"model.latent_dim={latent}", "run_id": f"{group}{i}",
                          "task": "autoencoder", "model.arch": arch, "model.latent_dim": latent,
                          "model.channels": "[32, 64]", "test_mse": mse, "train_seconds": seconds, "parameters": 10}
                         for i, (group, arch, latent, mse, seconds) in enumerate(rows)])


def two_latent_panels() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A 2-D map where 4 and 9 (and 3, 5, 8) share a centre, and a wide one with a long title."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 600)
    centres = np.array([[0, 0], [3, 0], [0, 3], [1, 1], [2, 2], [1.05, 1.02], [3, 3], [2, 0], [1.1, 0.95], [2, 2.02]])
    codes = centres[labels] + rng.normal(scale=0.3, size=(600, 2))
    return [("latent 2: codes as they are", codes, labels),
            ("latent 32: top 2 principal components (27% of variance)", codes[:, ::-1], labels)]


def benchmark_inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    trials = pd.DataFrame([{"section": "accuracy", "name": name, "seed": s, "reached": True, "epochs": 1,
                            "train_seconds": t * (1 + s / 10), "process_seconds": t * 1.4 * (1 + s / 10),
                            "test_accuracy": 0.99} for name, t in [("fast_cnn, 1 epoch, batch 64", 8.0),
                                                                   ("pytorch/examples mnist", 300.0)]
                           for s in range(3)])
    rows = [("throughput", f"{p} @ {b}", m, v * f) for p, v in [("fast_cnn", 12000), ("simple_cnn", 1700),
                                                                 ("pca", 40000)]
            for b in (128, 2048) for m, f in [("train_images_per_s", 1), ("infer_images_per_s", 8)]]
    rows += [("load", f"demo app, 20 clients: {e}", m, v) for e, base in [("/classify", 1200), ("/reconstruct", 1000)]
             for m, v in [("latency_ms_p50", base), ("latency_ms_p95", 1.4 * base)]]
    rows += [("load", "demo app, 20 clients", "latency_ms_p50", 1100), ("load", "demo app, 20 clients",
                                                                       "latency_ms_p95", 1600)]
    summary = pd.DataFrame(rows, columns=["section", "name", "measure", "value"])
    return trials, summary.assign(low=np.nan, high=np.nan, n=1, unit="", note="")


def figures() -> dict:
    """Every figure of figures.py and benchmark.py, built from small inputs (name -> a function making it)."""
    rng = np.random.default_rng(1)
    images = rng.random((18, 28, 28))
    probs = rng.dirichlet(np.full(10, 0.1), 18)
    ablations = ablation_table()
    crowded = crowded_front()
    autoencoders = autoencoder_table()
    confusion = np.diag([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]) + np.eye(10, k=1, dtype=int) * 12
    trials, summary = benchmark_inputs()
    hparams = pd.read_csv(RESULTS / "cnn_hparams.csv")
    return {
        "accuracy_vs_time": lambda: F.accuracy_vs_time(crowded),
        "accuracy_vs_time committed": lambda: F.accuracy_vs_time(hparams),
        "training_curves": lambda: F.training_curves(history_of(crowded), crowded, A.fit_flags(crowded, None)),
        "ablation_effects": lambda: F.ablation_effects(A.ablation_effects(ablations)),
        "confusion_matrix": lambda: F.confusion_matrix(confusion, title="fast_cnn-0123456789"),
        "misclassified": lambda: F.misclassified(images, rng.integers(0, 10, 18), probs, title="a run"),
        "augmentation_preview": lambda: F.augmentation_preview(images[:6], rng.random((6, 7, 28, 28)),
                                                               [["7 (100%)"] * 7] * 6, title="rotate 10"),
        "mse_overview": lambda: F.mse_overview(autoencoders, A.mse_by_latent(autoencoders, "latent_dim")),
        "group_bars": lambda: F.group_bars({"latent_dim": A.group_effects(autoencoders, "latent_dim", "test_mse"),
                                            "activation": A.group_effects(autoencoders, "activation", "test_mse")}),
        "gallery": lambda: F.gallery(images[:10], [("channels=16/32\nMSE 0.0123", images[:10])] * 3),
        "interpolation_strips": lambda: F.interpolation_strips([("3 to 8: AE latent 16", images[:9])] * 4),
        "latent_map": lambda: F.latent_map(two_latent_panels()),
        "latent_map one panel": lambda: F.latent_map(two_latent_panels()[:1]),
        "parallel_coordinates": lambda: F.parallel_coordinates(pd.read_csv(RESULTS / "cnn_ablations.csv")),
        "parameter_importance": lambda: F.parameter_importance(hparams),
        "recipe_seeds committed": lambda: C.recipe_seeds(pd.read_csv(RESULTS / "reference_recipe.csv"),
                                                         pd.read_csv(RESULTS / "reference_recipe_history.csv"),
                                                         R.CLAIMED, R.TARGET),
        "findings_forest": lambda: C.findings_forest(R.finding_verdicts(findings_table({
            "downsample=max": (-0.004, -0.004), "norm=layer": (0.004, 0.004), "augment=false": (-0.001, 0.006)}))),
        "optimizer_rates committed": lambda: C.optimizer_rates(
            pd.read_csv(RESULTS / "optimizers.csv"), O.chosen_rates(pd.read_csv(RESULTS / "optimizers.csv"))),
        "effects_by_dataset": lambda: C.effects_by_dataset({"mnist": A.ablation_effects(ablations),
                                                            "fashion_mnist": A.ablation_effects(ablations)}),
        "latent_by_dataset": lambda: C.latent_by_dataset({d: A.mse_by_latent(autoencoders, "latent_dim")
                                                          for d in ("mnist", "fashion_mnist")}),
        "plot_time_to_accuracy": lambda: B.plot_time_to_accuracy(trials),
        "plot_throughput": lambda: B.plot_throughput(summary),
        "plot_load": lambda: B.plot_load(summary),
    }


# ---------------------------------------------------------------- reading a drawn figure

@pytest.fixture(params=list(figures()))
def drawn(request):
    """(name, figure) drawn on an Agg canvas at the page's dpi; pyplot's figures (benchmark.py) closed after."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figures()[request.param]()
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.set_dpi(PAGE_DPI)
    fig.canvas.draw()
    yield request.param, fig
    plt.close(fig)


def shown_texts(fig) -> list[Text]:
    """The Text artists a reader sees: visible, non-empty, in a visible axes (or on the figure)."""
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()
            and (t.axes is None or t.axes.get_visible())]


def boxes(fig, texts) -> list[tuple[str, object]]:
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in texts]  # the text itself, not a leader line


def overlaps(fig, texts) -> list[tuple[str, str]]:
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes(fig, texts), 2)
            if box_a.overlaps(box_b)]


def test_figure_fits_the_page_column(drawn):
    name, fig = drawn
    assert fig.get_figwidth() <= F.PAGE_WIDTH + 1e-9, name


def test_no_text_is_smaller_than_the_minimum(drawn):
    name, fig = drawn
    small = [(t.get_text(), t.get_fontsize()) for t in shown_texts(fig) if t.get_fontsize() < F.MIN_FONT]
    assert not small, f"{name}: {small[:5]}"


def test_labels_and_tick_labels_do_not_overlap(drawn):
    name, fig = drawn
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        labels = [t for t in ax.texts if t.get_visible() and t.get_text().strip()]
        assert not overlaps(fig, labels), f"{name}: {overlaps(fig, labels)[:3]}"
        for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
            shown = [t for t in ticks if t.get_visible() and t.get_text().strip()]
            assert not overlaps(fig, shown), f"{name}: {overlaps(fig, shown)[:3]}"


def test_legends_stay_off_the_data(drawn):
    name, fig = drawn
    renderer = fig.canvas.get_renderer()
    frames = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible() and ax.has_data()]
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(frame) for frame in frames), name


def test_the_crowded_labels_are_all_there():
    """Nothing is dropped to avoid a collision: every Pareto run, every latent-size gain, every digit is labelled."""
    crowded = crowded_front()
    runs = A.unique_runs(crowded)
    fig = F.accuracy_vs_time(crowded)
    assert len(fig.axes[0].texts) == int(A.pareto_front(runs).sum()) == 8
    fig = F.latent_map(two_latent_panels())
    assert [sorted(t.get_text() for t in ax.texts) for ax in fig.axes[:2]] == [[str(d) for d in range(10)]] * 2
    autoencoders = autoencoder_table()
    fig = F.mse_overview(autoencoders, A.mse_by_latent(autoencoders, "latent_dim"))
    assert [t.get_text().endswith("% lower") for t in fig.axes[1].texts] == [True] * 6


def narrow_effects() -> pd.DataFrame:
    """Effects as A.ablation_effects gives them, every interval within ±1.5 points, one as wide as [-1.42, +0.19]."""
    rows = [("norm", "norm=batch", True, np.nan, np.nan, np.nan, np.nan, np.nan),
            ("norm", "norm=layer", False, -0.0003, -0.0017, 0.0011, -0.0027, 0.0021),
            ("schedule", "schedule=none", False, -0.0062, -0.0108, -0.0016, -0.0142, 0.0019),
            ("weight_decay", "weight_decay=0.05", False, 0.0007, -0.0003, 0.0017, -0.0011, 0.0024),
            ("dropout", "dropout=0.25", False, -0.0051, -0.0061, -0.0042, -0.0068, -0.0035)]
    table = pd.DataFrame(rows, columns=["group", "setting", "is_base", "effect", "low", "high", "corrected_low",
                                        "corrected_high"])
    verdict = np.where(table["corrected_high"] < 0, S.EFFECT, S.NO_EFFECT)
    return table.assign(seeds=5, verdict=np.where(table["is_base"], S.BASE, verdict))


def test_ablation_effects_use_a_linear_axis_that_holds_every_interval():
    """Intervals within ±1.5 points: a plain linear axis (no symlog), ticks at round steps, every interval inside
    the limits with a margin, and the seed count said once rather than on every row."""
    effects = narrow_effects()
    fig = F.ablation_effects(effects)
    ax = fig.axes[0]
    assert ax.get_xscale() == "linear"
    tested = effects[~effects["is_base"]]
    low, high = ax.get_xlim()
    assert low < 100 * tested["corrected_low"].min() < 100 * tested["corrected_high"].max() < high
    assert low < 100 * tested["low"].min() and 100 * tested["high"].max() < high
    margin = 0.02 * (high - low)
    assert low + margin < 100 * tested[["low", "corrected_low"]].min().min()
    assert 100 * tested[["high", "corrected_high"]].max().max() < high - margin
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    steps = np.round(np.diff(ticks), 6)
    assert len(ticks) >= 5 and len(set(steps)) == 1 and steps[0] in (0.1, 0.2, 0.5, 1.0)
    assert 0 in np.round(ticks, 6)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[2] == "weight decay: 0.05" and not any("seeds" in label for label in labels)
    assert "5 seeds" in ax.get_xlabel()


def test_ablation_effects_go_symlog_only_for_wide_intervals():
    """A two-seed interval tens of points wide: symlog beyond ±1, the whole interval still inside the limits."""
    effects = narrow_effects()
    effects.loc[2, ["low", "corrected_low"]] = [-0.12, -0.25]
    ax = F.ablation_effects(effects).axes[0]
    assert ax.get_xscale() == "symlog"
    assert ax.get_xlim()[0] < -25 and ax.get_xlim()[1] > 100 * effects["corrected_high"].max()


# ---------------------------------------------------------------- sweep tools

def test_importance_finds_the_parameter_that_sets_the_metric():
    """lr decides the accuracy (two levels a point apart, tiny noise); activation, crossed with it, does not."""
    rows = [classifier_row(f"r{i}", "grid", "", (0.98 if lr == 0.1 else 0.99) + noise, seed=i,
                           **{"train.lr": lr, "model.activation": act})
            for i, (lr, act, noise) in enumerate(itertools.product([0.1, 0.001], ["relu", "gelu"],
                                                                   [-0.0001, 0.0001]))]
    scores = F.parameter_importance_scores(pd.DataFrame(rows)).set_index("parameter")
    assert list(scores.index) == ["train.lr", "model.activation"]
    assert scores.loc["train.lr", "importance"] == pytest.approx(1.0, abs=1e-3)
    assert scores.loc["model.activation", "importance"] == pytest.approx(0.0, abs=1e-9)
    assert scores["levels"].tolist() == [2, 2]


def test_importance_is_eta_squared():
    """Between-level over total sum of squares, by hand: levels a (1, 3) and b (5): means 2 and 5, grand 3."""
    table = pd.DataFrame([classifier_row(f"r{i}", "g", "", v, **{"model.norm": n})
                          for i, (n, v) in enumerate([("a", 1.0), ("a", 3.0), ("b", 5.0)])])
    between, total = 2 * (2 - 3) ** 2 + (5 - 3) ** 2, (1 - 3) ** 2 + 0 + (5 - 3) ** 2
    assert F.parameter_importance_scores(table)["importance"].iloc[0] == pytest.approx(between / total)


def test_varying_parameters_skip_the_seed_repeats_and_tied_columns():
    rows = [classifier_row("base", "lr", "", 0.99, seed=0), classifier_row("base", "act", "", 0.99, seed=0),
            classifier_row("fast", "lr", "train.lr=0.01", 0.98, seed=1, **{"train.lr": 0.01}),
            classifier_row("simple", "preset", "model.preset=simple_cnn", 0.97, seed=2,
                           **{"model.preset": "simple_cnn", "model.channels": "[[32, 32], [64]]"})]
    assert F.varying_parameters(pd.DataFrame(rows)) == ["model.preset", "train.lr"]  # channels ties with preset


@pytest.mark.parametrize("sweep", SWEEPS)
def test_sweep_tools_draw_every_committed_classifier_sweep(sweep):
    table = pd.read_csv(RESULTS / f"{sweep}.csv")
    scores = F.parameter_importance_scores(table)
    assert len(scores) >= 2 and scores["importance"].between(0, 1).all()
    assert "seed" not in set(scores["parameter"])
    assert scores["importance"].is_monotonic_decreasing
    fig = F.parallel_coordinates(table)
    ax = fig.axes[0]
    assert len(ax.lines) - len(scores) - 1 == table["run_id"].nunique()  # a line per run, beside the axes' lines
    F.parameter_importance(table, metric="val_accuracy" if "val_accuracy" in table else "test_accuracy")


def test_sweep_tools_say_what_is_missing():
    table = pd.read_csv(RESULTS / "cnn_hparams.csv").drop(columns="val_accuracy", errors="ignore")  # an older table
    with pytest.raises(A.Missing, match="val_accuracy"):
        F.parallel_coordinates(table, metric="val_accuracy")
    with pytest.raises(A.Missing, match="No parameter varies"):
        F.parameter_importance(table.head(1))
