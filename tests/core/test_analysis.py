"""Canary analysis: kernels against independent computations, state, guardrails, decisions,
and seeded simulations of false rollbacks and detection (the full study is in bench/)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import integrate, special, stats

from releaser.core.analysis import (
    Decision,
    TestResult,
    analyse,
    decide,
)
from releaser.core.canonical import canonical_json
from releaser.core.stats_aggregates import (
    LATENCY_BINS,
    LatencyHistogram,
    VariantStats,
    latency_bin,
    latency_bin_bounds,
)
from releaser.core.stats_counts import (
    ETA_GRID,
    REGRESSION_ETA,
    log_lr_increment,
    rate_above_limit_log_e,
    ratio_confidence_sequence,
    regression_log_e,
    regression_log_e_from_grid,
)
from releaser.core.stats_guardrails import Guardrails, check_guardrails
from releaser.core.stats_means import mean_below_floor_log_e, normal_mixture_log_e
from releaser.core.stats_state import AnalysisState, MeanDiffState, RatioState, update_state
from releaser.errors import BadInput

ALPHA = 0.01
BAR = math.log(1 / ALPHA)


# --- aggregates -----------------------------------------------------------------------


def test_latency_bins_and_bounds() -> None:
    assert latency_bin(0.2) == 0 and latency_bin(-5) == 0 and latency_bin(float("nan")) == 0
    assert (
        latency_bin(1.0) == 1 and latency_bin(10.0) == 21 and latency_bin(1e9) == LATENCY_BINS - 1
    )
    for ms in (1.0, 3.7, 199.0, 200.0, 512.0, 99_999.0):
        low, high = latency_bin_bounds(latency_bin(ms))
        assert low * (1 - 1e-12) <= ms < high * (1 + 1e-12)
    assert latency_bin_bounds(LATENCY_BINS - 1) == (100_000.0, math.inf)


def test_histogram_quantiles_and_counts() -> None:
    rng = np.random.default_rng(3)
    values = rng.lognormal(math.log(200), 0.5, 20_000)
    hist = LatencyHistogram.of(values.tolist())
    assert hist.total == 20_000
    for q in (0.5, 0.9, 0.95, 0.99):
        true = float(np.quantile(values, q))
        assert hist.quantile(q) == pytest.approx(true, rel=0.07)  # a bin is 12% wide
    for limit in (150.0, 500.0, 777.0):
        assert hist.count_above(limit) <= int(np.sum(values > limit))
        assert hist.count_above(limit) >= 0.8 * np.sum(values > limit)
    assert LatencyHistogram().quantile(0.5) is None
    merged = hist.merge(hist)
    assert merged.total == 40_000 and merged.quantile(0.5) == hist.quantile(0.5)
    with pytest.raises(ValueError):
        LatencyHistogram(counts=(1, 2, 3))


def test_variant_stats_validation_and_merge() -> None:
    a = VariantStats.of(
        errors=[False, True, False],
        latencies_ms=[10, 600, 900],
        scores=[1.0, 0.5],
        slow_threshold_ms=500,
    )
    assert (a.requests, a.errors, a.slow, a.quality_count) == (3, 1, 2, 2)
    assert a.quality_mean == pytest.approx(0.75) and a.error_rate == pytest.approx(1 / 3)
    both = a.merge(a)
    assert (both.requests, both.errors, both.slow, both.latency.total) == (6, 2, 4, 6)
    with pytest.raises(ValueError, match="exceed"):
        VariantStats(requests=1, errors=2)
    with pytest.raises(ValueError, match="quality sums"):
        VariantStats(quality_count=2, quality_sum=1.0, quality_sumsq=0.9 * 2)
    with pytest.raises(ValueError, match="slow_threshold_ms"):
        VariantStats(requests=5, slow=1)
    with pytest.raises(BadInput):
        VariantStats.of(errors=[], scores=[1.5])
    with pytest.raises(BadInput, match="merge slow counts"):
        a.merge(VariantStats(slow_threshold_ms=100))


def test_token_aggregates_merge_and_validate() -> None:
    a = VariantStats.of(errors=[False] * 3, tokens=[(100, 20), (0, 0), (90_000, 30_000)])
    assert (a.token_requests, a.prompt_tokens, a.completion_tokens) == (3, 90_100, 30_020)
    assert a.tokens_sumsq == 120.0**2 + 120_000.0**2
    assert a.tokens.counts[0] == 1 and a.tokens.counts[-1] == 1
    assert a.tokens.counts[latency_bin(120)] == 1
    assert a.tokens_mean == pytest.approx(120_120 / 3)
    # Prices per 1,000 tokens: 1,000 requests cost the mean of p * in + c * out.
    assert a.cost_per_1k_requests(0.5, 1.5) == pytest.approx((90_100 * 0.5 + 30_020 * 1.5) / 3)
    both = a.merge(a)
    assert (both.token_requests, both.tokens.total, both.tokens_sumsq) == (
        6,
        6,
        2 * a.tokens_sumsq,
    )
    assert VariantStats().tokens_mean is None and VariantStats().cost_per_1k_requests(1, 1) is None
    with pytest.raises(ValueError, match="no request reported tokens"):
        VariantStats(prompt_tokens=3)
    with pytest.raises(ValueError, match="token sums"):
        VariantStats(token_requests=2, prompt_tokens=10, tokens_sumsq=10.0)  # below 10**2 / 2
    with pytest.raises(ValueError, match="token sums"):
        VariantStats(token_requests=2, prompt_tokens=10, tokens_sumsq=101.0)  # above 10**2
    with pytest.raises(BadInput, match="token counts"):
        VariantStats.of(errors=[False], tokens=[(-1, 0)])


# --- the rate-ratio kernel ------------------------------------------------------------


def test_increment_is_the_conditional_binomial_likelihood_ratio() -> None:
    for xc, x, w in [(3, 10, 0.05), (0, 4, 0.25), (7, 7, 0.5), (1, 30, 0.01)]:
        got = log_lr_increment(xc, x, w)
        rho = np.exp(ETA_GRID)
        p = rho * w / (rho * w + 1 - w)
        want = stats.binom.logpmf(xc, x, p) - stats.binom.logpmf(xc, x, w)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_regression_e_value_is_a_half_normal_mixture_on_the_grid() -> None:
    rng = np.random.default_rng(1)
    loglik = rng.normal(0, 3, REGRESSION_ETA.size)
    weights = np.exp(-0.5 * REGRESSION_ETA**2)
    weights /= weights.sum()
    assert float(regression_log_e(loglik)) == pytest.approx(
        math.log(float(np.sum(weights * np.exp(loglik)))), rel=1e-12
    )
    assert regression_log_e_from_grid(np.zeros(ETA_GRID.size)) == pytest.approx(0.0, abs=1e-12)


def test_ratio_state_is_idempotent_refuses_resets_and_round_trips() -> None:
    state = RatioState().update(100, 3, 1900, 19)
    assert state.update(100, 3, 1900, 19) == state  # a re-run with the same totals
    later = state.update(600, 12, 2400, 24)  # the share moved from 5% to 50%
    direct = log_lr_increment(3, 22, 0.05) + log_lr_increment(9, 14, 0.5)
    np.testing.assert_allclose(later.loglik, direct, rtol=1e-12, atol=1e-12)
    assert RatioState.model_validate_json(later.model_dump_json()) == later
    with pytest.raises(BadInput, match="went down"):
        later.update(500, 12, 2400, 24)
    with pytest.raises(BadInput, match="more new errors"):
        later.update(601, 14, 2400, 24, what="errors")
    with pytest.raises(ValueError):
        RatioState(loglik=(0.0,))


def test_confidence_sequence_covers_a_clear_ratio() -> None:
    state = RatioState().update(20_000, 400, 380_000, 3_800)  # ratio exactly 2
    cs = ratio_confidence_sequence(state.loglik, ALPHA)
    assert cs is not None and cs[0] < 2.0 < cs[1] and cs[1] / cs[0] < 1.6
    assert ratio_confidence_sequence(RatioState().loglik, ALPHA) == (0.0, math.inf)


# --- one-sample and two-sample bounded means ------------------------------------------


def test_guardrail_rate_e_value_matches_numerical_integration() -> None:
    for x, n, limit in [(3, 20, 0.05), (30, 200, 0.05), (2, 1000, 0.01), (15, 1000, 0.01)]:
        b = (1 - limit) / limit
        prior_mass = special.betainc(b, 1, 1 - limit)

        def integrand(
            p: float, x: int = x, n: int = n, limit: float = limit, b: float = b
        ) -> float:
            log_lr = x * math.log(p / limit) + (n - x) * math.log((1 - p) / (1 - limit))
            return math.exp(log_lr) * float(stats.beta.pdf(p, 1, b))

        value, _ = integrate.quad(integrand, limit, 1, points=[x / n], limit=200)
        assert rate_above_limit_log_e(x, n, limit) == pytest.approx(
            math.log(value / prior_mass), abs=1e-6
        )
    assert rate_above_limit_log_e(1, 10, 0.0) == math.inf
    assert rate_above_limit_log_e(10, 10, 1.0) == 0.0


def test_mean_mixture_matches_numerical_integration() -> None:
    for t, v in [(5.0, 20.0), (-3.0, 10.0), (40.0, 100.0)]:
        value, _ = integrate.quad(
            lambda lam, t=t, v=v: math.exp(lam * t - lam * lam * v / 2) * 2 * stats.norm.pdf(lam),
            0,
            np.inf,
        )
        assert float(normal_mixture_log_e(t, v)) == pytest.approx(math.log(value), rel=1e-7)
    assert mean_below_floor_log_e(0, 0.0, 0.9) == 0.0


def test_mean_state_weights_batches_and_carries_one_sided_batches() -> None:
    state = MeanDiffState().update(2, 1.0, 8, 6.0)  # c = 1.6, diff of means 0.25
    assert state.t == pytest.approx(1.6 * 0.25) and state.c == pytest.approx(1.6)
    carried = state.update(2, 1.0, 12, 9.0)  # no new candidate scores: wait
    assert carried == state
    both = carried.update(4, 1.5, 12, 9.0)  # now both sides moved: one batch of 2 + 4
    assert both.c == pytest.approx(1.6 + 2 * 4 / 6)
    assert both.t == pytest.approx(1.6 * 0.25 + (2 * 4 / 6) * (0.75 - 0.25))
    with pytest.raises(BadInput):
        both.update(3, 1.5, 12, 9.0)


# --- seeded simulations (the full study is bench/bench_analysis.py) ---------------------


def simulate_error_test(
    runs: int,
    p_base: float,
    p_cand: float,
    shares: list[float],
    looks: int,
    per_look: int,
    seed: int,
) -> np.ndarray:
    """Rejection flags of the library's error-rate e-process over ``looks`` looks per run."""
    rng = np.random.default_rng(seed)
    loglik = np.zeros((runs, REGRESSION_ETA.size))
    rejected = np.zeros(runs, dtype=bool)
    for look in range(looks):
        share = shares[min(len(shares) - 1, look * len(shares) // looks)]
        nc = rng.binomial(per_look, share, runs)
        xc = rng.binomial(nc, p_cand)
        xb = rng.binomial(per_look - nc, p_base)
        loglik += log_lr_increment(xc, xc + xb, nc / per_look, REGRESSION_ETA)
        rejected |= regression_log_e(loglik) >= BAR
    return rejected


def test_aa_false_rollback_rate_stays_below_alpha_with_changing_traffic() -> None:
    # 1,000 A/A runs, 200 looks each, traffic 5% -> 25% -> 50%. Were the true rate 1%,
    # 10 false rollbacks would be expected and P(>= 20) = 0.33% (binomial upper tail), so
    # 19 is the most this test accepts.
    runs = 1000
    rejected = simulate_error_test(runs, 0.01, 0.01, [0.05, 0.25, 0.5], 200, 200, seed=11)
    assert stats.binom.sf(19, runs, ALPHA) < 0.005
    assert rejected.sum() <= 19, rejected.sum()


def test_three_times_the_errors_is_caught() -> None:
    # 1% -> 3% at a 5% step, 40k requests per run: detection needs about 12k, so the
    # power is essentially 1; allow 2 misses in 200.
    rejected = simulate_error_test(200, 0.01, 0.03, [0.05], 200, 200, seed=12)
    assert rejected.sum() >= 198, rejected.sum()


def test_a_repeated_z_test_inflates_false_rollbacks() -> None:
    # The judge canaries usually run: a one-sided z-test re-run at every look. On the same
    # A/A traffic it rolls back far more often than alpha; the e-process does not.
    rng = np.random.default_rng(13)
    runs, looks, per_look = 1000, 200, 200
    nc = rng.binomial(per_look, 0.05, (runs, looks))
    xc, xb = rng.binomial(nc, 0.01), rng.binomial(per_look - nc, 0.01)
    n_c, n_b = np.cumsum(nc, 1), np.cumsum(per_look - nc, 1)
    x_c, x_b = np.cumsum(xc, 1), np.cumsum(xb, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pool = (x_c + x_b) / (n_c + n_b)
        z = (x_c / n_c - x_b / n_b) / np.sqrt(pool * (1 - pool) * (1 / n_c + 1 / n_b))
    naive = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).max(axis=1) > stats.norm.isf(ALPHA)
    assert naive.mean() > 3 * ALPHA  # observed about 10x alpha


def simulate_quality(
    runs: int, mu_base: float, mu_cand: float, looks: int, seed: int, continuous: bool
) -> np.ndarray:
    """Rejection flags of the quality test, fed look by look through MeanDiffState."""
    rng = np.random.default_rng(seed)
    flags = np.zeros(runs, dtype=bool)
    for run in range(runs):
        state = MeanDiffState()
        tot = [0, 0.0, 0, 0.0]
        for _ in range(looks):
            nc = int(rng.binomial(100, 0.1))
            for idx, (n, mu) in enumerate([(nc, mu_cand), (100 - nc, mu_base)]):
                if continuous:  # Beta scores with the given mean and a small spread
                    total = float(rng.beta(20 * mu, 20 * (1 - mu), n).sum())
                else:
                    total = float(rng.binomial(1, mu, n).sum())
                tot[2 * idx] += n
                tot[2 * idx + 1] += total
            state = state.update(int(tot[0]), tot[1], int(tot[2]), tot[3])
            if state.c and normal_mixture_log_e(state.t, state.c / 4) >= BAR:
                flags[run] = True
                break
    return flags


def test_quality_test_false_rollbacks_and_detection() -> None:
    # 150 A/A runs per score type: were the true rate 1%, P(>= 6) = 0.08%; we allow 5.
    for continuous in (False, True):
        aa = simulate_quality(150, 0.8, 0.8, 60, seed=21 + continuous, continuous=continuous)
        assert aa.sum() <= 5
    caught = simulate_quality(50, 0.8, 0.6, 60, seed=23, continuous=False)
    assert caught.sum() >= 49


# --- decisions -------------------------------------------------------------------------


def stats_of(
    requests: int,
    errors: int,
    *,
    slow: int = 0,
    q_n: int = 0,
    q_mean: float = 0.8,
    latencies: list[float] | None = None,
) -> VariantStats:
    hist = LatencyHistogram.of(latencies) if latencies is not None else LatencyHistogram()
    return VariantStats(
        requests=requests,
        errors=errors,
        slow_threshold_ms=500.0,
        slow=slow,
        latency=hist,
        quality_count=q_n,
        quality_sum=q_n * q_mean,
        quality_sumsq=q_n * q_mean,
    )


def test_rollback_on_an_error_regression_with_an_explanation() -> None:
    baseline = stats_of(38_000, 380, slow=1_200, q_n=3_000)
    candidate = stats_of(2_000, 60, slow=70, q_n=160)
    decision = decide(
        baseline, candidate, bake_elapsed_s=0, bake_required_s=3600, is_last_step=False
    )
    assert decision.action == "rollback"
    error = next(t for t in decision.tests if t.metric == "error_rate")
    assert error.regression_detected and error.threshold == pytest.approx(300)
    assert error.estimate == pytest.approx(3.0)
    assert error.ci_low is not None and error.ci_high is not None
    assert 1.0 < error.ci_low < 3.0 < error.ci_high
    text = error.explain()
    assert text.startswith("error rate: candidate 3.00% (n=2000) vs baseline 1.00% (n=38000)")
    assert "99.67% CS" in text and ">= 300: regression" in text
    assert any("regression: error rate" in r for r in decision.reasons)
    assert not next(t for t in decision.tests if t.metric == "latency").regression_detected
    assert Decision.model_validate_json(decision.model_dump_json()) == decision


def test_a_baseline_without_errors_gives_an_open_ratio_and_canonical_json() -> None:
    decision = decide(
        stats_of(19_000, 0),
        stats_of(1_000, 30),
        bake_elapsed_s=0,
        bake_required_s=0,
        is_last_step=False,
    )
    error = decision.tests[0]
    assert decision.action == "rollback" and error.estimate is None
    assert error.ci_low is not None and error.ci_low > 1 and error.ci_high is None
    assert "ratio n/a" in error.explain() and "inf)" in error.explain()
    canonical_json(decision.model_dump(mode="json"))  # no NaN or infinity anywhere


def test_hold_advance_and_promote() -> None:
    baseline = stats_of(19_000, 190, q_n=1_000)
    candidate = stats_of(1_000, 10, q_n=50)

    def common(candidate: VariantStats, elapsed: float, last: bool = False) -> Decision:
        return decide(
            baseline,
            candidate,
            min_samples=500,
            bake_required_s=3600,
            bake_elapsed_s=elapsed,
            is_last_step=last,
        )

    baking = common(candidate, 600)
    assert baking.action == "hold" and baking.reasons == ["baking: 10 min of 60 min elapsed"]
    # Rounded down: a bake still holding never reads as complete ("60 min of 60 min").
    nearly = common(candidate, 3599.9)
    assert nearly.reasons == ["baking: 59 min of 60 min elapsed"]
    long_bake = decide(
        baseline,
        candidate,
        min_samples=500,
        bake_required_s=4 * 3600,
        bake_elapsed_s=14_399,
        is_last_step=False,
    )
    assert long_bake.reasons == ["baking: 3.9 h of 4.0 h elapsed"]
    few = common(stats_of(100, 1), 7200)
    assert few.action == "hold"
    assert few.reasons == ["waiting for samples: candidate has 100 of 500 requests"]
    ready = common(candidate, 7200)
    assert ready.action == "advance" and "no regression after 1000" in ready.reasons[0]
    last = common(candidate, 7200, last=True)
    assert last.action == "promote"


def test_state_carries_evidence_across_looks_and_reruns_are_harmless() -> None:
    state: AnalysisState | None = None
    base_total, cand_total = stats_of(0, 0), stats_of(0, 0)
    e_values = []
    for _ in range(5):  # five looks, each with the candidate at 2x
        base_total = base_total.merge(stats_of(9_500, 95))
        cand_total = cand_total.merge(stats_of(500, 10))
        decision = decide(
            base_total,
            cand_total,
            state=state,
            alpha=0.01,
            comparisons=("error_rate",),
            bake_elapsed_s=0,
            bake_required_s=0,
            is_last_step=False,
        )
        again = decide(
            base_total,
            cand_total,
            state=decision.state,
            alpha=0.01,
            comparisons=("error_rate",),
            bake_elapsed_s=0,
            bake_required_s=0,
            is_last_step=False,
        )
        assert again.tests == decision.tests  # same totals: nothing new is counted
        state = AnalysisState.model_validate_json(decision.state.model_dump_json())
        e_values.append(decision.tests[0].e_value)
        assert decision.tests[0].threshold == pytest.approx(100)
    assert e_values[-1] > e_values[0]
    with pytest.raises(BadInput, match="went down"):
        decide(
            stats_of(10, 0),
            stats_of(10, 0),
            state=state,
            bake_elapsed_s=0,
            bake_required_s=0,
            is_last_step=False,
        )


def test_guardrails_need_evidence_not_noise() -> None:
    rails = Guardrails(error_rate=0.05, min_samples=0)
    assert check_guardrails(stats_of(20, 3), rails) == []  # 15% of 20: e-value about 2.6
    breach = check_guardrails(stats_of(400, 60), rails)
    assert [b.metric for b in breach] == ["error_rate"]
    assert breach[0].explain().startswith("error rate 15.00% over 400 requests breaks the limit")
    assert check_guardrails(stats_of(400, 60), Guardrails(error_rate=0.05, min_samples=500)) == []

    slow = [900.0] * 80 + [100.0] * 320  # p95 900 ms
    latency = check_guardrails(stats_of(400, 0, latencies=slow), Guardrails(latency_p95_ms=400))
    assert [b.metric for b in latency] == ["latency_p95_ms"]
    assert latency[0].observed == pytest.approx(900, rel=0.12)  # within its 12% bin
    fine = check_guardrails(
        stats_of(400, 0, latencies=[100.0] * 400), Guardrails(latency_p95_ms=400)
    )
    assert fine == []

    quality = check_guardrails(stats_of(400, 0, q_n=400, q_mean=0.5), Guardrails(quality_score=0.8))
    assert [b.metric for b in quality] == ["quality_score"]
    assert (
        check_guardrails(stats_of(400, 0, q_n=400, q_mean=0.79), Guardrails(quality_score=0.8))
        == []
    )


def test_a_guardrail_breach_rolls_back_even_without_a_regression() -> None:
    equally_bad = stats_of(19_000, 1_900)
    candidate = stats_of(1_000, 100)
    decision = decide(
        equally_bad,
        candidate,
        guardrails=Guardrails(error_rate=0.02),
        bake_elapsed_s=0,
        bake_required_s=0,
        is_last_step=False,
    )
    assert decision.action == "rollback"
    assert not any(t.regression_detected for t in decision.tests)
    assert decision.reasons[0].startswith("guardrail: error rate 10.00%")


def test_quality_and_latency_regressions_are_reported() -> None:
    baseline = stats_of(
        19_000, 190, slow=570, q_n=4_000, q_mean=0.8, latencies=[200.0] * 18_000 + [600.0] * 1_000
    )
    candidate = stats_of(
        1_000, 10, slow=150, q_n=400, q_mean=0.6, latencies=[250.0] * 800 + [700.0] * 200
    )
    _, tests = analyse(AnalysisState(), baseline, candidate)
    by_metric = {t.metric: t for t in tests}
    assert by_metric["latency"].regression_detected
    assert "over 500 ms" in by_metric["latency"].tests
    assert re.search(r"; p95 (\d+) ms vs (\d+) ms;", by_metric["latency"].explain())
    quality = by_metric["quality_score"]
    assert quality.regression_detected and quality.estimate == pytest.approx(-0.2)
    assert quality.ci_low is not None and quality.ci_high is not None
    assert quality.ci_low < -0.2 < quality.ci_high < 0
    assert quality.explain().startswith("quality score: candidate mean 0.600 (n=400) vs baseline")
    assert not by_metric["error_rate"].regression_detected


def test_latency_is_skipped_without_a_slow_threshold_and_bad_arguments_are_refused() -> None:
    plain = VariantStats(requests=100, errors=1)
    _, tests = analyse(AnalysisState(), plain, plain)
    assert [t.metric for t in tests] == ["error_rate", "quality_score"]
    with pytest.raises(BadInput):
        analyse(AnalysisState(), plain, plain, alpha=0)
    with pytest.raises(BadInput):
        analyse(AnalysisState(), plain, plain, comparisons=("throughput",))  # type: ignore[arg-type]
    mixed = VariantStats(requests=10, slow_threshold_ms=300)
    with pytest.raises(BadInput, match="different thresholds"):
        update_state(AnalysisState(), mixed, VariantStats(requests=10, slow_threshold_ms=500))


def test_test_result_is_not_collected_by_pytest() -> None:
    assert TestResult.__test__ is False
