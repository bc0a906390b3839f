"""The verdict endpoint over real HTTP: the gateway of a real workspace under uvicorn.

Argo's ``web`` analysis POSTs ``/v1/rollouts/<service>/verdict`` with the step it is at;
releaser answers with the decision ``rollout advance`` takes and records it in the store.
The rollout plan's bake times are set to zero here, so the real clock (which the endpoint
uses, as Argo cannot send one) meets them; samples are written as the router flushes them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from releaser.api.workspace import Workspace, open_workspace
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.demo.workspace import ExampleWorkspace, copy_workspace
from releaser.serve import gateway_for
from releaser.store.base import MetricDelta

from .conftest import Upstream
from .rollout_ws import SERVICE, add_deploy, two_releases

pytestmark = pytest.mark.slow

VERDICT = f"/v1/rollouts/{SERVICE}/verdict"


def _no_bake(root: Path) -> None:
    cfg = root / "releaser.yaml"
    text = cfg.read_text()
    for minutes in ("60", "120", "240"):
        text = text.replace(f"bake_minutes: {minutes}", "bake_minutes: 0")
    cfg.write_text(text)
    subprocess.run(["git", "commit", "-qam", "no bake time"], cwd=root, check=True)


def _feed(ws: Workspace, *, candidate_errors: int = 50) -> None:
    """5000 requests a side on the live step; the baseline fails 1%, the candidate as given."""
    from releaser.api.state import service_state

    rollout_id = service_state(ws, SERVICE).active_rollout
    assert rollout_id is not None
    step = ws.store.get("rollout", rollout_id)
    assert step is not None
    latency = LatencyHistogram.of([150.0] * 5000)

    def stats(errors: int) -> VariantStats:
        return VariantStats(requests=5000, errors=errors, latency=latency)

    at = step.value["step"]
    ws.store.add_metrics(
        [
            MetricDelta(rollout_id, at, "baseline", stats(50)),
            MetricDelta(rollout_id, at, "candidate", stats(candidate_errors)),
        ]
    )


@pytest.fixture
def live(
    release_ws: ExampleWorkspace, cli: Any, upstreams: tuple[Upstream, Upstream]
) -> Iterator[tuple[ExampleWorkspace, str]]:
    """A workspace mid-rollout (release 2 at its first step), with upstreams for the gateway."""
    base, cand = upstreams
    add_deploy(
        release_ws.root,
        f"""
deploy:
  upstreams: {{baseline: "{base.url}", candidate: "{cand.url}"}}
""",
    )
    _no_bake(release_ws.root)
    _, r2 = two_releases(release_ws.root, cli)
    yield release_ws, r2


def _events(ws: Workspace) -> list[str]:
    return [summary[3] for summary in ws.store.event_summaries()]  # (seq, at, actor, action..


def test_the_verdict_is_the_decision_rollout_advance_takes_and_is_recorded(
    live: tuple[ExampleWorkspace, str], cli: Any, serve_app: Any, tmp_path: Path
) -> None:
    example, r2 = live
    ws = open_workspace(example.root)
    _feed(ws)
    twin = copy_workspace(example, tmp_path / "twin")  # the same store, to ask the CLI
    try:
        with gateway_for(ws, SERVICE) as gateway:
            running = serve_app(gateway)
            with httpx.Client(base_url=running.url, timeout=30) as client:
                before = ws.store.audit_head()[0]
                r = client.post(VERDICT, json={"step": 0, "release": r2})
                assert r.status_code == 200, r.text
                verdict = r.json()
        by_cli = cli("rollout", "advance", SERVICE, "--json", cwd=twin.root)
        assert by_cli.code == 0, by_cli.err
        taken = json.loads(by_cli.out)
        assert verdict["decision"] == taken["decision"]["action"] == "advance"
        assert verdict["step"] == 0 and verdict["step_name"] == "internal"
        assert verdict["service"] == SERVICE and verdict["written"] is True
        # the store records the same transition, with its audit event, as the CLI's copy
        assert ws.store.audit_head()[0] > before
        twin_ws = open_workspace(twin.root)
        try:
            assert _events(ws)[-1] == "rollout.advance" == _events(twin_ws)[-1]
        finally:
            twin_ws.close()
        rec = ws.store.get("rollout", verdict["rollout"])
        assert rec is not None and rec.value["step"] == taken["rollout"]["step"] == 1
    finally:
        ws.close()


def test_polling_again_never_judges_the_next_step_and_a_hold_writes_nothing(
    live: tuple[ExampleWorkspace, str], serve_app: Any
) -> None:
    example, r2 = live
    ws = open_workspace(example.root)
    _feed(ws)
    try:
        with gateway_for(ws, SERVICE) as gateway:
            running = serve_app(gateway)
            with httpx.Client(base_url=running.url, timeout=30) as client:
                first = client.post(VERDICT, json={"step": 0, "release": r2}).json()
                assert first["decision"] == "advance"
                head = ws.store.audit_head()
                # Argo polls step 0 once more before it moves on: same answer, no write
                again = client.post(VERDICT, json={"step": 0, "release": r2}).json()
                assert again["decision"] == "advance" and again["written"] is False
                assert "already advanced past step 0" in again["reasons"][0]
                assert ws.store.audit_head() == head
                # step 1 has no samples yet: hold (inconclusive for Argo), then nothing new
                hold = client.post(VERDICT, json={"step": "1", "release": r2}).json()
                assert hold["decision"] == "hold" and hold["step"] == 1
                head = ws.store.audit_head()
                versions = ws.store.get("service", SERVICE)
                for _ in range(3):
                    polled = client.post(VERDICT, json={"step": 1, "release": r2}).json()
                    assert polled["decision"] == "hold" and polled["written"] is False
                assert ws.store.audit_head() == head
                assert ws.store.get("service", SERVICE) == versions
                # Argo ahead of releaser: hold, nothing written
                ahead = client.post(VERDICT, json={"step": 3}).json()
                assert ahead["decision"] == "hold" and ahead["written"] is False
                # a POST without a step is rollout advance itself: a hold here too
                plain = client.post(VERDICT).json()
                assert plain["decision"] == "hold" and plain["written"] is False
                # a GET previews and never writes
                peek = client.get(VERDICT).json()
                assert peek["decision"] == "hold" and peek["written"] is False
                assert ws.store.audit_head() == head
    finally:
        ws.close()


def test_an_error_regression_gets_a_rollback_verdict_recorded_once(
    live: tuple[ExampleWorkspace, str], serve_app: Any
) -> None:
    example, r2 = live
    ws = open_workspace(example.root)
    _feed(ws, candidate_errors=1000)  # 20% errors on the candidate: past the 2% guardrail
    try:
        with gateway_for(ws, SERVICE) as gateway:
            running = serve_app(gateway)
            with httpx.Client(base_url=running.url, timeout=30) as client:
                r = client.post(VERDICT, json={"step": 0, "release": r2})
                assert r.status_code == 200
                verdict = r.json()
                assert verdict["decision"] == "rollback", verdict
                assert _events(ws)[-1] == "rollout.rollback"
                rec = ws.store.get("rollout", verdict["rollout"])
                assert rec is not None and rec.value["status"] == "rolled_back"
                head = ws.store.audit_head()
                again = client.post(VERDICT, json={"step": 0, "release": r2}).json()
                assert again["decision"] == "rollback" and again["written"] is False
                assert ws.store.audit_head() == head
    finally:
        ws.close()


def test_unknown_service_and_bad_requests_get_json_errors(
    live: tuple[ExampleWorkspace, str], serve_app: Any
) -> None:
    example, _ = live
    ws = open_workspace(example.root)
    try:
        with gateway_for(ws, SERVICE) as gateway:
            running = serve_app(gateway)
            head = ws.store.audit_head()
            with httpx.Client(base_url=running.url, timeout=30) as client:
                other = client.post("/v1/rollouts/not-ours/verdict", json={"step": 0})
                assert other.status_code == 404
                assert "does not serve 'not-ours'" in other.json()["error"]
                assert client.post("/v1/rollouts/x/other").status_code == 404
                bad = client.post(VERDICT, content=b"[1", headers={"content-type": "x"})
                assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
                step = client.post(VERDICT, json={"step": -1})
                assert step.status_code == 400 and "step" in step.json()["error"]
                big = client.post(VERDICT, content=b" " * 10_000)
                assert big.status_code == 413
                assert client.put(VERDICT).status_code == 405
            assert ws.store.audit_head() == head
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("candidate_errors", "code", "action"), [(50, 0, "advance"), (1000, 1, "rollback")]
)
def test_the_job_variant_runs_rollout_advance_and_exits_on_the_decision(
    live: tuple[ExampleWorkspace, str], candidate_errors: int, code: int, action: str
) -> None:
    """The AnalysisTemplate's Job command, run for real: 0 on advance, 1 on rollback."""
    from releaser.config.deploy import AnalysisSpec, KubernetesSpec
    from releaser.integrations.k8s_analysis import analysis_template

    example, _ = live
    ws = open_workspace(example.root)
    try:
        _feed(ws, candidate_errors=candidate_errors)
        k8s = KubernetesSpec(analysis=AnalysisSpec(provider="job", interval_s=10))
        template = analysis_template(SERVICE, ws.config.service(SERVICE), k8s, "ns", {}, [])
        container = template["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"]
        command = container["containers"][0]["command"]
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", str(example.root)),
            "RELEASER_STORE": ws.store_url,  # what the Secret holds on a cluster
        }
        done = subprocess.run(
            command, cwd=example.root, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == code, done.stderr
        assert done.stdout.strip() == f"releaser: {action}"
        assert _events(ws)[-1] == f"rollout.{action}"
    finally:
        ws.close()


def test_a_verdict_stuck_on_the_store_is_bounded_and_the_gateway_keeps_answering(
    live: tuple[ExampleWorkspace, str], serve_app: Any
) -> None:
    """Another process holds the store's write lock: 504, /healthz still answers, and the
    verdict lands once, when the lock is released."""
    example, r2 = live
    ws = open_workspace(example.root)
    _feed(ws)
    blocker = sqlite3.connect(example.root / ".releaser" / "state.db", isolation_level=None)
    try:
        with gateway_for(ws, SERVICE) as gateway:
            assert gateway.verdict is not None
            gateway.verdict.timeout_s = 0.5
            running = serve_app(gateway)
            with httpx.Client(base_url=running.url, timeout=30) as client:
                blocker.execute("BEGIN IMMEDIATE")  # the write lock, as a busy writer holds it
                stuck = client.post(VERDICT, json={"step": 0, "release": r2})
                assert stuck.status_code == 504 and "ask again" in stuck.json()["error"]
                assert client.get("/healthz").status_code == 200  # the event loop is free
                queued = client.post(VERDICT, json={"step": 0, "release": r2})
                assert queued.status_code == 504 and "still running" in queued.json()["error"]
                blocker.execute("ROLLBACK")
                gateway.verdict.timeout_s = 30
                after = client.post(VERDICT, json={"step": 0, "release": r2}).json()
                # the stuck call advanced the rollout once the lock was free; this one sees it
                assert after["decision"] == "advance" and after["written"] is False
        assert _events(ws).count("rollout.advance") == 1
    finally:
        blocker.close()
        ws.close()
