"""Rollouts judged on Prometheus metrics: a real Prometheus scraping a stand-in exporter,
real releases and store; ``advance`` reads counter increases since each step began."""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from releaser.api.gates import run_gate
from releaser.api.releases import create_release
from releaser.api.rollout_status import rollout_status
from releaser.api.rollouts import advance_rollout, service_state, start_rollout
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace
from tests.conftest import gated_release, serve_model_version
from tests.integrations import prometheus_fixture
from tests.integrations.prometheus_fixture import (
    Exporter,
    Prometheus,
    prometheus_binary,
    start_prometheus,
)

# The session fixtures: one Prometheus and one exporter per test process.
exporter = prometheus_fixture.exporter
prometheus = prometheus_fixture.prometheus

pytestmark = [pytest.mark.slow, pytest.mark.prometheus]
SERVICE = "case-triage"


def _metrics_block(url: str, test: str) -> str:
    return (
        "    metrics:\n"
        "      source: prometheus\n"
        "      prometheus:\n"
        f"        url: {url}\n"
        f"        requests: 'stub_requests_total{{test=\"{test}\"}}'\n"
        f"        errors: 'stub_errors_total{{test=\"{test}\"}}'\n"
        f"        latency: 'stub_latency_seconds_bucket{{test=\"{test}\"}}'\n"
        "        timeout_s: 2\n"
    )


@dataclass
class Live:
    """A rollout of ``candidate`` over ``baseline`` whose counts come from Prometheus."""

    root: Path
    test: str
    baseline: str
    candidate: str
    exporter: Exporter
    prometheus: Prometheus
    reasons: list[str] = field(default_factory=list)

    def traffic(self, base_errors: int, cand_errors: int, n: int = 2000) -> None:
        """One step's traffic of each variant, waited for until Prometheus has scraped it."""
        self.exporter.serve(self.test, self.baseline, n, base_errors, 0.04)
        self.exporter.serve(self.test, self.candidate, n, cand_errors, 0.04)
        self.settle()

    def settle(self) -> None:
        """Wait until Prometheus shows the exporter's current request counts."""
        self.prometheus.wait_for(
            f'stub_requests_total{{test="{self.test}"}}',
            {r: self.exporter.value(self.test, r) for r in (self.baseline, self.candidate)},
        )

    def advance(self) -> str:
        """``rollout advance`` now; the action taken (its reasons in ``self.reasons``)."""
        ws = open_workspace(self.root)
        try:
            result = advance_rollout(ws, SERVICE)
        finally:
            ws.close()
        self.reasons = result.decision.reasons
        return result.decision.action


def _live(release_ws: ExampleWorkspace, exporter: Exporter, server: Prometheus) -> Live:
    """Two releases, the first stable; the second's rollout started (no bake times)."""
    root = release_ws.root
    test = uuid.uuid4().hex[:12]
    cfg = root / "releaser.yaml"
    text = re.sub(r"bake_minutes: \d+", "bake_minutes: 0", cfg.read_text(encoding="utf-8"))
    marker = "  case-triage:\n"
    text = text.replace(marker, marker + _metrics_block(server.url, test), 1)
    cfg.write_text(text, encoding="utf-8")
    subprocess.run(["git", "commit", "-qam", "metrics from prometheus"], cwd=root, check=True)
    ws = open_workspace(root)
    r1 = create_release(ws, SERVICE).release.id
    assert run_gate(ws, SERVICE, r1).passed
    start_rollout(ws, SERVICE, r1, initial=True)
    ws.close()
    serve_model_version(root)
    ws = open_workspace(root)
    r2 = gated_release(ws, SERVICE)
    live = Live(root, test, r1, r2, exporter, server)
    # The stable release served before the rollout: none of that is the rollout's evidence.
    exporter.serve(test, r1, 5000, 400, 0.04)
    exporter.serve(test, r2, 0, 0, 0.04)
    live.settle()
    start_rollout(ws, SERVICE, r2)
    ws.close()
    return live


def _store_counts(live: Live) -> tuple[int, int, int, int]:
    ws = open_workspace(live.root)
    try:
        rep = rollout_status(ws, SERVICE)
    finally:
        ws.close()
    assert rep.baseline is not None and rep.candidate is not None
    return rep.baseline.requests, rep.baseline.errors, rep.candidate.requests, rep.candidate.errors


def test_a_healthy_candidate_is_promoted_on_prometheus_evidence(
    release_ws: ExampleWorkspace, exporter: Exporter, prometheus: Prometheus
) -> None:
    live = _live(release_ws, exporter, prometheus)
    actions = []
    for _ in range(4):
        live.traffic(base_errors=10, cand_errors=10)
        actions.append(live.advance())
    assert actions == ["advance", "advance", "advance", "promote"]
    ws = open_workspace(live.root)
    try:
        assert service_state(ws, SERVICE).stable == live.candidate
    finally:
        ws.close()


def test_three_times_the_errors_rolls_back(
    release_ws: ExampleWorkspace, exporter: Exporter, prometheus: Prometheus
) -> None:
    live = _live(release_ws, exporter, prometheus)
    live.traffic(base_errors=8, cand_errors=24)  # 0.4% against 1.2%
    first = live.advance()
    if first != "rollback":  # the sequential test may want a second look's evidence
        live.traffic(base_errors=8, cand_errors=24)
        first = live.advance()
    assert first == "rollback"
    assert any(r.startswith("regression: error rate") for r in live.reasons), live.reasons
    ws = open_workspace(live.root)
    try:
        state = service_state(ws, SERVICE)
        assert state.stable == live.baseline and state.active_rollout is None
    finally:
        ws.close()


def test_counts_stay_exact_over_a_counter_reset(
    release_ws: ExampleWorkspace, exporter: Exporter, prometheus: Prometheus
) -> None:
    live = _live(release_ws, exporter, prometheus)
    live.traffic(base_errors=3, cand_errors=2, n=700)
    assert _store_counts(live) == (700, 3, 700, 2)
    # The candidate's process restarts mid-step and serves 300 more (1 error).
    exporter.restart(live.test, live.candidate)
    live.settle()
    exporter.serve(live.test, live.candidate, 300, 1, 0.04)
    live.settle()
    assert _store_counts(live) == (700, 3, 1000, 3)


def test_prometheus_stopped_mid_rollout_holds_and_says_why(
    release_ws: ExampleWorkspace, exporter: Exporter, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("no prometheus binary (apt-get install prometheus)")
    own = start_prometheus(binary, tmp_path / "own-prometheus", exporter.port)
    try:
        live = _live(release_ws, exporter, own)
        live.traffic(base_errors=10, cand_errors=10)
        assert live.advance() == "advance"
        live.traffic(base_errors=10, cand_errors=10)
    finally:
        own.stop()
    ws = open_workspace(live.root)
    try:
        result = advance_rollout(ws, SERVICE)
        assert result.decision.action == "hold"
        (reason,) = result.decision.reasons
        assert "no evidence" in reason and "stub_requests_total" in reason
        assert service_state(ws, SERVICE).active_rollout is not None
        assert result.rollout.step == 1
        rep = rollout_status(ws, SERVICE)
        assert rep.preview is not None and rep.preview.action == "hold"
        assert any("did not answer the query" in p for p in rep.problems), rep.problems
    finally:
        ws.close()


def test_a_shadow_steps_candidate_figures_come_from_the_store(
    tmp_path: Path, exporter: Exporter, prometheus: Prometheus
) -> None:
    """The candidate serves nobody in a shadow step: its mirrored calls are the gateway's
    (in the store); the baseline's counts still come from Prometheus."""
    from releaser.api.context import utc_now
    from releaser.api.metrics_source import PrometheusMetricsSource
    from releaser.config.metrics import PrometheusMetrics
    from releaser.core import rollout as ro
    from releaser.core.shadow import ShadowPlan
    from releaser.core.stats_aggregates import VariantStats
    from releaser.store import open_store
    from releaser.store.base import MetricDelta

    test = uuid.uuid4().hex[:12]
    steps = [
        ro.StepPlan(
            name="shadow", percent=0, bake_s=0, min_samples=0, shadow=ShadowPlan(percent=50)
        ),
        ro.StepPlan(name="all", percent=100, bake_s=0, min_samples=0),
    ]
    rollout = ro.start(
        rollout_id=f"{test}-1",
        service=SERVICE,
        baseline="rb",
        candidate="rc",
        seed=1,
        steps=steps,
        now=utc_now(),
    )
    exporter.serve(test, "rb", 40, 1, 0.02)
    exporter.serve(test, "rc", 0, 0, 0.02)
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"rb": 40, "rc": 0})
    store = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    mirrored = VariantStats.of(errors=[False] * 9, scores=[1.0] * 8 + [0.0] * 1)
    store.add_metrics([MetricDelta(rollout.id, 0, "candidate", mirrored)])
    spec = PrometheusMetrics(
        url=prometheus.url,
        requests=f'stub_requests_total{{test="{test}"}}',
        errors=f'stub_errors_total{{test="{test}"}}',
        latency=f'stub_latency_seconds_bucket{{test="{test}"}}',
    )
    got = PrometheusMetricsSource(SERVICE, spec, store=store).read(rollout, utc_now())
    assert (got[(0, "baseline")].requests, got[(0, "baseline")].errors) == (40, 1)
    assert got[(0, "candidate")] == mirrored
    store.close()


def test_reading_in_short_windows_gives_the_same_counts(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    """A long rollout is read in windows, each halved while its answer is too large; the
    counts are those of one read (no sample lost or counted twice at the seams)."""
    import time

    from releaser.api.context import utc_now
    from releaser.api.metrics_source import PrometheusMetricsSource
    from releaser.config.metrics import PrometheusMetrics
    from releaser.core import rollout as ro
    from releaser.integrations.prometheus import PrometheusClient, ResponseTooLarge, Series

    test = uuid.uuid4().hex[:12]
    exporter.serve(test, "rb", 100, 1, 0.02)
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"rb": 100})
    steps = [ro.StepPlan(name=f"s{i}", percent=50 * i, bake_s=0, min_samples=0) for i in (1, 2)]
    rollout = ro.start(
        rollout_id=f"{test}-1",
        service=SERVICE,
        baseline="rb",
        candidate="rc",
        seed=1,
        steps=steps,
        now=utc_now(),
    )
    for n in range(6):
        if n == 3:  # the candidate's process restarts once its count was scraped
            prometheus.wait_for(
                f'stub_requests_total{{test="{test}"}}', {"rc": exporter.value(test, "rc")}
            )
            exporter.restart(test, "rc")
        exporter.serve(test, "rb", 10 + n, n % 2, 0.02 * (n + 1))
        exporter.serve(test, "rc", 20 + n, n % 3, 0.03 * (n + 1))
        time.sleep(0.6)
        if n == 2:  # the next step begins once this one's requests were scraped
            prometheus.wait_for(
                f'stub_requests_total{{test="{test}"}}',
                {r: exporter.value(test, r) for r in ("rb", "rc")},
            )
            rollout = ro.advance(rollout, now=utc_now())
    prometheus.wait_for(
        f'stub_requests_total{{test="{test}"}}',
        {r: exporter.value(test, r) for r in ("rb", "rc")},
    )
    now = utc_now()
    spec = PrometheusMetrics(
        url=prometheus.url,
        requests=f'stub_requests_total{{test="{test}"}}',
        errors=f'stub_errors_total{{test="{test}"}}',
        latency=f'stub_latency_seconds_bucket{{test="{test}"}}',
        lookback_s=30,
    )
    whole = PrometheusMetricsSource(SERVICE, spec).read(rollout, now)

    class Counting(PrometheusClient):
        """The real client, counting the answers it found too large."""

        too_large = 0

        def raw_samples(self, selector: str, *, at: float, window_s: float) -> list[Series]:
            try:
                return super().raw_samples(selector, at=at, window_s=window_s)
            except ResponseTooLarge:
                self.too_large += 1
                raise

    small = Counting(prometheus.url, max_bytes=4500)
    pieces = PrometheusMetricsSource(SERVICE, spec, small, chunk_s=4, min_chunk_s=0.1)
    assert pieces.read(rollout, now) == whole
    assert small.too_large > 0
    assert whole[(0, "baseline")].requests == 10 + 11 + 12
    assert sum(whole[(i, "candidate")].requests for i in (0, 1)) == sum(range(20, 26))


def test_no_series_of_the_candidate_release_is_no_evidence(
    exporter: Exporter, prometheus: Prometheus
) -> None:
    """A label holding something else than the release id (or a candidate never scraped)
    must not pass for a candidate without errors: the read says so and advance holds."""
    from releaser.api.context import utc_now
    from releaser.api.metrics_source import NoEvidence, PrometheusMetricsSource
    from releaser.config.metrics import PrometheusMetrics
    from releaser.core import rollout as ro

    test = uuid.uuid4().hex[:12]
    exporter.serve(test, "rb", 50, 0, 0.02)
    exporter.serve(test, "model-v2", 50, 0, 0.02)  # not the candidate's release id
    prometheus.wait_for(f'stub_requests_total{{test="{test}"}}', {"rb": 50, "model-v2": 50})
    steps = [ro.StepPlan(name="all", percent=100, bake_s=0, min_samples=0)]
    rollout = ro.start(
        rollout_id=f"{test}-1",
        service=SERVICE,
        baseline="rb",
        candidate="rc",
        seed=1,
        steps=steps,
        now=utc_now(),
    )
    spec = PrometheusMetrics(
        url=prometheus.url,
        requests=f'stub_requests_total{{test="{test}"}}',
        errors=f'stub_errors_total{{test="{test}"}}',
        latency=f'stub_latency_seconds_bucket{{test="{test}"}}',
    )
    with pytest.raises(NoEvidence, match=r"requests query .* matches no series with release=rc"):
        PrometheusMetricsSource(SERVICE, spec).read(rollout, utc_now())
