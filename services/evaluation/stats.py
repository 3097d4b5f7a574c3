"""Summary statistics of per-item scores: the mean, percentiles (of latencies, costs) and confidence
intervals, so two models' scores on a few dozen items are not over-read.

A proportion (pass/fail scores, accuracy, attack success) gets the Wilson score interval, which
stays honest at the extremes where a bootstrap collapses to zero width (4/4 is 0.51-1.00, not
1.00-1.00); any other mean gets a percentile bootstrap. `interval` picks between them and names
the method. NaN values stand for items that could not be scored and are left out of every statistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist

import numpy as np

WILSON = "Wilson"
BOOTSTRAP = "bootstrap"
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


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """(share, low, high): the share of successes and its Wilson score interval; NaNs for n = 0."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n, not {successes} of {n}")
    if n == 0:
        return math.nan, math.nan, math.nan
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return p, low, high


def is_proportion(values: Iterable[float]) -> bool:
    """Whether every (non-NaN) value is 0 or 1, so their mean is a share of passes."""
    arr = _clean(values)
    return bool(arr.size) and bool(np.isin(arr, (0.0, 1.0)).all())


def interval(values: Iterable[float], confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float, str]:
    """(mean, low, high, method): Wilson for 0/1 values, else the bootstrap; method names which."""
    arr = _clean(values)
    if is_proportion(arr):
        return (*wilson_ci(int(arr.sum()), int(arr.size), confidence), WILSON)
    return (*bootstrap_ci(arr, confidence, seed=seed), BOOTSTRAP)


def method_label(method: str, confidence: float = 0.95) -> str:
    """How a table names an interval: "Wilson 95%", "bootstrap 95%"."""
    return f"{method} {confidence:.0%}"
