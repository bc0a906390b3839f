"""The post-promotion guard on Prometheus evidence: a real Prometheus scraping the stand-in
exporter, real releases and store. The rollout is promoted on Prometheus counts; the guard
then reads the stable release's counter increases since its last check.

Checks run at a ``now`` one check interval after the promotion (the guard's interval is at
least a minute): every sample scraped since the promotion is in that one window."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from releaser.api.audit import audit_log
from releaser.api.rollout_status import rollout_status
from releaser.api.rollouts import advance_rollout, service_state
from releaser.api.workspace import open_workspace
from releaser.core.guard import GuardState
from releaser.demo.workspace import ExampleWorkspace
from tests.api.test_metrics_source import SERVICE, Live, _live
from tests.integrations import prometheus_fixture
from tests.integrations.prometheus_fixture import (
    Exporter,
    Prometheus,
    prometheus_binary,
    start_prometheus,
)

exporter = prometheus_fixture.exporter
prometheus = prometheus_fixture.prometheus

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


def _promoted(release_ws: ExampleWorkspace, exporter: Exporter, server: Prometheus) -> Live:
    """The candidate promoted on healthy Prometheus evidence (0.5% errors on both sides)."""
    live = _live(release_ws, exporter, server)
    actions = []
    while not actions or actions[-1] != "promote":
        assert len(actions) < 6, actions
        live.traffic(base_errors=10, cand_errors=10)
        actions.append(live.advance())
    return live


def _guard(live: Live) -> GuardState:
    ws = open_workspace(live.root)
    try:
        guard = service_state(ws, SERVICE).guard
    finally:
        ws.close()
    assert guard is not None
    return guard


def _after(guard: GuardState, seconds: float) -> str:
    start = datetime.fromisoformat(guard.started_at.replace("Z", "+00:00"))
    return (start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stable_serves(live: Live, requests: int, errors: int) -> None:
    """The promoted release serves everyone; wait until Prometheus has scraped it."""
    live.exporter.serve(live.test, live.candidate, requests, errors, 0.04)
    live.settle()


def test_the_previous_releases_numbers_come_from_prometheus(
    release_ws: ExampleWorkspace, exporter: Exporter, prometheus: Prometheus
) -> None:
    """At promotion the guard takes the previous release's counts during the rollout from
    where the analysis read them: 10 errors in 2,000 requests per step (the store has none)."""
    live = _promoted(release_ws, exporter, prometheus)
    guard = _guard(live)
    refs = [r for r in guard.references if r.source == "previous release"]
    assert refs and refs[0].metric == "error_rate", guard.references
    served = int(exporter.value(live.test, live.baseline)) - 5000  # before the rollout
    assert refs[0].detail.startswith(f"{served // 200}/{served} in the rollout"), refs[0].detail


def test_a_healthy_stable_release_is_watched_on_its_increase_since_the_promotion(
    release_ws: ExampleWorkspace, exporter: Exporter, prometheus: Prometheus
) -> None:
    live = _promoted(release_ws, exporter, prometheus)
    guard = _guard(live)
    _stable_serves(live, 3000, 12)  # 0.4%: as before
    ws = open_workspace(live.root)
    try:
        result = advance_rollout(ws, SERVICE, now=_after(guard, guard.check_s + 1))
        assert result.decision.action == "hold", result.decision.reasons
        assert result.decision.reasons[-1].endswith("no breach confirmed")
        after = service_state(ws, SERVICE).guard
    finally:
        ws.close()
    assert after is not None and after.batches == 1
    # Exactly what was served since the promotion: none of the canary's requests.
    assert (after.last.requests, after.last.errors) == (3000, 12)


def test_a_degraded_stable_release_is_rolled_back_on_prometheus_evidence(
    release_ws: ExampleWorkspace, exporter: Exporter, prometheus: Prometheus
) -> None:
    live = _promoted(release_ws, exporter, prometheus)
    guard = _guard(live)
    _stable_serves(live, 3000, 180)  # 6% errors, against 0.5% in the rollout
    ws = open_workspace(live.root)
    try:
        result = advance_rollout(ws, SERVICE, now=_after(guard, guard.check_s + 1))
        assert result.decision.action == "rollback", result.decision.reasons
        assert any(r.startswith("guard breach: error rate") for r in result.decision.reasons)
        state = service_state(ws, SERVICE)
        assert state.stable == live.baseline and state.guard is None
        event = next(e for e in audit_log(ws, limit=5) if e.action == "guard.rollback")
        (errors,) = [e for e in event.after["guard"]["evidence"] if e["metric"] == "error_rate"][:1]
        assert (errors["requests"], errors["events"]) == (3000, 180)
    finally:
        ws.close()


def test_prometheus_down_holds_the_guard_with_a_reason(
    release_ws: ExampleWorkspace, exporter: Exporter, tmp_path: Path
) -> None:
    """No evidence is no check: never a rollback on missing data, and the guard's state is
    left as it was, so the next look reads from the same last check."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("no prometheus binary (apt-get install prometheus)")
    own = start_prometheus(binary, tmp_path / "own-prometheus", exporter.port)
    try:
        live = _promoted(release_ws, exporter, own)
        guard = _guard(live)
        _stable_serves(live, 3000, 600)  # 20% errors: it would breach, were it seen
    finally:
        own.stop()
    now = _after(guard, guard.check_s + 1)
    ws = open_workspace(live.root)
    try:
        result = advance_rollout(ws, SERVICE, now=now)
        assert result.decision.action == "hold"
        (reason,) = result.decision.reasons
        assert reason.startswith("no evidence, so no guard check this time")
        assert "did not answer the query" in reason and "stub_requests_total" in reason
        state = service_state(ws, SERVICE)
        assert state.stable == live.candidate and state.guard == guard
        rep = rollout_status(ws, SERVICE, now=now)
        assert rep.guard is not None and rep.guard.reasons == [reason]
        assert not [e for e in audit_log(ws, limit=3) if e.action.startswith("guard.")]
    finally:
        ws.close()


def test_consecutive_windows_of_one_release_partition_its_counts(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    """What the guard reads check after check: the increase in (last check, now], each
    window exact, a restart of the release's process in between included."""
    import time

    from releaser.api.metrics_source import NoEvidence, PrometheusMetricsSource
    from releaser.config.metrics import PrometheusMetrics

    test = uuid.uuid4().hex[:12]
    selector = f'stub_requests_total{{test="{test}"}}'
    spec = PrometheusMetrics(
        url=prometheus.url,
        requests=selector,
        errors=f'stub_errors_total{{test="{test}"}}',
        latency=f'stub_latency_seconds_bucket{{test="{test}"}}',
    )
    source = PrometheusMetricsSource(SERVICE, spec)
    exporter.serve(test, "rs", 500, 5, 0.02)  # served before the promotion
    exporter.serve(test, "other", 70, 7, 0.02)  # another release: never counted
    prometheus.wait_for(selector, {"rs": 500, "other": 70})
    t0 = time.time()
    exporter.serve(test, "rs", 300, 3, 0.02)
    prometheus.wait_for(selector, {"rs": 800})
    t1 = time.time()
    exporter.restart(test, "rs")
    prometheus.wait_for(selector, {"rs": 0})
    exporter.serve(test, "rs", 200, 4, 0.3)
    prometheus.wait_for(selector, {"rs": 200})
    t2 = time.time()
    first, second = source.read_release("rs", t0, t1), source.read_release("rs", t1, t2)
    assert (first.requests, first.errors) == (300, 3)
    assert (second.requests, second.errors) == (200, 4)
    assert second.latency.count_above(250.0) == 200 and first.latency.count_above(250.0) == 0
    whole = source.read_release("rs", t0, t2)
    assert (whole.requests, whole.errors) == (500, 7)
    with pytest.raises(NoEvidence, match=r"matches no series with release=rx"):
        source.read_release("rx", t0, t2)
