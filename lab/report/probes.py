"""Checkpoints -> the arrays the report's figures show: predictions, reconstructions, interpolations, latent maps.

Inference only, never training. Run folders come from the runs dir named in the tables; where a run is not on disk
(a fresh clone has no experiments/runs/), the small checkpoints the demo ships stand in, and where neither exists a
figure becomes a visible note (`shown`) that says what is missing and how to get it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lab import paths
from lab.checkpoints import Checkpoint, CheckpointError, find_checkpoints, load_checkpoint
from lab.data import DataError, Split, load_dataset, random_affine
from lab.report.analysis import Missing, callout, confusion, unique_runs, value_label

DIGIT_PAIRS = ((1, 7), (3, 8), (4, 9), (0, 6), (2, 5))  # digits that share strokes: their blends are telling


def _try_load(folder: Path) -> Checkpoint | None:
    try:
        return load_checkpoint(folder)
    except CheckpointError:
        return None


@dataclass
class Chosen:
    """One checkpoint picked for a figure, or None, with a sentence saying where it came from (or why it is absent)."""

    checkpoint: Checkpoint | None
    source: str

    def need(self) -> Checkpoint:
        """The checkpoint, or Missing with the reason."""
        if self.checkpoint is None:
            raise Missing(self.source)
        return self.checkpoint


def choose_checkpoint(run_id: str | None, task: str, runs_dir: str | Path | None = None,
                      score: Callable[[Checkpoint], float] | None = None) -> Chosen:
    """The run folder of run_id in the runs dir; else the best-scoring fallback checkpoint of the task; else None."""
    runs = paths.runs_dir(runs_dir)
    if run_id is not None:
        found = _try_load(runs / run_id)
        if found is not None:
            return Chosen(found, f"Checkpoint: run `{run_id}` from `{runs}` ({found.describe()}).")
    absent = (f"run `{run_id}` is not in `{runs}`" if run_id else "the table names no run") + \
        " (run folders are not committed: `make experiments` trains them)"
    spare, _ = find_checkpoints(paths.demo_checkpoints(), task)
    if not spare:
        return Chosen(None, f"No checkpoint to show: {absent}, and `{paths.demo_checkpoints()}` holds no {task} "
                            "checkpoint.")
    exact = [c for c in spare if c.run_id == run_id]
    pick = exact[0] if exact else max(spare, key=score or (lambda c: 0.0))
    return Chosen(pick, f"Checkpoint: {absent}, so this shows the demo's checkpoint `{pick.folder.name}` from "
                        f"`{paths.demo_checkpoints()}` instead ({pick.describe()}).")


@dataclass
class Found:
    """The runs of a table that load (or the fallback checkpoints), the run ids that do not, and where from."""

    pairs: list[tuple[dict | None, Checkpoint]] = field(default_factory=list)  # (table row or None, checkpoint)
    missing: list[str] = field(default_factory=list)
    source: str = ""

    def need(self) -> list[tuple[dict | None, Checkpoint]]:
        """The pairs, or Missing with the reason when there are none."""
        if not self.pairs:
            raise Missing(self.source)
        return self.pairs


def table_checkpoints(table: pd.DataFrame | None, task: str, runs_dir: str | Path | None = None) -> Found:
    """Load every run of a table from the runs dir; when none is there, the fallback checkpoints of the task."""
    runs = paths.runs_dir(runs_dir)
    found = Found()
    for row in ([] if table is None else unique_runs(table).to_dict("records")):
        checkpoint = _try_load(runs / row["run_id"])
        if checkpoint is None:
            found.missing.append(row["run_id"])
        else:
            found.pairs.append((row, checkpoint))
    if found.pairs:
        found.source = f"Checkpoints: {len(found.pairs)} runs of the table from `{runs}`."
        if found.missing:
            named = ", ".join(f"`{r}`" for r in found.missing[:6]) + (", ..." if len(found.missing) > 6 else "")
            found.source += (f" Not on disk, so not shown: {len(found.missing)} ({named}); `make experiments` "
                             f"trains them.")
        return found
    spare, _ = find_checkpoints(paths.demo_checkpoints(), task)
    absent = (f"none of the table's {len(found.missing)} runs is in `{runs}` (run folders are not committed: "
              f"`make experiments` trains them)")
    if not spare:
        found.source = f"No checkpoints to show: {absent}, and `{paths.demo_checkpoints()}` holds no {task} checkpoint."
        return found
    found.pairs = [(None, c) for c in spare]
    found.source = (f"Checkpoints: {absent}, so these figures show the demo's {len(spare)} {task} checkpoints from "
                    f"`{paths.demo_checkpoints()}` instead.")
    return found


def label_of(row: dict | None, checkpoint: Checkpoint) -> str:
    """A short row label for galleries: the grid setting and the test MSE, or the checkpoint's own description."""
    if row is None:
        model = checkpoint.config.model
        name = "PCA" if model.arch == "pca" else f"AE {'/'.join(map(str, model.channels))}"
        return f"{name} latent {model.latent_dim}\nMSE {checkpoint.metrics.get('test_mse', float('nan')):.4f}"
    setting = value_label(row["label"]).replace("preset=pca ", "PCA ")
    return f"{setting}\nMSE {row['test_mse']:.4f}"


# ---------------------------------------------------------------- data

def test_split(dataset: str = "mnist", data_dir: str | Path | None = None) -> Split:
    """The test split of a dataset from the data dir (LAB_DATA_DIR), or Missing saying where to put it."""
    try:
        return load_dataset(dataset, paths.data_dir(data_dir)).test
    except DataError as error:
        raise Missing(f"{dataset} is not available, so figures that need test digits are not drawn. "
                      f"Set LAB_DATA_DIR to a folder holding MNIST/raw. ({str(error).splitlines()[0]})") from None


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 28, 28) in [0, 1]."""
    return images.float() / 255


_PROBABILITIES: dict[tuple[str, int], np.ndarray] = {}  # (run folder, split size) -> class probabilities
_CODES: dict[tuple[str, int], torch.Tensor] = {}  # (run folder, split size) -> latent codes


def probabilities(checkpoint: Checkpoint, split: Split) -> np.ndarray:
    """Class probabilities (N, 10) of a classifier on a split, computed once per checkpoint and split size."""
    key = (str(checkpoint.folder), len(split))
    if key not in _PROBABILITIES:
        x = as_float(split.images)
        _PROBABILITIES[key] = torch.cat([checkpoint.probabilities(b) for b in x.split(1000)]).numpy()
    return _PROBABILITIES[key]


def predictions(checkpoint: Checkpoint) -> tuple[Split, np.ndarray]:
    """A classifier's test split and its class probabilities (N, 10) on it."""
    split = test_split(checkpoint.config.data.dataset)
    return split, probabilities(checkpoint, split)


def confusion_of(checkpoint: Checkpoint) -> np.ndarray:
    """A classifier's confusion matrix (10, 10) on its test split."""
    split, probs = predictions(checkpoint)
    return confusion(split.labels.numpy(), probs.argmax(1))


def worst_mistakes(checkpoint: Checkpoint, n: int = 18) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n misclassified test digits the model was most sure about: images (n, 28, 28), labels, probabilities."""
    split, probs = predictions(checkpoint)
    labels = split.labels.numpy()
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    wrong = wrong[np.argsort(-probs[wrong].max(1))][:n]
    return as_float(split.images[wrong]).numpy(), labels[wrong], probs[wrong]


def augmentation_settings(table: pd.DataFrame | None) -> dict[str, float]:
    """rotate/scale/translate of the table's augmented runs (the lab's defaults when it has none)."""
    from lab.config import DataConfig

    keys = ("rotate", "scale", "translate")
    if table is not None and "data.augment" in table:
        augmented = table[table["data.augment"].astype(str).str.lower() == "true"]
        if not augmented.empty:
            return {k: float(augmented.iloc[0][f"data.{k}"]) for k in keys}
    return {k: getattr(DataConfig(), k) for k in keys}


def augmentation_view(checkpoint: Checkpoint | None, settings: dict[str, float], n: int = 6, draws: int = 7,
                      ) -> tuple[np.ndarray, np.ndarray, list[list[str]] | None]:
    """n test digits, draws augmented copies of each, and (with a classifier) its guess and confidence on each copy."""
    split = test_split(checkpoint.config.data.dataset if checkpoint else "mnist")
    images = split.images[first_of_each(split.labels, tuple(range(n)))]
    copies = augment(images, draws, **settings)  # (n, draws, 28, 28)
    if checkpoint is None:
        return as_float(images).numpy(), copies, None
    probs = checkpoint.probabilities(torch.from_numpy(copies).flatten(0, 1)).numpy()  # (n * draws, 10)
    captions = [f"{p.argmax()} ({100 * p.max():.0f}%)" for p in probs]
    return as_float(images).numpy(), copies, [captions[i * draws:(i + 1) * draws] for i in range(n)]


def augmented_accuracy(checkpoint: Checkpoint, settings: dict[str, float], n: int = 2000) -> tuple[float, float]:
    """(accuracy on the first n clean test digits, accuracy on one random affine copy of each)."""
    split = test_split(checkpoint.config.data.dataset)
    images, labels = split.images[:n], split.labels[:n].numpy()
    clean = checkpoint.probabilities(as_float(images)).numpy().argmax(1)
    moved = checkpoint.probabilities(torch.from_numpy(augment(images, 1, **settings)[:, 0])).numpy().argmax(1)
    return float((clean == labels).mean()), float((moved == labels).mean())


def augment(images: torch.Tensor, draws: int, rotate: float, scale: float, translate: float,
            seed: int = 0) -> np.ndarray:
    """draws random affine versions of each image, as training with augmentation sees them: (N, draws, 28, 28)."""
    generator = torch.Generator().manual_seed(seed)
    x = as_float(images).unsqueeze(1).repeat_interleave(draws, 0)  # (N * draws, 1, 28, 28)
    out = random_affine(x, generator, rotate, scale, translate)
    return out.view(len(images), draws, 28, 28).numpy()


# ---------------------------------------------------------------- autoencoders

def reconstructions(pairs: list[tuple[dict | None, Checkpoint]], images: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """(label, reconstructions (N, 28, 28)) per checkpoint for uint8 images (N, 28, 28)."""
    x = as_float(images)
    return [(label_of(row, c), c.reconstruct(x)[:, 0].numpy()) for row, c in pairs]


def first_of_each(labels: torch.Tensor, digits: tuple[int, ...]) -> list[int]:
    """The index of the first test image of each digit (skipping digits that do not occur)."""
    return [int(np.flatnonzero(labels.numpy() == d)[0]) for d in digits if (labels == d).any()]


def interpolate(checkpoint: Checkpoint, a: torch.Tensor, b: torch.Tensor, steps: int = 9) -> np.ndarray:
    """Decode the straight line between the codes of two uint8 images: (steps, 28, 28)."""
    z = checkpoint.encode(as_float(torch.stack([a, b])))  # (2, latent_dim)
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return checkpoint.decode((1 - t) * z[0] + t * z[1])[:, 0].numpy()  # (steps, latent_dim) -> (steps, 28, 28)


def project_2d(codes: torch.Tensor) -> tuple[np.ndarray, float]:
    """Codes (N, d) -> (N, 2): as they are when d is 2, else onto their top two principal components.

    Returns the 2-D points and the fraction of the codes' variance they keep (1.0 when nothing was projected).
    """
    if codes.shape[1] <= 2:
        return codes.numpy(), 1.0
    centred = codes.double() - codes.double().mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    kept = float((singular[:2] ** 2).sum() / (singular**2).sum())
    return (centred @ vh[:2].T).float().numpy(), kept


def by_latent_size(found: Found) -> list[tuple[dict | None, Checkpoint]]:
    """The latent-size sweep and its PCA baselines (all fallback checkpoints), by latent size, PCA after the AE."""
    pairs = [(r, c) for r, c in found.need() if r is None or r["group"] in ("latent_dim", "pca")]
    return sorted(pairs, key=lambda p: (p[1].config.model.latent_dim, p[1].config.model.arch == "pca"))


def other_configs(found: Found) -> list[tuple[dict | None, Checkpoint]]:
    """The table's runs outside the latent-size sweep (channels, activation, ...), or Missing when there are none."""
    pairs = [(r, c) for r, c in found.need() if r is not None and r["group"] not in ("latent_dim", "pca")]
    if not pairs:
        raise Missing("No autoencoder runs outside the latent-size sweep are on disk.")
    return pairs


def interpolation_rows(found: Found, digit_pairs: tuple[tuple[int, int], ...] = DIGIT_PAIRS[:4],
                       steps: int = 9) -> list[tuple[str, np.ndarray]]:
    """Strips from the smallest-latent and the best conv autoencoder, and PCA at the best one's size, per digit pair."""
    pairs = found.need()
    conv = [c for _, c in pairs if c.config.model.arch == "conv"]
    if not conv:
        raise Missing("No convolutional autoencoder checkpoint is on disk to interpolate with.")
    mse = lambda c: c.metrics.get("test_mse", float("inf"))
    best, small = min(conv, key=mse), min(conv, key=lambda c: (c.config.model.latent_dim, mse(c)))
    size = best.config.model.latent_dim
    pca = [c for _, c in pairs if c.config.model.arch == "pca" and c.config.model.latent_dim == size]
    models = list({str(c.folder): c for c in [small, best] + pca[:1]}.values())  # small may be the best
    split = test_split(best.config.data.dataset)
    rows = []
    for a, b in digit_pairs:
        ia, ib = first_of_each(split.labels, (a, b))
        for c in models:
            name = "PCA" if c.config.model.arch == "pca" else "AE"
            rows.append((f"{a} to {b}: {name} latent {c.config.model.latent_dim}",
                         interpolate(c, split.images[ia], split.images[ib], steps)))
    return rows


def latent_panels(pairs: list[tuple[dict | None, Checkpoint]], split: Split,
                  ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The test set's codes from the best 2-D conv autoencoder (as they are) and the best wider one (PCA-projected)."""
    conv = [c for _, c in pairs if c.config.model.arch == "conv"]
    if not conv:
        raise Missing("No convolutional autoencoder checkpoint is on disk, so there is no latent space to map.")
    mse = lambda c: c.metrics.get("test_mse", float("inf"))
    two = [c for c in conv if c.config.model.latent_dim == 2]
    wide = [c for c in conv if c.config.model.latent_dim > 2]
    chosen = ([min(two, key=mse)] if two else []) + ([min(wide, key=mse)] if wide else [])
    x, labels = as_float(split.images), split.labels.numpy()
    panels = []
    for c in chosen:
        key = (str(c.folder), len(split))
        if key not in _CODES:
            _CODES[key] = torch.cat([c.encode(b) for b in x.split(2000)])  # (N, latent_dim)
        codes = _CODES[key]
        points, kept = project_2d(codes)
        how = "codes as they are" if kept == 1.0 else f"top 2 principal components ({100 * kept:.0f}% of variance)"
        panels.append((f"{c.folder.name}, latent {c.config.model.latent_dim}\n{how}", points, labels))
    return panels


# ---------------------------------------------------------------- page plumbing

def shown(make: Callable[[], Any]) -> Any:
    """make(), or a visible note (a Quarto callout) when something it needs is not on disk."""
    try:
        return make()
    except (Missing, CheckpointError) as error:
        return note(str(error))


def note(text: str, title: str = "Not shown") -> Any:
    """A Quarto callout as IPython Markdown output."""
    from IPython.display import Markdown

    return Markdown(callout(text, title))
