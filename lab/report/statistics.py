"""Paired-seed statistics for ablations: each effect with its interval, Holm's correction, a verdict, and the
smallest effect the design could have detected.

Every setting of an ablation group is trained on the same seeds as the group's base, so the effect of a setting is
the mean over seeds of (setting - base) on one seed: seed-to-seed luck that moves both runs of a seed cancels out.
Its interval is Student's t on those n paired differences (n - 1 degrees of freedom). Across all the comparisons of
a sweep, Holm's step-down procedure keeps the chance of any false "effect" at ALPHA: the comparison ranked k (by
p-value) is tested at ALPHA / (m - k + 1) until one fails, and every later one at that failing level. The corrected
interval is the t interval at a comparison's level, so it excludes zero exactly when Holm finds an effect.

Numbers that differ in the last digits between CPU models shift base and setting alike on a machine; the tables say
which CPU made them (metrics' `cpu`), and a comparison only pairs runs of one table.
"""

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05  # family-wise error rate across a sweep's comparisons
POWER = 0.8  # for the smallest detectable effect
EFFECT, NO_EFFECT, TOO_FEW, BASE = "effect", "no effect detectable", "too few seeds", "base"


def paired_differences(base: pd.Series, other: pd.Series) -> np.ndarray:
    """other - base on each seed both were trained on (Series indexed by seed)."""
    seeds = sorted(set(base.index) & set(other.index))
    return np.array([other[s] - base[s] for s in seeds], dtype=float)


def t_interval(differences: np.ndarray, level: float) -> tuple[float, float]:
    """The two-sided (1 - level) Student-t interval of the mean difference; NaNs with fewer than two."""
    n = len(differences)
    if n < 2:
        return np.nan, np.nan
    mean, se = differences.mean(), differences.std(ddof=1) / np.sqrt(n)
    half = stats.t.ppf(1 - level / 2, n - 1) * se
    return mean - half, mean + half


def p_value(differences: np.ndarray) -> float:
    """Two-sided p-value of the paired t test (mean difference 0); 1 when the differences cannot say (n < 2)."""
    n = len(differences)
    if n < 2:
        return 1.0
    sd = differences.std(ddof=1)
    if sd == 0:
        return 0.0 if differences.mean() != 0 else 1.0
    t = differences.mean() / (sd / np.sqrt(n))
    return float(2 * stats.t.sf(abs(t), n - 1))


def holm_levels(p_values: list[float], alpha: float = ALPHA) -> list[float]:
    """The level each comparison is tested at under Holm's step-down procedure (in the order given)."""
    m = len(p_values)
    levels = [alpha] * m
    failed_at = None
    for rank, index in enumerate(np.argsort(p_values, kind="stable")):
        level = alpha / (m - rank) if failed_at is None else failed_at
        if failed_at is None and p_values[index] >= level:
            failed_at = level
        levels[index] = level
    return levels


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values: reject at ALPHA exactly when adjusted < ALPHA."""
    m, order = len(p_values), np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def detectable(differences: np.ndarray, level: float, power: float = POWER) -> float:
    """The smallest true effect this paired design finds with the given power at the given level (normal shift)."""
    n = len(differences)
    if n < 2:
        return np.nan
    df = n - 1
    return float((stats.t.ppf(1 - level / 2, df) + stats.t.ppf(power, df)) * differences.std(ddof=1) / np.sqrt(n))


def compare(base: pd.Series, other: pd.Series) -> dict:
    """The uncorrected comparison of one setting with its base: n, effect, 95% interval, p-value."""
    d = paired_differences(base, other)
    low, high = t_interval(d, 0.05)
    return {"seeds": len(d), "effect": d.mean() if len(d) else np.nan, "sd": d.std(ddof=1) if len(d) > 1 else np.nan,
            "low": low, "high": high, "p_value": p_value(d), "differences": d}


def correct(comparisons: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Holm across the rows (one comparison each): level, adjusted p, corrected interval, verdict, detectable."""
    levels = holm_levels(list(comparisons["p_value"]), alpha)
    rows = []
    for (_, row), level in zip(comparisons.iterrows(), levels):
        low, high = t_interval(row["differences"], level)
        verdict = TOO_FEW if row["seeds"] < 2 else EFFECT if (low > 0 or high < 0) else NO_EFFECT
        rows.append({"level": level, "corrected_low": low, "corrected_high": high, "verdict": verdict,
                     "detectable": detectable(row["differences"], level)})
    adjusted = holm_adjusted(list(comparisons["p_value"]))
    return comparisons.assign(p_holm=adjusted, **pd.DataFrame(rows, index=comparisons.index))
