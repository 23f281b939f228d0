"""The reference experiments, tested on the reference network: the recipe's result against its claims, and a verdict
for each of the reference's findings (experiments/reference_recipe.toml and reference_findings.toml).

A finding is "confirmed" when its Holm-corrected 95% interval (paired seeds, lab/report/statistics.py) lies wholly on
the side the reference claims, "contradicted" when it lies wholly on the other side, and otherwise "not resolvable at
this budget": the interval holds both zero and the claimed direction, and says how large an effect could hide there.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.report import statistics as S
from lab.report.analysis import percent, unique_runs, value_label

RECIPE_SWEEP, FINDINGS_SWEEP = "reference_recipe", "reference_findings"
CLAIMED = 0.99  # the reference script reports > 99% test accuracy
TARGET = 0.996  # the lab's own bar for the recipe: a mean of at least 99.6%
CONFIRMED, CONTRADICTED, UNRESOLVED = "confirmed", "contradicted", "not resolvable at this budget"


@dataclass(frozen=True)
class Finding:
    claim: str
    group: str  # the findings sweep's grid group
    setting: str  # the alternative's setting (value_label); the group's other setting is the reference's choice
    metric: str  # a table column, or "gap": train accuracy (eval mode) minus test accuracy
    expected: int  # the sign of (alternative - reference choice) if the claim holds; 0: no direction claimed


FINDINGS = (
    Finding("strided convolutions beat max pooling", "downsample", "downsample=max", "test_accuracy", -1),
    Finding("batch norm beats layer norm", "norm", "norm=layer", "test_accuracy", -1),
    Finding("the norm before or after the activation", "norm_position", "norm_position=after", "test_accuracy", 0),
    Finding("augmentation reduces overfitting (the train-test gap)", "augment", "augment=false", "gap", 1),
    Finding("augmentation's effect on test accuracy", "augment", "augment=false", "test_accuracy", 0),
)


def recipe_summary(table: pd.DataFrame) -> dict:
    """The recipe's final-epoch test accuracy over its seeds: mean, sd, range, 95% t interval, and the two bars."""
    values = unique_runs(table)["test_accuracy"].to_numpy(dtype=float)
    low, high = S.t_interval(values, 0.05)
    return {"seeds": len(values), "mean": values.mean(), "sd": values.std(ddof=1) if len(values) > 1 else np.nan,
            "min": values.min(), "max": values.max(), "low": low, "high": high,
            "all_above_claim": bool((values > CLAIMED).all()), "meets_target": bool(values.mean() >= TARGET),
            "epochs": int(unique_runs(table)["train.epochs"].iloc[0])}


def recipe_sentence(summary: dict) -> str:
    """The recipe's result against the reference's "> 99%" and the lab's 99.6% target, in words."""
    s = summary
    text = (f"Trained exactly as the reference trained it ({s['epochs']} epochs), `simple_cnn` reaches "
            f"{percent(s['mean'])} mean test accuracy over {s['seeds']} seeds (sd {100 * s['sd']:.2f} points, range "
            f"{percent(s['min'])}-{percent(s['max'])}, 95% interval of the mean {percent(s['low'])}-"
            f"{percent(s['high'])}). ")
    text += ("Every seed clears the reference's > 99%: reproduced. " if s["all_above_claim"] else
             "Not every seed clears the reference's > 99%. ")
    gap = 100 * (TARGET - s["mean"])
    text += (f"The mean meets the lab's target of {percent(TARGET, 1)}." if s["meets_target"] else
             f"The mean falls {gap:.2f} points short of the lab's target of {percent(TARGET, 1)}.")
    return text


def _metric(runs: pd.DataFrame, metric: str) -> pd.Series:
    return runs["train_accuracy"] - runs["test_accuracy"] if metric == "gap" else runs[metric]


def finding_verdicts(table: pd.DataFrame, findings: tuple[Finding, ...] = FINDINGS) -> pd.DataFrame:
    """One row per finding: the paired effect of the alternative against the reference's choice, its Holm-corrected
    interval (the family: these findings), and the verdict."""
    runs = table.assign(setting=table["label"].map(value_label))
    rows = []
    for finding in findings:
        cells = runs[runs["group"] == finding.group]
        base = next(s for s in dict.fromkeys(cells["setting"]) if s != finding.setting)
        by_seed = {s: c.assign(value=_metric(c, finding.metric)).groupby("seed")["value"].mean()
                   for s, c in cells.groupby("setting")}
        rows.append({"claim": finding.claim, "group": finding.group, "reference": base,
                     "alternative": finding.setting, "metric": finding.metric, "expected": finding.expected}
                    | S.compare(by_seed[base], by_seed[finding.setting]))
    tested = S.correct(pd.DataFrame(rows)).drop(columns=["differences"])
    tested["verdict"] = [_verdict(r) for r in tested.itertuples()]
    return tested


def _verdict(row) -> str:
    if row.seeds < 2 or np.isnan(row.corrected_low):
        return UNRESOLVED
    if row.expected == 0:
        return S.EFFECT if (row.corrected_low > 0 or row.corrected_high < 0) else S.NO_EFFECT
    side = row.expected * np.array([row.corrected_low, row.corrected_high])
    return CONFIRMED if (side > 0).all() else CONTRADICTED if (side < 0).all() else UNRESOLVED


def verdicts_markdown(verdicts: pd.DataFrame) -> str:
    """The verdicts as a Markdown table: claim, comparison, effect with its corrected interval, seeds, verdict."""
    lines = ["| Reference finding | Comparison | Effect (points) | Holm-corrected 95% interval (points) | Seeds "
             "| Verdict |",
             "| --- | --- | ---: | --- | ---: | --- |"]
    for r in verdicts.itertuples():
        what = "train-test gap" if r.metric == "gap" else "test accuracy"
        lines.append(f"| {r.claim} | {r.alternative} against {r.reference}, {what} | {100 * r.effect:+.2f} | "
                     f"[{100 * r.corrected_low:+.2f}, {100 * r.corrected_high:+.2f}] | {int(r.seeds)} | "
                     f"**{r.verdict}** |")
    return "\n".join(lines)


def findings_sentence(verdicts: pd.DataFrame) -> str:
    """The verdicts in words: which findings the lab confirms, contradicts, or cannot resolve, with the intervals."""
    parts = []
    for r in verdicts.itertuples():
        what = "the train-test gap" if r.metric == "gap" else "test accuracy"
        interval = (f"{100 * r.effect:+.2f} points on {what}, Holm-corrected interval "
                    f"[{100 * r.corrected_low:+.2f}, {100 * r.corrected_high:+.2f}], {int(r.seeds)} seeds")
        if r.verdict == UNRESOLVED:
            detail = f"not resolvable at this budget ({interval}): an effect of {100 * r.detectable:.2f} points " \
                     f"would have been found with 80% power"
        else:
            detail = f"{r.verdict} ({interval})"
        parts.append(f"*{r.claim}* ({r.alternative} against {r.reference}): {detail}.")
    return " ".join(parts)
