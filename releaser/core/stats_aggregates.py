"""Per-variant metric aggregates that canary analysis reads: counts, a latency histogram, sums.

Everything here is cumulative and mergeable by addition, so routers and gateways can count
locally and a store can add their reports up.

Latency histogram layout (fixed, so histograms from any process merge bin by bin):

    bin 0          [0, 1) ms
    bin i, 1..100  [10**((i-1)/20), 10**(i/20)) ms     20 bins a decade, each 12.2% wide
    bin 101        [100000 ms, infinity)

A latency of ``ms`` >= 1 goes to ``min(101, 1 + floor(20 * log10(ms)))`` (IEEE double).

Token counts per request (LLM services) use the same layout for the total tokens of a
request (prompt plus completion): bin 0 holds requests of 0 tokens, bin 101 those of
100,000 tokens or more. Beside the histogram a variant keeps the requests that reported
tokens, the sums of prompt and of completion tokens, and the sums of squares of the totals,
of the prompt and of the completion tokens (what the mean-token and cost guardrails need for
a variance-aware test: a request's cost ``p * in + c * out`` squared sums exactly from them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from releaser.errors import BadInput

__all__ = [
    "LATENCY_BINS",
    "LATENCY_BINS_PER_DECADE",
    "MAX_TOKENS_PER_REQUEST",
    "LatencyHistogram",
    "VariantStats",
    "latency_bin",
    "latency_bin_bounds",
]

LATENCY_BINS_PER_DECADE = 20
LATENCY_BINS = 102
"""Bins in a latency histogram: under 1 ms, 100 log-spaced bins up to 100 s, and overflow."""

MAX_TOKENS_PER_REQUEST = 1_000_000_000
"""Prompt or completion tokens of one request above this are a bug upstream, not traffic;
the bound also keeps the sums inside 64-bit columns."""

_FROZEN = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency in milliseconds."""
    if not ms >= 1.0:  # also NaN and negatives: a clock glitch counts as fastest
        return 0
    return min(LATENCY_BINS - 1, 1 + math.floor(LATENCY_BINS_PER_DECADE * math.log10(ms)))


def latency_bin_bounds(index: int) -> tuple[float, float]:
    """Lower and upper bound (ms) of a bin; the last bin's upper bound is infinity."""
    if index == 0:
        return 0.0, 1.0
    lower = 10.0 ** ((index - 1) / LATENCY_BINS_PER_DECADE)
    if index == LATENCY_BINS - 1:
        return lower, math.inf
    return lower, 10.0 ** (index / LATENCY_BINS_PER_DECADE)


class LatencyHistogram(BaseModel):
    """Request counts per fixed log-spaced latency bin (see the module docstring)."""

    model_config = _FROZEN

    counts: tuple[int, ...] = Field(default=(0,) * LATENCY_BINS)

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if len(self.counts) != LATENCY_BINS or min(self.counts) < 0:
            raise ValueError(f"a latency histogram has {LATENCY_BINS} non-negative counts")
        return self

    @classmethod
    def of(cls, latencies_ms: Iterable[float]) -> LatencyHistogram:
        """The histogram of some latencies."""
        counts = [0] * LATENCY_BINS
        for ms in latencies_ms:
            counts[latency_bin(ms)] += 1
        return cls(counts=tuple(counts))

    @property
    def total(self) -> int:
        """Number of latencies counted."""
        return sum(self.counts)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Bin-wise sum of two histograms."""
        return LatencyHistogram(
            counts=tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        )

    def count_above(self, ms: float) -> int:
        """Requests certainly slower than ``ms``: those in bins whose lower bound is >= ``ms``.

        Requests in the bin that contains ``ms`` are not counted, so this never overstates.
        """
        first = latency_bin(ms)
        if latency_bin_bounds(first)[0] < ms:
            first += 1
        return sum(self.counts[first:])

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q < 1) in ms, interpolated geometrically within its bin.

        None when empty. In the overflow bin the result is its lower bound (100 s).
        """
        total = self.total
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                lower, upper = latency_bin_bounds(index)
                share = (rank - seen) / count
                if index == 0:
                    return upper * share
                if math.isinf(upper):
                    return lower
                return float(lower * (upper / lower) ** share)
            seen += count
        return latency_bin_bounds(LATENCY_BINS - 1)[0]


class VariantStats(BaseModel):
    """Cumulative aggregates of one variant (baseline or candidate) since the rollout began.

    ``slow`` counts requests slower than ``slow_threshold_ms`` (exactly, as measured, not
    from the histogram); quality scores lie in [0, 1] and are summarised by count, sum and
    sum of squares.
    """

    model_config = _FROZEN

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    latency: LatencyHistogram = Field(default_factory=LatencyHistogram)
    slow_threshold_ms: float | None = Field(default=None, gt=0)
    slow: int = Field(default=0, ge=0)
    quality_count: int = Field(default=0, ge=0)
    quality_sum: float = Field(default=0.0, ge=0)
    quality_sumsq: float = Field(default=0.0, ge=0)
    token_requests: int = Field(default=0, ge=0, description="Requests that reported tokens.")
    prompt_tokens: int = Field(default=0, ge=0, description="Sum of their prompt tokens.")
    completion_tokens: int = Field(default=0, ge=0, description="Sum of completion tokens.")
    tokens_sumsq: float = Field(
        default=0.0, ge=0, description="Sum of squares of total tokens per request."
    )
    prompt_tokens_sumsq: float = Field(
        default=0.0, ge=0, description="Sum of squares of prompt tokens per request."
    )
    completion_tokens_sumsq: float = Field(
        default=0.0, ge=0, description="Sum of squares of completion tokens per request."
    )
    tokens: LatencyHistogram = Field(
        default_factory=LatencyHistogram,
        description="Total tokens per request, in the latency histogram's bins.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.errors > self.requests:
            raise ValueError(f"errors ({self.errors}) exceed requests ({self.requests})")
        if self.slow > self.requests:
            raise ValueError(f"slow requests ({self.slow}) exceed requests ({self.requests})")
        if self.slow and self.slow_threshold_ms is None:
            raise ValueError("slow requests are counted but slow_threshold_ms is not set")
        n, s, ss = self.quality_count, self.quality_sum, self.quality_sumsq
        slack = 1e-9 * max(1, n)  # float sums of many scores drift by a few ulps
        if s > n + slack or ss > s + slack or (n and ss < s * s / n - slack):
            raise ValueError(
                "quality sums are not those of scores in [0, 1] "
                f"(count {n}, sum {s}, sum of squares {ss})"
            )
        # The histogram is not held to token_requests: a prune removes histograms only.
        n, ss = self.token_requests, self.tokens_sumsq
        t = self.prompt_tokens + self.completion_tokens
        parts = self.prompt_tokens_sumsq + self.completion_tokens_sumsq
        if n == 0 and (t or ss or parts):
            raise ValueError("token sums are counted but no request reported tokens")
        slack = 1e-9 * max(1.0, ss)
        # sum t^2 = sum p^2 + sum c^2 + 2 sum p*c, and p*c >= 0.
        if n and (ss < t * t / n - slack or ss > float(t) * t + slack or parts > ss + slack):
            raise ValueError(
                "token sums are not those of non-negative counts "
                f"(requests {n}, total {t}, sum of squares {ss})"
            )
        return self

    @classmethod
    def of(
        cls,
        *,
        errors: Sequence[bool],
        latencies_ms: Sequence[float] = (),
        scores: Sequence[float] = (),
        slow_threshold_ms: float | None = None,
        tokens: Sequence[tuple[int, int]] = (),
    ) -> VariantStats:
        """Aggregates of individual requests (one error flag each), latencies, scores and
        (prompt, completion) token counts."""
        if any(not 0.0 <= x <= 1.0 for x in scores):
            raise BadInput("quality scores must lie in [0, 1]", hint="rescale them first")
        if any(not 0 <= p <= MAX_TOKENS_PER_REQUEST for pair in tokens for p in pair):
            raise BadInput(
                f"token counts must lie in [0, {MAX_TOKENS_PER_REQUEST}]",
                hint="pass the prompt and completion tokens the endpoint reported",
            )
        totals = [p + c for p, c in tokens]
        slow = 0
        if slow_threshold_ms is not None:
            slow = sum(1 for ms in latencies_ms if ms > slow_threshold_ms)
        return cls(
            requests=len(errors),
            errors=sum(1 for e in errors if e),
            latency=LatencyHistogram.of(latencies_ms),
            slow_threshold_ms=slow_threshold_ms,
            slow=slow,
            quality_count=len(scores),
            quality_sum=math.fsum(scores),
            quality_sumsq=math.fsum(x * x for x in scores),
            token_requests=len(tokens),
            prompt_tokens=sum(p for p, _ in tokens),
            completion_tokens=sum(c for _, c in tokens),
            tokens_sumsq=float(sum(t * t for t in totals)),
            prompt_tokens_sumsq=float(sum(p * p for p, _ in tokens)),
            completion_tokens_sumsq=float(sum(c * c for _, c in tokens)),
            tokens=LatencyHistogram.of(totals),
        )

    def merge(self, other: VariantStats) -> VariantStats:
        """The aggregates of both, as if counted together."""
        if (
            self.slow_threshold_ms is not None
            and other.slow_threshold_ms is not None
            and self.slow_threshold_ms != other.slow_threshold_ms
        ):
            raise BadInput(
                f"cannot merge slow counts over {self.slow_threshold_ms} ms and "
                f"{other.slow_threshold_ms} ms",
                hint="count slow requests against one threshold for the whole rollout",
            )
        return VariantStats(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=self.latency.merge(other.latency),
            slow_threshold_ms=self.slow_threshold_ms or other.slow_threshold_ms,
            slow=self.slow + other.slow,
            quality_count=self.quality_count + other.quality_count,
            quality_sum=self.quality_sum + other.quality_sum,
            quality_sumsq=self.quality_sumsq + other.quality_sumsq,
            token_requests=self.token_requests + other.token_requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            tokens_sumsq=self.tokens_sumsq + other.tokens_sumsq,
            prompt_tokens_sumsq=self.prompt_tokens_sumsq + other.prompt_tokens_sumsq,
            completion_tokens_sumsq=self.completion_tokens_sumsq + other.completion_tokens_sumsq,
            tokens=self.tokens.merge(other.tokens),
        )

    @property
    def error_rate(self) -> float | None:
        """Errors per request, or None before any request."""
        return self.errors / self.requests if self.requests else None

    @property
    def quality_mean(self) -> float | None:
        """Mean quality score, or None before any score."""
        return self.quality_sum / self.quality_count if self.quality_count else None

    @property
    def tokens_mean(self) -> float | None:
        """Mean total tokens per request that reported tokens, or None before any."""
        if not self.token_requests:
            return None
        return (self.prompt_tokens + self.completion_tokens) / self.token_requests

    def cost_per_1k_requests(self, input_per_1k: float, output_per_1k: float) -> float | None:
        """Mean cost of 1,000 requests at prices per 1,000 prompt and completion tokens."""
        if not self.token_requests:
            return None
        cost = self.prompt_tokens * input_per_1k + self.completion_tokens * output_per_1k
        return cost / self.token_requests
