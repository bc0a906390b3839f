"""The post-promotion guard's rule, by seeded simulation.

Healthy traffic: the promoted release fails as often as the previous one did (0.3% of
requests; the previous release's 100,000 rollout requests drawn at the same rate), the
SLO allows 1%; a 24 h window checked every 5 minutes (288 checks), alpha 0.01.

Observed when this was written (the seeds below; ``bench/bench_guard.py`` has more runs):

- false rollbacks: 0 of 400 healthy windows (200 at 600 requests per check, 200 at 60),
  against the 1% (4 of 400) that the test holds the rule to;
- 5x the errors from the promotion: 60/60 detected, median 15 min, p95 20 min;
- 2x the errors: 60/60 detected, median 2.5 h, p95 5.7 h, latest 6.8 h;
- 2x the errors from hour 12 on (a drift): 40/40 detected, median 2.5 h after its onset.
"""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from releaser.config.service import GuardPlan
from releaser.core.guard import (
    GuardCounts,
    GuardState,
    guard_metrics_id,
    observe,
    rate_upper_bound,
    start_guard,
)
from releaser.errors import ConfigError

T0 = datetime(2030, 1, 1, tzinfo=UTC)
BASE_RATE = 0.003
SLO = 0.01
PREVIOUS = 100_000
"""The previous release's requests during the rollout (a few days at a few requests/s)."""


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _guard(rng: np.random.Generator, *, alpha: float = 0.01) -> GuardState:
    previous = GuardCounts(requests=PREVIOUS, errors=int(rng.binomial(PREVIOUS, BASE_RATE)))
    return start_guard(
        rollout_id="svc-1",
        release="new",
        previous="old",
        now=_iso(T0),
        window_s=24 * 3600,
        check_s=300,
        alpha=alpha,
        slo_rates={"error_rate": SLO},
        previous_counts=previous,
        slow_threshold_ms=None,
    )


def _window(seed: int, per_check: int, factor: float = 1.0, onset_check: int = 0) -> int | None:
    """Run one 24 h window; the minute of the breach (from the onset), or None."""
    rng = np.random.default_rng(seed)
    state = _guard(rng)
    requests = errors = 0
    for k in range(1, 289):
        rate = BASE_RATE * (factor if k > onset_check else 1.0)
        requests += per_check
        errors += int(rng.binomial(per_check, rate))
        check = observe(
            state,
            GuardCounts(requests=requests, errors=errors),
            _iso(T0 + timedelta(minutes=5 * k)),
        )
        state = check.state
        if check.verdict == "breach":
            return 5 * (k - onset_check)
    return None


@pytest.mark.slow
def test_healthy_windows_are_rarely_rolled_back() -> None:
    fired = [s for s in range(200) if _window(1000 + s, 600) is not None]
    fired += [s for s in range(200) if _window(5000 + s, 60) is not None]
    assert len(fired) <= 4, f"{len(fired)} false rollbacks of 400 healthy windows"


@pytest.mark.slow
def test_five_times_the_errors_is_caught_within_half_an_hour() -> None:
    minutes = [_window(2000 + s, 600, 5.0) for s in range(60)]
    assert all(m is not None for m in minutes)
    found = sorted(m for m in minutes if m is not None)
    assert found[int(0.95 * len(found)) - 1] <= 30, found


@pytest.mark.slow
def test_twice_the_errors_is_caught_within_six_hours() -> None:
    minutes = [_window(3000 + s, 600, 2.0) for s in range(60)]
    assert all(m is not None for m in minutes), minutes
    found = [m for m in minutes if m is not None]
    assert statistics.median(found) <= 6 * 60, sorted(found)


@pytest.mark.slow
def test_a_drift_that_starts_late_is_not_diluted_by_the_healthy_hours() -> None:
    minutes = [_window(4000 + s, 600, 2.0, onset_check=144) for s in range(40)]
    assert all(m is not None for m in minutes), minutes


def test_the_upper_bound_covers_the_true_rate() -> None:
    rng = np.random.default_rng(7)
    misses = sum(
        rate_upper_bound(int(rng.binomial(2000, 0.01)), 2000, 0.05) < 0.01 for _ in range(400)
    )
    assert misses <= 0.05 * 400 * 1.5  # binomial noise on 400 draws
    assert rate_upper_bound(0, 1000, 0.01) == pytest.approx(math.log(100) / 1000, rel=0.02)
    assert rate_upper_bound(0, 0, 0.01) == 1.0


def test_a_look_within_the_interval_changes_nothing() -> None:
    state = _guard(np.random.default_rng(1))
    counts = GuardCounts(requests=600, errors=2)
    first = observe(state, counts, _iso(T0 + timedelta(minutes=5)))
    assert first.verdict == "watching" and first.state.batches == 1
    again = observe(
        first.state, GuardCounts(requests=700, errors=50), _iso(T0 + timedelta(minutes=9))
    )
    assert again.state == first.state and again.verdict == "watching"
    early = observe(state, counts, _iso(T0 + timedelta(minutes=1)))
    assert early.verdict == "waiting" and early.state == state


def test_the_guard_ends_with_its_window() -> None:
    state = _guard(np.random.default_rng(1))
    assert state.max_batches == 288
    assert state.time_left_s(_iso(T0 + timedelta(hours=23))) == 3600
    check = observe(
        state, GuardCounts(requests=10**6, errors=10**5), _iso(T0 + timedelta(hours=24))
    )
    assert check.verdict == "ended" and check.state == state


def test_counts_that_go_backwards_start_a_fresh_batch() -> None:
    state = _guard(np.random.default_rng(1))
    state = observe(
        state, GuardCounts(requests=6000, errors=18), _iso(T0 + timedelta(minutes=5))
    ).state
    check = observe(state, GuardCounts(requests=600, errors=1), _iso(T0 + timedelta(minutes=10)))
    assert check.verdict == "watching" and check.state.last.requests == 600


def test_references_come_from_the_slo_and_the_previous_release() -> None:
    state = start_guard(
        rollout_id="svc-1",
        release="new",
        previous="old",
        now=_iso(T0),
        window_s=3600,
        check_s=300,
        alpha=0.01,
        slo_rates={"error_rate": 0.01, "slow_rate": 0.05},
        previous_counts=GuardCounts(requests=1000, errors=3, slow=20),
        slow_threshold_ms=800.0,
    )
    names = [r.name for r in state.references]
    assert names == [
        "error_rate vs slo",
        "slow_rate vs slo",
        "error_rate vs previous release",
        "slow_rate vs previous release",
    ]
    assert state.references[2].rate > 0.003  # an upper bound, not the point estimate
    none = start_guard(
        rollout_id="svc-1",
        release="new",
        previous="old",
        now=_iso(T0),
        window_s=3600,
        check_s=300,
        alpha=0.01,
        slo_rates={},
        previous_counts=None,
        slow_threshold_ms=None,
    )
    assert none.references == ()
    assert "no requests counted" in observe(none, GuardCounts(), _iso(T0)).reasons[0]
    assert "no SLO" in observe(none, GuardCounts(requests=5), _iso(T0)).reasons[0]
    assert (
        observe(
            none, GuardCounts(requests=100, errors=100), _iso(T0 + timedelta(minutes=5))
        ).verdict
        == "watching"
    )
    assert guard_metrics_id("svc-1") == "svc-1.guard"


def test_a_bad_guard_in_releaser_yaml_is_named_with_its_line(tmp_path: Path) -> None:
    from releaser.config import load_config
    from releaser.config.template import render_init_template

    text = render_init_template("council-casework", "case-triage")
    anchor = "    rollout:\n      alpha: 0.01\n"
    assert text.count(anchor) == 1
    bad = "      guard: {window_hours: 0.05, check_minutes: 5}\n"
    path = tmp_path / "releaser.yaml"
    path.write_text(text.replace(anchor, anchor + bad), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = err.value.problems
    assert len(problems) == 1, [p.render() for p in problems]
    assert "guard" in problems[0].path and "does not fit" in problems[0].message
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[problems[0].line - 1].strip().startswith("guard:")
    path.write_text(text.replace(anchor, anchor + "      guard: {window_hours: 48}\n"))
    assert load_config(path).service("case-triage").rollout.guard.window_hours == 48


def test_guard_config_is_validated() -> None:
    assert GuardPlan().window_hours == 24 and GuardPlan().check_minutes == 5
    with pytest.raises((ConfigError, ValueError), match="does not fit"):
        GuardPlan(window_hours=0.01, check_minutes=5)
    with pytest.raises(ValueError):
        GuardPlan(window_hours=1000)
    assert GuardPlan(window_hours=0).window_hours == 0  # off
