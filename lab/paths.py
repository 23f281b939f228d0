"""Where data, runs and results live: from the package location or the environment, never the cwd."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = ROOT / "experiments"
# what `make experiments` trains, in its order (the Makefile's SWEEPS; a test keeps the two equal)
EXPERIMENT_SWEEPS = ("cnn_hparams", "cnn_ablations", "autoencoder")


def _choose(override: str | Path | None, env: str, default: Path) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser().resolve()
    return default


def data_dir(override: str | Path | None = None) -> Path:
    """Dataset root: --data-dir, else LAB_DATA_DIR, else data/ in the project."""
    return _choose(override, "LAB_DATA_DIR", ROOT / "data")


def runs_dir(override: str | Path | None = None) -> Path:
    """Run folders: --runs-dir, else LAB_RUNS_DIR, else experiments/runs/."""
    return _choose(override, "LAB_RUNS_DIR", EXPERIMENTS_DIR / "runs")


def results_dir(override: str | Path | None = None) -> Path:
    """Result tables: --results-dir, else LAB_RESULTS_DIR, else experiments/results/."""
    return _choose(override, "LAB_RESULTS_DIR", EXPERIMENTS_DIR / "results")


DEMO_DIR = ROOT / "demo"  # the Gradio app with its shipped weights and example digits
CHECKPOINTS_FOLDER = "checkpoints"  # the shipped run folders: in the demo folder, and at the root of its Space
EXAMPLES_FILE = "examples.safetensors"  # real MNIST test digits for the demo's buttons, beside the app
SPACE_DIR = ROOT / "build" / "space"  # where `make space` assembles the Hugging Face Space


def demo_checkpoints(override: str | Path | None = None) -> Path:
    """The demo's shipped run folders: the override, else LAB_DEMO_CHECKPOINTS, else demo/checkpoints/."""
    return _choose(override, "LAB_DEMO_CHECKPOINTS", DEMO_DIR / CHECKPOINTS_FOLDER)
