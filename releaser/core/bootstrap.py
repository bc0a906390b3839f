"""Paired bootstrap confidence interval for the change of a metric between two releases.

Both releases are scored on the same golden rows, so the rows are resampled
together (with replacement) and the metric difference ``candidate - baseline``
is computed on each resample; the interval is the percentile interval of
those differences. Pairing removes the variance the rows share (a hard case
is hard for both), so it is much tighter than comparing two separate
intervals. The generator is seeded: the same inputs give the same interval.

For the mean, only the paired differences ``d = candidate - baseline`` matter,
and a resample's mean depends only on how many rows of each distinct value
of ``d`` it drew. When ``d`` takes few distinct values (0/1 scores give at most
three: -1, 0, 1), those counts are drawn directly from the multinomial law
they follow, which is the same bootstrap distribution as drawing row indices
at a small fraction of the cost; otherwise row indices are drawn.

Non-regression reads the interval as a one-sided test at level
``(1 - confidence) / 2``: a higher-is-better metric passes when the lower
bound is at least ``-max_drop`` (the data rule out a drop larger than that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["PairedInterval", "paired_bootstrap"]

_BLOCK = 256
"""Resamples drawn per block, so memory stays at ``_BLOCK * n`` indices."""
_FEW_VALUES = 64
"""Up to this many distinct paired differences, resample their counts (multinomial)."""


@dataclass(frozen=True)
class PairedInterval:
    """Observed difference (candidate - baseline) of a metric and its bootstrap interval."""

    delta: float
    low: float
    high: float
    n: int
    confidence: float


def _statistic(values: NDArray[np.float64], percentile: float | None) -> NDArray[np.float64]:
    if percentile is None:
        mean: NDArray[np.float64] = values.mean(axis=-1)
        return mean
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample gives NaN
            out: NDArray[np.float64] = np.nanpercentile(values, percentile, axis=-1)
            return out


def paired_bootstrap(
    candidate: NDArray[np.float64],
    baseline: NDArray[np.float64],
    *,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    percentile: float | None = None,
) -> PairedInterval:
    """Interval for ``stat(candidate) - stat(baseline)`` over paired rows.

    ``stat`` is the mean, or the given ``percentile`` (ignoring NaN, for latency).
    """
    c = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if c.shape != b.shape or c.ndim != 1:
        raise ValueError("candidate and baseline need one score per row, paired")
    n = c.size
    if n == 0:
        return PairedInterval(math.nan, math.nan, math.nan, 0, confidence)
    delta = float(_statistic(c, percentile) - _statistic(b, percentile))
    rng = np.random.default_rng(seed)
    if percentile is None:
        values, freq = np.unique(c - b, return_counts=True)
        if values.size <= _FEW_VALUES and not np.isnan(values).any():
            # Same law as resampling rows: how many of each value a resample holds.
            counts = rng.multinomial(n, freq / n, size=samples)
            return _interval(delta, (counts @ values) / n, n, confidence)
    diffs = np.empty(samples, dtype=np.float64)
    for start in range(0, samples, _BLOCK):
        size = min(_BLOCK, samples - start)
        idx = rng.integers(0, n, size=(size, n))
        diffs[start : start + size] = _statistic(c[idx], percentile) - _statistic(
            b[idx], percentile
        )
    return _interval(delta, diffs, n, confidence)


def _interval(
    delta: float, diffs: NDArray[np.float64], n: int, confidence: float
) -> PairedInterval:
    """The percentile interval of the resampled differences (NaN ones left out)."""
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size == 0:
        return PairedInterval(delta, math.nan, math.nan, n, confidence)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return PairedInterval(delta, float(low), float(high), n, confidence)
