"""The report's table functions, figures and checkpoint probes on small hand-made tables and tiny real runs."""

import io

import matplotlib
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from lab.report import analysis as A
from lab.report import figures as F
from lab.report import probes as P

matplotlib.use("Agg")


def classifier_row(run_id, group, label, test, train=None, seconds=10.0, seed=0, epochs=2, channels="[[16], [32]]"):
    return {"sweep": "s", "group": group, "label": label, "run_id": run_id, "task": "classifier",
            "model.preset": "fast_cnn", "model.channels": channels, "train.epochs": epochs, "train.optimizer": "adam",
            "train.lr": 0.005, "train.schedule": "onecycle", "test_accuracy": test,
            "train_accuracy": test + 0.002 if train is None else train, "train_seconds": seconds,
            "parameters": 1000, "seed": seed, "data.augment": False, "data.rotate": 10.0, "data.scale": 0.1,
            "data.translate": 0.1}


def ablation_table(seeds: int = 5) -> pd.DataFrame:
    """Base runs stand in both groups; 'bad' costs two points on every seed, 'none' moves within the seeds' luck."""
    luck = [0.0, 0.002, -0.001, 0.001, -0.002][:seeds]  # each seed's luck moves every setting of that seed
    wobble = [0.0006, -0.0004, 0.0002, -0.0005, 0.0001][:seeds]
    rows = []
    for group, setting, prefix, shift, noise in [("norm", "batch", "b", 0.0, 0.0), ("norm", "none", "n", 0.0, 1.0),
                                                 ("schedule", "onecycle", "b", 0.0, 0.0),
                                                 ("schedule", "bad", "s", -0.02, -1.0)]:
        key = "model.norm" if group == "norm" else "train.schedule"
        rows += [classifier_row(f"{prefix}{seed}", group, f"{key}={setting} seed={seed}",
                                0.99 + luck[seed] + shift + noise * wobble[seed], seed=seed) for seed in range(seeds)]
    return pd.DataFrame(rows)


def autoencoder_table() -> pd.DataFrame:
    rows = []
    for rid, group, arch, latent, mse in [("a2", "latent_dim", "conv", 2, 0.05), ("a8", "latent_dim", "conv", 8, 0.02),
                                          ("p2", "pca", "pca", 2, 0.04), ("p8", "pca", "pca", 8, 0.03),
                                          ("e8", "epochs", "conv", 8, 0.015)]:
        rows.append({"group": group, "label": f"model.latent_dim={latent}", "run_id": rid, "task": "autoencoder",
                     "model.preset": "pca" if arch == "pca" else "conv_ae", "model.arch": arch,
                     "model.latent_dim": latent, "model.channels": "[32, 64]", "model.activation": "relu",
                     "train.epochs": 2, "train.optimizer": "adam", "train.lr": 0.003, "train.schedule": "onecycle",
                     "test_mse": mse, "train_seconds": 1.0 if arch == "pca" else 10.0, "parameters": 10})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- analysis

def test_value_labels_drop_seeds_and_prefixes_and_shorten_channels():
    assert A.value_label("model.norm=layer seed=1") == "norm=layer"
    assert A.value_label("model.channels=[[8], [16], [32]] train.epochs=4") == "channels=8/16/32 epochs=4"
    assert A.value_label("seed=0") == "base" and A.value_label("") == "base"
    assert A.widths("[32, 64, 128]") == "32/64/128"


def test_best_and_fastest_follow_the_numbers():
    table = pd.DataFrame([classifier_row("slow", "g", "x=1", 0.995, seconds=80),
                          classifier_row("quick", "g", "x=2", 0.991, seconds=10),
                          classifier_row("quicker", "g", "x=3", 0.985, seconds=5),
                          classifier_row("quick", "h", "y=1", 0.991, seconds=10)])  # a repeat of a shared run
    assert A.best_accuracy(table)["run_id"] == "slow"
    assert A.fastest_to(table)["run_id"] == "quick"
    assert A.fastest_to(table, 0.999) is None
    text = A.headline_markdown(A.headline(table, None))
    assert "**99.50%**" in text and "**10.0 s**" in text and "`quick`" in text
    assert "no run reached 99.9%" in A.headline_markdown(A.headline(table, None) | {"fastest": None}, 0.999)


def test_choices_are_made_on_validation_when_the_runs_hold_it_out():
    """Validation picks the run; its test numbers are what is reported, even when test would have picked another."""
    table = pd.DataFrame([classifier_row("val_best", "g", "x=1", 0.990, seconds=20) | {"val_accuracy": 0.995},
                          classifier_row("test_best", "g", "x=2", 0.996, seconds=15) | {"val_accuracy": 0.991},
                          classifier_row("fast", "g", "x=3", 0.992, seconds=5) | {"val_accuracy": 0.989}])
    best = A.best_accuracy(table)
    assert best["run_id"] == "val_best" and best["chosen_on"] == "val"
    fastest = A.fastest_to(table)  # "fast" is above 99% on test but not on validation
    assert fastest["run_id"] == "test_best" and fastest["chosen_on"] == "val"
    assert "fastest to 99% validation accuracy" in A.headline_markdown(A.headline(table, None))
    autoencoders = autoencoder_table()
    autoencoders["val_mse"] = autoencoders["test_mse"]
    autoencoders.loc[autoencoders["run_id"] == "e8", "val_mse"] = 0.03  # best on test, worse than a8 on validation
    assert A.mse_by_latent(autoencoders).set_index("latent_dim").loc[8, "ae_run_id"] == "a8"
    assert A.mse_by_latent(autoencoder_table()).set_index("latent_dim").loc[8, "ae_run_id"] == "e8"


def test_pareto_front_of_a_known_set():
    table = pd.DataFrame({"train_seconds": [1, 2, 3, 4, 5], "test_accuracy": [0.90, 0.95, 0.94, 0.97, 0.97]})
    assert A.pareto_front(table).tolist() == [True, True, False, True, False]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=25))
def test_pareto_front_is_exactly_the_undominated_points(points):
    table = pd.DataFrame(points, columns=["train_seconds", "test_accuracy"])
    front = A.pareto_front(table)

    def dominated(i):
        t, a = points[i]
        return any((t2 <= t and a2 >= a) and (t2 < t or a2 > a) for t2, a2 in points)

    for i in range(len(points)):
        if front[i]:
            assert not dominated(i)
        elif not dominated(i):  # an exact duplicate of a front point: the front keeps one of them
            assert any(front[j] and points[j] == points[i] for j in range(len(points)))
    assert front.any()


def test_pareto_sentence_names_both_ends():
    table = pd.DataFrame([classifier_row("a", "g", "x=1", 0.98, seconds=5),
                          classifier_row("b", "g", "x=2", 0.99, seconds=20),
                          classifier_row("c", "g", "x=3", 0.985, seconds=30)])
    text = A.pareto_sentence(table)
    assert text.startswith("2 of the 3 runs lie on the Pareto front")
    assert "98.00% in 5 s" in text and "99.00% in 20 s" in text and "4.0x the training time" in text


def test_fit_flags_apply_the_stated_rule():
    table = pd.DataFrame([classifier_row("fine", "g", "x=1", 0.990, train=0.992),
                          classifier_row("gap", "g", "x=2", 0.985, train=0.999),
                          classifier_row("rising", "g", "x=3", 0.990, train=0.993),
                          classifier_row("under", "g", "x=4", 0.950, train=0.952)])
    history = pd.DataFrame([{"run_id": r, "epoch": e, "train_loss": tl, "test_loss": vl}
                            for r, e, tl, vl in [("rising", 1, 0.3, 0.10), ("rising", 2, 0.1, 0.12),
                                                 ("fine", 1, 0.3, 0.10), ("fine", 2, 0.1, 0.08)]])
    flags = A.fit_flags(table, history).set_index("run_id")["flag"].to_dict()
    assert flags == {"fine": "", "gap": "overfitting", "rising": "overfitting", "under": "underfitting"}
    text = A.fit_sentence(A.fit_flags(table, history))
    assert "2 runs overfit" in text and "1.40 points" in text and "test loss rising" in text and "1 underfits" in text
    assert "0.5 points" in A.fit_rule() and "99%" in A.fit_rule()


def test_ablation_effects_pair_seeds_with_the_base_and_correct_for_the_family():
    effects = A.ablation_effects(ablation_table()).set_index(["group", "setting"])
    assert effects.loc[("norm", "norm=batch"), "is_base"] and effects.loc[("schedule", "schedule=onecycle"), "is_base"]
    bad, none = effects.loc[("schedule", "schedule=bad")], effects.loc[("norm", "norm=none")]
    assert bad["effect"] == pytest.approx(-0.02 - np.mean([0.0006, -0.0004, 0.0002, -0.0005, 0.0001]))
    assert bad["seeds"] == 5 and bad["verdict"] == "effect" and bad["corrected_high"] < 0
    assert none["verdict"] == "no effect detectable" and none["corrected_low"] < 0 < none["corrected_high"]
    assert bad["level"] == pytest.approx(0.05 / 2)  # Holm: the smaller p-value of two is tested at 0.05 / 2
    sentences = A.ablation_sentences(A.ablation_effects(ablation_table()))
    assert "no effect detectable at 5 seeds" in sentences[0] and "an effect (5 paired seeds)" in sentences[1]
    assert "schedule=bad -2.00 points [" in sentences[1]
    knobs = A.knobs_sentence(A.ablation_effects(ablation_table()))
    assert knobs.startswith("Effects (2 comparisons") and "No effect detectable: norm=none." in knobs


def test_one_seed_resolves_nothing():
    effects = A.ablation_effects(ablation_table(seeds=1))
    assert set(effects.loc[~effects["is_base"], "verdict"]) == {"too few seeds"}
    assert all("an interval needs two" in s for s in A.ablation_sentences(effects))
    assert A.knobs_sentence(effects).startswith("No ablated setting has an effect")


def test_autoencoder_against_pca_per_latent_size():
    table = autoencoder_table()
    best = A.mse_by_latent(table).set_index("latent_dim")
    assert best.loc[8, "ae_run_id"] == "e8" and best.loc[8, "ae_mse"] == 0.015  # best of any group
    sweep = A.mse_by_latent(table, group="latent_dim").set_index("latent_dim")
    assert sweep.loc[8, "ae_run_id"] == "a8" and sweep.loc[8, "ae_gain"] == pytest.approx(1 / 3)
    text = A.ae_vs_pca_sentence(sweep.reset_index())
    assert "beats PCA at latent size 8 only" in text and "25% higher at 2" in text and "33% lower at 8" in text


def test_group_effects_and_sentences():
    table = autoencoder_table()
    table.loc[table["run_id"] == "e8", "label"] = "train.epochs=5"
    effects = A.group_effects(table, "epochs", "test_mse")
    assert effects["setting"].tolist() == ["epochs=5"]
    assert "one run" in A.group_sentence(effects, "test_mse", True, "epochs")
    with pytest.raises(A.Missing, match="none of the groups"):
        A.group_panels(table, ("activation",), "test_mse")
    # a group without the shared base run (another preset) is measured against the sweep's base
    sweep = pd.DataFrame([classifier_row("b", "lr", "train.lr=0.005", 0.990),
                          classifier_row("x", "lr", "train.lr=0.1", 0.95),
                          classifier_row("b", "act", "model.activation=relu", 0.990),
                          classifier_row("z", "other", "model.preset=simple_cnn", 0.993)])
    assert A.group_effects(sweep, "lr", "test_accuracy")["is_base"].tolist() == [True, False]
    other = A.group_effects(sweep, "other", "test_accuracy")
    assert other["delta"].iloc[0] == pytest.approx(0.003) and not other["is_base"].any()
    assert "+0.30 points against the sweep's base" in A.group_sentence(other, "test_accuracy", False, "other")
    assert "the worst is lr=0.1 at 95.00% (-4.00 points against the base)" in A.group_sentence(
        A.group_effects(sweep, "lr", "test_accuracy"), "test_accuracy", False, "lr")


def test_confusion_matrix_and_its_sentence():
    labels = np.array([0, 1, 2, 3, 3, 3, 5])
    preds = np.array([0, 1, 2, 5, 5, 3, 3])
    matrix = A.confusion(labels, preds)
    assert matrix.sum() == 7 and matrix[3, 5] == 2 and np.trace(matrix) == 4
    text = A.confusion_sentence(matrix)
    assert "3 of 7 test digits wrong" in text and "3 read as 5 (2)" in text and "hardest true class is 3" in text
    assert "all 4" in A.confusion_sentence(A.confusion(np.arange(4), np.arange(4)))


def test_tables_and_missing_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RESULTS_DIR", str(tmp_path))
    assert A.read_table("cnn_hparams") is None and A.read_tables(("cnn_hparams",)) is None
    with pytest.raises(A.Missing, match="cnn_hparams.csv. is missing.*make experiments"):
        A.need(None, "cnn_hparams")
    ablation_table().to_csv(tmp_path / "cnn_ablations.csv", index=False)
    assert len(A.read_tables(A.CLASSIFIER_SWEEPS)) == len(ablation_table())
    assert A.missing_tables(A.CLASSIFIER_SWEEPS) == [tmp_path / "cnn_hparams.csv"]
    html = A.sortable_html(A.sweep_table(A.read_table("cnn_ablations")), "t1")
    assert 'id="t1"' in html and "getElementById('t1')" in html and html.count("<tr>") >= 6
    inventory = A.inventory_markdown({"cnn_ablations": A.read_table("cnn_ablations"), "autoencoder": None})
    runs = ablation_table()["run_id"].nunique()
    assert f"| `cnn_ablations` | classifier | {runs} |" in inventory and "| `autoencoder` | | no table |" in inventory


def test_centroid_accuracy_measures_how_well_a_map_separates_classes():
    labels = np.repeat(np.arange(3), 20)
    apart = np.stack([labels * 10.0, np.zeros(60)], 1) + np.random.default_rng(0).normal(size=(60, 2))
    assert A.centroid_accuracy(apart, labels) == 1.0
    mixed = np.random.default_rng(1).normal(size=(60, 2))
    assert A.centroid_accuracy(mixed, labels) < 0.8
    text = A.latent_map_sentence([("latent 2: apart", apart, labels), ("latent 8: mixed", mixed, labels)])
    assert "100% on the latent-2 map" in text
    assert f"{100 * A.centroid_accuracy(mixed, labels):.0f}% on the latent-8 map" in text


def test_callout_is_quarto_markdown():
    assert A.callout("gone").startswith("::: {.callout-note}\n## Not shown")


# ---------------------------------------------------------------- figures

def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_table_figures_draw():
    table = ablation_table()
    history = pd.DataFrame([{"run_id": r, "epoch": e, "train_accuracy": 0.9 + e / 100, "test_accuracy": 0.9 + e / 90,
                             "train_loss": 1 / e, "test_loss": 1 / e} for r in table["run_id"].unique()
                            for e in (1, 2)])
    figures = {
        "pareto": F.accuracy_vs_time(table),
        "curves": F.training_curves(history, table, A.fit_flags(table, history)),
        "ablations": F.ablation_effects(A.ablation_effects(table)),
        "mse": F.mse_overview(autoencoder_table(), A.mse_by_latent(autoencoder_table(), "latent_dim")),
        "bars": F.group_bars({"latent": A.group_effects(autoencoder_table(), "latent_dim", "test_mse")}),
    }
    for name, fig in figures.items():
        assert png(fig).startswith(b"\x89PNG"), name
    assert len([ax for ax in figures["curves"].axes if ax.get_visible()]) == 2  # one panel per group
    assert len(figures["pareto"].axes[0].collections) == 2  # a scatter per group


def test_image_figures_draw():
    rng = np.random.default_rng(0)
    images = rng.random((4, 28, 28))
    probs = rng.dirichlet(np.ones(10), 4)
    figures = [F.confusion_matrix(A.confusion(np.arange(10), np.arange(10))),
               F.misclassified(images, np.array([1, 2, 3, 4]), probs, columns=3),
               F.augmentation_preview(images, rng.random((4, 3, 28, 28)), [["a"] * 3] * 4),
               F.gallery(images, [("one", images), ("two", images)]),
               F.interpolation_strips([("a to b", images), ("c to d", images[:3])]),
               F.latent_map([("codes", rng.normal(size=(50, 2)), rng.integers(0, 10, 50))])]
    for fig in figures:
        assert png(fig).startswith(b"\x89PNG")
    assert len(figures[1].axes) == 8  # a digit and its bars for each of 4 mistakes
    assert len(figures[3].axes) == 3 * 4  # originals and two rows of reconstructions


# ---------------------------------------------------------------- probes: the pages' view of the artifacts

@pytest.fixture(scope="module")
def tiny_artifacts(tmp_path_factory, mnist):
    """A classifier sweep (2 runs, 1,000 validation images held out) and an autoencoder sweep (a conv run at latent
    2 and 3, PCA at 3, a channels run) trained on 300 real images, with their tables and artifacts."""
    from sweep_files import SMALL_AUTOENCODER, SMALL_CLASSIFIER, sweep_toml

    from lab.artifacts import write_artifacts
    from lab.results import write_tables
    from lab.runner import run_sweep
    from lab.sweep import load_sweep

    root = tmp_path_factory.mktemp("tiny_artifacts")
    small = {"data.train_limit": 300, "data.val_size": 1000, "train.epochs": 1, "train.batch_size": 50,
             "train.lr": 0.01}
    files = {"clf": sweep_toml("clf", "classifier", SMALL_CLASSIFIER | small, grids=(
                 {"group": "seed", "seed": [0, 1]},)),
             "ae": sweep_toml("ae", "autoencoder", SMALL_AUTOENCODER | small | {"model.latent_dim": 3}, grids=(
                 {"group": "latent_dim", "model.latent_dim": [2, 3]},
                 {"group": "pca", "model.preset": ["pca"], "model.latent_dim": [3]},
                 {"group": "channels", "model.channels": [[4, 8], [8, 8]]}))}
    tables = {}
    for name, text in files.items():
        (root / f"{name}.toml").write_text(text)
        sweep = load_sweep(root / f"{name}.toml")
        run_sweep(sweep, root / "runs", {"mnist": mnist}, "cpu", progress=False, log=lambda _: None)
        tables[name], path = write_tables(sweep, root / "runs", root / "results")
        assert write_artifacts(tables[name], path, root / "runs", mnist.test) is not None
    return root / "results", tables


@pytest.mark.slow
def test_probes_read_what_the_artifacts_hold(tiny_artifacts, monkeypatch):
    results, tables = tiny_artifacts
    monkeypatch.setenv("LAB_RESULTS_DIR", str(results))
    best = A.best_accuracy(tables["clf"])["run_id"]
    art = P.best_classifier(best, ("clf",))
    assert "$LAB_RESULTS_DIR/clf_artifacts.npz" in art.source and str(results) not in art.source
    matrix = P.confusion_of(art)
    assert matrix.sum() == 10_000 and np.trace(matrix) / 10_000 == pytest.approx(P.accuracy_of(art))
    assert P.accuracy_of(art) == pytest.approx(A.unique_runs(tables["clf"]).set_index("run_id").loc[best,
                                                                                                  "test_accuracy"])
    images, labels, probs = P.worst_mistakes(art, n=5)
    assert images.shape == (5, 28, 28) and (probs.argmax(1) != labels).all()
    assert (np.diff(probs.max(1)) <= 1e-3).all()  # most confident mistakes first (float16 ties aside)
    originals, copies, captions = P.augmentation_view(art)
    assert originals.shape == (6, 28, 28) and copies.shape == (6, 7, 28, 28) and len(captions[0]) == 7
    assert 0 <= P.augmented_accuracy(art)[1] <= 1
    with pytest.raises(A.Missing, match="No artifacts file holds run"):
        P.best_classifier("fast_cnn-0000000000", ("clf",))
    ae = tables["ae"]
    art = P.artifacts("ae")
    rows = P.reconstructions(art, P.by_latent_size(ae))
    assert [r.split("\n")[0] for r, _ in rows] == ["AE, latent 2", "AE, latent 3", "PCA, 3 comp."]
    assert rows[0][1].shape == (10, 28, 28) and 0 <= rows[0][1].min() and rows[0][1].max() <= 1
    assert [r.split("\n")[0] for r, _ in P.reconstructions(art, P.other_configs(ae))] == ["channels=8/8"]
    strips = P.interpolation_rows(art, ae, pairs=1)
    assert strips[0][1].shape == (9, 28, 28) and strips[0][0].startswith("1 to 7: AE latent 2")
    assert strips[-1][0].startswith("1 to 7: PCA")
    panels = P.latent_panels(art, ae)
    assert [p[0].split(":")[0] for p in panels] == ["latent 2", "latent 3"]
    assert panels[0][1].shape == (2000, 2) and "principal components" in panels[1][0]


def test_missing_artifacts_say_which_command_writes_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RESULTS_DIR", str(tmp_path))
    with pytest.raises(A.Missing, match="python -m lab results"):
        P.artifacts("autoencoder")
    note = P.shown(lambda: P.artifacts("autoencoder"))
    assert ".callout-note" in note.data and str(tmp_path) not in note.data
    assert P.shown(lambda: 42) == 42
