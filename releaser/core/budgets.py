"""Budgets of an LLM release: tokens, cost and latency per request, checked by the gate.

From per-request token counts (prompt and completion, as the endpoint reports them)
and latencies, :func:`usage_figures` computes what the gate reports, and
:func:`check_budgets` compares them with the configured limits. A request is one call
to the endpoint (with ``samples: k`` each row makes k). Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BudgetCheck", "UsageFigures", "check_budgets", "usage_figures"]


@dataclass(frozen=True)
class UsageFigures:
    """What requests cost: tokens (prompt + completion), money, latency."""

    requests: int
    mean_tokens: float | None
    p95_tokens: float | None
    prompt_tokens: int
    completion_tokens: int
    cost_per_1k_requests: float | None
    """At the endpoint's prices; None without prices."""
    p95_latency_ms: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready figures."""
        return {
            "requests": self.requests,
            "mean_tokens": self.mean_tokens,
            "p95_tokens": self.p95_tokens,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_per_1k_requests": self.cost_per_1k_requests,
            "p95_latency_ms": self.p95_latency_ms,
        }


def _p95(values: Sequence[float]) -> float | None:
    """The 95th percentile, linearly interpolated (numpy's default), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def usage_figures(
    prompt_tokens: Sequence[int],
    completion_tokens: Sequence[int],
    latencies_ms: Sequence[float],
    *,
    input_per_1k: float | None = None,
    output_per_1k: float | None = None,
) -> UsageFigures:
    """The figures of requests that were answered (one entry per request in each list)."""
    if len(prompt_tokens) != len(completion_tokens):
        raise ValueError("one prompt and one completion count per request")
    n = len(prompt_tokens)
    totals = [p + c for p, c in zip(prompt_tokens, completion_tokens, strict=True)]
    cost = None
    if n and input_per_1k is not None and output_per_1k is not None:
        # Money spent is tokens / 1000 * price; per 1,000 requests multiplies by 1000 / n.
        spent = (sum(prompt_tokens) * input_per_1k + sum(completion_tokens) * output_per_1k) / 1000
        cost = spent * 1000 / n
    return UsageFigures(
        requests=n,
        mean_tokens=sum(totals) / n if n else None,
        p95_tokens=_p95([float(t) for t in totals]),
        prompt_tokens=sum(prompt_tokens),
        completion_tokens=sum(completion_tokens),
        cost_per_1k_requests=cost,
        p95_latency_ms=_p95(list(latencies_ms)),
    )


@dataclass(frozen=True)
class BudgetCheck:
    """One budget against its figure."""

    name: str
    limit: float
    value: float | None
    passed: bool

    def explain(self) -> str:
        """One line, e.g. 'budget p95_tokens: 812 > 800'."""
        if self.value is None:
            return f"budget {self.name}: not measured (no answered request) against {self.limit:g}"
        sign = "<=" if self.passed else ">"
        return f"budget {self.name}: {self.value:.4g} {sign} {self.limit:g}"


def check_budgets(figures: UsageFigures, limits: dict[str, float | None]) -> list[BudgetCheck]:
    """Each configured limit (mean_tokens, p95_tokens, cost_per_1k_requests,
    p95_latency_ms) against the figure; an unmeasured figure fails (no evidence)."""
    checks: list[BudgetCheck] = []
    for name in ("mean_tokens", "p95_tokens", "cost_per_1k_requests", "p95_latency_ms"):
        limit = limits.get(name)
        if limit is None:
            continue
        value = getattr(figures, name)
        checks.append(BudgetCheck(name, limit, value, value is not None and value <= limit))
    return checks
