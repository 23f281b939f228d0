"""The report as a reader meets it: every report/*.qmd page executed cell by cell in a Jupyter kernel, as Quarto runs
it, against the committed tables, against a fresh set of small real runs, and with runs or tables missing."""

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient
from sweep_files import SMALL_AUTOENCODER, SMALL_CLASSIFIER, sweep_toml

from lab import paths
from lab.results import write_tables
from lab.runner import run_sweep
from lab.sweep import load_sweep

REPORT = paths.ROOT / "report"
PAGES = sorted(REPORT.glob("*.qmd"))
OWN_PAGES = ("index", "classifier", "autoencoder")  # the pages of this suite; others are held to the general rules
COMMITTED = paths.ROOT / "experiments" / "results"
CELL = re.compile(r"^```\{python\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
LABEL = re.compile(r"^#\|\s*label:\s*(\S+)", re.M)
FIG_CAP = re.compile(r"^#\|\s*fig-cap:", re.M)
# figures drawn from the tables alone: they must render whenever the tables exist, checkpoints or not
TABLE_FIGURES = {"plot-pareto", "plot-curves", "plot-ablations", "plot-mse", "plot-groups"}
KERNEL_CHECK = "import sys; print(sys.executable, end='')"

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


# ---------------------------------------------------------------- running pages

def page_cells(page: Path) -> list[str]:
    """The ```{python} cells of a .qmd page, in order (their #| options stay in as comments, as Quarto leaves them)."""
    return CELL.findall(page.read_text(encoding="utf-8"))


def kernel_name() -> str:
    """The Jupyter kernel Quarto uses for `jupyter: python3`: ipykernel's, launched with this interpreter."""
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail("no python3 Jupyter kernel: install the report extra (pip install -e '.[report]') for ipykernel")
    # jupyter_client swaps a bare "python" for sys.executable; any other interpreter would not see this lab
    assert spec.argv[0] in ("python", "python3", sys.executable), f"python3 kernel runs {spec.argv[0]}"
    return "python3"


def execute(page: Path, env: dict[str, str]) -> list[nbformat.NotebookNode]:
    """Run a page's cells in a fresh kernel with cwd report/ (as Quarto does); the cells come back with outputs."""
    cells = [nbformat.v4.new_code_cell(KERNEL_CHECK)] + [nbformat.v4.new_code_cell(c) for c in page_cells(page)]
    notebook = nbformat.v4.new_notebook(cells=cells)
    client = NotebookClient(notebook, kernel_name=kernel_name(), timeout=600, allow_errors=True,
                            resources={"metadata": {"path": str(page.parent)}})
    # PYTHONPATH: the kernel imports this checkout's lab, whichever checkout the environment was installed from
    path = os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH")]))
    client.execute(env=os.environ | {"PYTHONWARNINGS": "ignore", "PYTHONPATH": path} | env)
    ran_in = "".join(o.get("text", "") for o in notebook.cells[0].outputs)
    assert ran_in == sys.executable, f"the python3 kernel runs {ran_in!r}, not this environment's {sys.executable}"
    return notebook.cells[1:]


def label(cell: nbformat.NotebookNode) -> str:
    found = LABEL.search(cell.source)
    return found.group(1) if found else ""


def errors(cells: list[nbformat.NotebookNode]) -> list[str]:
    return [f"{label(c) or c.source[:60]}: {o.ename}: {o.evalue}" for c in cells for o in c.outputs
            if o.output_type == "error"]


def markdown(cell: nbformat.NotebookNode) -> str:
    return "\n".join(o.get("data", {}).get("text/markdown", "") for o in cell.outputs)


def is_note(cell: nbformat.NotebookNode) -> bool:
    return ".callout-note" in markdown(cell)


def pngs(cell: nbformat.NotebookNode) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]


def figure_cells(cells: list[nbformat.NotebookNode]) -> list[nbformat.NotebookNode]:
    """Cells that draw a figure: they carry a caption (fig-cap) or a figure label (fig-...)."""
    return [c for c in cells if FIG_CAP.search(c.source) or label(c).startswith("fig-")]


def check_figures(page: Path, cells: list[nbformat.NotebookNode], notes_allowed: bool) -> None:
    """No cell raised; every figure cell made a PNG (or, where notes are allowed, a visible note instead)."""
    assert not errors(cells), f"{page.name}: {errors(cells)}"
    figures = figure_cells(cells)
    assert figures or page.stem not in OWN_PAGES[1:], f"{page.name}: no figure cells found"
    for cell in figures:
        images = pngs(cell)
        assert images or (notes_allowed and is_note(cell)), f"{page.name}: {label(cell)} made no image"
        assert all(png.startswith(b"\x89PNG") and len(png) > 2000 for png in images), label(cell)


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
        write_tables(sweep, runs, results)
    return {"runs": runs, "results": results, "root": root}


@pytest.fixture(scope="module")
def empty_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("empty")
    for name in ("runs", "results", "demo"):
        (root / name).mkdir()
    return {name: root / name for name in ("runs", "results", "demo")}


@pytest.fixture(scope="module")
def committed_pages(data_root) -> dict[str, list]:
    """Every page run against the committed tables and whatever run folders the runs dir (LAB_RUNS_DIR) holds."""
    env = {"LAB_RESULTS_DIR": str(COMMITTED), "LAB_DATA_DIR": str(data_root)}
    return {page.stem: execute(page, env) for page in PAGES}


def runs_named_in_tables() -> list[str]:
    ids = set()
    for table in COMMITTED.glob("*.csv"):
        rows = pd.read_csv(table)
        if not table.stem.endswith("_history") and "run_id" in rows:  # sweep tables, not the benchmark's
            ids |= set(rows["run_id"])
    return sorted(ids)


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
    runs_dir = paths.runs_dir()
    complete = all((runs_dir / rid / "metrics.json").is_file() for rid in runs_named_in_tables())
    for page in PAGES:
        cells = committed_pages[page.stem]
        # with every run of the tables on disk nothing is missing; without (a fresh clone, CI) checkpoint figures may
        # be notes, but the figures drawn from the committed tables must still render
        check_figures(page, cells, notes_allowed=not complete or page.stem not in OWN_PAGES)
        for cell in figure_cells(cells):
            if label(cell) in TABLE_FIGURES:
                assert pngs(cell), f"{page.name}: {label(cell)} is drawn from the tables and must render"


@pytest.mark.slow
def test_overview_headline_numbers_match_the_tables(committed_pages):
    """The overview's headline table states the best accuracy, the fastest run to 99% and the best MSE per size."""
    text = markdown(next(c for c in committed_pages["index"] if label(c) == "headline"))
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
    env = {"LAB_RESULTS_DIR": str(tiny_lab["results"]), "LAB_RUNS_DIR": str(tiny_lab["runs"]),
           "LAB_DATA_DIR": str(data_root)}
    for page in PAGES:
        cells = execute(page, env)
        own = page.stem in OWN_PAGES
        check_figures(page, cells, notes_allowed=not own)
        if not own:
            continue
        assert not [label(c) for c in cells if is_note(c)], f"{page.name}: notes although every run is on disk"
        if page.stem == "index":  # the tiny runs never reach 99%, and the page says so rather than inventing a run
            headline = markdown(next(c for c in cells if label(c) == "headline"))
            assert "no run reached 99%" in headline
            best = max(pd.read_csv(tiny_lab["results"] / f"{n}.csv")["test_accuracy"].max()
                       for n in ("cnn_hparams", "cnn_ablations"))
            assert f"{100 * best:.2f}%" in headline
        if page.stem == "classifier":
            source = markdown(next(c for c in cells if label(c) == "best-source"))
            assert str(tiny_lab["runs"]) in source


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["runs", "tables"])
def test_missing_runs_or_tables_give_notes_not_crashes(missing, empty_dirs, data_root):
    env = {"LAB_RESULTS_DIR": str(empty_dirs["results"] if missing == "tables" else COMMITTED),
           "LAB_RUNS_DIR": str(empty_dirs["runs"]), "LAB_DEMO_CHECKPOINTS": str(empty_dirs["demo"]),
           "LAB_DATA_DIR": str(data_root)}
    for page in PAGES:
        cells = execute(page, env)
        check_figures(page, cells, notes_allowed=True)
        if page.stem not in OWN_PAGES[1:]:
            continue
        notes = [c for c in figure_cells(cells) if is_note(c)]
        needing_checkpoints = [c for c in figure_cells(cells) if label(c) not in TABLE_FIGURES]
        if missing == "runs":
            assert {label(c) for c in notes} >= {label(c) for c in needing_checkpoints} - {"plot-augmentation"}
            assert all("make experiments" in markdown(c) for c in notes)
        else:
            assert len(notes) == len(figure_cells(cells)) - (page.stem == "classifier")  # augmentation needs no run
            assert any("missing or empty" in markdown(c) for c in notes)


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
