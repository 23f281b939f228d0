"""The committed result tables: complete, from the current sweep files, and meeting the lab's targets."""

import pandas as pd

from lab import paths
from lab.results import table_paths
from lab.sweep import load_sweep


def test_committed_tables_meet_the_lab_targets():
    """The tables a fresh clone ships: complete; best classifier >= 99.3%; the 32-latent autoencoder beats PCA-32."""
    hparams = pd.read_csv(table_paths(paths.EXPERIMENTS_DIR / "results", "cnn_hparams")[0])
    ablations = pd.read_csv(table_paths(paths.EXPERIMENTS_DIR / "results", "cnn_ablations")[0])
    best = max(hparams["test_accuracy"].max(), ablations["test_accuracy"].max())
    assert best >= 0.993
    ae = pd.read_csv(table_paths(paths.EXPERIMENTS_DIR / "results", "autoencoder")[0])
    at32 = ae[ae["model.latent_dim"] == 32]
    conv = at32[at32["model.arch"] == "conv"]["test_mse"].min()
    pca = at32[at32["model.arch"] == "pca"]["test_mse"].min()
    assert conv < pca
    for name, table in [("cnn_hparams", hparams), ("cnn_ablations", ablations), ("autoencoder", ae)]:
        sweep = load_sweep(paths.EXPERIMENTS_DIR / f"{name}.toml")
        assert list(table["run_id"]) == [r.run_id for r in sweep.runs]  # complete, and from the current sweep file
