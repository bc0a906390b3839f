"""``releaser freeze``, ``unfreeze`` and ``explain`` as an operator and a CI schedule run them."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from releaser.api.rollouts import start_rollout
from releaser.api.workspace import open_workspace
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.core.unit_sketch import UnitSketch
from releaser.demo.workspace import ExampleWorkspace
from releaser.router import Router
from releaser.store.base import MetricDelta

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _baked_rollout(root: Path, cli) -> tuple[str, str]:
    """r1 stable; r2's rollout started five hours ago with healthy figures, ready to advance."""
    r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r1).code == 0
    assert cli("rollout", "start", SERVICE, "--release", r1, "--initial").code == 0
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r2).code == 0
    ws = open_workspace(root)
    try:
        started = _iso(datetime.now(UTC) - timedelta(hours=5))
        rollout_id = start_rollout(ws, SERVICE, r2, now=started).rollout.id
        stats = VariantStats(requests=5000, errors=50, latency=LatencyHistogram.of([150.0] * 5000))
        ws.store.add_metrics(
            [
                MetricDelta(rollout_id, 0, "baseline", stats),
                MetricDelta(rollout_id, 0, "candidate", stats),
            ]
        )
    finally:
        ws.close()
    return r1, r2


def test_a_freeze_holds_the_scheduled_advance_and_says_so(
    release_ws: ExampleWorkspace, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = release_ws.root
    _r1, r2 = _baked_rollout(root, cli)
    res = cli("freeze", SERVICE, "--until", "2020-01-01T00:00:00Z", "--reason", "x")
    assert res.code == 2 and "not in the future" in res.err and "Traceback" not in res.err
    res = cli("freeze", SERVICE, "--until", "3h", "--reason", "council elections", "--json")
    assert res.code == 0, res.err
    made = json.loads(res.out)
    assert made["changed"] and made["manual"]["reason"] == "council elections"
    assert [f["name"] for f in made["in_force"]] == ["manual"]

    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = cli("rollout", "advance", SERVICE, "--if-live", "--json")
    assert res.code == 0, res.err
    held = json.loads(res.out)
    assert held["decision"]["action"] == "hold" and not held["transitioned"]
    assert held["freeze"]["name"] == "manual" and held["freeze"]["reason"].startswith("council")
    assert held["freezes_in_force"][0]["kind"] == "manual"
    assert held["rollout"]["step"] == 0
    assert "freeze=change freeze 'manual' (manual) until" in out.read_text()
    assert "decision=hold" in out.read_text()
    assert "**Change freeze:** change freeze 'manual'" in summary.read_text()

    res = cli("rollout", "status", SERVICE)
    assert res.code == 0 and "FROZEN: change freeze 'manual'" in res.out
    assert "but it holds instead" in res.out
    status = json.loads(cli("rollout", "status", SERVICE, "--json").out)
    assert status["freezes"]["in_force"][0]["name"] == "manual"

    res = cli("rollout", "start", SERVICE, "--release", r2)
    assert (
        res.code == 2
        and "cannot start a rollout for case-triage: change freeze 'manual'" in res.err
    )
    res = cli("rollout", "promote", SERVICE, "--force", "--reason", "skip")
    assert res.code == 2 and "change freeze 'manual'" in res.err
    res = cli(
        "prompt", "promote", "case-triage-system", "1", "--to", "production", "--reason", "go"
    )
    assert res.code == 2 and "change freeze 'manual'" in res.err
    assert cli("rollout", "pause", SERVICE, "--reason", "look").code == 0
    assert cli("rollout", "resume", SERVICE, "--reason", "fine").code == 0

    res = cli("unfreeze", SERVICE, "--reason", "results are in")
    assert res.code == 0 and "lifted the manual freeze" in res.out and "audited as entry" in res.out
    res = cli("unfreeze", SERVICE, "--reason", "again")
    assert res.code == 0 and "no manual freeze in force" in res.out
    res = cli("rollout", "advance", SERVICE, "--json")
    assert res.code == 0 and json.loads(res.out)["decision"]["action"] == "advance", res.out
    actions = [e["action"] for e in json.loads(cli("audit", "log", "--json").out)]
    assert actions.count("freeze.set") == 1 and actions.count("freeze.lift") == 1


def test_explain_a_unit_and_export_the_cohort(release_ws: ExampleWorkspace, cli, released) -> None:
    root = release_ws.root
    r1, r2 = released(root)
    res = cli("explain", SERVICE, "someone@example.org", "--attr", "email=a@example.org", "--json")
    assert res.code == 0, res.err
    got = json.loads(res.out)
    assert got["release_id"] == r2 and got["variant"] == "candidate"
    assert got["matched_group"]["name"] == "staff" and got["step_name"] == "internal"
    assert set(got) >= {"bucket", "threshold", "route_from", "route_until", "history_from", "notes"}
    res = cli("explain", SERVICE, "user-1", "--attr", "email=b@mail.example")
    assert res.code == 0 and f"{r1} (baseline)" in res.out and "why: baseline" in res.out
    assert "bucket" in res.out and ">= 0" in res.out
    res = cli("explain", SERVICE, "user-1", "--attr", "email")
    assert res.code == 2 and "is not key=value" in res.err
    res = cli("explain", SERVICE, "user-1", "--at", "2001-01-01T00:00:00Z")
    assert res.code == 2 and "history starts at" in res.err

    # A router serves 40 units (10 staff) twice each, and one request without a unit id.
    ws = open_workspace(root)
    url = ws.store_url
    ws.close()
    # Distinct units are estimates: two of 30 units share one of the sketch's 4096 registers
    # about one time in ten (the rollout's seed, and so the hashing salt, is new each run),
    # and then 29 are counted. The export must give what the sketch of those units gives.
    expected = {"baseline": UnitSketch(), "candidate": UnitSketch()}
    with Router(url) as router:
        for i in range(80):
            unit = f"user-{i % 40}"
            email = f"u{i % 40}@{'example.org' if i % 40 < 10 else 'mail.example'}"
            assignment = router.assign(SERVICE, unit, {"email": email})
            router.record(assignment, unit_id=unit)
            expected[assignment.variant].add(assignment.unit_salt, unit)
        router.record(router.assign(SERVICE, "anonymous"), latency_ms=3.0)
    base, cand = expected["baseline"].count(), expected["candidate"].count()
    assert 25 <= base <= 30 and 8 <= cand <= 10  # 30 and 10 units: a few collisions at most

    window = ("--from", "2020-01-01T00:00:00Z", "--to", "2100-01-01T00:00:00Z")
    res = cli("explain", "cohort", SERVICE, *window, "--csv")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == (
        "from,to,stable,candidate,rollout,step,groups,percent,baseline_requests,"
        "candidate_requests,baseline_units,candidate_units,candidate_units_by_group"
    )
    assert len(lines) == 3
    assert lines[2].endswith(f",internal,staff,0,61,20,{base},{cand},staff={cand}")
    export = json.loads(cli("explain", "cohort", SERVICE, *window, "--json").out)
    assert "distinct units" in export["counted"] and "1.625%" in export["counted"]
    assert [r["candidate"] for r in export["rows"]] == [None, r2]
    live = export["rows"][1]
    assert (live["baseline_units"], live["candidate_units"]) == (base, cand)
    assert live["candidate_units_by_group"] == {"staff": cand}
    assert live["units_note"] == (
        "1 of 61 baseline requests were recorded without a unit id: their units are not counted"
    )
    assert export["rows"][0]["baseline_units"] is None  # no rollout live: not counted
    res = cli("explain", "cohort", SERVICE, *window)
    assert res.code == 0 and f"staff={cand}" in res.out
    assert "1 of 61 baseline requests were recorded without a unit id" in res.out
    res = cli("explain", "cohort", SERVICE, "--from", "2020-01-01")
    assert res.code == 2 and "needs --from and --to" in res.err


def test_freeze_killed_at_any_point_is_all_or_nothing_and_a_rerun_converges(
    release_ws: ExampleWorkspace, cli
) -> None:
    """kill -9 during 'releaser freeze': the record and its audit event land together or
    not at all, and the same command run again leaves exactly one freeze in force."""
    import random
    import signal
    import sys
    import time

    root = release_ws.root
    releaser = str(Path(sys.executable).parent / "releaser")
    until = _iso(datetime.now(UTC) + timedelta(days=2))[:19] + "Z"
    command = [releaser, "freeze", SERVICE, "--until", until, "--reason", "elections"]
    began = time.monotonic()
    assert subprocess.run(command, cwd=root, capture_output=True).returncode == 0
    took = time.monotonic() - began  # only to spread the kill points over a run
    assert cli("unfreeze", SERVICE, "--reason", "reset", cwd=root).code == 0
    rng = random.Random(24)
    for delay in sorted(rng.uniform(0.0, took) for _ in range(5)):
        before = json.loads(cli("audit", "log", "--json").out)
        proc = subprocess.Popen(
            command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert cli("audit", "verify").code == 0
        after = json.loads(cli("audit", "log", "--json").out)
        new = [e["action"] for e in after[len(before) :]]
        status = json.loads(cli("rollout", "status", SERVICE, "--json").out)["freezes"]
        assert new in ([], ["freeze.set"])
        assert (status["manual"] is not None) == (new == ["freeze.set"])
        rerun = subprocess.run(command, cwd=root, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        final = json.loads(cli("audit", "log", "--json").out)
        assert [e["action"] for e in final[len(before) :]] == ["freeze.set"]
        status = json.loads(cli("rollout", "status", SERVICE, "--json").out)["freezes"]
        assert status["manual"]["until"] == until
        assert cli("unfreeze", SERVICE, "--reason", "reset").code == 0
