"""MNIST against Fashion-MNIST: the same default sweeps (`--profile fashion`) side by side.

Published reference points, cited for scale (not results of this lab): small CNNs reach 92.5-94.8% test accuracy on
Fashion-MNIST (the benchmark table of github.com/zalandoresearch/fashion-mnist); PCA with 64 components
reconstructs it at about 0.009 MSE.
"""

import pandas as pd

from lab.report.analysis import (
    AUTOENCODER_SWEEP,
    CLASSIFIER_SWEEPS,
    ablation_effects,
    best_accuracy,
    mse_by_latent,
    percent_cell,
    read_table,
    read_tables,
)

DATASETS = {"mnist": "", "fashion_mnist": "-fashion"}  # dataset -> the table name suffix of its profile
NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
PUBLISHED = {"fashion_mnist": {"accuracy": "92.5-94.8% (small CNNs)", "pca64": "about 0.009"}}


def tables(dataset: str, results_dir=None) -> dict[str, pd.DataFrame | None]:
    """A dataset's classifier tables (stacked), ablation table and autoencoder table."""
    suffix = DATASETS[dataset]
    return {"classifiers": read_tables(tuple(f"{n}{suffix}" for n in CLASSIFIER_SWEEPS), results_dir),
            "ablations": read_table(f"cnn_ablations{suffix}", results_dir),
            "autoencoders": read_table(f"{AUTOENCODER_SWEEP}{suffix}", results_dir)}


def comparison_table(by_dataset: dict[str, dict]) -> pd.DataFrame:
    """The headline numbers of each dataset side by side, with the published reference points."""
    rows: dict[str, dict[str, str]] = {}
    for dataset, found in by_dataset.items():
        name = NAMES[dataset]
        if found["classifiers"] is not None:
            best = best_accuracy(found["classifiers"])
            rows.setdefault("Best classifier, test accuracy (%)", {})[name] = percent_cell(best["test_accuracy"])
        if found["ablations"] is not None:
            effects = ablation_effects(found["ablations"])
            base = effects[effects["is_base"]].iloc[0]
            rows.setdefault("Ablation base, mean test accuracy (%)", {})[name] = (
                f"{percent_cell(base['mean'])} ({int(base['seeds'])} seeds)")
        if found["autoencoders"] is not None:
            latent = mse_by_latent(found["autoencoders"], group="latent_dim").set_index("latent_dim")
            for size, r in latent.iterrows():
                rows.setdefault(f"Latent {size}: autoencoder / PCA test MSE", {})[name] = (
                    f"{r['ae_mse']:.4f} / {r['pca_mse']:.4f}")
    table = pd.DataFrame.from_dict(rows, orient="index").reset_index(names="Measure")
    published = PUBLISHED["fashion_mnist"]
    table["Published (Fashion-MNIST)"] = table["Measure"].map(
        lambda m: published["accuracy"] if m.startswith("Best") else published["pca64"]
        if m.startswith("Latent 64") else "")
    return table.fillna("")


def datasets_sentence(by_dataset: dict[str, dict]) -> str:
    """How much harder Fashion-MNIST is, in the lab's own numbers, against the published range."""
    best = {d: best_accuracy(f["classifiers"]) for d, f in by_dataset.items() if f["classifiers"] is not None}
    if len(best) < 2:
        return "Both datasets' classifier tables are needed for the comparison."
    m, f = best["mnist"], best["fashion_mnist"]
    errors = (1 - f["test_accuracy"]) / (1 - m["test_accuracy"])
    text = (f"The same sweep's best classifier (chosen on validation) reaches {100 * m['test_accuracy']:.2f}% on "
            f"MNIST and {100 * f['test_accuracy']:.2f}% on Fashion-MNIST: {errors:.0f}x as many test errors. ")
    low, high = 0.925, 0.948
    where = ("within" if low <= f["test_accuracy"] <= high else "below" if f["test_accuracy"] < low else "above")
    text += (f"That is {where} the 92.5-94.8% published for small CNNs, with the budget of a 2-core CPU "
             f"({int(f['train.epochs'])} epoch{'s' if int(f['train.epochs']) != 1 else ''}).")
    return text
