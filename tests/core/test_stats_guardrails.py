"""Token guardrails: the unbounded-mean kernel, the breach rule and its lines, and seeded
simulations of false trips at the limit and detection at 1.5 times it.

Simulated traffic: prompt tokens log-normal (mean 650, sigma 0.7) and completion tokens
log-normal (mean 150, sigma 0.6), independent, rounded stochastically to integers (the mean
stays exact); a look every 50 requests; ``min_samples`` 100 and ``alpha`` 0.01 as the
defaults. Figures seen with these seeds (asserted with slack below):

- ``tokens_mean`` 800: 0 false trips in 2,000 runs of 3,000 requests at the limit;
  500 of 500 runs at 1.5 times it caught, at 100 requests (median; ``min_samples``).
- ``tokens_p95`` (5% of requests above it exactly): 0 false trips in 1,000 runs of 3,000
  requests; 500 of 500 caught at 1.5 times (14% above), at 150 requests (median).
- ``cost_per_1k_requests`` at prices 0.5 and 1.5 per 1,000 tokens (limit 550): 0 false
  trips in 2,000 runs of 5,000 requests; 500 of 500 caught at 1.5 times, at 100
  requests (median).

The tests are conservative (alpha 0.01 would allow about 20 trips in 2,000 runs): the
mean test assumes nothing but non-negative counts, and the p95 test counts only requests
certainly above the limit.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from scipy import stats

from releaser.config.service import Guardrails as ConfigGuardrails
from releaser.core.analysis import decide
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats, latency_bin
from releaser.core.stats_counts import rate_above_limit_log_e
from releaser.core.stats_guardrails import Guardrails, check_guardrails
from releaser.core.stats_means import UNBOUNDED_MEAN_GRID, mean_above_limit_log_e

ALPHA = 0.01
BAR = math.log(1 / ALPHA)
PER_LOOK = 50
MIN_SAMPLES = 100


def usage(rng: np.random.Generator, runs: int, n: int, scale: float) -> tuple[np.ndarray, ...]:
    """(prompt, completion) tokens of ``n`` requests per run, means 650 and 150 times scale."""

    def lognormal(mean: float, sigma: float) -> np.ndarray:
        x = rng.lognormal(math.log(mean * scale) - sigma * sigma / 2, sigma, (runs, n))
        low = np.floor(x)
        return low + (rng.random(x.shape) < x - low)

    return lognormal(650.0, 0.7), lognormal(150.0, 0.6)


def looks(values: np.ndarray) -> np.ndarray:
    """Cumulative sums of each run at every look."""
    return np.cumsum(values, axis=1)[:, PER_LOOK - 1 :: PER_LOOK]


def first_trips(log_e: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Requests seen when each run first tripped (0: never), under the guardrail rule."""
    hit = (log_e >= BAR) & (counts >= MIN_SAMPLES)
    return np.where(hit.any(axis=1), counts[hit.argmax(axis=1)], 0)


def mean_trips(runs: int, n: int, scale: float, seed: int, cost: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    prompt, completion = usage(rng, runs, n, scale)
    total = prompt + completion
    counts = np.arange(PER_LOOK, n + 1, PER_LOOK)
    n_all = np.broadcast_to(counts, (runs, counts.size)).ravel()
    if cost:
        value, limit = prompt * 0.5 + completion * 1.5, 550.0
        bound = looks(value * value)
    else:
        value, limit = total, 800.0
        bound = looks(total * total)
    log_e = mean_above_limit_log_e(n_all, looks(value).ravel(), bound.ravel(), limit)
    return first_trips(log_e.reshape(runs, -1), counts)


def test_mean_tokens_false_trips_and_detection() -> None:
    # Were the false-trip rate alpha, 20 in 2,000 runs would be expected; P(>= 31) < 2%.
    assert stats.binom.sf(30, 2000, ALPHA) < 0.02
    at_limit = mean_trips(2000, 3000, 1.0, seed=31, cost=False)
    assert (at_limit > 0).sum() <= 30, (at_limit > 0).sum()
    over = mean_trips(500, 3000, 1.5, seed=32, cost=False)
    assert (over > 0).sum() >= 495
    assert np.median(over[over > 0]) <= 300


def test_cost_false_trips_and_detection() -> None:
    at_limit = mean_trips(2000, 5000, 1.0, seed=33, cost=True)
    assert (at_limit > 0).sum() <= 30, (at_limit > 0).sum()
    over = mean_trips(500, 5000, 1.5, seed=34, cost=True)
    assert (over > 0).sum() >= 495
    assert np.median(over[over > 0]) <= 300


@cache
def _rate_log_e(above: int, n: int) -> float:
    return rate_above_limit_log_e(above, n, 0.05)


def p95_trips(runs: int, n: int, scale: float, seed: int) -> np.ndarray:
    """Runs of log-normal totals whose 95th percentile is the limit (times ``scale``)."""
    rng = np.random.default_rng(seed)
    sigma, limit = 0.7, 1500.0
    mu = math.log(limit) - sigma * stats.norm.isf(0.05)
    totals = np.floor(rng.lognormal(mu + math.log(scale), sigma, (runs, n)))
    # The histogram's requests certainly above the limit, as LatencyHistogram.count_above.
    first = latency_bin(limit) + 1
    assert LatencyHistogram.of([10 ** ((first - 1) / 20)]).count_above(limit) == 1
    binned = 1 + np.floor(20 * np.log10(np.maximum(totals, 1.0)))
    above = looks((binned >= first).astype(np.int64))
    counts = np.arange(PER_LOOK, n + 1, PER_LOOK)
    log_e = np.vectorize(_rate_log_e)(above, np.broadcast_to(counts, above.shape))
    return first_trips(log_e, counts)


def test_p95_tokens_false_trips_and_detection() -> None:
    # 1,000 runs: 10 expected were the rate alpha; P(>= 19) < 1%.
    assert stats.binom.sf(18, 1000, ALPHA) < 0.01
    at_limit = p95_trips(1000, 3000, 1.0, seed=35)
    assert (at_limit > 0).sum() <= 18, (at_limit > 0).sum()
    over = p95_trips(500, 3000, 1.5, seed=36)
    assert (over > 0).sum() >= 495
    assert np.median(over[over > 0]) <= 300


# --- the kernel -----------------------------------------------------------------------


def test_unbounded_mean_kernel_is_the_grid_average_of_fan_supermartingales() -> None:
    values = [0, 1200, 300, 950, 40, 2200, 800]
    limit = 700.0
    ys = [x / limit - 1 for x in values]
    s, v = sum(ys), sum(y * y for y in ys)
    direct = sum(
        math.exp(lam * s - (-math.log1p(-lam) - lam) * v) for lam in UNBOUNDED_MEAN_GRID
    ) / len(UNBOUNDED_MEAN_GRID)
    got = mean_above_limit_log_e(len(values), sum(values), sum(x * x for x in values), limit)
    assert got[0] == pytest.approx(math.log(direct), rel=1e-9)
    assert mean_above_limit_log_e(0, 0, 0, limit)[0] == 0.0
    # A larger sum of squares (an upper bound) only lowers the e-value.
    assert (
        mean_above_limit_log_e(7, 6000, 2e7, limit)[0]
        < mean_above_limit_log_e(7, 6000, 1e7, limit)[0]
    )
    with pytest.raises(ValueError, match="positive"):
        mean_above_limit_log_e(1, 1, 1, 0.0)


def test_heavy_two_point_traffic_at_the_limit_stays_under_alpha() -> None:
    # A hard case for a mean test: 0 tokens mostly, now and then 10 times the limit;
    # checked after every 5 requests.
    rng = np.random.default_rng(37)
    runs, n, limit, every = 1000, 2000, 100.0, 5
    x = np.where(rng.random((runs, n)) < 0.1, 10 * limit, 0.0)
    counts = np.broadcast_to(np.arange(every, n + 1, every), (runs, n // every)).ravel()
    total = np.cumsum(x, 1)[:, every - 1 :: every].ravel()
    sumsq = np.cumsum(x * x, 1)[:, every - 1 :: every].ravel()
    log_e = mean_above_limit_log_e(counts, total, sumsq, limit)
    trips = (log_e.reshape(runs, -1) >= BAR).any(axis=1).sum()
    assert trips <= 18, trips  # 10 expected at alpha; observed: 0


# --- the rule and its lines --------------------------------------------------------------


def tokens_stats(pairs: list[tuple[int, int]], repeat: int) -> VariantStats:
    return VariantStats.of(errors=[False] * (len(pairs) * repeat), tokens=pairs * repeat)


def test_token_breaches_need_evidence_and_read_as_one_line() -> None:
    rails = Guardrails(
        tokens_mean=600,
        tokens_p95=1000,
        cost_per_1k_requests=0.5,
        price_input_per_1k=0.0005,
        price_output_per_1k=0.0015,
    )
    heavy = [(900, 300), (700, 200), (1500, 400), (600, 100)]  # mean 1175, cost ~0.81
    assert check_guardrails(tokens_stats(heavy, 20), rails) == []  # 80: under min_samples
    breaches = check_guardrails(tokens_stats(heavy, 50), rails)
    assert [b.metric for b in breaches] == ["tokens_mean", "tokens_p95", "cost_per_1k_requests"]
    lines = [b.explain() for b in breaches]
    assert lines[0].startswith(
        "mean tokens per request 1175.0 over 200 requests breaks the limit 600 (e-value "
    )
    assert lines[1].startswith("p95 tokens per request 1") and "breaks the limit 1000" in lines[1]
    assert lines[2].startswith(
        "cost per 1,000 requests 0.8375 over 200 requests breaks the limit 0.5"
    )
    assert all("\n" not in line and line.endswith(">= 100)") for line in lines)
    light = [(300, 100), (200, 50)]
    assert check_guardrails(tokens_stats(light, 500), rails) == []
    # Requests without tokens are no evidence either way.
    assert check_guardrails(VariantStats(requests=5000), rails) == []


def test_a_token_breach_rolls_back_and_the_config_pins_flat_limits() -> None:
    config = ConfigGuardrails.model_validate(
        {
            "error_rate": 0.02,
            "tokens_mean": 600,
            "cost_per_1k_requests": 0.5,
            "prices": {"input_per_1k": 0.0005, "output_per_1k": 0.0015},
        }
    )
    limits = config.limits()
    assert limits == {
        "error_rate": 0.02,
        "tokens_mean": 600,
        "cost_per_1k_requests": 0.5,
        "price_input_per_1k": 0.0005,
        "price_output_per_1k": 0.0015,
    }
    baseline = tokens_stats([(300, 100)], 2000)
    candidate = tokens_stats([(900, 300)], 300)
    decision = decide(
        baseline,
        candidate,
        guardrails=Guardrails(**limits),
        bake_elapsed_s=0,
        bake_required_s=0,
        is_last_step=False,
    )
    assert decision.action == "rollback"
    assert decision.reasons[0].startswith("guardrail: mean tokens per request 1200.0 over 300")
    with pytest.raises(ValueError, match="cost_per_1k_requests needs prices"):
        ConfigGuardrails.model_validate({"cost_per_1k_requests": 1.0})
    with pytest.raises(ValueError, match="cost_per_1k_requests needs price"):
        Guardrails(cost_per_1k_requests=1.0, price_input_per_1k=0.1)
    assert ConfigGuardrails().limits() == {}
