"""Rollouts end to end: real store, real releases, traffic simulated through the router SDK."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from releaser.api.audit import audit_log, verify_audit
from releaser.api.gates import run_gate
from releaser.api.releases import create_release
from releaser.api.rollout_status import rollout_status
from releaser.api.rollouts import advance_rollout, service_state, start_rollout
from releaser.api.workspace import Workspace, open_workspace
from releaser.demo.traffic import drive_rollout, make_users
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import BadInput, NotFound

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _candidate_release(root: Path, ws: Workspace, version: int) -> str:
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace("alias: champion", f"version: {version}", 1), encoding="utf-8")
    subprocess.run(["git", "commit", "-qam", f"serve model v{version}"], cwd=root, check=True)
    ws.close()
    fresh = open_workspace(root)
    rid = create_release(fresh, SERVICE).release.id
    fresh.close()
    return rid


def _run(root: Path, rates: dict[str, float]) -> tuple[list[str], dict]:
    ws = open_workspace(root)
    users = make_users(20_000, seed=1)
    driven = drive_rollout(ws, SERVICE, error_rates=rates, start=T0, users=users)
    return driven.actions, {"ws": ws, "candidates": driven.candidates_by_step}


@pytest.fixture
def rollout_ws(release_ws: ExampleWorkspace) -> tuple[Path, str, str]:
    root = release_ws.root
    ws = open_workspace(root)
    r1 = create_release(ws, SERVICE).release.id
    with pytest.raises(BadInput, match="no stable release") as err:
        start_rollout(ws, SERVICE, r1, now=_iso(T0))
    assert err.value.hint is not None and "--initial" in err.value.hint
    assert run_gate(ws, SERVICE, r1).passed
    start_rollout(ws, SERVICE, r1, initial=True, now=_iso(T0))
    r2 = _candidate_release(root, ws, 2)
    ws = open_workspace(root)
    assert run_gate(ws, SERVICE, r2).passed
    start_rollout(ws, SERVICE, r2, now=_iso(T0))
    with pytest.raises(BadInput, match="already has rollout"):
        start_rollout(ws, SERVICE, r2, now=_iso(T0))
    ws.close()
    return root, r1, r2


def test_healthy_candidate_walks_every_step_to_promotion(rollout_ws) -> None:
    root, r1, r2 = rollout_ws
    decisions, info = _run(root, {"baseline": 0.01, "candidate": 0.01, "stable": 0.01})
    ws = info["ws"]
    try:
        assert decisions[-1] == "promote", decisions
        assert decisions.count("advance") == 3
        assert "rollback" not in decisions
        state = service_state(ws, SERVICE)
        assert state.stable == r2 and state.active_rollout is None
        assert state.known_good == [r1, r2]
        cands = info["candidates"]
        assert cands["canary-5"] <= cands["canary-25"], "widening moved users out"
        assert len(cands["canary-5"]) < len(cands["canary-25"])
        actions = [e.action for e in audit_log(ws)]
        assert actions.count("rollout.advance") == 3 and "rollout.promote" in actions
        assert ws.models.get_alias("case-triage", "production") == 2
        assert verify_audit(ws).ok
        with pytest.raises(NotFound, match="no rollout in progress"):
            advance_rollout(ws, SERVICE)
    finally:
        ws.close()


def test_three_times_the_errors_is_rolled_back_at_the_first_step(rollout_ws) -> None:
    root, r1, _r2 = rollout_ws
    decisions, info = _run(root, {"baseline": 0.01, "candidate": 0.03, "stable": 0.01})
    ws = info["ws"]
    try:
        assert decisions[-1] == "rollback", decisions
        assert "advance" not in decisions, "it should stop at the first step"
        state = service_state(ws, SERVICE)
        assert state.stable == r1 and state.active_rollout is None
        rollback = [e for e in audit_log(ws) if e.action == "rollout.rollback"]
        assert len(rollback) == 1
        evidence = rollback[0].after
        assert evidence["decision"] == "rollback" and evidence["step"] == "internal"
        assert any("error" in reason for reason in evidence["reasons"])
        rep = rollout_status(ws, SERVICE)
        assert rep.rollout is not None and rep.rollout.status == "rolled_back"
        assert verify_audit(ws).ok
    finally:
        ws.close()


def _edited_rollout(
    release_ws: ExampleWorkspace, old: str, new: str, message: str
) -> tuple[Path, str, str]:
    """Edit releaser.yaml (``old`` -> ``new``) and commit; then release 1 stable and
    release 2 started at its first step, both pinning the edited plan."""
    root = release_ws.root
    cfg = root / "releaser.yaml"
    text = cfg.read_text()
    assert old in text
    cfg.write_text(text.replace(old, new, 1))
    subprocess.run(["git", "commit", "-qam", message], cwd=root, check=True)
    ws = open_workspace(root)
    r1 = create_release(ws, SERVICE).release.id
    assert run_gate(ws, SERVICE, r1).passed
    start_rollout(ws, SERVICE, r1, initial=True, now=_iso(T0))
    r2 = _candidate_release(root, ws, 2)
    ws = open_workspace(root)
    assert run_gate(ws, SERVICE, r2).passed
    start_rollout(ws, SERVICE, r2, now=_iso(T0))
    ws.close()
    return root, r1, r2


def _shadow_rollout(release_ws: ExampleWorkspace) -> tuple[Path, str, str]:
    """Release 1 stable, release 2 started at a shadow step (min_agreement 0.9)."""
    first = "        - name: internal\n"
    step = (
        "        - name: shadow\n          percent: 0\n          min_samples: 100\n"
        "          shadow: {percent: 10, min_agreement: 0.9}\n"
    )
    return _edited_rollout(release_ws, first, step + first, "shadow step")


def _mirrored(ws: Workspace, rollout_id: str, step: int, n: int, agree: float) -> None:
    """n baseline requests and n mirrored candidate calls with agreement scores."""
    from releaser.core.stats_aggregates import VariantStats
    from releaser.store.base import MetricDelta

    ok = [False] * n
    scores = [1.0 if i < agree * n else 0.0 for i in range(n)]
    ws.store.add_metrics(
        [
            MetricDelta(
                rollout_id, step, "baseline", VariantStats.of(errors=ok, latencies_ms=[30.0] * n)
            ),
            MetricDelta(
                rollout_id,
                step,
                "candidate",
                VariantStats.of(errors=ok, latencies_ms=[30.0] * n, scores=scores),
            ),
        ]
    )


def test_a_shadow_step_rolls_back_on_disagreement_before_any_user_is_served(
    release_ws: ExampleWorkspace,
) -> None:
    root, r1, _r2 = _shadow_rollout(release_ws)
    ws = open_workspace(root)
    try:
        state = service_state(ws, SERVICE)
        rollout_id = state.active_rollout
        assert rollout_id is not None
        from releaser.core.routing import ROUTE_KIND

        route = ws.store.get(ROUTE_KIND, SERVICE)
        assert route is not None and route.value["shadow"]["percent"] == 10
        assert route.value["percent"] == 0 and route.value["groups"] == []
        _mirrored(ws, rollout_id, 0, 60, agree=0.5)
        held = advance_rollout(ws, SERVICE, now=_iso(T0.replace(hour=10)))
        assert held.decision.action == "hold"  # 60 of the 100 samples the step asks
        status = rollout_status(ws, SERVICE)
        assert status.to_dict()["shadow"] == {
            "percent": 10.0,
            "mirrored": 60,
            "compared": 60,
            "agreement": 0.5,
            "min_agreement": 0.9,
        }
        # Agreement scores are not the candidate's quality.
        assert status.candidate is not None and status.candidate.quality_count == 0
        _mirrored(ws, rollout_id, 0, 100, agree=0.5)
        result = advance_rollout(ws, SERVICE, now=_iso(T0.replace(hour=11)))
        assert result.decision.action == "rollback"
        assert any("agreement with the stable answers 50.00%" in r for r in result.decision.reasons)
        state = service_state(ws, SERVICE)
        assert state.stable == r1 and state.active_rollout is None
    finally:
        ws.close()


def test_agreement_scores_of_a_passed_shadow_step_stay_out_of_the_quality_comparison(
    release_ws: ExampleWorkspace,
) -> None:
    root, _r1, _r2 = _shadow_rollout(release_ws)
    ws = open_workspace(root)
    try:
        rollout_id = service_state(ws, SERVICE).active_rollout
        assert rollout_id is not None
        _mirrored(ws, rollout_id, 0, 200, agree=0.97)
        moved = advance_rollout(ws, SERVICE, now=_iso(T0.replace(hour=10)))
        assert moved.decision.action == "advance", moved.decision.reasons
        assert moved.rollout.current.name == "internal"
        assert "agreement 97.00% of 200" in moved.decision.reasons[0]
        _mirrored(ws, rollout_id, 1, 10, agree=0.0)  # user-facing scores of 0 at step 1
        status = rollout_status(ws, SERVICE).to_dict()
        assert status["shadow"] is None
        assert status["variants"]["candidate"]["requests"] == 210  # errors count across steps
        assert status["variants"]["candidate"]["quality_count"] == 10  # step 1's scores only
    finally:
        ws.close()


def _token_rollout(release_ws: ExampleWorkspace) -> tuple[Path, str, str]:
    """Release 1 stable, release 2 at its first step, both pinning token guardrails."""
    rails = "        latency_p95_ms: 1500\n"
    tokens = (
        "        tokens_mean: 600\n        tokens_p95: 1500\n"
        "        cost_per_1k_requests: 0.4\n"
        "        prices: {input_per_1k: 0.0005, output_per_1k: 0.0015}\n"
    )
    return _edited_rollout(release_ws, rails, rails + tokens, "token guardrails")


def test_token_guardrails_roll_back_a_candidate_that_spends_too_much(
    release_ws: ExampleWorkspace,
) -> None:
    from releaser.router import Router

    root, r1, r2 = _token_rollout(release_ws)
    ws = open_workspace(root)
    try:
        state = service_state(ws, SERVICE)
        assert state.active_rollout is not None
        rollout_id = state.active_rollout
        pinned = ws.store.get("rollout", rollout_id)
        assert pinned is not None
        assert pinned.value["guardrails"] == {
            "error_rate": 0.02,
            "latency_p95_ms": 1500,
            "tokens_mean": 600,
            "tokens_p95": 1500,
            "cost_per_1k_requests": 0.4,
            "price_input_per_1k": 0.0005,
            "price_output_per_1k": 0.0015,
        }
        # Staff get the candidate at the first step; it answers at length (900 tokens a
        # request against a mean limit of 600, 0.65 per 1,000 requests against 0.4), the
        # baseline within both (400 tokens, 0.30).
        with Router(ws.store.url, flush_interval_ms=60_000) as router:
            for i in range(800):
                a = router.assign(SERVICE, f"staff-{i}", {"email": f"u{i}@example.org"})
                usage = (700, 200) if a.variant == "candidate" else (300, 100)
                router.record(
                    a, latency_ms=40.0, prompt_tokens=usage[0], completion_tokens=usage[1]
                )
            for i in range(400):
                b = router.assign(SERVICE, f"resident-{i}", {"email": f"r{i}@resident.test"})
                router.record(b, latency_ms=40.0, prompt_tokens=300, completion_tokens=100)
            router.flush()
        report = rollout_status(ws, SERVICE).to_dict()
        candidate = report["variants"]["candidate"]["tokens"]
        baseline = report["variants"]["baseline"]["tokens"]
        assert candidate["requests"] > 0 and baseline["requests"] > 0
        assert candidate["mean"] == 900 and baseline["mean"] == 400
        assert (candidate["prompt_mean"], candidate["completion_mean"]) == (700, 200)
        assert candidate["cost_per_1k_requests"] == pytest.approx(700 * 0.0005 + 200 * 0.0015)
        assert baseline["cost_per_1k_requests"] == pytest.approx(0.3)
        assert 800 <= candidate["p95"] <= 1000  # within its 12% bin
        assert "shadow" in report and report["shadow"] is None
        decision = advance_rollout(ws, SERVICE, now=_iso(T0))
        assert decision.decision.action == "rollback"
        reasons = " | ".join(decision.decision.reasons)
        assert (
            "guardrail: mean tokens per request 900.0 over 800 requests breaks the limit 600 "
            "(e-value" in reasons
        ), reasons
        assert (
            "guardrail: cost per 1,000 requests 0.65 over 800 requests breaks the limit 0.4"
            in reasons
        )
        assert "p95 tokens" not in reasons  # 900 tokens is under the p95 limit of 1500
        assert service_state(ws, SERVICE).stable == r1 and r2 != r1
    finally:
        ws.close()


def test_min_samples_counts_the_live_steps_requests_not_the_rollouts(rollout_ws) -> None:
    """400 requests a side at 'internal' advance it; 'canary-5' asks 300 of its own, so 50
    more (450 in all) hold it, naming the step's count; 300 more advance it."""
    root, _r1, _r2 = rollout_ws
    ws = open_workspace(root)
    try:
        rollout_id = service_state(ws, SERVICE).active_rollout
        assert rollout_id is not None
        _mirrored(ws, rollout_id, 0, 400, agree=1.0)
        moved = advance_rollout(ws, SERVICE, now=_iso(T0.replace(hour=11)))
        assert moved.decision.action == "advance", moved.decision.reasons
        assert moved.rollout.current.name == "canary-5"
        _mirrored(ws, rollout_id, 1, 50, agree=1.0)
        held = advance_rollout(ws, SERVICE, now=_iso(T0.replace(hour=14)))
        assert held.decision.action == "hold"
        assert held.decision.reasons == [
            "waiting for samples: candidate has 50 of 300 requests in this step",
            "waiting for samples: baseline has 50 of 300 requests in this step",
        ]
        _mirrored(ws, rollout_id, 1, 300, agree=1.0)
        again = advance_rollout(ws, SERVICE, now=_iso(T0.replace(hour=15)))
        assert again.decision.action == "advance", again.decision.reasons
    finally:
        ws.close()
