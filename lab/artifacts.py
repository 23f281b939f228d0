"""Run folders -> the small files the report shows beside each table, so a fresh clone shows the sweeps' own models.

Run folders (weights) are not committed, so what the report draws from a model is computed once, when the tables
are written, and saved next to them as `<table>_artifacts.npz`: plain numeric arrays, read with
`numpy.load(allow_pickle=False)`, so loading one can never run code.

- classifier tables: the best run chosen on validation accuracy (test where a table has no validation numbers):
  its predictions and class probabilities on the test set, its most confident mistakes, and its answers on
  random-affine copies of a few test digits (what augmentation does to it).
- autoencoder tables: per run, the reconstructions of the first test digit of each class, interpolations between
  fixed pairs of test digits, and the 2-D map of the first test digits' codes (as they are for a 2-D latent,
  else their top two principal components).

A few hundred kB per table. Images are stored as uint8 (0-255), probabilities as float16.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lab.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from lab.config import DataConfig
from lab.data import Split, random_affine
from lab.results import best_classifier_run
from lab.run_folder import write_atomic

ARTIFACTS_SUFFIX = "_artifacts.npz"
DIGIT_PAIRS = ((1, 7), (3, 8), (4, 9), (0, 6), (2, 5))  # digits that share strokes: their blends are telling
INTERPOLATION_STEPS = 9
MAP_DIGITS = 2000  # test digits on a latent map
MISTAKES = 18  # the most confident mistakes kept
AUGMENT_DIGITS, AUGMENT_DRAWS, AUGMENT_ACCURACY_DIGITS = 6, 7, 2000
AUGMENT_KEYS = ("rotate", "scale", "translate")


def artifacts_path(runs_table_path: Path) -> Path:
    """experiments/results/<stem>.csv -> experiments/results/<stem>_artifacts.npz."""
    return runs_table_path.with_name(runs_table_path.stem + ARTIFACTS_SUFFIX)


def read_artifacts(path: Path) -> dict[str, np.ndarray]:
    """Every array of an artifacts file, loaded with no pickle (object arrays are refused)."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def as_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (any leading shape, 28 x 28 last) -> uint8 0-255."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 28, 28) in [0, 1]."""
    return images.float() / 255


def first_of_each(labels: torch.Tensor, digits: tuple[int, ...]) -> list[int]:
    """The index of the first test image of each digit (skipping digits that do not occur)."""
    return [int(np.flatnonzero(labels.numpy() == d)[0]) for d in digits if (labels == d).any()]


def augmentation_settings(table: pd.DataFrame) -> dict[str, float]:
    """rotate/scale/translate of the table's augmented runs (the lab's defaults when it has none)."""
    if "data.augment" in table:
        augmented = table[table["data.augment"].astype(str).str.lower() == "true"]
        if not augmented.empty:
            return {k: float(augmented.iloc[0][f"data.{k}"]) for k in AUGMENT_KEYS}
    return {k: getattr(DataConfig(), k) for k in AUGMENT_KEYS}


def augment(images: torch.Tensor, draws: int, settings: dict[str, float], seed: int = 0) -> torch.Tensor:
    """draws random affine copies of each uint8 image, as training with augmentation sees them (data.rotate, scale and
    translate; not data.elastic's distortion nor data.strokes' redraws, which no committed sweep uses):
    (N, draws, 28, 28)."""
    generator = torch.Generator().manual_seed(seed)
    x = as_float(images).unsqueeze(1).repeat_interleave(draws, 0)  # (N * draws, 1, 28, 28)
    out = random_affine(x, generator, *(settings[k] for k in AUGMENT_KEYS))
    return out.view(len(images), draws, 28, 28)


def probabilities(checkpoint: Checkpoint, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, 10) of images in [0, 1], in batches of 1,000."""
    return torch.cat([checkpoint.probabilities(b) for b in images.split(1000)])


def confident_mistakes(probs: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the (at most n) wrongly predicted images, the most confident first: probs (N, 10), labels (N,)."""
    wrong = torch.nonzero(probs.argmax(1) != labels).flatten()
    return wrong[torch.argsort(-probs[wrong].max(1).values)][:n]


def classifier_artifacts(checkpoint: Checkpoint, test: Split, settings: dict[str, float]) -> dict[str, np.ndarray]:
    """The best classifier's test predictions, probabilities, most confident mistakes and augmented answers."""
    probs = probabilities(checkpoint, as_float(test.images))
    predicted, labels = probs.argmax(1), test.labels
    wrong = confident_mistakes(probs, labels, MISTAKES)
    shown = first_of_each(labels, tuple(range(AUGMENT_DIGITS)))
    copies = augment(test.images[shown], AUGMENT_DRAWS, settings)
    n = AUGMENT_ACCURACY_DIGITS
    moved = augment(test.images[:n], 1, settings)[:, 0]
    clean_right = (predicted[:n] == labels[:n]).float().mean()  # the first n of the test predictions above
    moved_right = (probabilities(checkpoint, moved).argmax(1) == labels[:n]).float().mean()
    return {
        "best_run": np.array(checkpoint.run_id), "trained_with_augment": np.array(checkpoint.config.data.augment),
        "labels": labels.numpy().astype(np.uint8), "predictions": predicted.numpy().astype(np.uint8),
        "probabilities": probs.numpy().astype(np.float16),
        "mistake_index": wrong.numpy().astype(np.int32), "mistake_images": test.images[wrong].numpy(),
        "augment_settings": np.array([settings[k] for k in AUGMENT_KEYS], dtype=np.float32),
        "augment_images": test.images[shown].numpy(), "augment_copies": as_uint8(copies),
        "augment_probabilities": probabilities(checkpoint, copies.flatten(0, 1)).numpy().astype(np.float16),
        "augment_accuracy": np.array([clean_right.item(), moved_right.item()], dtype=np.float32),
    }


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


def interpolate(checkpoint: Checkpoint, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Decode the straight line between the codes of two images in [0, 1]: (INTERPOLATION_STEPS, 28, 28)."""
    z = checkpoint.encode(torch.stack([a, b]))  # (2, latent_dim)
    t = torch.linspace(0, 1, INTERPOLATION_STEPS).unsqueeze(1)
    return checkpoint.decode((1 - t) * z[0] + t * z[1])[:, 0]


def autoencoder_shared(test: Split) -> dict[str, np.ndarray]:
    """What every autoencoder run of a table is shown on: the gallery digits, the interpolation pairs, the map."""
    gallery = first_of_each(test.labels, tuple(range(10)))
    pairs = [first_of_each(test.labels, pair) for pair in DIGIT_PAIRS]
    return {"gallery_index": np.array(gallery, dtype=np.int32), "gallery_images": test.images[gallery].numpy(),
            "pair_digits": np.array(DIGIT_PAIRS, dtype=np.int32), "pair_index": np.array(pairs, dtype=np.int32),
            "map_labels": test.labels[:MAP_DIGITS].numpy().astype(np.uint8)}


def autoencoder_run_artifacts(checkpoint: Checkpoint, test: Split, shared: dict[str, np.ndarray]) -> dict:
    """One autoencoder run's reconstructions, interpolations and 2-D map, keyed '<kind>.<run id>'."""
    rid = checkpoint.run_id
    gallery = as_float(test.images[torch.from_numpy(shared["gallery_index"]).long()])
    strips = torch.stack([interpolate(checkpoint, *as_float(test.images[torch.from_numpy(p).long()]))
                          for p in shared["pair_index"]])
    codes = torch.cat([checkpoint.encode(b) for b in as_float(test.images[:MAP_DIGITS]).split(1000)])
    points, kept = project_2d(codes)
    return {f"reconstructions.{rid}": as_uint8(checkpoint.reconstruct(gallery)[:, 0]),
            f"interpolations.{rid}": as_uint8(strips), f"map.{rid}": points.astype(np.float16),
            f"map_kept.{rid}": np.array(kept, dtype=np.float32)}


def table_artifacts(table: pd.DataFrame, runs_dir: Path, test: Split) -> dict[str, np.ndarray] | None:
    """The artifacts of one sweep table, from the run folders on disk; None when the runs they need are not there."""
    task = table["task"].iloc[0]
    try:
        if task == "classifier":
            best = load_checkpoint(Path(runs_dir) / best_classifier_run(table))
            return classifier_artifacts(best, test, augmentation_settings(table))
        shared = autoencoder_shared(test)
        found = {}
        for rid in dict.fromkeys(table["run_id"]):
            found |= autoencoder_run_artifacts(load_checkpoint(Path(runs_dir) / rid), test, shared)
        return shared | {"runs": np.array(list(dict.fromkeys(table["run_id"])))} | found
    except CheckpointError as error:
        print(f"warning: no report artifacts for {table['sweep'].iloc[0]}: {error}")
        return None


def write_artifacts(table: pd.DataFrame, runs_table_path: Path, runs_dir: Path, test: Split) -> Path | None:
    """Write <table>_artifacts.npz beside a runs table (atomically); None when a run it needs is not on disk."""
    arrays = table_artifacts(table, runs_dir, test)
    if arrays is None:
        return None
    path = artifacts_path(runs_table_path)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would add ".npz" to the temp file's name
            np.savez_compressed(f, **arrays)
    write_atomic(path, save)
    return path
