"""Budgets: tokens, cost and latency per request, against independent arithmetic."""

from __future__ import annotations

import numpy as np

from releaser.core.budgets import check_budgets, usage_figures


def test_figures_match_numpy_and_hand_arithmetic() -> None:
    rng = np.random.default_rng(5)
    prompt = rng.integers(50, 400, 500).tolist()
    completion = rng.integers(10, 300, 500).tolist()
    latency = rng.gamma(2.0, 300.0, 500).tolist()
    f = usage_figures(prompt, completion, latency, input_per_1k=0.15, output_per_1k=0.6)
    totals = np.asarray(prompt) + np.asarray(completion)
    assert f.requests == 500 and f.prompt_tokens == sum(prompt)
    assert f.mean_tokens == totals.mean()
    assert abs(f.p95_tokens - np.percentile(totals, 95)) < 1e-9  # type: ignore[operator]
    assert abs(f.p95_latency_ms - np.percentile(latency, 95)) < 1e-9  # type: ignore[operator]
    # 1,000 requests of the mean mix: prompt tokens at 0.15 and completion at 0.6 per 1,000.
    expected = (np.mean(prompt) * 0.15 + np.mean(completion) * 0.6) / 1000 * 1000
    assert abs(f.cost_per_1k_requests - expected) < 1e-9  # type: ignore[operator]
    assert usage_figures(prompt, completion, latency).cost_per_1k_requests is None


def test_budgets_pass_fail_and_unmeasured_fails() -> None:
    f = usage_figures([100, 100, 300], [50, 50, 100], [10.0, 20.0, 30.0])
    checks = {
        c.name: c
        for c in check_budgets(f, {"mean_tokens": 250, "p95_tokens": 300, "p95_latency_ms": None})
    }
    assert set(checks) == {"mean_tokens", "p95_tokens"}
    assert checks["mean_tokens"].passed and checks["mean_tokens"].value == 700 / 3
    assert (
        not checks["p95_tokens"].passed
        and "p95_tokens: 375 > 300" in checks["p95_tokens"].explain()
    )
    empty = usage_figures([], [], [])
    (check,) = check_budgets(empty, {"mean_tokens": 1.0})
    assert not check.passed and "not measured" in check.explain()
