"""Summaries of measured times and counts, one definition for the benchmark, the load test and the redraw accuracy
tool."""

import math

import numpy as np


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (q in [0, 1]), interpolating linearly between order statistics (numpy's default); NaN if empty."""
    return float(np.quantile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


def latency_ms(seconds: list[float]) -> dict:
    """n, p50, p95, min and max in milliseconds of a list of durations in seconds (NaN where there are none)."""
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95),
            "min_ms": min(ms) if ms else math.nan, "max_ms": max(ms) if ms else math.nan}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% at the default z) of a proportion of k in n; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)
