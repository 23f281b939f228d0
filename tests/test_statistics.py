"""Paired-seed statistics on synthetic data with a known answer (lab/report/statistics.py), and the Wilson interval
of a proportion (lab/stats.py)."""

import numpy as np
import pandas as pd
import pytest

from lab.report import statistics as S


def seeds(values) -> pd.Series:
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_a_known_effect_is_found_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    luck = np.array([-0.010, 0.006, 0.0, 0.012, -0.008])  # each seed's luck moves base and setting alike
    base = seeds(0.990 + luck)
    setting = seeds(0.990 + luck - 0.005 + rng.normal(0, 0.0005, 5))
    c = S.compare(base, setting)
    assert c["seeds"] == 5 and c["low"] < -0.005 < c["high"] and c["high"] < 0
    tested = S.correct(pd.DataFrame([c]))
    assert tested["verdict"].iloc[0] == S.EFFECT
    # unpaired, the seeds' luck (about a point) swamps the 0.5-point effect: a Welch interval includes zero
    t = stats_welch(base, setting)
    assert t[0] < 0 < t[1]


def stats_welch(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    from scipy import stats
    diff = b.mean() - a.mean()
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    return diff - half, diff + half


def test_no_effect_yields_no_claim_and_says_what_could_have_been_found():
    rng = np.random.default_rng(1)
    base = seeds(0.99 + rng.normal(0, 0.001, 5))
    setting = seeds(base.values + rng.normal(0, 0.001, 5))
    tested = S.correct(pd.DataFrame([S.compare(base, setting)]))
    row = tested.iloc[0]
    assert row["verdict"] == S.NO_EFFECT and row["corrected_low"] < 0 < row["corrected_high"]
    assert 0 < row["detectable"] < 0.01


def test_one_seed_is_too_few_for_any_interval():
    tested = S.correct(pd.DataFrame([S.compare(seeds([0.99]), seeds([0.95]))]))
    assert tested["verdict"].iloc[0] == S.TOO_FEW and np.isnan(tested["corrected_low"].iloc[0])


def test_only_the_seeds_both_settings_share_are_paired():
    base = pd.Series([0.9, 0.8, 0.7], index=[0, 1, 2])
    other = pd.Series([0.95, 0.85], index=[1, 2])
    assert list(S.paired_differences(base, other)) == pytest.approx([0.15, 0.15])


def test_the_95_percent_interval_covers_the_true_difference_95_percent_of_the_time():
    """5,000 simulated experiments of 5 paired seeds each: the t interval holds the true effect at its stated rate."""
    rng = np.random.default_rng(2)
    true_effect, hits, draws = -0.003, 0, 5000
    for _ in range(draws):
        d = true_effect + rng.normal(0, 0.002, 5)
        low, high = S.t_interval(d, 0.05)
        hits += low <= true_effect <= high
    assert 0.94 <= hits / draws <= 0.96  # binomial sd at 95% over 5,000 draws: 0.3 points


def test_holm_keeps_the_familywise_error_at_five_percent_when_nothing_has_an_effect():
    """2,000 simulated sweeps of 8 null comparisons: at most 5% of sweeps claim any effect (uncorrected: ~34%)."""
    rng = np.random.default_rng(3)
    any_claim = any_uncorrected = 0
    for _ in range(2000):
        d = rng.normal(0, 0.002, (8, 5))
        p = [S.p_value(row) for row in d]
        levels = S.holm_levels(p)
        any_claim += any(pi < level for pi, level in zip(p, levels))
        any_uncorrected += any(pi < 0.05 for pi in p)
    assert any_claim / 2000 <= 0.06 and any_uncorrected / 2000 > 0.25


def test_holm_adjusts_as_the_textbook_does():
    # p-values 0.01, 0.04, 0.03: the smallest is tested at 0.05/3, the next at 0.05/2 (0.03 >= 0.025: stop)
    assert S.holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert S.holm_levels([0.01, 0.04, 0.03]) == pytest.approx([0.05 / 3, 0.025, 0.025])


def test_the_corrected_interval_excludes_zero_exactly_when_holm_rejects():
    rng = np.random.default_rng(4)
    for _ in range(200):
        rows = [S.compare(seeds(np.zeros(5)), seeds(rng.normal(rng.choice([0, 0.002]), 0.002, 5))) for _ in range(6)]
        tested = S.correct(pd.DataFrame(rows))
        rejected = tested["p_holm"] < S.ALPHA
        assert list(rejected) == list(tested["verdict"] == S.EFFECT)


@pytest.mark.parametrize("k,n", [(0, 10), (5, 10), (10, 10), (109, 10000), (3, 2000)])
def test_the_wilson_interval_is_scipys(k, n):
    from scipy import stats

    from lab.stats import wilson
    expected = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson(k, n) == pytest.approx((expected.low, expected.high), abs=1e-6)
    assert wilson(0, 0) == (0.0, 1.0)
