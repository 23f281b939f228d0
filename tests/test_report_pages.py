"""The report as a reader meets it: every report/*.qmd page executed cell by cell in a Jupyter kernel, as Quarto runs
it, against the committed tables, against a fresh set of small real runs, and with runs or tables missing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from sweep_files import SMALL_AUTOENCODER, SMALL_CLASSIFIER, sweep_toml

from lab import paths
from lab.artifacts import write_artifacts
from lab.results import write_tables
from lab.runner import run_sweep
from lab.sweep import load_sweep
from lab.tools.pages import REPORT_DIR as REPORT
from lab.tools.pages import errors, execute, figure_cells, is_note, label, markdown, page_cells, pngs

PAGES = sorted(REPORT.glob("*.qmd"))
OWN_PAGES = ("index", "classifier", "autoencoder", "reference", "fashion")  # others: held to the general rules
COMMITTED = paths.ROOT / "experiments" / "results"
# figures drawn from the tables alone: they must render whenever the tables exist, artifacts or not
TABLE_FIGURES = {"fig-pareto", "fig-curves", "fig-ablations", "fig-mse", "fig-groups", "fig-parallel-hparams",
                 "fig-importance-hparams", "fig-parallel-ablations"}

TINY = {"data.train_limit": 300, "train.batch_size": 50, "train.lr": 0.01, "train.epochs": 1}
TINY_SWEEPS = {
    "cnn_hparams": sweep_toml("cnn_hparams", "classifier", SMALL_CLASSIFIER | TINY, grids=(
        {"group": "width_epochs", "train.epochs": [1, 2]},
        {"group": "activation", "model.activation": ["relu", "tanh"]})),
    "cnn_ablations": sweep_toml("cnn_ablations", "classifier", SMALL_CLASSIFIER | TINY, grids=(
        {"group": "norm", "model.norm": ["batch", "none"], "seed": [0, 1]},)),
    "autoencoder": sweep_toml("autoencoder", "autoencoder", SMALL_AUTOENCODER | TINY | {"model.latent_dim": 3}, grids=(
        {"group": "latent_dim", "model.latent_dim": [2, 3]},
        {"group": "pca", "model.preset": ["pca"], "model.latent_dim": [2, 3]},
        {"group": "activation", "model.activation": ["relu", "tanh"]})),
}


def check_figures(page: Path, cells: list[nbformat.NotebookNode], missing_allowed: bool) -> None:
    """No cell raised; every figure cell made exactly one PNG and nothing else (or, where inputs may be missing,
    no output at all: the page's text cells carry the note, so no caption is left under a note)."""
    assert not errors(cells), f"{page.name}: {errors(cells)}"
    figures = figure_cells(cells)
    assert figures or page.stem not in OWN_PAGES[1:], f"{page.name}: no figure cells found"
    for cell in figures:
        images = pngs(cell)
        if not images and missing_allowed:
            assert not [o for o in cell.outputs if o.output_type != "stream"], f"{page.name}: {label(cell)}"
            continue
        assert len(images) == 1, f"{page.name}: {label(cell)} made {len(images)} images"
        assert all(png.startswith(b"\x89PNG") and len(png) > 2000 for png in images), label(cell)
        assert len([o for o in cell.outputs if o.output_type == "display_data"
                    or o.output_type == "execute_result"]) == 1, f"{page.name}: {label(cell)} shows more than a figure"


@pytest.fixture(scope="module")
def tiny_lab(tmp_path_factory, mnist) -> dict[str, Path]:
    """A fresh lab: the three sweeps shrunk to 300 real MNIST images and 11 runs (6 classifiers: epochs, activation
    and a norm ablation with 2 seeds; 3 autoencoders and 2 PCAs), trained into tmp dirs with their tables."""
    root = tmp_path_factory.mktemp("tiny_lab")
    runs, results = root / "runs", root / "results"
    for name, text in TINY_SWEEPS.items():
        (root / f"{name}.toml").write_text(text)
        sweep = load_sweep(root / f"{name}.toml")
        run_sweep(sweep, runs, {"mnist": mnist}, "cpu", progress=False, log=lambda _: None)
        table, path = write_tables(sweep, runs, results)
        assert write_artifacts(table, path, runs, mnist.test) is not None
    return {"runs": runs, "results": results, "root": root}


@pytest.fixture(scope="module")
def committed_pages(data_root) -> dict[str, list]:
    """Every page run against the committed tables and whatever run folders the runs dir (LAB_RUNS_DIR) holds."""
    env = {"LAB_RESULTS_DIR": str(COMMITTED), "LAB_DATA_DIR": str(data_root)}
    return {page.stem: execute(page, env) for page in PAGES}


# ---------------------------------------------------------------- the tests

def test_every_page_is_found_and_has_python_cells():
    assert {p.stem for p in PAGES} >= set(OWN_PAGES)
    for page in PAGES:
        assert page_cells(page), f"{page.name} has no python cells"
    for name in OWN_PAGES:  # the kernel the tests execute them with is the one Quarto will use
        assert "jupyter: python3" in (REPORT / f"{name}.qmd").read_text(), f"{name}.qmd must name its kernel"
    config = yaml.safe_load((REPORT / "_quarto.yml").read_text())
    assert config["project"] == {"type": "website", "output-dir": "_site"}
    assert config["execute"]["freeze"] == "auto" and config["format"]["html"]["code-fold"] is True
    assert config["format"]["html"]["toc"] is True
    linked = {item["href"] for item in config["website"]["navbar"]["left"]}
    assert {f"{name}.qmd" for name in OWN_PAGES} <= linked and linked <= {p.name for p in PAGES}


@pytest.mark.slow
def test_pages_run_on_the_committed_tables(committed_pages):
    """A fresh clone's site: every figure of the lab's own pages is drawn from the committed tables and artifacts."""
    for page in PAGES:
        cells = committed_pages[page.stem]
        check_figures(page, cells, missing_allowed=page.stem not in OWN_PAGES)
        if page.stem in OWN_PAGES:
            assert not [label(c) for c in cells if is_note(c)], f"{page.name}: notes on the committed files"


def test_every_committed_table_has_its_artifacts():
    """The report never falls back on a model that is not the sweep's: each sweep table has its artifacts file."""
    tables = [t for t in COMMITTED.glob("*.csv") if not t.stem.endswith("_history") and t.stem != "benchmark"
              and t.stem != "benchmark_trials"]
    assert tables
    for table in tables:
        assert (COMMITTED / f"{table.stem}_artifacts.npz").is_file(), f"{table.name} has no artifacts"


@pytest.mark.slow
def test_overview_headline_numbers_match_the_tables(committed_pages):
    """The overview's headline table states the best accuracy, the fastest run to 99% and the best MSE per size."""
    text = markdown(next(c for c in committed_pages["index"] if label(c) == "tbl-headline"))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    classifiers = pd.concat([pd.read_csv(COMMITTED / f"{n}.csv") for n in ("cnn_hparams", "cnn_ablations")],
                            ignore_index=True)
    chosen_on = "val_accuracy" if "val_accuracy" in classifiers else "test_accuracy"  # older tables: no validation
    best = classifiers.loc[classifiers[chosen_on].idxmax()]
    row = next(line for key, line in rows.items() if key.startswith("best"))
    assert f"**{100 * best['test_accuracy']:.2f}%**" in row and best["run_id"] in row
    good = classifiers[classifiers[chosen_on] >= 0.99]
    fastest = good.loc[good["train_seconds"].idxmin()]
    row = rows[f"fastest to 99% {chosen_on.split('_')[0].replace('val', 'validation')} accuracy"]
    assert f"**{fastest['train_seconds']:.1f} s**" in row and fastest["run_id"] in row
    autoencoders = pd.read_csv(COMMITTED / "autoencoder.csv")
    conv, pca = autoencoders[autoencoders["model.arch"] == "conv"], autoencoders[autoencoders["model.arch"] == "pca"]
    mse_on = "val_mse" if "val_mse" in conv and conv["val_mse"].notna().any() else "test_mse"
    sizes = sorted(conv["model.latent_dim"].unique())
    assert len(sizes) >= 2
    for size in sizes:
        at = conv[conv["model.latent_dim"] == size]
        chosen = at.loc[at[mse_on].idxmin()]
        row = rows[f"best reconstruction MSE, latent {size}"]
        assert f"**{chosen['test_mse']:.4f}**" in row and chosen["run_id"] in row
        assert f"PCA {pca.loc[pca['model.latent_dim'] == size, 'test_mse'].min():.4f}" in row
    prose = markdown(next(c for c in committed_pages["index"] if label(c) == "headline-text"))
    assert f"**{100 * best['test_accuracy']:.2f}%**" in prose and f"{fastest['train_seconds']:.1f} s" in prose


@pytest.mark.slow
def test_pages_run_on_a_fresh_set_of_small_real_runs(tiny_lab, data_root):
    env = {"LAB_RESULTS_DIR": str(tiny_lab["results"]), "LAB_DATA_DIR": str(data_root)}
    for page in PAGES:
        cells = execute(page, env)
        own = page.stem in ("index", "classifier", "autoencoder")  # the sweeps the tiny lab trains
        check_figures(page, cells, missing_allowed=not own)
        if not own:
            continue
        assert not [label(c) for c in cells if is_note(c)], f"{page.name}: notes although every file is there"
        if page.stem == "index":  # the tiny runs never reach 99%, and the page says so rather than inventing a run
            headline = markdown(next(c for c in cells if label(c) == "tbl-headline"))
            assert "no run reached 99%" in headline
            tables = pd.concat([pd.read_csv(tiny_lab["results"] / f"{n}.csv")
                                for n in ("cnn_hparams", "cnn_ablations")], ignore_index=True)
            best = tables.loc[tables["val_accuracy"].idxmax() if "val_accuracy" in tables else
                              tables["test_accuracy"].idxmax()]
            assert f"{100 * best['test_accuracy']:.2f}%" in headline
        if page.stem == "classifier":  # the tiny lab's own best run, from its artifacts, named without a machine path
            source = markdown(next(c for c in cells if label(c) == "best-source"))
            assert "$LAB_RESULTS_DIR/" in source and str(tiny_lab["results"]) not in source


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["artifacts", "tables"])
def test_missing_artifacts_or_tables_give_notes_not_crashes(missing, tmp_path, data_root):
    results = tmp_path / "results"
    results.mkdir()
    if missing == "artifacts":
        for table in COMMITTED.glob("*.csv"):
            shutil.copy(table, results / table.name)
    env = {"LAB_RESULTS_DIR": str(results), "LAB_DATA_DIR": str(data_root)}
    for page in PAGES:
        cells = execute(page, env)
        check_figures(page, cells, missing_allowed=True)
        if page.stem not in OWN_PAGES[1:]:
            continue
        notes = "\n".join(markdown(c) for c in cells if is_note(c))
        drawn = {label(c) for c in figure_cells(cells) if pngs(c)}
        if missing == "artifacts":
            assert "python -m lab results" in notes or page.stem == "reference", page.name  # it draws no model
            assert drawn >= {label(c) for c in figure_cells(cells)} & TABLE_FIGURES, page.name
        else:
            assert not drawn and ("is missing" in notes or "No " in notes), page.name


def test_quarto_renders_the_site(tmp_path, request):
    """The real thing, where Quarto is installed: the site renders from the committed tables and small runs."""
    quarto = shutil.which("quarto")
    if quarto is None:
        pytest.skip("quarto is not on PATH (pip install quarto-cli, or the installer from quarto.org)")
    tiny_lab, data_root = request.getfixturevalue("tiny_lab"), request.getfixturevalue("data_root")
    site = tmp_path / "report"
    shutil.copytree(REPORT, site, ignore=shutil.ignore_patterns("_site", "_freeze", ".quarto"))
    env = os.environ | {"QUARTO_PYTHON": sys.executable, "LAB_RESULTS_DIR": str(COMMITTED),
                        "LAB_RUNS_DIR": str(tiny_lab["runs"]), "LAB_DATA_DIR": str(data_root)}
    done = subprocess.run([quarto, "render", str(site)], env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    for page in PAGES:
        assert (site / "_site" / f"{page.stem}.html").is_file()
    best = pd.concat([pd.read_csv(COMMITTED / f"{n}.csv") for n in ("cnn_hparams", "cnn_ablations")],
                     ignore_index=True)
    assert f"{100 * best['test_accuracy'].max():.2f}%" in (site / "_site" / "index.html").read_text()
