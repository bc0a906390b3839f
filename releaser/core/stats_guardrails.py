"""Guardrails: absolute limits (SLOs) that stop a rollout whatever the comparison says.

The rule, the same for every limit: a guardrail is breached when the candidate has at least
``min_samples`` observations for it AND an anytime-valid e-value against "the limit
holds" reaches ``1 / alpha``. So 3 errors in 20 requests against a 5% limit are noise, not
a breach (e-value about 2.6), and a candidate that keeps within its limits trips a guardrail
with probability at most ``alpha`` per guardrail over the whole rollout.

- error rate ``<= limit``: one-sample Bernoulli mixture on (errors, requests);
- p95 latency ``<= limit``: the share of requests slower than the limit is at most 5%,
  the same test on (slow, requests) when the router counts slow requests against exactly
  that limit, else on the histogram's requests certainly slower than it (never overstated);
- mean quality score ``>= floor``: one-sample Hoeffding normal mixture on (count, sum);
- in a shadow step, agreement with the stable answers ``>= min_agreement``: the error-rate
  test on the disagreement (one minus each score) against ``1 - min_agreement``;
- mean total tokens per request ``<= tokens_mean``: the unbounded one-sample mean test of
  :func:`~releaser.core.stats_means.mean_above_limit_log_e` on (requests that reported
  tokens, their total, the sum of squares of their totals);
- p95 of total tokens per request ``<= tokens_p95``: the share of requests above it is at
  most 5%, the rate test on the token histogram's requests certainly above it (as latency);
- mean cost of 1,000 requests ``<= cost_per_1k_requests`` at the prices per 1,000 prompt
  and completion tokens: the same mean test on each request's cost ``p * in + c * out``,
  whose sum of squares is ``in**2 * sum p**2 + 2 * in * out * sum p*c + out**2 * sum c**2``
  (``sum p*c`` from the sums of squares of totals, prompts and completions).

The token tests assume only that token counts are non-negative: no cap per request. Their
samples are the requests that reported tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from releaser.core.stats_aggregates import VariantStats
from releaser.core.stats_counts import rate_above_limit_log_e
from releaser.core.stats_means import mean_above_limit_log_e, mean_below_floor_log_e

__all__ = ["Agreement", "GuardrailBreach", "Guardrails", "check_agreement", "check_guardrails"]

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Guardrails(BaseModel):
    """Absolute limits for the candidate; None switches a limit off."""

    model_config = _FROZEN

    error_rate: float | None = Field(default=None, ge=0, le=1, description="Largest error rate.")
    latency_p95_ms: float | None = Field(default=None, gt=0, description="Largest p95, ms.")
    quality_score: float | None = Field(
        default=None, ge=0, le=1, description="Smallest mean quality score."
    )
    tokens_mean: float | None = Field(
        default=None, gt=0, description="Largest mean total tokens (prompt + completion)."
    )
    tokens_p95: float | None = Field(
        default=None, gt=0, description="Largest p95 of total tokens per request."
    )
    cost_per_1k_requests: float | None = Field(
        default=None, gt=0, description="Largest mean cost of 1,000 requests."
    )
    price_input_per_1k: float | None = Field(
        default=None, ge=0, description="Price of 1,000 prompt tokens."
    )
    price_output_per_1k: float | None = Field(
        default=None, ge=0, description="Price of 1,000 completion tokens."
    )
    min_samples: int = Field(
        default=100, ge=0, description="Observations needed before a guardrail can fire."
    )
    alpha: float = Field(
        default=0.01, gt=0, lt=1, description="Chance of a false trip per guardrail."
    )

    @model_validator(mode="after")
    def _priced(self) -> Self:
        if self.cost_per_1k_requests is not None and self.prices is None:
            raise ValueError(
                "cost_per_1k_requests needs price_input_per_1k and price_output_per_1k"
            )
        return self

    @property
    def prices(self) -> tuple[float, float] | None:
        """(input, output) prices per 1,000 tokens, None unless both are set."""
        if self.price_input_per_1k is None or self.price_output_per_1k is None:
            return None
        return self.price_input_per_1k, self.price_output_per_1k


class Agreement(BaseModel):
    """A shadow step's agreement scores (1 agree, 0 disagree, or a similarity) and floor."""

    model_config = _FROZEN

    compared: int = Field(ge=0, description="Mirrored answers compared.")
    score_sum: float = Field(ge=0, description="Sum of their agreement scores.")
    floor: float = Field(gt=0, le=1, description="The step's min_agreement.")

    @property
    def rate(self) -> float | None:
        """Mean agreement, None before any answer was compared."""
        return self.score_sum / self.compared if self.compared else None


class GuardrailBreach(BaseModel):
    """A limit the candidate credibly breaks."""

    model_config = _FROZEN

    metric: str
    limit: float
    observed: float | None = Field(
        description="Point estimate: rate, p95 in ms, mean score, tokens or cost."
    )
    samples: int
    e_value: float
    threshold: float

    def explain(self) -> str:
        """One line, e.g. 'error rate 7.90% over 1200 requests breaks the limit 5.00% ...'."""
        e_text = f"{self.e_value:.3g}" if self.e_value < 1e6 else f"{self.e_value:.2e}"
        if self.metric == "error_rate":
            what = (
                f"error rate {100 * (self.observed or 0):.2f}% over {self.samples} requests "
                f"breaks the limit {100 * self.limit:.2f}%"
            )
        elif self.metric == "latency_p95_ms":
            p95 = "unknown" if self.observed is None else f"{self.observed:.0f} ms"
            what = (
                f"p95 latency {p95} over {self.samples} requests breaks the limit {self.limit:g} ms"
            )
        elif self.metric == "tokens_mean":
            what = (
                f"mean tokens per request {self.observed or 0:.1f} over {self.samples} requests "
                f"breaks the limit {self.limit:g}"
            )
        elif self.metric == "tokens_p95":
            p95 = "unknown" if self.observed is None else f"{self.observed:.0f}"
            what = (
                f"p95 tokens per request {p95} over {self.samples} requests breaks the limit "
                f"{self.limit:g}"
            )
        elif self.metric == "cost_per_1k_requests":
            what = (
                f"cost per 1,000 requests {self.observed or 0:.4g} over {self.samples} requests "
                f"breaks the limit {self.limit:g}"
            )
        elif self.metric == "agreement":
            what = (
                f"agreement with the stable answers {100 * (self.observed or 0):.2f}% over "
                f"{self.samples} mirrored requests is below {100 * self.limit:.4g}%"
            )
        else:
            what = (
                f"mean quality score {self.observed or 0:.3f} over {self.samples} scores "
                f"is below the floor {self.limit:g}"
            )
        return f"{what} (e-value {e_text} >= {self.threshold:g})"


def check_guardrails(stats: VariantStats, guardrails: Guardrails) -> list[GuardrailBreach]:
    """Every guardrail the candidate's cumulative aggregates credibly break (see the rule)."""
    threshold = 1.0 / guardrails.alpha
    bar = math.log(threshold)
    need = guardrails.min_samples
    breaches: list[GuardrailBreach] = []

    def breach(
        metric: str, limit: float, observed: float | None, samples: int, log_e: float
    ) -> None:
        if samples >= need and samples > 0 and log_e >= bar:
            e_value = math.exp(min(log_e, 690.0))
            breaches.append(
                GuardrailBreach(
                    metric=metric,
                    limit=limit,
                    observed=observed,
                    samples=samples,
                    e_value=e_value,
                    threshold=threshold,
                )
            )

    if guardrails.error_rate is not None and stats.requests:
        limit = guardrails.error_rate
        log_e = rate_above_limit_log_e(stats.errors, stats.requests, limit)
        breach("error_rate", limit, stats.errors / stats.requests, stats.requests, log_e)

    if guardrails.latency_p95_ms is not None:
        limit = guardrails.latency_p95_ms
        if stats.slow_threshold_ms == limit:
            slow, total = stats.slow, stats.requests
        else:
            slow, total = stats.latency.count_above(limit), stats.latency.total
        p95 = stats.latency.quantile(0.95)
        if total:
            log_e = rate_above_limit_log_e(slow, total, 0.05)
            breach("latency_p95_ms", limit, p95, total, log_e)

    if guardrails.quality_score is not None and stats.quality_count:
        floor = guardrails.quality_score
        log_e = mean_below_floor_log_e(stats.quality_count, stats.quality_sum, floor)
        mean = stats.quality_sum / stats.quality_count
        breach("quality_score", floor, mean, stats.quality_count, log_e)

    _check_tokens(stats, guardrails, breach)
    return breaches


def _check_tokens(
    stats: VariantStats,
    guardrails: Guardrails,
    breach: Callable[[str, float, float | None, int, float], None],
) -> None:
    """Call ``breach`` for each token guardrail (mean, p95, cost) with its evidence."""
    n = stats.token_requests
    total = stats.prompt_tokens + stats.completion_tokens
    if guardrails.tokens_mean is not None and n:
        limit = guardrails.tokens_mean
        log_e = float(mean_above_limit_log_e(n, total, stats.tokens_sumsq, limit)[0])
        breach("tokens_mean", limit, total / n, n, log_e)
    if guardrails.tokens_p95 is not None and stats.tokens.total:
        limit = guardrails.tokens_p95
        above, counted = stats.tokens.count_above(limit), stats.tokens.total
        log_e = rate_above_limit_log_e(above, counted, 0.05)
        breach("tokens_p95", limit, stats.tokens.quantile(0.95), counted, log_e)
    prices = guardrails.prices
    if guardrails.cost_per_1k_requests is not None and prices is not None and n:
        limit = guardrails.cost_per_1k_requests
        price_in, price_out = prices
        cost = stats.prompt_tokens * price_in + stats.completion_tokens * price_out
        p_sq, c_sq = stats.prompt_tokens_sumsq, stats.completion_tokens_sumsq
        # sum p*c from (p + c)^2 = p^2 + 2pc + c^2; never negative (float rounding).
        cross = max(0.0, (stats.tokens_sumsq - p_sq - c_sq) / 2)
        sumsq = price_in**2 * p_sq + 2 * price_in * price_out * cross + price_out**2 * c_sq
        log_e = float(mean_above_limit_log_e(n, cost, sumsq, limit)[0])
        breach("cost_per_1k_requests", limit, cost / n, n, log_e)


def check_agreement(agreement: Agreement, guardrails: Guardrails) -> GuardrailBreach | None:
    """A breach when the candidate credibly agrees less often than the floor (see the rule)."""
    n = agreement.compared
    if n == 0 or n < guardrails.min_samples:
        return None
    # Clipped: float sums of scores in [0, 1] may drift past n by an ulp.
    disagreement = min(max(n - agreement.score_sum, 0.0), float(n))
    log_e = rate_above_limit_log_e(disagreement, n, 1.0 - agreement.floor)
    threshold = 1.0 / guardrails.alpha
    if log_e < math.log(threshold):
        return None
    return GuardrailBreach(
        metric="agreement",
        limit=agreement.floor,
        observed=agreement.rate,
        samples=n,
        e_value=math.exp(min(log_e, 690.0)),
        threshold=threshold,
    )
