"""Summary statistics of per-item scores: the mean, percentiles (of latencies, costs) and a
bootstrap confidence interval, so two models' scores on a few dozen items are not over-read.

NaN values stand for items that could not be scored and are left out of every statistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

MAX_CHUNK = 1_000_000  # resampled values held in memory at once


def _clean(values: Iterable[float]) -> np.ndarray:
    """The values as a float array, NaNs dropped."""
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    return arr[~np.isnan(arr)]


def mean(values: Iterable[float]) -> float:
    """The arithmetic mean; NaN when there are no values."""
    arr = _clean(values)
    return float(arr.mean()) if arr.size else math.nan


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100, linear interpolation); NaN when there are no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, not {q}")
    arr = _clean(values)
    return float(np.percentile(arr, q)) if arr.size else math.nan


def bootstrap_ci(
    values: Iterable[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile-bootstrap confidence interval, reproducible by `seed`."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples}")
    arr = _clean(values)
    if arr.size == 0:
        return math.nan, math.nan, math.nan
    centre = float(arr.mean())
    if arr.size == 1:
        return centre, centre, centre
    rng = np.random.default_rng(seed)
    rows = max(1, MAX_CHUNK // arr.size)
    means = np.concatenate(
        [
            arr[rng.integers(0, arr.size, size=(min(rows, resamples - start), arr.size))].mean(axis=1)
            for start in range(0, resamples, rows)
        ]
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return centre, min(float(low), centre), max(float(high), centre)
