"""GitHub mirrors against the local stand-in: deployments through a real rollout, gates,
PR comments, releases; and the failure modes (down, 401, 403, rate-limited)."""

from __future__ import annotations

import json
import logging
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from releaser.api.effects import configured_targets
from releaser.api.github import (
    GithubTarget,
    comment_on_pr,
    publish_gate,
    publish_release,
)
from releaser.api.releases import create_release
from releaser.api.rollouts import service_state, start_rollout
from releaser.api.workspace import Workspace, open_workspace
from releaser.demo.traffic import drive_rollout, make_users
from releaser.demo.workspace import ExampleWorkspace

from .conftest import (
    TOKEN,
    Failure,
    GithubStandIn,
    actions_env,
    assert_matches_recordings,
    free_port_url,
)

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _candidate(root: Path, version: int) -> str:
    cfg = root / "releaser.yaml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("alias: champion", f"version: {version}", 1),
        encoding="utf-8",
    )
    subprocess.run(["git", "commit", "-qam", f"serve model v{version}"], cwd=root, check=True)
    ws = open_workspace(root)
    try:
        return create_release(ws, SERVICE).release.id
    finally:
        ws.close()


def _statuses(github: GithubStandIn, release_id: str) -> list[tuple[str, str]]:
    deps = [d for d in github.deployments if d["payload"].get("release_id") == release_id]
    assert len(deps) == 1, f"expected one deployment of {release_id}, got {len(deps)}"
    return [(s["state"], s["description"]) for s in github.deployment_statuses[deps[0]["id"]]]


def _two_releases(root: Path) -> tuple[Workspace, str, str]:
    ws = open_workspace(root)
    r1 = create_release(ws, SERVICE).release.id
    res = start_rollout(
        ws, SERVICE, r1, initial=True, now=_iso(T0), force=True, reason="gate not under test"
    )
    assert [e.status for e in res.side_effects if e.name == "github deployment"] == ["done"]
    ws.close()
    r2 = _candidate(root, 2)
    ws = open_workspace(root)
    return ws, r1, r2


def test_a_rollout_is_mirrored_as_one_deployment_with_a_status_per_step(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions_env(monkeypatch, github.base)
    ws, r1, r2 = _two_releases(github_ws.root)
    try:
        assert [t.name for t in configured_targets(ws, SERVICE)] == ["github deployment"]
        start = start_rollout(
            ws, SERVICE, r2, now=_iso(T0), force=True, reason="gate not under test"
        )
        assert [(e.name, e.status) for e in start.side_effects] == [("github deployment", "done")]
        driven = drive_rollout(
            ws,
            SERVICE,
            error_rates={"baseline": 0.01, "candidate": 0.01, "stable": 0.01},
            start=T0,
            users=make_users(20_000, seed=1),
        )
        assert driven.actions[-1] == "promote", driven.actions
        assert service_state(ws, SERVICE).stable == r2
    finally:
        ws.close()

    assert _statuses(github, r1) == [("success", "stable: 100% of traffic")]
    states = _statuses(github, r2)
    assert states == [
        ("in_progress", "step internal: 0% of traffic"),
        ("in_progress", "step canary-5: 5% of traffic"),
        ("in_progress", "step canary-25: 25% of traffic"),
        ("in_progress", "step full: 100% of traffic"),
        ("success", "promoted: 100% of traffic"),
    ]
    dep = next(d for d in github.deployments if d["payload"]["release_id"] == r2)
    assert dep["environment"] == "production"
    assert (
        dep["ref"]
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=github_ws.root, capture_output=True, text=True
        ).stdout.strip()
    )
    statuses = [s for s in github.deployment_statuses[dep["id"]]]
    assert all(
        s["target_url"] == "https://github.invalid/council/casework/actions/runs/4242"
        for s in statuses
    )
    listings = [r for r in github.log if r.method == "GET" and r.template.endswith("deployments")]
    assert listings and all(r.query["environment"] == ["production"] for r in listings)
    assert_matches_recordings(github.log)


def test_rollback_marks_the_candidate_failed_and_the_stable_release_live_again(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions_env(monkeypatch, github.base)
    ws, r1, r2 = _two_releases(github_ws.root)
    try:
        start_rollout(ws, SERVICE, r2, now=_iso(T0), force=True, reason="gate not under test")
        driven = drive_rollout(
            ws,
            SERVICE,
            error_rates={"baseline": 0.01, "candidate": 0.03, "stable": 0.01},
            start=T0,
            users=make_users(20_000, seed=1),
        )
        assert driven.actions[-1] == "rollback", driven.actions
        # Mirroring again changes nothing: same deployments, no repeated status.
        target = GithubTarget(ws)
        from releaser.api.effects import TrafficChange

        again = TrafficChange(
            SERVICE,
            "rollout.rollback",
            "rolled_back",
            r1,
            r2,
            "x",
            "internal",
            0.0,
            "mirrored again",
            _iso(T0),
        )
        first = target.apply(again)
        second = target.apply(again)
        assert (first.status, second.status) == ("done", "unchanged"), (first, second)
    finally:
        ws.close()
    r2_states = _statuses(github, r2)
    assert r2_states[0] == ("in_progress", "step internal: 0% of traffic")
    assert r2_states[-1][0] == "failure" and r2_states[-1][1].startswith(f"rolled back to {r1}")
    assert _statuses(github, r1)[-1][0] == "success"
    assert len(github.deployments) == 2
    assert_matches_recordings(github.log)


def test_without_a_github_section_or_token_nothing_is_sent(
    release_ws: ExampleWorkspace,
    github: GithubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    actions_env(monkeypatch, github.base)
    ws = open_workspace(release_ws.root)  # no github: section
    try:
        assert configured_targets(ws, SERVICE) == []
        eff = comment_on_pr(ws, service=SERVICE, body_md="x", pr_number=1)
        assert eff.status == "skipped"
    finally:
        ws.close()
    assert github.log == []


def test_section_without_token_is_a_silent_no_op(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_API_URL", github.base)
    monkeypatch.setenv("GITHUB_REPOSITORY", "council/casework")
    ws = open_workspace(github_ws.root)
    try:
        assert configured_targets(ws, SERVICE) == []
        effects = [
            publish_gate(ws, service=SERVICE, release_id="r", passed=True, summary_md="", sha=SHA),
            comment_on_pr(ws, service=SERVICE, body_md="x", pr_number=3),
        ]
        assert [e.status for e in effects] == ["skipped", "skipped"]
    finally:
        ws.close()
    assert github.log == []


def test_gate_status_then_check_run(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    actions_env(monkeypatch, github.base, GITHUB_SHA=SHA)
    ws = open_workspace(github_ws.root)
    try:
        eff = publish_gate(
            ws, service=SERVICE, release_id="abc123", passed=False, summary_md="# no"
        )
        assert eff.status == "done", eff
    finally:
        ws.close()
    [status] = github.commit_statuses
    assert status["state"] == "failure" and status["context"] == f"releaser/gate/{SERVICE}"
    assert "abc123" in status["description"]
    assert github.log[-1].path == f"/repos/council/casework/statuses/{SHA}"

    cfg = github_ws.root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("gate_status: status", "gate_status: check_run"))
    ws = open_workspace(github_ws.root)
    try:
        eff = publish_gate(
            ws, service=SERVICE, release_id="abc123", passed=True, summary_md="## Gate\n| a |"
        )
        assert eff.status == "done", eff
    finally:
        ws.close()
    [run] = github.check_runs
    assert run["head_sha"] == SHA and run["conclusion"] == "success"
    assert run["output"]["summary"] == "## Gate\n| a |"
    assert_matches_recordings(github.log)


def test_one_comment_per_service_edited_in_place_on_reruns(
    github_ws: ExampleWorkspace,
    github: GithubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 7, "pull_request": {"number": 7}}))
    actions_env(
        monkeypatch, github.base, GITHUB_REF="refs/pull/7/merge", GITHUB_EVENT_PATH=str(event)
    )
    ws = open_workspace(github_ws.root)
    try:
        first = comment_on_pr(ws, service=SERVICE, body_md="eval: 0.91")
        other = comment_on_pr(ws, service="other-service", body_md="eval: 0.5")
        second = comment_on_pr(ws, service=SERVICE, body_md="eval: 0.93")
        third = comment_on_pr(ws, service=SERVICE, body_md="eval: 0.93")
    finally:
        ws.close()
    assert [first.status, other.status, second.status, third.status] == [
        "done",
        "done",
        "done",
        "unchanged",
    ]
    comments = github.comments[7]
    assert len(comments) == 2
    mine = [c for c in comments if "<!-- releaser:case-triage -->" in c["body"]]
    assert len(mine) == 1 and "eval: 0.93" in mine[0]["body"] and "0.91" not in mine[0]["body"]
    assert [r.method for r in github.log if r.template.endswith("/comments/{id}")] == ["PATCH"]
    assert_matches_recordings(github.log)


def test_release_with_the_pack_attached_once(
    github_ws: ExampleWorkspace,
    github: GithubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    actions_env(monkeypatch, github.base)
    pack = tmp_path / "handover.zip"
    with zipfile.ZipFile(pack, "w") as z:
        z.writestr("README.md", "handover")
    ws = open_workspace(github_ws.root)
    try:
        rid = create_release(ws, SERVICE).release.id
        first = publish_release(ws, service=SERVICE, release_id=rid, pack_path=pack)
        again = publish_release(ws, service=SERVICE, release_id=rid, pack_path=pack)
    finally:
        ws.close()
    assert (first.status, again.status) == ("done", "unchanged"), (first, again)
    [rel] = github.releases
    assert rel["tag_name"] == f"{SERVICE}-{rid}"
    [asset] = github.assets[rel["id"]]
    assert asset["name"] == "handover.zip" and asset["_data"] == pack.read_bytes()
    assert asset["content_type"] == "application/zip"
    assert_matches_recordings(github.log)


FAILURES = {
    "401": Failure(401, "Bad credentials"),
    "403": Failure(403, "Resource not accessible by integration"),
    "rate-limited-403": Failure(
        403,
        "API rate limit exceeded",
        {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1772442000",
        },
    ),
    "rate-limited-429": Failure(429, "Too many requests", {"Retry-After": "60"}),
    "secondary-limit-403": Failure(
        403, "You have exceeded a secondary rate limit", {"Retry-After": "30"}
    ),
}
EXPECTED = {
    "down": "unreachable",
    "401": "rejected the token",
    "403": "refused the call (403",
    "rate-limited-403": "rate limit reached (403); the limit resets at 09:00 UTC",
    "rate-limited-429": "rate limit reached (429); retry after 60 s",
    "secondary-limit-403": "rate limit reached (403); retry after 30 s",
}


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_github_failure_leaves_the_step_done_and_warns_with_the_retry_command(
    mode: str,
    github_ws: ExampleWorkspace,
    github: GithubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    cli,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = free_port_url() if mode == "down" else github.base
    if mode != "down":
        github.failure = FAILURES[mode]
    actions_env(monkeypatch, api, GITHUB_SHA=SHA)
    ws = open_workspace(github_ws.root)
    try:
        r1 = create_release(ws, SERVICE).release.id
    finally:
        ws.close()
    res = cli(
        "rollout",
        "start",
        SERVICE,
        "--release",
        r1,
        "--initial",
        "--force",
        "--reason",
        "gate not under test",
        cwd=github_ws.root,
    )
    assert res.code == 0, res.err
    assert EXPECTED[mode] in res.err, res.err
    assert f"releaser reconcile {SERVICE}" in res.err  # the journal finishes it
    assert TOKEN not in res.out + res.err
    pack = tmp_path / "handover.zip"
    pack.write_bytes(b"PK\x05\x06" + bytes(18))
    ws = open_workspace(github_ws.root)
    try:
        assert service_state(ws, SERVICE).stable == r1, "GitHub must not undo the release step"
        for eff in [
            publish_gate(ws, service=SERVICE, release_id=r1, passed=True, summary_md="ok"),
            comment_on_pr(ws, service=SERVICE, body_md="x", pr_number=2),
            publish_release(ws, service=SERVICE, release_id=r1, pack_path=pack),
        ]:
            assert eff.status == "failed" and eff.retry, eff
            assert TOKEN not in f"{eff.detail} {eff.retry}"
        assert TOKEN not in caplog.text
    finally:
        ws.close()
    if mode != "down":
        assert github.log and all(
            r.headers["authorization"] == f"token {TOKEN}" for r in github.log
        ), "the token was not sent, so the test would not catch a leak"


def test_pause_and_abort_are_mirrored(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaser.api.effects import TrafficChange

    actions_env(monkeypatch, github.base)
    cfg = github_ws.root / "releaser.yaml"
    cfg.write_text(
        cfg.read_text().replace("environment: production", "environment: '{service}-prod'")
    )
    subprocess.run(["git", "commit", "-qam", "per-service env"], cwd=github_ws.root, check=True)
    ws = open_workspace(github_ws.root)
    try:
        rid = create_release(ws, SERVICE).release.id
        target = GithubTarget(ws)

        def change(status: str, reason: str = "") -> TrafficChange:
            return TrafficChange(
                SERVICE, "x", status, "stable1", rid, "r-1", "canary-5", 5.0, reason, _iso(T0)
            )  # type: ignore[arg-type]

        effects = [
            target.apply(change("in_progress")),
            target.apply(change("paused", "latency")),
            target.apply(change("aborted", "wrong model")),
        ]
    finally:
        ws.close()
    assert [e.status for e in effects] == ["done", "done", "done"], effects
    assert _statuses(github, rid) == [
        ("in_progress", "step canary-5: 5% of traffic"),
        ("in_progress", "paused at step canary-5: 5% of traffic"),
        ("inactive", "aborted: wrong model"),
    ]
    assert [d["environment"] for d in github.deployments] == [f"{SERVICE}-prod"]


def test_manual_rollback_mirrors_once_and_a_drill_sends_nothing(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaser.api.drills import run_drill
    from releaser.api.rollback import rollback

    actions_env(monkeypatch, github.base)
    ws, r1, r2 = _two_releases(github_ws.root)
    try:
        start_rollout(ws, SERVICE, r2, now=_iso(T0), force=True, reason="gate not under test")
        requests_before = len(github.log)
        # A drill works on a scratch copy: the real deployment targets are not touched.
        drill = run_drill(ws, SERVICE)
        assert drill.kind == "mid-rollout" and "github deployment" in drill.not_rehearsed
        assert len(github.log) == requests_before
        result = rollback(ws, SERVICE, reason="manual")
    finally:
        ws.close()
    github_effects = [e for e in result.side_effects if "GitHub" in e.name or "github" in e.name]
    assert len(github_effects) == 1, result.side_effects
    r2_states = _statuses(github, r2)
    assert r2_states[-1][0] == "failure"
    assert [s for s, _ in r2_states].count("failure") == 1
