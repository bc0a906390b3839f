"""Webhook notifications against a real HTTP receiver on 127.0.0.1: every transition is
posted after its commit, Slack gets its shape, retries land, a hanging receiver costs a
warning and an audit event (never the exit code), and no secret leaves."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from releaser.api import notify
from releaser.api.audit import audit_log, verify_audit
from releaser.api.drills import DrillRecord
from releaser.api.gates import run_gate
from releaser.api.releases import create_release
from releaser.api.rollback import rollback
from releaser.api.rollouts import (
    abort_rollout,
    pause_rollout,
    promote_rollout,
    resume_rollout,
    start_rollout,
)
from releaser.api.workspace import open_workspace
from releaser.demo.traffic import drive_rollout, make_users
from releaser.demo.workspace import ExampleWorkspace
from tests.conftest import gated_release, serve_model_version

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SENTINEL = "sentinel-Zq81-never-leaks"


@dataclass
class Receiver:
    """A webhook endpoint: records each POST; answers 500 ``fail_first`` times, 404 for
    paths under /gone, after 0.3 s under /slow, and holds requests under /hang until the
    test ends."""

    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    release: threading.Event = field(default_factory=threading.Event)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [p["body"] for p in self.posts if p["path"] == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            size = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(size)
            state.posts.append(
                {
                    "path": self.path,
                    "body": json.loads(raw),
                    "raw": raw,
                    "headers": dict(self.headers),
                }
            )
            if self.path.startswith("/hang"):
                state.release.wait(60)
                return
            if self.path.startswith("/slow"):
                time.sleep(0.3)
            if self.path.startswith("/gone"):
                code = 404
            elif state.fail_first > 0:
                state.fail_first -= 1
                code = 500
            else:
                code = 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def two_releases(
    prompted_workspace: ExampleWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    """Release 1 stable (no webhooks yet), release 2 (model v2) gated; read-only."""
    root = tmp_path_factory.mktemp("notify") / "ws"
    shutil.copytree(prompted_workspace.root, root, symlinks=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEASER_ACTOR", "tester")
        ws = open_workspace(root)
        r1 = create_release(ws, SERVICE).release.id
        assert run_gate(ws, SERVICE, r1).passed
        start_rollout(ws, SERVICE, r1, initial=True, now="2026-03-02T08:00:00.000000Z")
        ws.close()
        serve_model_version(root)
        ws = open_workspace(root)
        r2 = gated_release(ws, SERVICE)
        ws.close()
    return root, r1, r2


def _with_webhooks(src: Path, dest: Path, hooks: list[dict[str, Any]]) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    cfg = dest / "releaser.yaml"
    cfg.write_text(cfg.read_text() + "\n" + yaml.safe_dump({"notifications": hooks}))
    return dest


def test_each_transition_is_posted_after_its_commit(two_releases, receiver, tmp_path) -> None:
    src, r1, r2 = two_releases
    root = _with_webhooks(
        src,
        tmp_path / "ws",
        [
            {"name": "ops", "url": f"{receiver.url}/ops"},
            {"name": "chat", "url": f"{receiver.url}/slack", "format": "slack"},
            {
                "name": "rollbacks-only",
                "url": f"{receiver.url}/rb",
                "events": ["rollout.rolled-back"],
            },
            {"name": "quiet", "url": f"{receiver.url}/quiet", "events": ["drill.failed"]},
        ],
    )
    ws = open_workspace(root)
    try:
        started = start_rollout(ws, SERVICE, r2, now="2026-03-02T09:00:00.000000Z")
        assert started.warnings == []
        # The webhook heard of it only once the store held it (the transition and the
        # notice it owed); the notice was marked sent after the post.
        first = receiver.bodies("/ops")[0]
        assert first["event"] == "rollout.started" and first["late"] is False
        log = audit_log(ws)
        assert [e.action for e in log][-2:] == ["rollout.start", "notify.sent"]
        assert log[-1].after["id"] == first["id"]
        assert set(log[-1].after["delivered"]) == {"ops", "chat"}
        assert ws.store.get("notice", first["id"]).value["status"] == "done"
        driven = drive_rollout(
            ws,
            SERVICE,
            error_rates={"baseline": 0.01, "candidate": 0.01, "stable": 0.01},
            start=T0,
            users=make_users(20_000, seed=1),
        )
        assert driven.actions[-1] == "promote"
        assert all(r.warnings == [] for r in driven.results)
        result = rollback(ws, SERVICE, reason="drift after promotion")
        assert result.switched and result.warnings == []
        start_rollout(ws, SERVICE, r2, now="2026-03-03T09:00:00.000000Z", reason="again")
        assert pause_rollout(ws, SERVICE, reason="hold for the batch").warnings == []
        resume_rollout(ws, SERVICE, reason="batch done")
        abort_rollout(ws, SERVICE, reason="not today")
    finally:
        ws.close()
    events = [b["event"] for b in receiver.bodies("/ops")]
    advanced = events.count("rollout.step-advanced")
    assert advanced == driven.actions.count("advance") == 3
    assert events == [
        "rollout.started",
        *["rollout.step-advanced"] * 3,
        "rollout.promoted",
        "rollout.rolled-back",
        "rollout.started",
        "rollout.held",
        "rollout.resumed",
        "rollout.aborted",
    ]
    # Each transition has its own id, the same for every webhook told of it.
    ids = [b["id"] for b in receiver.bodies("/ops")]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"{SERVICE}/") for i in ids)
    assert [b["id"] for b in receiver.bodies("/rb")] == [ids[5]]
    assert not any(b["late"] for b in receiver.bodies("/ops"))
    by_event = {b["event"]: b for b in receiver.bodies("/ops")}
    promoted = by_event["rollout.promoted"]
    assert promoted["service"] == SERVICE and promoted["candidate"] == r2
    assert promoted["stable"] == r2 and promoted["actor"] == "tester"
    assert promoted["links"]["runbook"] == f"runbooks/{SERVICE}.md"
    assert promoted["reasons"] and promoted["at"].startswith("2026-03-0")
    rolled = by_event["rollout.rolled-back"]
    assert rolled["stable"] == r1 and rolled["rolled_back"] == r2
    assert rolled["reasons"] == ["drift after promotion"]
    assert by_event["rollout.held"]["reasons"] == ["hold for the batch"]
    # Slack: its own shape, the same events.
    slack = receiver.bodies("/slack")
    assert len(slack) == len(events)
    for message in slack:
        assert set(message) == {"text", "blocks"} and message["text"].startswith(SERVICE)
        assert message["blocks"][0]["type"] == "header"
    assert "rolled back" in slack[5]["text"]
    assert [b["event"] for b in receiver.bodies("/rb")] == ["rollout.rolled-back"]
    assert receiver.bodies("/quiet") == []


def test_a_500_is_retried_until_it_lands(two_releases, receiver, tmp_path) -> None:
    src, _r1, r2 = two_releases
    root = _with_webhooks(
        src, tmp_path / "ws", [{"name": "ops", "url": f"{receiver.url}/ops", "retries": 3}]
    )
    receiver.fail_first = 2
    ws = open_workspace(root)
    try:
        assert start_rollout(ws, SERVICE, r2).warnings == []
        assert not [e for e in audit_log(ws) if e.action == notify.FAILED_ACTION]
    finally:
        ws.close()
    assert [b["event"] for b in receiver.bodies("/ops")] == ["rollout.started"] * 3


def test_a_hanging_or_refusing_webhook_costs_a_warning_and_an_audit_event(
    two_releases, receiver, tmp_path, cli, monkeypatch
) -> None:
    """The command finishes with its own exit code; what failed is named, nothing secret."""
    src, _r1, r2 = two_releases
    monkeypatch.setenv("OPS_HOOK_URL", f"{receiver.url}/gone/{SENTINEL}")
    monkeypatch.setenv("HOOK_TOKEN", f"Bearer {SENTINEL}")
    root = _with_webhooks(
        src,
        tmp_path / "ws",
        [
            {"name": "slow", "url": f"{receiver.url}/hang", "timeout_s": 1, "retries": 5},
            {
                "name": "secret-url",
                "url_env": "OPS_HOOK_URL",
                "header": "Authorization",
                "token_env": "HOOK_TOKEN",
            },
        ],
    )
    ran = cli("rollout", "start", SERVICE, "--release", r2, "--reason", "go", cwd=root)
    assert ran.code == 0, ran.err
    assert "started rollout" in ran.out
    assert "webhook slow was not told rollout.started" in ran.err
    assert "webhook secret-url was not told rollout.started: HTTP 404" in ran.err
    assert SENTINEL not in ran.out + ran.err
    ws = open_workspace(root)
    try:
        failed = [e for e in audit_log(ws) if e.action == notify.FAILED_ACTION]
        assert verify_audit(ws).ok
    finally:
        ws.close()
    assert len(failed) == 1
    by_hook = {f["webhook"]: f for f in failed[0].after["failures"]}
    assert set(by_hook) == {"slow", "secret-url"}
    assert by_hook["secret-url"]["attempts"] == 1  # a 404 is not retried
    assert by_hook["slow"]["ok"] is False
    assert SENTINEL not in json.dumps(failed[0].after)
    # The token went where it belongs (the header), and nowhere else.
    gone = [p for p in receiver.posts if p["path"].startswith("/gone")]
    assert gone[0]["headers"]["Authorization"] == f"Bearer {SENTINEL}"
    assert SENTINEL.encode() not in gone[0]["raw"]
    # A rollback is not held up either: exit 0, traffic back, a warning.
    back = cli("rollback", SERVICE, "--reason", f"password {SENTINEL}", "--yes", cwd=root)
    assert back.code == 0, back.err
    assert "traffic switched" in back.out and "webhook slow was not told" in back.err


def test_payloads_are_redacted_and_a_broken_config_is_only_a_warning(
    two_releases, receiver, tmp_path, monkeypatch
) -> None:
    src, _r1, r2 = two_releases
    monkeypatch.setenv("MY_API_TOKEN", SENTINEL)
    root = _with_webhooks(src, tmp_path / "ws", [{"name": "ops", "url": f"{receiver.url}/ops"}])
    ws = open_workspace(root)
    try:
        start_rollout(ws, SERVICE, r2)
        held = pause_rollout(ws, SERVICE, reason=f"key {SENTINEL} leaked in a log")
        assert held.warnings == []
        breach = notify.guard_breach(
            ws, SERVICE, release=r2, reasons=[f"error rate 2x ({SENTINEL})"], rolled_back_to="x"
        )
        assert breach == []
    finally:
        ws.close()
    raw = b"".join(p["raw"] for p in receiver.posts)
    assert SENTINEL.encode() not in raw and b"***" in raw
    assert [b["event"] for b in receiver.bodies("/ops")][-1] == "guard.breach"
    # releaser.yaml broken after the fact: the pause still works, nobody is told, it says so.
    (root / "releaser.yaml").write_text("project: [unclosed\n")
    ws = open_workspace(root, settings_only=True, store_only=True)
    try:
        told = resume_rollout(ws, SERVICE, reason="resume").warnings
    finally:
        ws.close()
    assert len(told) == 1 and told[0].startswith("notifications not sent (rollout.resumed)")


def test_notify_test_posts_to_each_webhook_and_fails_on_one_that_refuses(
    two_releases, receiver, tmp_path, cli
) -> None:
    src, _r1, _r2 = two_releases
    root = _with_webhooks(
        src,
        tmp_path / "ws",
        [
            {"name": "ops", "url": f"{receiver.url}/ops", "events": ["drill.failed"]},
            {"name": "chat", "url": f"{receiver.url}/slack", "format": "slack"},
        ],
    )
    ok = cli("notify", "test", SERVICE, cwd=root)
    assert ok.code == 0, ok.err
    assert "ops: delivered (1 attempt(s))" in ok.out and "chat: delivered" in ok.out
    assert receiver.bodies("/ops")[0]["event"] == "test"
    assert set(receiver.bodies("/slack")[0]) == {"text", "blocks"}
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace(f"{receiver.url}/ops", f"{receiver.url}/gone"))
    refused = cli("notify", "test", SERVICE, "--json", cwd=root)
    assert refused.code == 1
    report, error = (json.loads(line) for line in refused.out.splitlines())
    assert error["error"]["kind"] == "CheckFailed"
    hooks = {h["webhook"]: h for h in report["webhooks"]}
    assert hooks["ops"]["ok"] is False and hooks["ops"]["status"] == 404
    assert hooks["chat"]["ok"] is True


def test_side_effects_left_owed_and_a_failed_drill_are_posted(
    two_releases, receiver, tmp_path, monkeypatch
) -> None:
    """MLflow down during a rollback: traffic is back, the alias move stays owed, and the
    webhook hears of both, with the command that finishes it."""
    src, r1, r2 = two_releases
    root = _with_webhooks(src, tmp_path / "ws", [{"name": "ops", "url": f"{receiver.url}/ops"}])
    ws = open_workspace(root)
    try:
        start_rollout(ws, SERVICE, r2)
        promote_rollout(ws, SERVICE, reason="ship")
    finally:
        ws.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    ws = open_workspace(root)
    try:
        result = rollback(ws, SERVICE, reason="mlflow outage")
        assert result.switched and result.pending and result.warnings == []
    finally:
        ws.close()
    events = [b["event"] for b in receiver.bodies("/ops")]
    assert events[-2:] == ["rollout.rolled-back", "effects.pending"]
    owed = receiver.bodies("/ops")[-1]
    assert owed["stable"] == r1 and any("MLflow alias" in r for r in owed["reasons"])
    assert any(f"releaser reconcile {SERVICE}" in r for r in owed["retry"])
    # A drill that failed, as run_drill records it, is told once recorded.
    record = DrillRecord(
        service=SERVICE,
        at="2026-03-04T09:00:00.000000Z",
        kind="after-promotion",
        from_release=r1,
        to_release=r2,
        ok=False,
        time_to_revert_ms=None,
        switch_ms=3.0,
        ids_checked=2000,
        actor="tester",
        audit_verified=True,
        detail="the router did not serve the target within 10 s",
    )
    ws = open_workspace(root)
    try:
        assert notify.drill_failed(ws, record) == []
    finally:
        ws.close()
    drill = receiver.bodies("/ops")[-1]
    assert drill["event"] == "drill.failed" and drill["release"] == r2
    assert drill["reasons"] == ["the router did not serve the target within 10 s"]


def test_webhooks_get_only_their_services_and_events(receiver, tmp_path) -> None:
    (tmp_path / "releaser.yaml").write_text(
        "project: p\nowners: [{name: A, email: a@example.org, role: owner}]\n"
        "prompts: {backend: file}\n"
        "services:\n"
        "  a: {prompts: [p], slos: {availability: 0.99}}\n"
        "  b: {prompts: [q], slos: {availability: 0.99}}\n"
        + yaml.safe_dump(
            {
                "notifications": [
                    {"name": "all", "url": f"{receiver.url}/all"},
                    {"name": "only-a", "url": f"{receiver.url}/a", "services": ["a"]},
                    {"name": "breaches", "url": f"{receiver.url}/g", "events": ["guard.breach"]},
                ]
            }
        )
    )
    ws = open_workspace(tmp_path)
    try:
        assert notify.notify(ws, "rollout.promoted", {"service": "b", "release": "r2"}) == []
        assert notify.guard_breach(ws, "a", release="r3", reasons=["p95 above 800 ms"]) == []
    finally:
        ws.close()
    assert [b["service"] for b in receiver.bodies("/all")] == ["b", "a"]
    assert [b["event"] for b in receiver.bodies("/a")] == ["guard.breach"]
    breach = receiver.bodies("/g")
    assert [(b["event"], b["release"], b["reasons"]) for b in breach] == [
        ("guard.breach", "r3", ["p95 above 800 ms"])
    ]


def test_a_hold_a_person_must_act_on_is_told_once_and_routine_holds_never(
    two_releases, receiver, tmp_path
) -> None:
    from releaser.api.freeze import freeze_service

    src, _r1, r2 = two_releases
    root = _with_webhooks(src, tmp_path / "ws", [{"name": "ops", "url": f"{receiver.url}/ops"}])
    ws = open_workspace(root)
    try:
        start_rollout(ws, SERVICE, r2, now="2026-03-02T09:00:00.000000Z")
        freeze_service(
            ws, SERVICE, until="2026-03-02T12:00:00Z", reason="release weekend",
            now="2026-03-02T09:00:00.000000Z",
        )  # fmt: skip
        driven = drive_rollout(
            ws,
            SERVICE,
            error_rates={"baseline": 0.01, "candidate": 0.01, "stable": 0.01},
            start=T0,
            users=make_users(20_000, seed=1),
        )
        held_events = [e for e in audit_log(ws) if e.action == "rollout.held"]
    finally:
        ws.close()
    assert driven.actions[-1] == "promote"
    # Checks held during the freeze, and routine holds came after it: one notice in all.
    assert driven.actions.count("hold") > 1
    events = [b["event"] for b in receiver.bodies("/ops")]
    assert events.count("rollout.held") == 1, events
    assert events.index("rollout.held") < events.index("rollout.step-advanced")
    [held] = [b for b in receiver.bodies("/ops") if b["event"] == "rollout.held"]
    assert held["why"].startswith("change freeze") and held["candidate"] == r2
    assert any("release weekend" in r for r in held["reasons"]), held["reasons"]
    assert len(held_events) == 1  # recorded, with its audit event, before it was told
