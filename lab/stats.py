"""Summaries of measured times, one definition for the benchmark, the load test and the redraw accuracy tool."""

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
