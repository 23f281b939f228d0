"""The reference experiments' analysis and the optimiser comparison, on synthetic tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from lab.report import optimizers as O
from lab.report import reference as R

LUCK = [0.0, 0.002, -0.001, 0.001, -0.002]  # each seed's luck moves every setting trained on it


def findings_table(shift: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """The findings sweep: the reference settings (stride, batch, before, augment) share runs across groups;
    shift[setting] = (change in test accuracy, change in train accuracy) of an alternative, on every seed."""
    base = {"downsample": "stride", "norm": "batch", "norm_position": "before", "augment": "true"}
    alternative = {"downsample": "max", "norm": "layer", "norm_position": "after", "augment": "false"}
    key = {"downsample": "model.downsample", "norm": "model.norm", "norm_position": "model.norm_position",
           "augment": "data.augment"}
    rows = []
    for group in base:
        for value in (base[group], alternative[group]):
            test_shift, train_shift = shift.get(f"{group}={value}", (0.0, 0.0))
            for seed, luck in enumerate(LUCK):
                wobble = np.random.default_rng([seed, *map(ord, value)]).normal(0, 0.0003)  # run-to-run noise
                test = 0.985 + luck + test_shift + wobble
                rows.append({"group": group, "label": f"{key[group]}={value} seed={seed}", "seed": seed,
                             "run_id": f"{'base' if value == base[group] else value}-{seed}", "train.epochs": 2,
                             "test_accuracy": test, "train_accuracy": test + 0.003 + train_shift})
    return pd.DataFrame(rows)


def test_findings_are_confirmed_contradicted_or_not_resolvable():
    table = findings_table({"downsample=max": (-0.004, -0.004),  # max pooling costs 0.4 points: confirmed
                            "norm=layer": (+0.004, +0.004),  # layer norm gains: contradicted
                            "augment=false": (-0.001, +0.006)})  # no augmentation widens the gap: confirmed
    verdicts = R.finding_verdicts(table).set_index("claim")
    assert verdicts.loc["strided convolutions beat max pooling", "verdict"] == R.CONFIRMED
    assert verdicts.loc["batch norm beats layer norm", "verdict"] == R.CONTRADICTED
    assert verdicts.loc["the norm before or after the activation", "verdict"] == "no effect detectable"
    gap = verdicts.loc["augmentation reduces overfitting (the train-test gap)"]
    assert gap["verdict"] == R.CONFIRMED and gap["effect"] == pytest.approx(0.006)  # train accuracy - test
    assert verdicts["level"].min() == pytest.approx(0.05 / len(R.FINDINGS))  # Holm across the findings
    markdown = R.verdicts_markdown(R.finding_verdicts(table))
    assert markdown.count("\n") == len(R.FINDINGS) + 1 and "**contradicted**" in markdown


def test_an_effect_too_small_for_the_seeds_is_not_resolvable():
    verdicts = R.finding_verdicts(findings_table({"downsample=max": (-0.0002, -0.0002)})).set_index("claim")
    row = verdicts.loc["strided convolutions beat max pooling"]
    assert row["verdict"] == R.UNRESOLVED and row["corrected_low"] < 0 < row["corrected_high"]


def test_the_recipe_summary_holds_the_claim_and_the_target_apart():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "test_accuracy": [0.9952, 0.9948, 0.9957],
                         "train.epochs": [20] * 3})
    summary = R.recipe_summary(runs)
    assert summary["seeds"] == 3 and summary["mean"] == pytest.approx(0.99523, abs=1e-5)
    assert summary["all_above_claim"] and not summary["meets_target"]
    assert summary["low"] < summary["mean"] < summary["high"]
    text = R.recipe_sentence(summary)
    assert "reproduced" in text and "short of the lab's target of 99.6%" in text


def optimizer_table() -> pd.DataFrame:
    """Adam is best at lr 0.003 on validation; SGD best at 0.1; validation and test agree up to a small offset."""
    peak = {"adam": (0.003, 0.990), "sgd": (0.1, 0.984)}
    rows = []
    for name, (best_rate, top) in peak.items():
        for rate in (best_rate / 3, best_rate, best_rate * 3):
            for seed, luck in enumerate(LUCK[:3]):
                val = top - 0.004 * abs(np.log(rate / best_rate)) + luck
                rows.append({"train.optimizer": name, "train.lr": rate, "seed": seed, "run_id": f"{name}{rate}{seed}",
                             "val_accuracy": val, "test_accuracy": val - 0.001})
    return pd.DataFrame(rows)


def test_each_optimiser_is_judged_at_the_rate_validation_chose():
    chosen = O.chosen_rates(optimizer_table()).set_index("optimizer")
    assert chosen.loc["adam", "chosen_lr"] == pytest.approx(0.003) and chosen.loc["sgd", "chosen_lr"] == 0.1
    assert chosen.loc["adam", "seeds"] == 3
    assert chosen.loc["adam", "test_accuracy"] == pytest.approx(0.990 - 0.001 + np.mean(LUCK[:3]))
    paired = O.against_the_best(O.chosen_rates(optimizer_table()))
    assert list(paired["optimizer"]) == ["sgd"] and paired["effect"].iloc[0] == pytest.approx(-0.006)
    assert paired["verdict"].iloc[0] == "effect"  # the same luck on each seed: a clean 0.6-point difference
    assert "Adam is best on validation" in O.optimizer_sentence(O.chosen_rates(optimizer_table()), paired)


def test_a_rate_chosen_at_the_end_of_its_grid_is_flagged():
    table = optimizer_table()
    chosen = O.chosen_rates(table)
    assert "tried, so a" not in O.optimizer_sentence(chosen, O.against_the_best(chosen))  # both best mid-grid
    top = table[~((table["train.optimizer"] == "sgd") & (table["train.lr"] > 0.1))]
    chosen = O.chosen_rates(top)
    assert "For SGD the chosen rate is the largest tried, so a larger one may be better" in O.optimizer_sentence(
        chosen, O.against_the_best(chosen))


def test_the_optimiser_comparison_refuses_a_table_without_validation():
    with pytest.raises(ValueError, match="data.val_size"):
        O.chosen_rates(optimizer_table().drop(columns=["val_accuracy"]))
