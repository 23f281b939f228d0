"""The report's artifacts -> the arrays its figures show: predictions, mistakes, reconstructions, interpolations, maps.

The pages never load a model. `python -m lab sweep` and `python -m lab results` write, beside each table, the few
arrays the report draws from the sweep's own models (`<table>_artifacts.npz`, lab/artifacts.py), and they are
committed, so a fresh clone shows the sweeps' galleries, confusion matrix and latent maps. Where a file is missing
a figure becomes a visible note (`shown`) that says what is missing and which command writes it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lab import paths
from lab.artifacts import ARTIFACTS_SUFFIX, AUGMENT_KEYS, read_artifacts
from lab.report.analysis import Missing, callout, confusion, shown_path, unique_runs, value_label
from lab.results import chosen_on


@dataclass
class Artifacts:
    """One table's artifacts and the sentence saying where they came from."""

    arrays: dict[str, np.ndarray]
    source: str

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def artifacts(table_name: str, results_dir: str | Path | None = None) -> Artifacts:
    """The artifacts written beside a table, or Missing saying which command writes them."""
    path = paths.results_dir(results_dir) / f"{table_name}{ARTIFACTS_SUFFIX}"
    if not path.is_file():
        raise Missing(f"`{shown_path(path)}` is missing: `python -m lab results` writes it from the sweep's run "
                      f"folders (`make experiments` trains them).")
    return Artifacts(read_artifacts(path), f"Drawn from `{shown_path(path)}`, which `python -m lab results` wrote "
                                           f"from the sweep's own run folders.")


def best_classifier(run_id: str, table_names: tuple[str, ...], results_dir: str | Path | None = None) -> Artifacts:
    """The artifacts of the table whose best run (chosen on validation) is run_id."""
    found = []
    for name in table_names:
        try:
            found.append(artifacts(name, results_dir))
        except Missing:
            continue
    for art in found:
        if str(art["best_run"]) == run_id:
            return art
    raise Missing(f"No artifacts file holds run `{run_id}`: `python -m lab results` writes them beside the tables "
                  f"({', '.join(f'`{n}{ARTIFACTS_SUFFIX}`' for n in table_names)}).")


def as_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float in [0, 1]."""
    return images.astype(np.float32) / 255


# ---------------------------------------------------------------- the best classifier

def confusion_of(art: Artifacts) -> np.ndarray:
    """The best classifier's confusion matrix (10, 10) on the test set."""
    return confusion(art["labels"], art["predictions"])


def accuracy_of(art: Artifacts) -> float:
    """Its test accuracy, recomputed from its predictions."""
    return float((art["labels"] == art["predictions"]).mean())


def worst_mistakes(art: Artifacts, n: int = 18) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n test digits it got wrong most confidently: images (n, 28, 28) in [0, 1], true labels, probabilities."""
    index = art["mistake_index"][:n]
    return as_float(art["mistake_images"][:n]), art["labels"][index], art["probabilities"][index].astype(np.float32)


def augmentation_settings(art: Artifacts) -> dict[str, float]:
    """rotate (degrees), scale and translate (fractions) of the augmentation shown."""
    return dict(zip(AUGMENT_KEYS, map(float, art["augment_settings"]), strict=True))


def augmentation_view(art: Artifacts) -> tuple[np.ndarray, np.ndarray, list[list[str]]]:
    """Test digits, random affine copies of each (n, draws, 28, 28), and the model's guess and confidence on each."""
    copies = as_float(art["augment_copies"])
    n, draws = copies.shape[:2]
    probs = art["augment_probabilities"].astype(np.float32)
    captions = [f"{p.argmax()} ({100 * p.max():.0f}%)" for p in probs]
    return as_float(art["augment_images"]), copies, [captions[i * draws:(i + 1) * draws] for i in range(n)]


def augmented_accuracy(art: Artifacts) -> tuple[float, float]:
    """(accuracy on the first test digits, accuracy on one random affine copy of each)."""
    clean, moved = art["augment_accuracy"]
    return float(clean), float(moved)


# ---------------------------------------------------------------- autoencoders

def run_label(row: pd.Series | dict) -> str:
    """A gallery row's label: PCA or the autoencoder at its latent size, else the grid setting; and the test MSE."""
    latent = int(row["model.latent_dim"])
    if row.get("model.arch") == "pca":
        name = f"PCA, {latent} comp."
    elif row.get("group") == "latent_dim":
        name = f"AE, latent {latent}"
    else:
        name = value_label(row["label"])
    return f"{name}\nMSE {row['test_mse']:.4f}"


def by_latent_size(table: pd.DataFrame) -> pd.DataFrame:
    """The latent-size sweep and its PCA baselines by latent size, PCA after the autoencoder of the same size."""
    rows = unique_runs(table[table["group"].isin(["latent_dim", "pca"])])
    order = rows.assign(is_pca=rows["model.arch"] == "pca").sort_values(["model.latent_dim", "is_pca"])
    return order.drop(columns="is_pca")


def other_configs(table: pd.DataFrame) -> pd.DataFrame:
    """The runs outside the latent-size sweep (channels, learning rate, epochs, ...); Missing when there are none."""
    rows = unique_runs(table[~table["group"].isin(["latent_dim", "pca"])])
    rows = rows[~rows["run_id"].isin(set(by_latent_size(table)["run_id"]))]
    if rows.empty:
        raise Missing("The table has no autoencoder runs outside the latent-size sweep.")
    return rows


def reconstructions(art: Artifacts, rows: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """(label, reconstructions (10, 28, 28) in [0, 1]) for each run of rows."""
    return [(run_label(row), as_float(art[f"reconstructions.{row['run_id']}"])) for _, row in rows.iterrows()]


def gallery_originals(art: Artifacts) -> np.ndarray:
    """The first test digit of each class, (10, 28, 28) in [0, 1]."""
    return as_float(art["gallery_images"])


def best_conv(table: pd.DataFrame, rows: pd.DataFrame | None = None) -> pd.Series:
    """The conv autoencoder with the lowest validation MSE (test where there is none) among rows (default: all)."""
    conv = unique_runs(table if rows is None else rows)
    conv = conv[conv["model.arch"] == "conv"]
    if conv.empty:
        raise Missing("The table has no convolutional autoencoder run.")
    return conv.loc[conv[chosen_on(conv, "mse")].idxmin()]


def interpolation_models(table: pd.DataFrame) -> list[pd.Series]:
    """The smallest-latent autoencoder of the latent-size sweep, the best one, and PCA at the best one's size."""
    sweep = by_latent_size(table)
    conv = sweep[sweep["model.arch"] == "conv"]
    best = best_conv(table)
    models = [] if conv.empty else [conv.sort_values("model.latent_dim").iloc[0]]
    models += [best] if not models or models[0]["run_id"] != best["run_id"] else []
    pca = sweep[(sweep["model.arch"] == "pca") & (sweep["model.latent_dim"] == best["model.latent_dim"])]
    return models + [pca.iloc[0]] if not pca.empty else models


def interpolation_rows(art: Artifacts, table: pd.DataFrame, pairs: int = 4) -> list[tuple[str, np.ndarray]]:
    """Per digit pair, one strip (steps, 28, 28) from each interpolation model, labelled with the model."""
    rows = []
    for i, (a, b) in enumerate(art["pair_digits"][:pairs]):
        for row in interpolation_models(table):
            name = "PCA" if row["model.arch"] == "pca" else "AE"
            strip = as_float(art[f"interpolations.{row['run_id']}"][i])
            rows.append((f"{a} to {b}: {name} latent {int(row['model.latent_dim'])}", strip))
    return rows


def latent_panels(art: Artifacts, table: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The first test digits' codes from the best 2-D autoencoder (as they are) and the best wider one (projected)."""
    conv = unique_runs(table)
    conv = conv[conv["model.arch"] == "conv"]
    if conv.empty:
        raise Missing("The table has no convolutional autoencoder, so there is no latent space to map.")
    chosen = [best_conv(table, part) for part in (conv[conv["model.latent_dim"] == 2],
                                                    conv[conv["model.latent_dim"] > 2]) if not part.empty]
    panels = []
    for row in chosen:
        rid, latent = row["run_id"], int(row["model.latent_dim"])
        kept = float(art[f"map_kept.{rid}"])
        how = "codes as they are" if latent <= 2 else f"top 2 principal components ({100 * kept:.0f}% of variance)"
        panels.append((f"latent {latent}: {how}", art[f"map.{rid}"].astype(np.float32), art["map_labels"]))
    return panels


# ---------------------------------------------------------------- page plumbing

def shown(make: Callable[[], Any]) -> Any:
    """make(), or a visible note (a Quarto callout) when something it needs is not there."""
    try:
        return make()
    except Missing as error:
        return note(str(error))


def drawn(make: Callable[[], Any]) -> Any:
    """make(), or nothing when something it needs is not there: for figure cells, whose caption must not sit under a
    note; a text cell of the page shows the note instead."""
    try:
        return make()
    except Missing:
        return None


def note(text: str, title: str = "Not shown") -> Any:
    """A Quarto callout as IPython Markdown output."""
    from IPython.display import Markdown

    return Markdown(callout(text, title))
