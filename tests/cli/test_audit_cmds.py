"""audit checkpoint and audit verify as an operator runs them, on the example workspace."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from releaser.demo.workspace import ExampleWorkspace

if TYPE_CHECKING:
    from conftest import OwnerKeys

pytestmark = pytest.mark.slow


def test_checkpoint_then_verify_catches_a_rewound_log(
    release_ws: ExampleWorkspace, cli, owner_keys: OwnerKeys
) -> None:
    root = release_ws.root
    owner_keys.enrol(root, ["priya"])
    assert cli("release", "create", "case-triage", cwd=root).code == 0
    res = cli("audit", "checkpoint", "--key", str(owner_keys.key("priya")))
    assert res.code == 0, res.err
    files = list((root / "audit-checkpoints").glob("*.json"))
    assert len(files) == 1 and "signed by priya.shah@example.org" in res.out
    seq = int(files[0].stem)
    assert f"checkpoint of entries 1..{seq}" in res.out

    res = cli("audit", "verify", "--checkpoint", str(files[0]))
    assert res.code == 0, res.err
    assert f"entries 1..{seq} intact (signed by priya.shah@example.org)" in res.out
    res = cli("audit", "verify", "--checkpoint", str(files[0]), "--json")
    data = json.loads(res.out)
    assert data["ok"] is True and data["checkpoints"][0]["seq"] == seq and data["records"] > 0

    res = cli("audit", "verify", "--expect-head", "12:abc")
    assert res.code == 2 and "is not SEQ:HASH or a checkpoint file" in res.err

    # Someone with the database file deletes the last entry and rewinds the head.
    con = sqlite3.connect(root / ".releaser" / "state.db")
    with con:
        con.execute("DROP TRIGGER audit_events_no_delete")
        [(prev,)] = con.execute("SELECT prev_hash FROM audit_events WHERE seq = ?", (seq,))
        con.execute("DELETE FROM audit_events WHERE seq = ?", (seq,))
        con.execute("UPDATE audit_head SET seq = ?, hash = ?", (seq - 1, prev))
    con.close()
    assert cli("audit", "verify").code == 1  # the record the entry wrote now names nothing
    res = cli("audit", "verify", "--checkpoint", str(files[0]))
    assert res.code == 1
    assert (
        f"FAILED: the log was rewound: checkpoint {seq} anchors entry {seq}, the store holds "
        f"{seq - 1}" in res.err
    )
    assert "Traceback" not in res.err


def test_a_byte_that_is_not_utf8_is_reported_as_tampering(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    assert cli("release", "create", "case-triage", cwd=root).code == 0
    con = sqlite3.connect(root / ".releaser" / "state.db")
    with con:
        con.execute("DROP TRIGGER audit_events_no_update")
        [(seq, payload)] = con.execute(
            "SELECT seq, CAST(payload AS BLOB) FROM audit_events ORDER BY seq DESC LIMIT 1"
        )
        broken = bytes(payload).replace(b"release.create", b"release.cr\xffate")
        con.execute(
            "UPDATE audit_events SET payload = CAST(? AS TEXT) WHERE seq = ?", (broken, seq)
        )
    con.close()
    res = cli("audit", "verify")
    assert res.code == 1
    assert f"BROKEN at entry {seq}: entry {seq} holds bytes that are not UTF-8 text" in res.err
    res = cli("audit", "log")
    assert res.code == 0 and "release.cr\\xffate" in res.out
