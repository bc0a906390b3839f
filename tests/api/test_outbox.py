"""The notification outbox against a real receiver on 127.0.0.1 and real processes killed
with ``os._exit`` right after the transition's commit (as the guard's kill test does):
what the killed command owed is told late, exactly once, by the next command; two
deliverers racing post it once (sqlite and PostgreSQL); a notice too old is not posted
but audited; a notice whose writer still runs is left to it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from releaser.api import notify, outbox
from releaser.api.audit import audit_log, verify_audit
from releaser.api.context import utc_now
from releaser.api.retention import plan_prune, prune_store
from releaser.api.rollouts import start_rollout
from releaser.api.store_io import export_store, import_store
from releaser.api.workspace import open_workspace
from releaser.store.base import Record
from tests.api import test_notify as shared
from tests.api.test_notify import SERVICE, Receiver, _with_webhooks
from tests.store_backends import make_backend

pytestmark = pytest.mark.slow
receiver = shared.receiver  # the receiver and the workspace of test_notify
two_releases = shared.two_releases

KILL = """
import os, sys, time
from releaser.store.sqlite import SqliteStore

action, then = sys.argv[1:3]
real = SqliteStore.commit

def commit(self, writes, event, *args, **kwargs):
    out = real(self, writes, event, *args, **kwargs)
    if event.action == action:  # the transition and its notice are in; nobody was told
        if then == "die":
            os._exit(9)
        print("committed", flush=True)
        time.sleep(120)
    return out

SqliteStore.commit = commit
from releaser.cli import main
sys.argv = ["releaser", *sys.argv[3:]]
main()
"""

RACER = """
import json, os, sys, time
from pathlib import Path
from releaser.api import notify, outbox
from releaser.api.workspace import open_workspace

root, service, me, barrier = sys.argv[1:5]
real = outbox.claim
saw = []

def claim(ws, service, records, now):
    # Both deliverers have listed the notice as due before either claims it.
    saw.append([r.key for r in records])
    Path(barrier, me).touch()
    deadline = time.monotonic() + 120
    while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    return real(ws, service, records, now)

outbox.claim = claim
ws = open_workspace(root)
try:
    warnings = notify.deliver_owed(ws, service)
finally:
    ws.close()
print(json.dumps({"saw": saw, "warnings": warnings}))
"""

ROLLBACK = ["rollback", SERVICE, "--reason", "errors up after the deploy", "--yes"]


def _releaser() -> str:
    return str(Path(sys.executable).parent / "releaser")


def _killed_rollback(root: Path) -> None:
    """``releaser rollback`` in its own process, killed right after its commit."""
    killed = subprocess.run(
        [sys.executable, "-c", KILL, "rollback", "die", *ROLLBACK],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 9, killed.stderr


def _started(src: Path, dest: Path, r2: str, receiver: Receiver, path: str = "/ops") -> Path:
    root = _with_webhooks(src, dest, [{"name": "ops", "url": f"{receiver.url}{path}"}])
    ws = open_workspace(root)
    try:
        assert start_rollout(ws, SERVICE, r2).warnings == []
    finally:
        ws.close()
    return root


def _notices(root: Path) -> list[Record]:
    ws = open_workspace(root, settings_only=True)
    try:
        return ws.store.list(outbox.NOTICE_KIND)
    finally:
        ws.close()


def _actions(root: Path) -> list[str]:
    ws = open_workspace(root, settings_only=True)
    try:
        return [e.action for e in audit_log(ws)]
    finally:
        ws.close()


def test_a_rollback_killed_after_its_commit_is_told_late_once_by_the_rerun(
    two_releases, receiver, tmp_path, cli
) -> None:
    src, r1, r2 = two_releases
    root = _started(src, tmp_path / "ws", r2, receiver)
    assert [b["event"] for b in receiver.bodies("/ops")] == ["rollout.started"]
    _killed_rollback(root)
    # Traffic is back and the notification is owed; nobody was told.
    assert [b["event"] for b in receiver.bodies("/ops")] == ["rollout.started"]
    [owed] = [n for n in _notices(root) if n.value["status"] == "pending"]
    assert owed.value["event"] == "rollout.rolled-back"
    assert _actions(root)[-1] == "rollback"
    status = cli("rollout", "status", SERVICE, "--json", cwd=root)
    assert status.code == 0, status.err
    shown = json.loads(status.out)
    assert shown["stable"] == r1
    assert [n["id"] for n in shown["owed_notices"]] == [owed.key]
    text = cli("rollout", "status", SERVICE, cwd=root)
    assert "owed: notification rollout.rolled-back" in text.err

    rerun = subprocess.run(
        [_releaser(), *ROLLBACK], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    told = receiver.bodies("/ops")[1:]
    assert [b["event"] for b in told] == ["rollout.rolled-back"]
    late = told[0]
    assert late["late"] is True and late["id"] == owed.key
    assert late["at"] == owed.value["at"] and late["title"].endswith("(told late)")
    assert late["stable"] == r1 and late["rolled_back"] == r2
    assert late["reasons"] == ["errors up after the deploy"]
    actions = _actions(root)
    assert actions[-2:] == ["notify.claim", "notify.sent"]
    assert actions.count("rollback") == 1
    assert cli("audit", "verify", cwd=root).code == 0
    # Told once: another command finds nothing owed.
    again = subprocess.run(
        [_releaser(), *ROLLBACK], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    assert len(receiver.bodies("/ops")) == 2
    assert json.loads(cli("rollout", "status", SERVICE, "--json").out)["owed_notices"] == []
    [done] = _notices(root)[-1:]
    assert done.key == owed.key and done.value["status"] == "done" and done.value["late"]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_deliverers_racing_post_an_owed_notice_once(
    two_releases, receiver, tmp_path, monkeypatch, kind: str
) -> None:
    src, _r1, r2 = two_releases
    root = _started(src, tmp_path / "ws", r2, receiver, "/slow/ops")
    _killed_rollback(root)
    [owed] = [n for n in _notices(root) if n.value["status"] == "pending"]
    backend = None
    if kind == "postgres":
        # The store moves to PostgreSQL through an archive, the owed notice with it.
        ws = open_workspace(root, settings_only=True)
        try:
            export_store(ws.store, tmp_path / "state.zip")
        finally:
            ws.close()
        backend = make_backend("postgres", tmp_path)
        target = backend.open()
        try:
            import_store(target, tmp_path / "state.zip")
        finally:
            target.close()
        monkeypatch.setenv("RELEASER_STORE", backend.url)
        assert [n.key for n in _notices(root) if n.value["status"] == "pending"] == [owed.key]
    try:
        barrier = tmp_path / "barrier"
        barrier.mkdir()
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(root), SERVICE, name, str(barrier)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("a", "b")
        ]
        outcomes = []
        for racer in racers:
            out, err = racer.communicate(timeout=300)
            assert racer.returncode == 0, err
            outcomes.append(json.loads(out.splitlines()[-1]))
        # Both saw the notice due and went for it; one claim won, one post went out.
        assert [o["saw"] for o in outcomes] == [[[owed.key]], [[owed.key]]]
        assert [o["warnings"] for o in outcomes] == [[], []]
        told = [b for b in receiver.bodies("/slow/ops") if b["event"] == "rollout.rolled-back"]
        assert [(b["id"], b["late"]) for b in told] == [(owed.key, True)]
        actions = _actions(root)
        assert actions.count("notify.claim") == 1 and actions[-1] == "notify.sent"
        [done] = [n for n in _notices(root) if n.key == owed.key]
        assert done.value["status"] == "done"
        ws = open_workspace(root, settings_only=True)
        try:
            assert verify_audit(ws).ok
        finally:
            ws.close()
    finally:
        if backend is not None:
            backend.cleanup()


def test_a_notice_too_old_is_not_posted_but_expired_audited_and_later_pruned(
    two_releases, receiver, tmp_path
) -> None:
    src, _r1, r2 = two_releases
    root = _started(src, tmp_path / "ws", r2, receiver)
    _killed_rollback(root)
    [owed] = [n for n in _notices(root) if n.value["status"] == "pending"]
    written = outbox._parse(owed.value["written_at"])
    day_later = (written + timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ws = open_workspace(root)
    try:
        warnings = notify.deliver_owed(ws, SERVICE, now=day_later)
        log = audit_log(ws)
        expired = ws.store.get(outbox.NOTICE_KIND, owed.key)
        assert verify_audit(ws).ok
    finally:
        ws.close()
    assert len(warnings) == 1 and "rollout.rolled-back" in warnings[0]
    assert "over 24 h old: not sent" in warnings[0]
    assert [b["event"] for b in receiver.bodies("/ops")] == ["rollout.started"]
    assert expired is not None and expired.value["status"] == "expired"
    assert log[-1].action == outbox.EXPIRED_ACTION
    assert log[-1].after["notices"] == [
        {"id": owed.key, "event": "rollout.rolled-back", "at": owed.value["at"]}
    ]
    # Told and expired notices go with a prune a week on; the audit events stay.
    ws = open_workspace(root)
    try:
        assert plan_prune(ws).notices == []  # both finished today
        stored = {n.key: n.value["status"] for n in ws.store.list(outbox.NOTICE_KIND)}
        assert sorted(stored.values()) == ["done", "expired"]  # rollout.started, the rollback
        week_on = (written + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pruned = prune_store(ws, now=week_on)
        assert {n["key"] for n in pruned.notices} == set(stored)
        assert ws.store.list(outbox.NOTICE_KIND) == []
        assert verify_audit(ws).ok
        assert [e.action for e in audit_log(ws)].count(outbox.EXPIRED_ACTION) == 1
    finally:
        ws.close()


def test_a_notice_whose_writer_still_runs_is_left_to_it_until_the_grace_is_over(
    two_releases, receiver, tmp_path
) -> None:
    src, _r1, r2 = two_releases
    root = _started(src, tmp_path / "ws", r2, receiver)
    writer = subprocess.Popen(
        [sys.executable, "-c", KILL, "rollback", "wait", *ROLLBACK],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "committed"
        [owed] = [n for n in _notices(root) if n.value["status"] == "pending"]
        assert owed.value["writer"]["pid"] == writer.pid
        written = outbox._parse(owed.value["written_at"])
        ws = open_workspace(root)
        try:
            assert outbox.due(ws, SERVICE, utc_now()) == ([], [])
            after_grace = written + timedelta(seconds=outbox.GRACE_S + 1)
            due, _ = outbox.due(ws, SERVICE, after_grace.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
            assert [r.key for r in due] == [owed.key]
        finally:
            ws.close()
    finally:
        writer.kill()
        writer.communicate()  # reaped, its pipes closed
    # The writer is gone: its notice is due at once, and the next command tells it.
    ws = open_workspace(root)
    try:
        assert [r.key for r in outbox.due(ws, SERVICE, utc_now())[0]] == [owed.key]
        assert notify.deliver_owed(ws, SERVICE) == []
    finally:
        ws.close()
    told = receiver.bodies("/ops")
    assert [(b["event"], b["late"]) for b in told] == [
        ("rollout.started", False),
        ("rollout.rolled-back", True),
    ]


def test_a_refusing_webhook_is_not_asked_again_late(two_releases, receiver, tmp_path) -> None:
    """A notice whose post failed after its retries is done, with notify.failed: the next
    command does not post it again."""
    src, _r1, r2 = two_releases
    root = _with_webhooks(src, tmp_path / "ws", [{"name": "ops", "url": f"{receiver.url}/gone"}])
    ws = open_workspace(root)
    try:
        started = start_rollout(ws, SERVICE, r2)
        assert started.warnings == ["webhook ops was not told rollout.started: HTTP 404"]
        assert [n.value["status"] for n in ws.store.list(outbox.NOTICE_KIND)] == ["done"]
        assert notify.deliver_owed(ws, SERVICE) == []
        assert [e.action for e in audit_log(ws)][-1] == notify.FAILED_ACTION
    finally:
        ws.close()
    assert [p["body"]["event"] for p in receiver.posts] == ["rollout.started"]
