"""The state sequential tests carry between looks: small, JSON-serialisable, updated purely.

A CI job stores an :class:`AnalysisState` with the rollout, and on every run calls
:func:`update_state` with the cumulative aggregates read from the store. The state keeps
the cumulative counts it has consumed, so the update works on the difference: calling it
twice with the same aggregates changes nothing (a re-run is harmless), and counters that go
backwards are refused rather than silently corrupting the evidence.
"""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from releaser.core.stats_aggregates import VariantStats
from releaser.core.stats_counts import ETA_GRID, log_lr_increment
from releaser.errors import BadInput

__all__ = ["AnalysisState", "MeanDiffState", "RatioState", "update_state"]

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
_RESET_HINT = (
    "pass counts accumulated since the rollout started; if the metrics were reset, "
    "start the analysis again from a fresh AnalysisState"
)


def _zeros() -> tuple[float, ...]:
    return (0.0,) * ETA_GRID.size


class RatioState(BaseModel):
    """Rate-ratio test state: consumed cumulative counts and summed log likelihoods on ETA_GRID."""

    model_config = _FROZEN

    candidate_requests: int = Field(default=0, ge=0)
    candidate_events: int = Field(default=0, ge=0)
    baseline_requests: int = Field(default=0, ge=0)
    baseline_events: int = Field(default=0, ge=0)
    loglik: tuple[float, ...] = Field(default_factory=_zeros)

    @model_validator(mode="after")
    def _grid(self) -> Self:
        if len(self.loglik) != ETA_GRID.size:
            raise ValueError(f"loglik needs {ETA_GRID.size} values, one per grid point")
        return self

    def update(
        self,
        candidate_requests: int,
        candidate_events: int,
        baseline_requests: int,
        baseline_events: int,
        *,
        what: str = "events",
    ) -> RatioState:
        """The state after the cumulative counts given (a no-op when nothing is new)."""
        dn_c = candidate_requests - self.candidate_requests
        dn_b = baseline_requests - self.baseline_requests
        dx_c = candidate_events - self.candidate_events
        dx_b = baseline_events - self.baseline_events
        if min(dn_c, dn_b, dx_c, dx_b) < 0:
            raise BadInput(
                f"request or {what} counts went down since the last look", hint=_RESET_HINT
            )
        if dx_c > dn_c or dx_b > dn_b:
            raise BadInput(
                f"more new {what} than new requests since the last look",
                hint="count a request and its outcome in the same update",
            )
        if dn_c + dn_b == 0:
            return self
        loglik = self.loglik
        if dx_c + dx_b:
            share = dn_c / (dn_c + dn_b)
            step = log_lr_increment(dx_c, dx_c + dx_b, share)
            loglik = tuple((np.asarray(self.loglik) + step).tolist())
        return RatioState(
            candidate_requests=candidate_requests,
            candidate_events=candidate_events,
            baseline_requests=baseline_requests,
            baseline_events=baseline_events,
            loglik=loglik,
        )


class MeanDiffState(BaseModel):
    """Bounded-mean test state: consumed cumulative score counts and sums, and ``T``, ``C``."""

    model_config = _FROZEN

    candidate_count: int = Field(default=0, ge=0)
    candidate_sum: float = 0.0
    baseline_count: int = Field(default=0, ge=0)
    baseline_sum: float = 0.0
    t: float = 0.0
    """Sum over batches of c * (baseline batch mean - candidate batch mean)."""
    c: float = Field(default=0.0, ge=0)
    """Sum over batches of c = n_c * n_b / (n_c + n_b); the variance proxy is c / 4."""

    def update(
        self, candidate_count: int, candidate_sum: float, baseline_count: int, baseline_sum: float
    ) -> MeanDiffState:
        """The state after the cumulative score aggregates given."""
        dn_c = candidate_count - self.candidate_count
        dn_b = baseline_count - self.baseline_count
        if dn_c < 0 or dn_b < 0:
            raise BadInput("quality score counts went down since the last look", hint=_RESET_HINT)
        if dn_c == 0 or dn_b == 0:
            return self  # carried into the next look: a batch needs scores from both
        # Scores are in [0, 1], so a batch mean outside it is float noise in the sums.
        mean_c = min(1.0, max(0.0, (candidate_sum - self.candidate_sum) / dn_c))
        mean_b = min(1.0, max(0.0, (baseline_sum - self.baseline_sum) / dn_b))
        weight = dn_c * dn_b / (dn_c + dn_b)
        return MeanDiffState(
            candidate_count=candidate_count,
            candidate_sum=candidate_sum,
            baseline_count=baseline_count,
            baseline_sum=baseline_sum,
            t=self.t + weight * (mean_b - mean_c),
            c=self.c + weight,
        )


class AnalysisState(BaseModel):
    """Everything the sequential tests of one rollout remember between looks."""

    model_config = _FROZEN

    version: Literal[1] = 1
    error_rate: RatioState = Field(default_factory=RatioState)
    latency: RatioState = Field(default_factory=RatioState)
    quality_score: MeanDiffState = Field(default_factory=MeanDiffState)
    slow_threshold_ms: float | None = Field(default=None, gt=0)
    """The threshold the latency test counts against, fixed at the first look that has one."""


def update_state(
    state: AnalysisState, baseline: VariantStats, candidate: VariantStats
) -> AnalysisState:
    """The state after looking at the cumulative aggregates of both variants."""
    threshold = state.slow_threshold_ms
    latency = state.latency
    given = (threshold, baseline.slow_threshold_ms, candidate.slow_threshold_ms)
    counted = sorted({t for t in given if t is not None})
    if len(counted) > 1:
        raise BadInput(
            "slow requests are counted against different thresholds "
            f"({', '.join(f'{t:g} ms' for t in counted)})",
            hint="count slow requests against one threshold for the whole rollout",
        )
    if baseline.slow_threshold_ms is not None and candidate.slow_threshold_ms is not None:
        threshold = candidate.slow_threshold_ms
        latency = latency.update(
            candidate.requests,
            candidate.slow,
            baseline.requests,
            baseline.slow,
            what="slow requests",
        )
    return AnalysisState(
        error_rate=state.error_rate.update(
            candidate.requests,
            candidate.errors,
            baseline.requests,
            baseline.errors,
            what="errors",
        ),
        latency=latency,
        quality_score=state.quality_score.update(
            candidate.quality_count,
            candidate.quality_sum,
            baseline.quality_count,
            baseline.quality_sum,
        ),
        slow_threshold_ms=threshold,
    )
