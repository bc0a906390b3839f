"""The post-promotion guard: is the release just promoted to everyone breaking, after all?

After a promotion the service stays under guard for a window (24 h by default). Every
``check`` interval (5 min by default) the counts the router or gateway recorded for the
new stable release since the last check form one *batch*: ``n`` requests, ``x`` errors
(and ``s`` requests slower than the latency SLO). Each batch is judged against fixed
*references*, each a rate the new release must not exceed:

- the SLO: ``error_rate`` (or ``1 - availability``) for errors, 5% for slow requests when
  the SLO is a p95 latency;
- the previous stable release, where its numbers are known: its baseline counts from the
  rollout that just ended, as an upper confidence bound on its rate (so that the previous
  release's own sampling noise cannot fire the guard).

The rule: a Shiryaev-Roberts e-detector per reference. For each alternative rate ratio
``rho`` on a small grid, the batch's binomial likelihood ratio against the reference rate
``p0`` is ``L = rho^x * ((1 - rho*p0) / (1 - p0))^(n - x)``; its statistic is
``R_t = (R_{t-1} + 1) * L_t``, ``R_0 = 0``, and the detector averages ``R`` over the grid.
When the release is no worse than the reference each ``L`` has mean <= 1, so ``R_t - t``
is a supermartingale; for ``t <= T`` the non-negative process ``R_t - t + T`` starts at
``T`` and Ville's inequality gives ``P(R_t >= T / a for some t <= T) <= a``. With ``T``
the most batches a window can hold (``ceil(window / check)``: a batch closes only once a
full check interval has passed, however often ``advance`` runs) and ``a`` this
reference's share of ``alpha``, a healthy release is rolled back with probability at most
``alpha`` over the whole window, by construction rather than by tuning. Unlike a
cumulative test, the detector forgets: a regression that starts at hour 12 (a weekly
batch, a slow drift) is weighed against the last hours, not diluted by the first twelve.

Why not the SRE workbook's multiwindow burn-rate alerts (14.4x over 1 h and 5 min, 6x over
6 h and 30 min)? They are tuned for budgets of busy services: they say nothing about their
false-alarm rate at tens of requests per interval, where a handful of errors in 5 minutes
is a 10x burn by chance, and a 2x regression never reaches 6x. ``bench/bench_guard.py``
runs that rule on the same simulated traffic as the baseline.

Pure: no clock (callers pass ``now``), no I/O; the state is small and JSON-serialisable.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "GUARD_METRICS_SUFFIX",
    "RHO_GRID",
    "GuardCheck",
    "GuardCounts",
    "GuardReference",
    "GuardState",
    "guard_metrics_id",
    "observe",
    "rate_upper_bound",
    "start_guard",
]

GUARD_METRICS_SUFFIX = ".guard"
"""Routers count the guarded release under ``<rollout id>.guard`` (step 0, candidate)."""

RHO_GRID: tuple[float, ...] = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
"""The rate ratios (release / reference) the detector mixes over, with equal weights."""

Metric = Literal["error_rate", "slow_rate"]
Verdict = Literal["waiting", "watching", "breach", "ended"]

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def guard_metrics_id(rollout_id: str) -> str:
    """The metrics key the guarded release's requests are counted under."""
    return rollout_id + GUARD_METRICS_SUFFIX


class GuardCounts(BaseModel):
    """Cumulative counts of the guarded release since its promotion."""

    model_config = _FROZEN

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    slow: int = Field(default=0, ge=0)

    def events(self, metric: Metric) -> int:
        """The count of ``metric``'s events (errors or slow requests)."""
        return self.errors if metric == "error_rate" else self.slow


class GuardReference(BaseModel):
    """A rate the guarded release must not exceed, where it comes from, and its detector."""

    model_config = _FROZEN

    metric: Metric
    source: Literal["slo", "previous release"]
    rate: float = Field(gt=0, lt=1)
    detail: str = ""
    log_r: tuple[float, ...] = Field(
        default=(), description="log R per grid ratio; empty before the first batch (R = 0)."
    )

    @property
    def name(self) -> str:
        """``error_rate vs slo`` and the like."""
        return f"{self.metric} vs {self.source}"


class GuardState(BaseModel):
    """A guard in progress: what it watches, until when, and its detectors' state."""

    model_config = _FROZEN

    rollout_id: str
    release: str
    previous: str
    started_at: str
    ends_at: str
    check_s: float = Field(gt=0)
    alpha: float = Field(gt=0, lt=1)
    slow_threshold_ms: float | None = None
    references: tuple[GuardReference, ...] = ()
    last_at: str = Field(description="When the last batch closed (the start at first).")
    last: GuardCounts = GuardCounts()
    batches: int = 0

    @property
    def max_batches(self) -> int:
        """The most batches the window can hold: the ``T`` of the false-alarm bound."""
        span = (_parse(self.ends_at) - _parse(self.started_at)).total_seconds()
        return max(1, math.ceil(span / self.check_s))

    def threshold(self) -> float:
        """The log of the alarm level ``T / a``, ``a`` the share of alpha of one reference."""
        # Each of k references gets alpha / k: half for its detector, and half for the
        # previous release's confidence bound where it has one (unused for an SLO).
        share = self.alpha / max(1, len(self.references)) / 2
        return math.log(self.max_batches / share)

    def time_left_s(self, now: str) -> float:
        """Seconds until the window ends (0 once it has)."""
        return max(0.0, (_parse(self.ends_at) - _parse(now)).total_seconds())


class GuardCheck(BaseModel):
    """One look at the guard: the verdict, the new state, and the evidence for people."""

    model_config = _FROZEN

    verdict: Verdict
    state: GuardState
    observed: GuardCounts
    evidence: list[dict[str, object]]
    reasons: list[str]


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rate_upper_bound(events: int, trials: int, delta: float) -> float:
    """An upper confidence bound on a binomial rate (Chernoff, KL form), level ``1 - delta``.

    The largest ``q`` with ``trials * KL(events / trials || q) <= log(1 / delta)``: exact
    coverage without a normal approximation, so it holds at a handful of events.
    """
    if trials <= 0:
        return 1.0
    p = events / trials
    target = math.log(1.0 / delta) / trials
    lo, hi = p, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if _kl(p, mid) > target:
            hi = mid
        else:
            lo = mid
    return hi


def _kl(p: float, q: float) -> float:
    q = min(max(q, 1e-15), 1 - 1e-15)
    out = 0.0
    if p > 0:
        out += p * math.log(p / q)
    if p < 1:
        out += (1 - p) * math.log((1 - p) / (1 - q))
    return out


def start_guard(
    *,
    rollout_id: str,
    release: str,
    previous: str,
    now: str,
    window_s: float,
    check_s: float,
    alpha: float,
    slo_rates: dict[str, float],
    previous_counts: GuardCounts | None,
    slow_threshold_ms: float | None,
) -> GuardState:
    """A fresh guard from promotion time, with its references fixed.

    ``slo_rates`` maps ``error_rate``/``slow_rate`` to their SLO limits;
    ``previous_counts`` are the previous stable release's counts during the rollout (None
    when not known). A metric with no limit and no previous numbers is not guarded.
    """
    refs: list[GuardReference] = []
    for metric, limit in sorted(slo_rates.items()):
        if 0 < limit < 1:
            refs.append(GuardReference(metric=metric, source="slo", rate=limit))
    if previous_counts is not None and previous_counts.requests > 0:
        metrics: list[Metric] = ["error_rate"]
        if slow_threshold_ms is not None:
            metrics.append("slow_rate")
        candidates = len(refs) + len(metrics)
        for metric in metrics:
            events = previous_counts.events(metric)
            # The bound takes the other half of this reference's share of alpha.
            bound = rate_upper_bound(events, previous_counts.requests, alpha / candidates / 2)
            if bound < 1:
                refs.append(
                    GuardReference(
                        metric=metric,
                        source="previous release",
                        rate=bound,
                        detail=f"{events}/{previous_counts.requests} in the rollout, "
                        f"upper bound {bound:.4%}",
                    )
                )
    ends = _parse(now) + timedelta(seconds=window_s)
    return GuardState(
        rollout_id=rollout_id,
        release=release,
        previous=previous,
        started_at=now,
        ends_at=_iso(ends),
        check_s=check_s,
        alpha=alpha,
        slow_threshold_ms=slow_threshold_ms,
        references=tuple(refs),
        last_at=now,
    )


def _batch_log_lr(n: int, x: int, p0: float) -> list[float]:
    """One batch's log likelihood ratio at each grid ratio (ratios with ``rho * p0 >= 1``
    are impossible alternatives and get -inf-like weight)."""
    out = []
    for rho in RHO_GRID:
        p1 = rho * p0
        if p1 >= 1:
            out.append(-1e300)
            continue
        out.append(x * math.log(rho) + (n - x) * math.log((1 - p1) / (1 - p0)))
    return out


def _log_mix(log_r: tuple[float, ...]) -> float:
    """log of the grid average of R (R = 0 before the first batch)."""
    if not log_r:
        return -math.inf
    top = max(log_r)
    if top <= -1e299:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in log_r) / len(log_r))


def _updated(ref: GuardReference, n: int, x: int) -> GuardReference:
    increments = _batch_log_lr(n, x, ref.rate)
    old = ref.log_r or tuple(-math.inf for _ in RHO_GRID)
    # log((R + 1) * L) = log(exp(log R) + 1) + log L, kept finite for the store.
    new = tuple(max(-1e300, _log1p_exp(r) + inc) for r, inc in zip(old, increments, strict=True))
    return ref.model_copy(update={"log_r": new})


def _log1p_exp(v: float) -> float:
    if v == -math.inf or v < -700:
        return 0.0
    return v + math.log1p(math.exp(-v)) if v > 0 else math.log1p(math.exp(v))


def observe(state: GuardState, counts: GuardCounts, now: str) -> GuardCheck:
    """Judge the guard now from the cumulative ``counts`` since promotion.

    A batch closes when a check interval has passed since the last one; between, the
    state is unchanged (a re-run is harmless). Counts that went backwards (metrics
    pruned) start the next batch from where they are.
    """
    at = _parse(now)
    threshold = state.threshold()
    if at >= _parse(state.ends_at):
        return GuardCheck(
            verdict="ended",
            state=state,
            observed=counts,
            evidence=_evidence(state, counts, threshold),
            reasons=[f"the guard of {state.release} ended at {state.ends_at}: no breach"],
        )
    if (at - _parse(state.last_at)).total_seconds() < state.check_s:
        verdict: Verdict = "waiting" if state.batches == 0 else "watching"
        return GuardCheck(
            verdict=verdict,
            state=state,
            observed=counts,
            evidence=_evidence(state, counts, threshold),
            reasons=[_watching(state, now, counts)],
        )
    last = state.last
    if counts.requests < last.requests:
        last = GuardCounts()
    n = counts.requests - last.requests
    refs = []
    for ref in state.references:
        x = max(0, counts.events(ref.metric) - last.events(ref.metric))
        refs.append(_updated(ref, n, min(x, n)) if n > 0 else ref)
    new = state.model_copy(
        update={
            "references": tuple(refs),
            "last": counts,
            "last_at": now,
            "batches": state.batches + 1,
        }
    )
    evidence = _evidence(new, counts, threshold)
    fired = [ref for ref in refs if _log_mix(ref.log_r) >= threshold]
    if fired:
        reasons = [
            f"guard breach: {ref.metric.replace('_', ' ')} above the {ref.source}'s "
            f"{ref.rate:.3%} (e-value {math.exp(min(_log_mix(ref.log_r), 700)):.3g} >= "
            f"{math.exp(threshold):.3g})"
            for ref in fired
        ]
        return GuardCheck(
            verdict="breach", state=new, observed=counts, evidence=evidence, reasons=reasons
        )
    return GuardCheck(
        verdict="watching",
        state=new,
        observed=counts,
        evidence=evidence,
        reasons=[_watching(new, now, counts)],
    )


def _watching(state: GuardState, now: str, counts: GuardCounts) -> str:
    left = state.time_left_s(now) / 3600
    where = f"guarding {state.release} ({left:.1f} h left, {state.batches} check(s))"
    if counts.requests == 0:
        # No evidence is never good news: say so, rather than "no breach".
        return f"{where}: no requests counted since the promotion, so no evidence either way"
    if not state.references:
        return f"{where}: no SLO and no numbers of the previous release to compare with"
    return f"{where}: no breach confirmed"


def _evidence(state: GuardState, counts: GuardCounts, threshold: float) -> list[dict[str, object]]:
    """Per reference: the rate it holds the release to, what was observed, the e-value."""
    out: list[dict[str, object]] = []
    for ref in state.references:
        events = counts.events(ref.metric)
        log_e = _log_mix(ref.log_r)
        out.append(
            {
                "metric": ref.metric,
                "source": ref.source,
                "reference_rate": ref.rate,
                "detail": ref.detail,
                "requests": counts.requests,
                "events": events,
                "observed_rate": events / counts.requests if counts.requests else None,
                "log_e": None if log_e == -math.inf else round(log_e, 4),
                "log_threshold": round(threshold, 4),
            }
        )
    return out
