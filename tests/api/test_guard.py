"""The post-promotion guard end to end: real store, real workspace, traffic through a real
router; the clock is simulated (a check every 5 minutes)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from releaser.api.audit import audit_log, verify_audit
from releaser.api.gates import run_gate
from releaser.api.journal import owed
from releaser.api.releases import create_release
from releaser.api.rollout_status import rollout_status
from releaser.api.rollouts import (
    AdvanceResult,
    advance_if_live,
    advance_rollout,
    promote_rollout,
    service_state,
    start_rollout,
)
from releaser.api.workspace import open_workspace
from releaser.core.guard import guard_metrics_id
from releaser.core.routing import ROUTE_KIND
from releaser.demo.traffic import make_users, simulate
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import NotFound
from releaser.router import Router
from tests.conftest import gated_release, serve_model_version

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
# Promoted an hour before the tests run, so that ``rollout status`` (on the real clock)
# finds the guard live; the checks run on a simulated clock from there.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
PROMOTED = T0 + timedelta(hours=2)
USERS = make_users(2000, seed=5)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _wait_for_guard(router: Router, expected: str | None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        route = router.routes().get(SERVICE)
        if route is not None and route.guard == expected:
            return
        time.sleep(0.005)
    raise AssertionError(f"the router never saw guard {expected!r}")


@pytest.fixture
def promoted(release_ws: ExampleWorkspace) -> tuple[Path, str, str]:
    """Release 1 stable, release 2 rolled out over real router traffic (0.2% errors on
    both) and promoted at ``PROMOTED``: the guard is on."""
    root = release_ws.root
    ws = open_workspace(root)
    r1 = create_release(ws, SERVICE).release.id
    assert run_gate(ws, SERVICE, r1).passed
    start_rollout(ws, SERVICE, r1, initial=True, now=_iso(T0))
    serve_model_version(root)
    ws.close()
    ws = open_workspace(root)
    r2 = gated_release(ws, SERVICE)
    start_rollout(ws, SERVICE, r2, now=_iso(T0))
    with Router(ws.store_url, refresh_interval_ms=5) as router:
        rates = {"baseline": 0.002, "candidate": 0.002}
        simulate(router, SERVICE, USERS, random.Random(1), rates, 20_000)
    promote_rollout(ws, SERVICE, reason="the canary looked fine", now=_iso(PROMOTED))
    ws.close()
    return root, r1, r2


def _drive(root: Path, error_rate: float, checks: int, *, per_check: int = 600, seed: int = 3):
    """``checks`` rounds of traffic on the stable release, then ``advance`` 5 minutes on."""
    ws = open_workspace(root)
    rng = random.Random(seed)
    results: list[AdvanceResult] = []
    with Router(ws.store_url, refresh_interval_ms=5) as router:
        guard = service_state(ws, SERVICE).guard
        assert guard is not None
        _wait_for_guard(router, guard_metrics_id(guard.rollout_id))
        for k in range(1, checks + 1):
            simulate(router, SERVICE, USERS, rng, {"stable": error_rate}, per_check)
            result = advance_rollout(ws, SERVICE, now=_iso(PROMOTED + timedelta(minutes=5 * k)))
            results.append(result)
            if result.decision.action == "rollback":
                break
    return ws, results


def test_a_release_that_degrades_after_promotion_is_rolled_back_with_its_evidence(
    promoted,
) -> None:
    root, r1, r2 = promoted
    ws, results = _drive(root, 0.01, 24)
    try:
        assert results[-1].decision.action == "rollback", [r.decision.reasons for r in results]
        assert all(r.decision.action == "hold" for r in results[:-1])
        assert len(results) <= 6, "5x the errors should be caught within 30 minutes"
        last = results[-1]
        assert last.guard is not None and last.guard.verdict == "breach"
        assert last.rollout.status == "rolled_back"
        state = service_state(ws, SERVICE)
        assert state.stable == r1 and state.guard is None
        assert state.last_rollback is not None and state.last_rollback["from"] == r2
        assert state.last_rollback["reason"].startswith("guard: guard breach: error rate")
        event = [e for e in audit_log(ws) if e.action == "guard.rollback"]
        assert len(event) == 1
        evidence = event[0].after["guard"]
        assert evidence["verdict"] == "breach" and evidence["release"] == r2
        previous = [e for e in evidence["evidence"] if e["source"] == "previous release"]
        assert previous and previous[0]["observed_rate"] > 3 * previous[0]["reference_rate"] / 2
        assert ws.models.get_alias("case-triage", "production") == 1
        assert not owed(ws, service=SERVICE)
        assert ws.store.get(ROUTE_KIND, SERVICE).value["guard"] is None
        assert verify_audit(ws).ok
        # Run again: nothing left to judge.
        assert advance_if_live(ws, SERVICE, now=_iso(PROMOTED + timedelta(hours=1))) == "idle"
        with pytest.raises(NotFound, match="no rollout in progress"):
            advance_rollout(ws, SERVICE, now=_iso(PROMOTED + timedelta(hours=1)))
        assert len([e for e in audit_log(ws) if e.action == "guard.rollback"]) == 1
    finally:
        ws.close()


def test_a_healthy_release_stays_and_status_shows_the_guard(promoted, cli) -> None:
    root, _r1, r2 = promoted
    ws, results = _drive(root, 0.002, 12)
    try:
        assert [r.decision.action for r in results] == ["hold"] * 12, [
            (r.decision.reasons, r.guard and r.guard.evidence) for r in results[-1:]
        ]
        assert all(r.guard is not None and r.guard.verdict == "watching" for r in results)
        state = service_state(ws, SERVICE)
        assert state.stable == r2 and state.guard is not None and state.guard.batches == 12
        checks = [e for e in audit_log(ws) if e.action == "guard.check"]
        assert len(checks) == 12
        # A second look inside the same interval writes nothing.
        now = _iso(PROMOTED + timedelta(minutes=61))
        again = advance_if_live(ws, SERVICE, now=now)
        assert isinstance(again, AdvanceResult) and again.guard is not None
        assert len([e for e in audit_log(ws) if e.action == "guard.check"]) == 12
        report = rollout_status(ws, SERVICE, now=now).to_dict()
        guard = report["guard"]
        assert guard["release"] == r2 and guard["checks"] == 12
        assert guard["time_left_s"] == pytest.approx(23 * 3600 - 60)
        assert guard["observed"]["requests"] == 12 * 600
        sources = {(e["metric"], e["source"]) for e in guard["evidence"]}
        assert ("error_rate", "previous release") in sources and ("error_rate", "slo") in sources
        shown = cli("rollout", "status", SERVICE, cwd=root)
        assert shown.code == 0, shown.err
        assert "under guard until" in shown.out and "h left, 12 check(s)" in shown.out
        assert "error_rate vs previous release" in shown.out
        as_json = cli("rollout", "status", SERVICE, "--json", cwd=root)
        assert json.loads(as_json.out)["guard"]["release"] == r2
        advanced = cli("rollout", "advance", SERVICE, "--if-live", "--json", cwd=root)
        assert advanced.code == 0, advanced.err
        out = json.loads(advanced.out)
        assert out["decision"]["action"] == "hold" and out["guard"]["verdict"] == "watching"
    finally:
        ws.close()


def test_the_guard_ends_quietly_after_its_window(promoted) -> None:
    root, _r1, r2 = promoted
    ws = open_workspace(root)
    try:
        late = _iso(PROMOTED + timedelta(hours=24, minutes=1))
        assert advance_if_live(ws, SERVICE, now=late) == "idle"
        state = service_state(ws, SERVICE)
        assert state.stable == r2 and state.guard is None
        assert [e.action for e in audit_log(ws)].count("guard.end") == 1
        assert ws.store.get(ROUTE_KIND, SERVICE).value["guard"] is None
        assert rollout_status(ws, SERVICE, now=late).to_dict()["guard"] is None
        assert advance_if_live(ws, SERVICE, now=late) == "idle"
        assert [e.action for e in audit_log(ws)].count("guard.end") == 1
    finally:
        ws.close()


def test_a_new_rollout_ends_the_guard(promoted) -> None:
    root, r1, r2 = promoted
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).guard is not None
        later = _iso(PROMOTED + timedelta(hours=1))
        start_rollout(ws, SERVICE, r1, now=later, force=True, reason="try the old one again")
        state = service_state(ws, SERVICE)
        assert state.guard is None and state.stable == r2
        assert ws.store.get(ROUTE_KIND, SERVICE).value["guard"] is None
    finally:
        ws.close()


_KILL = """
import os, sys
from releaser.api.rollouts import advance_rollout
from releaser.api.workspace import open_workspace
from releaser.store.sqlite import SqliteStore

where, root, now = sys.argv[1:4]
real = SqliteStore.commit

def commit(self, writes, event, *args, **kwargs):
    if event.action == "guard.rollback" and where == "before":
        os._exit(9)
    out = real(self, writes, event, *args, **kwargs)
    if event.action == "guard.rollback":
        os._exit(9)
    return out

SqliteStore.commit = commit
advance_rollout(open_workspace(root), "case-triage", now=now)
"""


@pytest.mark.parametrize("where", ["before", "after"])
def test_killed_around_the_guard_rollback_a_rerun_converges(promoted, where: str) -> None:
    root, r1, _r2 = promoted
    ws = open_workspace(root)
    guard = service_state(ws, SERVICE).guard
    assert guard is not None
    with Router(ws.store_url, refresh_interval_ms=5) as router:
        _wait_for_guard(router, guard_metrics_id(guard.rollout_id))
        simulate(router, SERVICE, USERS, random.Random(4), {"stable": 0.01}, 6000)
    ws.close()
    now = _iso(PROMOTED + timedelta(minutes=30))
    killed = subprocess.run(
        [sys.executable, "-c", _KILL, where, str(root), now],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert killed.returncode == 9, killed.stderr
    ws = open_workspace(root)
    try:
        rolled = [e for e in audit_log(ws) if e.action == "guard.rollback"]
        assert len(rolled) == (0 if where == "before" else 1)
        if where == "after":
            assert service_state(ws, SERVICE).stable == r1
            assert owed(ws, service=SERVICE), "the kill came before the side effects"
        result = advance_if_live(ws, SERVICE, now=now)
        if where == "before":
            assert isinstance(result, AdvanceResult) and result.decision.action == "rollback"
        else:
            assert result == "idle"
        assert service_state(ws, SERVICE).stable == r1
        assert not owed(ws, service=SERVICE)
        assert ws.models.get_alias("case-triage", "production") == 1
        assert len([e for e in audit_log(ws) if e.action == "guard.rollback"]) == 1
        assert verify_audit(ws).ok
    finally:
        ws.close()
