"""Exact counts from Prometheus counter samples: increases per step, resets, histogram buckets.

Pure arithmetic over samples already fetched (no I/O, no clock): the Prometheus metrics
source (``releaser.api.metrics_source``) queries raw samples and hands them here.

**Counter increase over a window (start, end].** A series' samples are ``(t, value)`` pairs
in time order. The value the window starts from is the last sample at or before ``start``;
when the series has no sample that early it began inside the window (a process started,
or a label was seen for the first time, as prometheus-client creates label children at
their first increment) and starts from 0. Walking the samples in (start, end] in order,
each step adds ``v - prev``; a value below the previous one means the process restarted
and its counter began again from 0, so the step adds ``v`` itself. No extrapolation (as
PromQL's ``increase()`` does): the result is the exact difference of scraped values.
Requests between a step's boundary and the scrape after it are counted in the step whose
window holds that scrape, so consecutive windows partition the counts: none is lost, none
counted twice. What stays unseen is what a process counted after its last scrape before
a restart, and a restart itself when the new process counts past its predecessor's last
scraped value before its first scrape (the drop is never seen, so the predecessor's last
value, at most, is missed): the same limit as Prometheus' own reset detection, small when
scrapes are frequent compared with how fast a counter grows.

Resets are detected per series, which is why the samples must not be summed across series
before this runs (a sum can grow while one of its parts restarts).

**Histogram buckets.** A Prometheus histogram is one cumulative counter per upper bound
``le``. Their increases, taken apart (``count(le_k) - count(le_k-1)``), are the requests in
``(le_k-1, le_k]``; each bucket's requests go into the releaser latency bin that holds its
upper bound (see :func:`le_bin`), so a latency is never read as faster than it was. The
precision lost is the Prometheus bucket's width: with the gateway's buckets a 30 ms request
in the (25, 50] ms bucket reads as about 50 ms, so a p95 from these counts is an upper
estimate, and a count of requests over an SLO is exact when the SLO is one of the ``le``
bounds (the gateway's are 1, 2.5, 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5, 10 and 30 s).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from releaser.core.rollout import Rollout
from releaser.core.stats_aggregates import (
    LATENCY_BINS,
    LatencyHistogram,
    VariantStats,
    latency_bin,
    latency_bin_bounds,
)

__all__ = [
    "Sample",
    "bucket_histogram",
    "counter_increases",
    "le_bin",
    "step_boundaries",
    "summed_increases",
    "variant_stats",
]

Sample = tuple[float, float]
"""One scraped value: (unix time in seconds, counter value)."""


def counter_increases(samples: Sequence[Sample], boundaries: Sequence[float]) -> list[float]:
    """A counter's increase in each window between consecutive ``boundaries``, resets handled.

    ``boundaries`` ``[t0, t1, ..., tn]`` (non-decreasing) give ``n`` windows ``(t0, t1]``,
    ``(t1, t2]``, ...; the result has one increase per window (see the module docstring).
    """
    if any(b < a for a, b in zip(boundaries, boundaries[1:], strict=False)):
        raise ValueError("window boundaries must not decrease")
    ordered = sorted(samples, key=lambda s: s[0])
    out = [0.0] * max(0, len(boundaries) - 1)
    if not out:
        return out
    prev: float | None = None
    window = 0
    for t, value in ordered:
        if not math.isfinite(value):
            continue  # a stale marker or a broken exporter: no evidence, not a reset
        if t <= boundaries[0]:
            prev = value
            continue
        while window < len(out) and t > boundaries[window + 1]:
            window += 1
        if window >= len(out):
            break
        if prev is None or value < prev:
            out[window] += value  # the series began, or its process restarted
        else:
            out[window] += value - prev
        prev = value
    return out


def summed_increases(
    series: Iterable[Sequence[Sample]], boundaries: Sequence[float]
) -> list[float]:
    """Per-window increases of several series (each reset-handled on its own), added up."""
    total = [0.0] * max(0, len(boundaries) - 1)
    for samples in series:
        for i, inc in enumerate(counter_increases(samples, boundaries)):
            total[i] += inc
    return total


def le_bin(le_ms: float) -> int:
    """The releaser latency bin a Prometheus bucket with upper bound ``le_ms`` maps into.

    The bin that holds ``le_ms``, except when ``le_ms`` is a bin's lower edge: the bucket
    holds latencies up to and including ``le_ms``, all below that bin, so they go into the
    bin under it (whose upper edge ``le_ms`` is). Then a count over an SLO that is both a
    bucket bound and a bin edge (100 ms, 1 s) stays exact. ``+Inf`` maps to the last bin.
    """
    if math.isinf(le_ms):
        return LATENCY_BINS - 1
    index = latency_bin(le_ms)
    lower = latency_bin_bounds(index)[0]
    if index > 0 and math.isclose(lower, le_ms, rel_tol=1e-9):
        index -= 1
    return index


def bucket_histogram(increases: Mapping[float, float], scale_to_ms: float) -> LatencyHistogram:
    """The latency histogram of cumulative bucket increases keyed by ``le`` (in the metric's
    unit; ``scale_to_ms`` converts it, e.g. 1000 for seconds)."""
    counts = [0] * LATENCY_BINS
    below = 0
    for le in sorted(increases):
        cumulative = max(below, round(increases[le]))  # cumulative counts never fall
        counts[le_bin(le * scale_to_ms)] += cumulative - below
        below = cumulative
    return LatencyHistogram(counts=tuple(counts))


def variant_stats(
    *,
    requests: float,
    errors: float,
    buckets: Mapping[float, float] | None = None,
    scale_to_ms: float = 1000.0,
    quality_sum: float | None = None,
    quality_count: float | None = None,
    quality_sumsq: float | None = None,
) -> VariantStats:
    """One variant's :class:`VariantStats` from its counter increases in a window.

    Errors are capped at requests (two counters scraped at one instant can disagree by a
    request in flight). Without a sum of squares, quality scores in [0, 1] are taken at
    their largest possible variance (as if each were 0 or 1: sum of squares = sum), which
    widens the quality test's interval and never narrows it.
    """
    n = max(0, round(requests))
    e = min(n, max(0, round(errors)))
    latency = bucket_histogram(buckets or {}, scale_to_ms)
    q_n = max(0, round(quality_count or 0.0))
    q_s = min(float(q_n), max(0.0, quality_sum or 0.0))
    q_ss = q_s  # the largest variance scores in [0, 1] can have
    if quality_sumsq is not None and q_n:
        q_ss = min(q_s, max(q_s * q_s / q_n, quality_sumsq))
    return VariantStats(
        requests=n,
        errors=e,
        latency=latency,
        quality_count=q_n,
        quality_sum=q_s if q_n else 0.0,
        quality_sumsq=q_ss if q_n else 0.0,
    )


def step_boundaries(rollout: Rollout, now: str) -> list[float]:
    """Unix times where the rollout's steps so far began, then where the live one ends.

    Step 0 began when the rollout started, step ``i + 1`` when step ``i`` was advanced;
    the last boundary is when the rollout ended or, while it runs, ``now``.
    """
    starts = [_unix(rollout.started_at)]
    advanced = {r.step: r.at for r in rollout.decisions if r.action == "advance"}
    for i in range(1, rollout.step + 1):
        starts.append(_unix(advanced[i - 1]) if i - 1 in advanced else starts[-1])
    if rollout.step:  # the live step's own record is the one to trust
        starts[-1] = _unix(rollout.step_started_at)
    end = _unix(rollout.ended_at) if rollout.ended_at else _unix(now)
    bounds = [*starts, max(end, starts[-1])]
    for i in range(1, len(bounds)):  # clocks of different runners may disagree slightly
        bounds[i] = max(bounds[i], bounds[i - 1])
    return bounds


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
