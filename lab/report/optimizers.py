"""Optimisers compared fairly (experiments/optimizers.toml): each at its own best learning rate, chosen on the
validation split by mean accuracy over seeds, then its test accuracy at that rate with a 95% interval, and paired
against the best of them (Holm-corrected across the comparisons)."""

import pandas as pd

from lab.report import statistics as S
from lab.report.analysis import percent

SWEEP = "optimizers"


def chosen_rates(table: pd.DataFrame) -> pd.DataFrame:
    """Per optimiser: the rates tried, the one with the best mean validation accuracy, and the test accuracy there."""
    if "val_accuracy" not in table or table["val_accuracy"].isna().all():
        raise ValueError("the optimiser table has no validation accuracy: its runs need data.val_size")
    rows = []
    for name, runs in table.groupby("train.optimizer", sort=False):
        by_rate = runs.groupby("train.lr")["val_accuracy"].mean()
        rate = by_rate.idxmax()
        at = runs[runs["train.lr"] == rate].drop_duplicates("run_id")
        test = at.set_index("seed")["test_accuracy"]
        low, high = S.t_interval(test.to_numpy(dtype=float), 0.05)
        rows.append({"optimizer": name, "rates": sorted(by_rate.index), "chosen_lr": rate,
                     "val_accuracy": by_rate[rate], "seeds": len(test), "test_accuracy": test.mean(),
                     "test_low": low, "test_high": high, "test_by_seed": test})
    return pd.DataFrame(rows)


def against_the_best(chosen: pd.DataFrame) -> pd.DataFrame:
    """Each other optimiser's test accuracy (at its chosen rate) paired by seed against the one best on validation."""
    best = chosen.loc[chosen["val_accuracy"].idxmax()]
    rows = [{"optimizer": r["optimizer"], "against": best["optimizer"]} |
            S.compare(best["test_by_seed"], r["test_by_seed"])
            for _, r in chosen.iterrows() if r["optimizer"] != best["optimizer"]]
    return S.correct(pd.DataFrame(rows)).drop(columns=["differences"]) if rows else pd.DataFrame()


NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


def optimizer_sentence(chosen: pd.DataFrame, paired: pd.DataFrame) -> str:
    """Which optimiser is best on validation, its test accuracy, and whether the others differ from it on test."""
    best = chosen.loc[chosen["val_accuracy"].idxmax()]
    name = lambda o: NAMES.get(o, o)  # noqa: E731
    parts = [f"{name(r.optimizer)} at lr {r.chosen_lr:g}: {percent(r.test_accuracy)} test accuracy "
             f"[{percent(r.test_low)}, {percent(r.test_high)}] over {r.seeds} seeds" for r in chosen.itertuples()]
    text = "Each optimiser at the rate its validation accuracy chose: " + "; ".join(parts) + ". "
    top = [name(r.optimizer) for r in chosen.itertuples() if r.chosen_lr == max(r.rates)]
    bottom = [name(r.optimizer) for r in chosen.itertuples() if r.chosen_lr == min(r.rates)]
    for edge, which, side in ((top, "largest", "larger"), (bottom, "smallest", "smaller")):
        if edge:
            text += (f"For {' and '.join(edge)} the chosen rate is the {which} tried, so a {side} one may be "
                     f"better. ")
    text += f"{name(best['optimizer'])} is best on validation. "
    for r in paired.itertuples():
        verdict = ("differs from it" if r.verdict == S.EFFECT else "is not distinguishable from it at "
                   f"{r.seeds} seeds")
        text += (f"{name(r.optimizer)} {verdict} on test ({100 * r.effect:+.2f} points, Holm-corrected interval "
                 f"[{100 * r.corrected_low:+.2f}, {100 * r.corrected_high:+.2f}]). ")
    return text.strip()
