"""Paired bootstrap: seeded simulations with stated error rates.

Rows are pairs (baseline right?, candidate right?) drawn from a joint law with
a known true difference in accuracy. Stated rates, checked with 400 seeded
simulations (binomial standard error about 1.1 points at 95%):

- the 95% interval covers the true difference in 91-99% of runs;
- at the non-inferiority boundary (true drop = max_drop) the gate passes in at
  most 5% of runs (nominal 2.5%, one-sided);
- with no true change, n = 2,000 and max_drop 0.03, it passes in at least 90%.
"""

from __future__ import annotations

import numpy as np
import pytest

from releaser.core.bootstrap import paired_bootstrap

SIMS = 400


def _pairs(rng: np.random.Generator, n: int, p10: float, p01: float, p11: float):
    """Baseline and candidate 0/1 scores; true delta = p01 - p10."""
    u = rng.random(n)
    base = (u < p11 + p10).astype(float)
    cand = ((u < p11) | ((u >= p11 + p10) & (u < p11 + p10 + p01))).astype(float)
    return cand, base


def test_same_seed_same_interval_and_identical_scores_give_zero_width() -> None:
    rng = np.random.default_rng(1)
    c, b = _pairs(rng, 500, 0.05, 0.07, 0.8)
    one = paired_bootstrap(c, b, samples=500, seed=3)
    assert one == paired_bootstrap(c, b, samples=500, seed=3)
    assert one != paired_bootstrap(c, b, samples=500, seed=4)
    same = paired_bootstrap(b, b, samples=500, seed=3)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)


def test_coverage_of_the_true_difference() -> None:
    rng = np.random.default_rng(20240601)
    true_delta = 0.04 - 0.07
    covered = 0
    for sim in range(SIMS):
        c, b = _pairs(rng, 400, p10=0.07, p01=0.04, p11=0.8)
        ci = paired_bootstrap(c, b, samples=500, seed=sim)
        covered += ci.low <= true_delta <= ci.high
    assert 0.91 <= covered / SIMS <= 0.99


def test_false_pass_rate_at_the_boundary_is_at_most_five_percent() -> None:
    rng = np.random.default_rng(7)
    max_drop = 0.02
    passed = 0
    for sim in range(SIMS):
        c, b = _pairs(rng, 600, p10=0.05, p01=0.03, p11=0.85)  # true drop exactly 0.02
        passed += paired_bootstrap(c, b, samples=500, seed=sim).low >= -max_drop
    assert passed / SIMS <= 0.05


def test_power_with_no_change_and_enough_rows() -> None:
    rng = np.random.default_rng(11)
    passed = 0
    for sim in range(SIMS // 4):
        c, b = _pairs(rng, 2000, p10=0.04, p01=0.04, p11=0.85)
        passed += paired_bootstrap(c, b, samples=500, seed=sim).low >= -0.03
    assert passed / (SIMS // 4) >= 0.90


def test_latency_percentile_difference_ignores_rows_without_a_measure() -> None:
    base = np.array([10.0] * 95 + [100.0] * 5 + [np.nan])
    cand = base + 5.0
    ci = paired_bootstrap(cand, base, samples=300, seed=0, percentile=95.0)
    assert ci.delta == pytest.approx(5.0)
    assert ci.low <= 5.0 <= ci.high


def test_unpaired_input_is_refused() -> None:
    with pytest.raises(ValueError, match="paired"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


def test_value_counts_and_row_indices_give_the_same_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0/1 scores take the multinomial shortcut; forcing row-index resampling on the
    # same data must give the same interval up to bootstrap noise (4,000 resamples:
    # the percentile bounds move by well under 0.005 between seeds).
    import releaser.core.bootstrap as bootstrap

    rng = np.random.default_rng(5)
    c, b = _pairs(rng, 1000, p10=0.06, p01=0.04, p11=0.8)
    counts = paired_bootstrap(c, b, samples=4000, seed=1)
    monkeypatch.setattr(bootstrap, "_FEW_VALUES", 0)
    rows = paired_bootstrap(c, b, samples=4000, seed=1)
    assert counts.delta == rows.delta
    assert counts.low == pytest.approx(rows.low, abs=0.005)
    assert counts.high == pytest.approx(rows.high, abs=0.005)
