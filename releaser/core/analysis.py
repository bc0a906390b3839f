"""Canary analysis: anytime-valid comparisons of candidate with baseline, guardrails, decisions.

Three one-sided sequential tests, each valid however often it is looked at:

- ``error_rate``: the candidate's error rate is higher than the baseline's (rate ratio > 1),
  conditional on each look's request counts (:mod:`releaser.core.stats_counts`);
- ``latency``: the candidate's share of requests slower than a fixed threshold (the slow
  threshold the router counts against, e.g. the latency SLO) is higher than the baseline's,
  with the same machinery. It tests that tail share, not the median or a quantile shift;
- ``quality_score``: the candidate's mean score in [0, 1] is lower than the baseline's
  (:mod:`releaser.core.stats_means`).

:func:`decide` splits ``alpha`` equally over the comparisons it is asked to run, so the
chance that a candidate as good as the baseline is ever rolled back by a comparison stays
below ``alpha`` for the whole rollout. Guardrails (absolute limits, :mod:`.stats_guardrails`)
come on top. Everything is a pure function of the aggregates and the stored state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from releaser.core.stats_aggregates import VariantStats
from releaser.core.stats_counts import ratio_confidence_sequence, regression_log_e_from_grid
from releaser.core.stats_guardrails import (
    Agreement,
    GuardrailBreach,
    Guardrails,
    check_agreement,
    check_guardrails,
)
from releaser.core.stats_means import normal_mixture_log_e, normal_mixture_radius
from releaser.core.stats_state import AnalysisState, RatioState, update_state
from releaser.errors import BadInput

__all__ = [
    "METRICS",
    "Action",
    "Decision",
    "Metric",
    "TestResult",
    "analyse",
    "decide",
    "error_rate_test",
    "latency_test",
    "quality_test",
]

Metric = Literal["error_rate", "latency", "quality_score"]
METRICS: tuple[Metric, ...] = ("error_rate", "latency", "quality_score")
Action = Literal["advance", "hold", "rollback", "promote"]

_MAX_LOG_E = 690.0  # exp() of more overflows a float; evidence that large is conclusive anyway
# No infinities: decisions go into canonical JSON (audit trail), which refuses them.
_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _fmt_e(value: float) -> str:
    return f"{value:.3g}" if value < 1e6 else f"{value:.2e}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


class TestResult(BaseModel):
    """One sequential comparison: its e-value, verdict, estimate and confidence sequence."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite the name
    model_config = _FROZEN

    metric: Metric
    tests: str = Field(description="What the null hypothesis is, in words.")
    e_value: float = Field(ge=0, description="Evidence of a regression; >= threshold rejects.")
    threshold: float = Field(description="1 / alpha for this test.")
    regression_detected: bool
    p_value: float = Field(description="Always-valid p-value, min(1, 1 / e_value).")
    estimate: float | None = Field(
        description="Rate ratio (None when the baseline has no events), or difference of means."
    )
    ci_low: float | None = None
    ci_high: float | None = Field(default=None, description="None when unbounded above.")
    ci_level: float = Field(description="Coverage of the confidence sequence, 1 - alpha.")
    candidate_value: float | None = None
    baseline_value: float | None = None
    n_candidate: int
    n_baseline: int
    detail: str = Field(default="", description="Extra context, e.g. p95 latencies.")

    def explain(self) -> str:
        """One line a person can act on, e.g. for a CI summary or the audit trail."""
        level = f"{100 * self.ci_level:.4g}% CS"
        cs = "n/a"
        if self.ci_low is not None:
            high = "inf)" if self.ci_high is None else f"{self.ci_high:.3g}]"
            cs = f"[{self.ci_low:.3g}, {high}"
        if self.metric == "quality_score":
            head = (
                f"quality score: candidate mean {_num(self.candidate_value)} "
                f"(n={self.n_candidate}) vs baseline {_num(self.baseline_value)} "
                f"(n={self.n_baseline}); difference "
                f"{'n/a' if self.estimate is None else f'{self.estimate:+.3f}'}, {level} {cs}"
            )
        else:
            what = "error rate" if self.metric == "error_rate" else "slow share"
            ratio = "n/a" if self.estimate is None else f"{self.estimate:.3g}"
            head = (
                f"{what}: candidate {_pct(self.candidate_value)} (n={self.n_candidate}) vs "
                f"baseline {_pct(self.baseline_value)} (n={self.n_baseline}); "
                f"ratio {ratio}, {level} {cs}"
            )
        if self.detail:
            head += f"; {self.detail}"
        verdict = (
            f"e-value {_fmt_e(self.e_value)} >= {self.threshold:g}: regression"
            if self.regression_detected
            else f"e-value {_fmt_e(self.e_value)} < {self.threshold:g}: no regression detected"
        )
        return f"{head}; {verdict}"


def _verdict(log_e: float, alpha: float) -> tuple[float, bool, float]:
    e_value = math.exp(min(log_e, _MAX_LOG_E))
    return e_value, log_e >= math.log(1.0 / alpha), min(1.0, 1.0 / e_value) if e_value else 1.0


def _ratio_test(
    metric: Metric, tests: str, ratio: RatioState, alpha: float, detail: str = ""
) -> TestResult:
    log_e = regression_log_e_from_grid(ratio.loglik)
    e_value, detected, p_value = _verdict(log_e, alpha)
    rate_c = ratio.candidate_events / ratio.candidate_requests if ratio.candidate_requests else None
    rate_b = ratio.baseline_events / ratio.baseline_requests if ratio.baseline_requests else None
    estimate = rate_c / rate_b if rate_c is not None and rate_b else None
    cs = ratio_confidence_sequence(ratio.loglik, alpha) if ratio.candidate_requests else None
    return TestResult(
        metric=metric,
        tests=tests,
        e_value=e_value,
        threshold=1.0 / alpha,
        regression_detected=detected,
        p_value=p_value,
        estimate=estimate,
        ci_low=cs[0] if cs else None,
        ci_high=cs[1] if cs and math.isfinite(cs[1]) else None,
        ci_level=1.0 - alpha,
        candidate_value=rate_c,
        baseline_value=rate_b,
        n_candidate=ratio.candidate_requests,
        n_baseline=ratio.baseline_requests,
        detail=detail,
    )


def error_rate_test(state: AnalysisState, *, alpha: float) -> TestResult:
    """Is the candidate's error rate higher than the baseline's? (rate ratio, one-sided)."""
    return _ratio_test(
        "error_rate", "candidate error rate <= baseline error rate", state.error_rate, alpha
    )


def latency_test(
    state: AnalysisState,
    *,
    alpha: float,
    baseline: VariantStats | None = None,
    candidate: VariantStats | None = None,
) -> TestResult | None:
    """Is the candidate's share of slow requests higher? None when no threshold is counted.

    The aggregates, when given, only add p95 estimates to the explanation.
    """
    if state.slow_threshold_ms is None:
        return None
    detail = ""
    if baseline is not None and candidate is not None:
        p95_c, p95_b = candidate.latency.quantile(0.95), baseline.latency.quantile(0.95)
        if p95_c is not None and p95_b is not None:
            detail = f"p95 {p95_c:.0f} ms vs {p95_b:.0f} ms"
    return _ratio_test(
        "latency",
        f"candidate share of requests over {state.slow_threshold_ms:g} ms <= baseline share",
        state.latency,
        alpha,
        detail,
    )


def quality_test(
    state: AnalysisState, baseline: VariantStats, candidate: VariantStats, *, alpha: float
) -> TestResult:
    """Is the candidate's mean quality score lower than the baseline's? (bounded, one-sided)."""
    q = state.quality_score
    v = q.c / 4.0
    log_e = float(normal_mixture_log_e(q.t, v)) if q.c > 0 else 0.0
    e_value, detected, p_value = _verdict(log_e, alpha)
    estimate = ci_low = ci_high = None
    if q.c > 0:
        radius = normal_mixture_radius(v, alpha)
        # T estimates C * (baseline - candidate); report candidate - baseline.
        estimate = -q.t / q.c
        ci_low, ci_high = max(-1.0, (-q.t - radius) / q.c), min(1.0, (-q.t + radius) / q.c)
    return TestResult(
        metric="quality_score",
        tests="candidate mean score >= baseline mean score",
        e_value=e_value,
        threshold=1.0 / alpha,
        regression_detected=detected,
        p_value=p_value,
        estimate=estimate,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_level=1.0 - alpha,
        candidate_value=candidate.quality_mean,
        baseline_value=baseline.quality_mean,
        n_candidate=candidate.quality_count,
        n_baseline=baseline.quality_count,
    )


def analyse(
    state: AnalysisState,
    baseline: VariantStats,
    candidate: VariantStats,
    *,
    alpha: float = 0.01,
    comparisons: Sequence[Metric] = METRICS,
) -> tuple[AnalysisState, list[TestResult]]:
    """Update the state with the cumulative aggregates and run the comparisons.

    ``alpha`` is shared equally by the comparisons named, which must be fixed for the
    rollout (do not change the list between looks).
    """
    if not 0.0 < alpha < 1.0:
        raise BadInput(f"alpha must be between 0 and 1, not {alpha!r}", hint="e.g. 0.01")
    unknown = sorted(set(comparisons) - set(METRICS))
    if unknown or not comparisons:
        raise BadInput(
            f"unknown or no comparisons: {unknown}", hint=f"choose from {', '.join(METRICS)}"
        )
    state = update_state(state, baseline, candidate)
    each = alpha / len(set(comparisons))
    results: list[TestResult] = []
    for metric in METRICS:
        if metric not in comparisons:
            continue
        if metric == "error_rate":
            results.append(error_rate_test(state, alpha=each))
        elif metric == "latency":
            found = latency_test(state, alpha=each, baseline=baseline, candidate=candidate)
            if found is not None:
                results.append(found)
        else:
            results.append(quality_test(state, baseline, candidate, alpha=each))
    return state, results


class Decision(BaseModel):
    """What to do with the rollout now, why, and the evidence (with the state to store)."""

    model_config = _FROZEN

    action: Action
    reasons: list[str]
    tests: list[TestResult]
    breaches: list[GuardrailBreach]
    state: AnalysisState = Field(description="Store this and pass it to the next decide().")


def _duration(seconds: float) -> str:
    minutes = seconds / 60.0
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _elapsed(seconds: float, required: float) -> str:
    """Time baked so far, rounded down: a bake that holds never reads as complete."""
    if required < 7200:
        return f"{int(seconds // 60)} min"
    return f"{math.floor(seconds / 360) / 10:.1f} h"


def decide(
    baseline: VariantStats,
    candidate: VariantStats,
    *,
    state: AnalysisState | None = None,
    alpha: float = 0.01,
    guardrails: Guardrails | None = None,
    min_samples: int = 0,
    bake_elapsed_s: float,
    bake_required_s: float,
    is_last_step: bool,
    comparisons: Sequence[Metric] = METRICS,
    agreement: Agreement | None = None,
    step_requests: tuple[int, int] | None = None,
) -> Decision:
    """What to do with a rollout step now: roll back, hold, advance or promote.

    Roll back on any regression or guardrail breach; advance (promote on the last step)
    only after the bake time with ``min_samples`` requests per variant in this step
    (``step_requests``: the baseline's and the candidate's, when the caller has them; the
    cumulative counts otherwise); else hold. The tests themselves use everything since
    the rollout began. In a
    shadow step (``agreement`` given) the candidate's figures are its mirrored calls',
    agreement below its floor is a breach too, and advancing also waits for
    ``min_samples`` compared answers.

    Pass the ``state`` from the previous decision (None on the first look of a rollout):
    the tests are anytime-valid across looks only through it.
    """
    new_state, tests = analyse(
        state or AnalysisState(), baseline, candidate, alpha=alpha, comparisons=comparisons
    )
    guard = guardrails or Guardrails()
    breaches = check_guardrails(candidate, guard)
    if agreement is not None:
        disagrees = check_agreement(agreement, guard)
        if disagrees is not None:
            breaches.append(disagrees)
    regressions = [t for t in tests if t.regression_detected]
    if breaches or regressions:
        reasons = [f"guardrail: {b.explain()}" for b in breaches]
        reasons += [f"regression: {t.explain()}" for t in regressions]
        return Decision(
            action="rollback", reasons=reasons, tests=tests, breaches=breaches, state=new_state
        )
    waiting: list[str] = []
    in_step = step_requests or (baseline.requests, candidate.requests)
    where = " in this step" if step_requests is not None else ""
    for name, count in (("candidate", in_step[1]), ("baseline", in_step[0])):
        if count < min_samples:
            waiting.append(
                f"waiting for samples: {name} has {count} of {min_samples} requests{where}"
            )
    if agreement is not None and agreement.compared < max(min_samples, 1):
        waiting.append(
            f"waiting for compared answers: {agreement.compared} of {max(min_samples, 1)} "
            "mirrored requests"
        )
    if bake_elapsed_s < bake_required_s:
        waiting.append(
            f"baking: {_elapsed(bake_elapsed_s, bake_required_s)} of "
            f"{_duration(bake_required_s)} elapsed"
        )
    if waiting:
        return Decision(
            action="hold", reasons=waiting, tests=tests, breaches=breaches, state=new_state
        )
    largest = max((t.e_value for t in tests), default=1.0)
    shadowed = ""
    if agreement is not None and agreement.rate is not None:
        shadowed = f", agreement {100 * agreement.rate:.2f}% of {agreement.compared}"
    what = "mirrored" if agreement is not None else "candidate"
    reasons = [
        f"no regression after {candidate.requests} {what} requests{shadowed} "
        f"(largest e-value {_fmt_e(largest)}, threshold {len(set(comparisons)) / alpha:g}); "
        "bake time and samples met"
    ]
    action: Action = "promote" if is_last_step else "advance"
    return Decision(action=action, reasons=reasons, tests=tests, breaches=breaches, state=new_state)
