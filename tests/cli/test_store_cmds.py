"""store export and store import as an operator runs them, on the example workspace.

A real release and rollout history (two releases gated, a rollout advanced on
metrics, a rollback) is backed up, moved to PostgreSQL (when a test server is
given) and to a new sqlite file, and verified there by ``audit verify``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from releaser.api.workspace import open_workspace
from releaser.demo.traffic import advance_to_step
from releaser.demo.workspace import ExampleWorkspace
from tests.store_backends import PostgresBackend, postgres_dsn

if TYPE_CHECKING:
    from conftest import OwnerKeys

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


def history(root: Path, cli, released) -> None:
    """Two releases, a rollout advanced on metrics to canary-25, then rolled back."""
    released(root)
    ws = open_workspace(root)
    try:
        advance_to_step(ws, SERVICE, "canary-25")
    finally:
        ws.close()
    res = cli("rollback", SERVICE, "--reason", "drill", "--yes", cwd=root)
    assert res.code == 0, res.err


def test_backup_then_move_to_postgres_and_to_sqlite(
    release_ws: ExampleWorkspace, cli, released, tmp_path: Path
) -> None:
    root = release_ws.root
    history(root, cli, released)
    before = json.loads(cli("audit", "log", "--limit", "0", "--json", cwd=root).out)
    status = json.loads(cli("rollout", "status", SERVICE, "--json").out)

    backup = tmp_path / "backup.zip"
    res = cli("store", "export", str(backup))
    assert res.code == 0, res.err
    assert f"to {backup}: " in res.out and "audit entries (head" in res.out
    assert "releaser store import" in res.out
    res = cli("store", "export", str(backup))
    assert res.code == 2 and "exists; nothing was written" in res.err and "--force" in res.err
    res = cli("store", "export", str(backup), "--force", "--json")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["audit_head"]["seq"] == len(before) and summary["rows"]["rollout_metrics"] > 0
    assert summary["rows"]["records"] > 5 and summary["source"]["backend"] == "sqlite"

    targets = [f"sqlite://{(tmp_path / 'moved.db').as_posix()}"]
    dsn = postgres_dsn()
    pg = PostgresBackend(dsn) if dsn else None
    if pg is not None:
        targets.append(pg.url)
    try:
        for url in targets:
            res = cli("store", "import", str(backup), "--store", url)
            assert res.code == 0, res.err
            assert "the audit chain and every record verify on the target" in res.out
            res = cli("--store", url, "audit", "verify")
            assert res.code == 0, res.err
            assert f"audit chain ok: {len(before)} events" in res.out
            after = json.loads(cli("--store", url, "audit", "log", "--limit", "0", "--json").out)
            assert after == before
            moved = json.loads(cli("--store", url, "rollout", "status", SERVICE, "--json").out)
            assert moved == status
            # A second import into the same store is refused, and changes nothing.
            res = cli("store", "import", str(backup), "--store", url)
            assert res.code == 2
            assert "is not empty (it holds records" in res.err and "nothing was written" in res.err
            assert cli("--store", url, "audit", "verify").code == 0
        if pg is not None:
            # And back: PostgreSQL -> sqlite, every row as it was.
            back = tmp_path / "back.zip"
            assert cli("--store", pg.url, "store", "export", str(back)).code == 0
            res = cli("store", "import", str(back), "--store", str(tmp_path / "back.db"))
            assert res.code == 0, res.err
            for name in (m for m in zipfile.ZipFile(backup).namelist() if m != "manifest.json"):
                assert zipfile.ZipFile(back).read(name) == zipfile.ZipFile(backup).read(name)
            res = cli("--store", str(tmp_path / "back.db"), "audit", "verify")
            assert res.code == 0, res.err
    finally:
        if pg is not None:
            pg.cleanup()


def test_a_tampered_archive_is_refused_naming_the_entry(
    release_ws: ExampleWorkspace, cli, released, tmp_path: Path
) -> None:
    root = release_ws.root
    released(root)
    backup = tmp_path / "backup.zip"
    assert cli("store", "export", str(backup), cwd=root).code == 0
    # Someone edits who approved a gate, and recomputes the member's hash in the manifest.
    with zipfile.ZipFile(backup) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    lines = members["audit_events.jsonl"].splitlines(keepends=True)
    seq = max(json.loads(x)["seq"] for x in lines if b'\\"actor\\":\\"tester\\"' in x)
    row = json.loads(lines[seq - 1])
    row["payload"] = row["payload"].replace('"actor":"tester"', '"actor":"someone-else"')
    assert '"actor":"someone-else"' in row["payload"]
    lines[seq - 1] = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    members["audit_events.jsonl"] = b"".join(lines)
    manifest = json.loads(members["manifest.json"])
    entry = manifest["members"]["audit_events.jsonl"]
    entry["sha256"] = hashlib.sha256(members["audit_events.jsonl"]).hexdigest()
    entry["bytes"] = len(members["audit_events.jsonl"])
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(backup, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)

    target = tmp_path / "target.db"
    res = cli("store", "import", str(backup), "--store", str(target))
    assert res.code == 2
    assert f"entry {seq}: entry {seq} has been altered" in res.err
    assert "nothing was written" in res.err and "Traceback" not in res.err
    assert json.loads(cli("--store", str(target), "audit", "log", "--json").out) == []

    res = cli("store", "import", str(tmp_path / "missing.zip"), "--store", str(target))
    assert res.code == 2 and "does not exist" in res.err


def test_export_of_a_tampered_store_exits_1_and_writes_nothing(
    release_ws: ExampleWorkspace, cli, released, tmp_path: Path
) -> None:
    import sqlite3

    root = release_ws.root
    released(root)
    con = sqlite3.connect(root / ".releaser" / "state.db")
    with con:
        con.execute(
            "UPDATE records SET value = json_set(value, '$.stable', 'x') WHERE kind = 'service'"
        )
    con.close()
    res = cli("store", "export", str(tmp_path / "b.zip"), cwd=root)
    assert res.code == 1
    assert "does not verify, so no archive was written" in res.err
    assert "record service/case-triage" in res.err
    assert list(tmp_path.glob("*b.zip*")) == []


def test_checkpoints_made_on_the_source_verify_the_target(
    release_ws: ExampleWorkspace, cli, released, owner_keys: OwnerKeys, tmp_path: Path
) -> None:
    root = release_ws.root
    owner_keys.enrol(root, ["priya"])
    released(root)
    res = cli("audit", "checkpoint", "--key", str(owner_keys.key("priya")), cwd=root)
    assert res.code == 0, res.err
    [checkpoint] = (root / "audit-checkpoints").glob("*.json")
    backup = tmp_path / "backup.zip"
    assert cli("store", "export", str(backup)).code == 0
    target = tmp_path / "target.db"
    # From a folder without releaser.yaml: a store given outright needs none, and no warning.
    res = cli("store", "import", str(backup), "--store", str(target), cwd=tmp_path)
    assert res.code == 0 and res.err == "", res.err
    res = cli("--store", str(target), "audit", "verify", "--checkpoint", str(checkpoint), cwd=root)
    assert res.code == 0, res.err
    assert "intact (signed by priya.shah@example.org)" in res.out


def test_prune_is_a_dry_run_until_applied_and_keeps_what_gates_need(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    """Two gated releases; with one release kept and a day's retention, the older
    release's predictions go once they are old, the stable one's never do."""
    import sqlite3

    root = release_ws.root
    r1, r2 = released(root)
    res = cli("rollback", SERVICE, "--reason", "back to r1", "--yes", cwd=root)
    assert res.code == 0, res.err  # r1 stable, r2 rolled back: neither live
    config = root / "releaser.yaml"
    config.write_text(
        config.read_text() + "retention:\n  gate_predictions_days: 1\n  keep_releases: 1\n"
    )
    res = cli("store", "prune")
    assert res.code == 0 and "nothing to prune (2 stored gate predictions kept)" in res.out
    db = root / ".releaser" / "state.db"
    with sqlite3.connect(db) as con:
        con.execute(
            "UPDATE records SET updated_at = '2020-01-01T00:00:00.000000Z' "
            "WHERE kind = 'gate_predictions'"
        )
    con.close()
    # r2 is the latest release (kept), r1 the stable one (kept): still nothing.
    assert "nothing to prune" in cli("store", "prune").out
    assert cli("release", "create", SERVICE, "--allow-dirty").code == 0  # a third, later release
    res = cli("store", "prune", "--json")
    plan = json.loads(res.out)
    assert res.code == 0 and not plan["applied"]
    assert [p["release_id"] for p in plan["predictions"]] == [r2]
    assert r1 in plan["kept_releases"][SERVICE]
    res = cli("store", "prune")
    assert "would remove 1 stored gate predictions" in res.out and "dry run" in res.out
    res = cli("store", "prune", "--apply")
    assert res.code == 0 and "removed 1 stored gate predictions" in res.out
    assert "(store.prune)" in res.out
    assert cli("audit", "verify").code == 0
    assert "nothing to prune" in cli("store", "prune", "--apply").out
    # The pruned release still gates: its predictions are made again.
    res = cli("gate", SERVICE, "--release", r2, "--json")
    assert json.loads(res.out)["release_id"] == r2
