"""The chain-fixing attacker: someone who can write to the database and re-hash the chain.

The hash chain alone cannot catch them (each attack below leaves a chain that
verifies). A signed checkpoint, made with an owner's real SSH key before the
attack, catches every one and names it; a state-only edit is caught by the
records' links to the entries that wrote them, checkpoint or not. Both stores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from releaser.api.audit import load_checkpoint, make_checkpoint, verify_anchored, verify_audit
from releaser.api.workspace import Workspace, open_workspace
from releaser.config.template import render_init_template
from releaser.core.audit import EventDraft, chain_hash
from releaser.core.canonical import canonical_json
from releaser.errors import BadInput
from releaser.store.base import Write

from .conftest import Backend

if TYPE_CHECKING:
    from conftest import OwnerKeys

AT = "2026-12-07T10:00:00.000000Z"


@pytest.fixture
def ws(
    backend: Backend, tmp_path: Path, owner_keys: OwnerKeys, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A workspace on ``backend`` whose owners list their keys, with five entries of history."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "releaser.yaml").write_text(
        render_init_template("council-casework", "case-triage"), encoding="utf-8"
    )
    owner_keys.enrol(root, ["priya", "tom"], commit=False)
    monkeypatch.setenv("RELEASER_STORE", backend.url)
    workspace = open_workspace(root)
    store = workspace.store
    for step in range(5):
        store.commit(
            [Write("rollout", "svc", {"step": step}, step)],
            EventDraft(actor="ci", action="rollout.advance", subject="rollout:svc", at=AT),
        )
    yield workspace
    workspace.close()


def rehash(backend: Backend, start: int = 1) -> None:
    """Recompute every link and hash from entry ``start`` on, and the head, as an attacker
    who knows the hash function does."""
    rows = backend.sql("SELECT seq, prev_hash, hash, payload FROM audit_events ORDER BY seq")
    prev = "0" * 64 if start == 1 else None
    for seq, _old_prev, old_hash, payload in rows:
        if seq < start:
            prev = old_hash
            continue
        digest = chain_hash(seq, prev, payload)
        backend.sql(
            "UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
        )
        prev = digest
    last = rows[-1][0] if rows else 0
    backend.sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (last, prev))


def checkpoint(ws: Workspace, owner_keys: OwnerKeys, tmp_path: Path, who: str = "priya"):
    cp, path = make_checkpoint(ws, owner_keys.key(who), tmp_path / f"cp-{who}.json")
    return [(str(path), cp)], path


def test_a_checkpoint_signs_the_head_and_verifies(ws, owner_keys, tmp_path: Path) -> None:
    cps, path = checkpoint(ws, owner_keys, tmp_path)
    cp = cps[0][1]
    assert (cp.seq, cp.hash) == ws.store.audit_head() and cp.signer == "priya.shah@example.org"
    assert load_checkpoint(path) == cp
    result = verify_anchored(ws, cps)
    assert result.ok and result.records == 1, result.problems
    assert result.checkpoints[0]["problem"] is None
    # The history keeps growing after a checkpoint: still fine.
    ws.store.commit(
        [Write("rollout", "svc", {"step": 9}, 5)],
        EventDraft(actor="ci", action="rollout.advance", subject="rollout:svc", at=AT),
    )
    assert verify_anchored(ws, cps).ok


def test_rewind_delete_the_tail_and_move_the_head_back(
    ws, backend: Backend, owner_keys, tmp_path: Path
) -> None:
    cps, _ = checkpoint(ws, owner_keys, tmp_path)
    backend.unguard()
    backend.sql("DELETE FROM audit_events WHERE seq > 3")
    rehash(backend, 4)
    backend.sql("UPDATE records SET version = 3, value = ?, event_seq = 3", ('{"step":2}',))
    assert verify_audit(ws).ok  # the chain alone is fooled
    result = verify_anchored(ws, cps)
    assert not result.ok and result.state_problems == []
    assert result.checkpoints[0]["problem"] == (
        "the log was rewound: checkpoint 5 anchors entry 5, the store holds 3 "
        "(entries 4..5 were deleted)"
    )


def test_reset_everything_and_build_a_new_chain(
    ws, backend: Backend, owner_keys, tmp_path: Path
) -> None:
    cps, _ = checkpoint(ws, owner_keys, tmp_path)
    backend.unguard()
    payloads = [str(r[0]) for r in backend.sql("SELECT payload FROM audit_events ORDER BY seq")]
    backend.sql("DELETE FROM audit_events")
    for seq, payload in enumerate(payloads, 1):
        forged = payload.replace('"actor":"ci"', '"actor":"mallory"')
        backend.sql(
            "INSERT INTO audit_events (seq, prev_hash, hash, payload, subject) "
            "VALUES (?, '', '', ?, 'rollout:svc')",
            (seq, forged),
        )
    rehash(backend)
    assert verify_audit(ws).ok
    problem = verify_anchored(ws, cps).checkpoints[0]["problem"]
    assert problem == (
        "the log was reset: entry 1 is not the one checkpoint 5 anchored, so every entry "
        "up to 5 was replaced"
    )


def test_edit_an_entry_and_rehash_the_rest(
    ws, backend: Backend, owner_keys, tmp_path: Path
) -> None:
    cps, _ = checkpoint(ws, owner_keys, tmp_path)
    backend.unguard()
    payload = str(backend.sql("SELECT payload FROM audit_events WHERE seq = 3")[0][0])
    backend.sql(
        "UPDATE audit_events SET payload = ? WHERE seq = 3",
        (payload.replace('"actor":"ci"', '"actor":"mallory"'),),
    )
    rehash(backend, 3)
    assert verify_audit(ws).ok
    problem = verify_anchored(ws, cps).checkpoints[0]["problem"]
    assert problem == (
        "entries up to 5 were rewritten: entry 5's hash is not the one checkpoint 5 anchored "
        "(an entry at or before 5 was edited, inserted or removed and the chain re-hashed)"
    )


def test_append_a_forged_entry_after_the_checkpoint(
    ws, backend: Backend, owner_keys, tmp_path: Path
) -> None:
    cps, path = checkpoint(ws, owner_keys, tmp_path)
    cp = cps[0][1]
    forged = EventDraft(
        actor="priya.shah@example.org", action="phase.approve", subject="release:x", at=AT
    ).payload()
    digest = chain_hash(6, cp.hash, forged)
    backend.sql(
        "INSERT INTO audit_events (seq, prev_hash, hash, payload, subject) "
        "VALUES (6, ?, ?, ?, 'release:x')",
        (cp.hash, digest, forged),
    )
    backend.sql("UPDATE audit_head SET seq = 6, hash = ? WHERE id = 1", (digest,))
    assert verify_audit(ws).ok
    # The prefix it anchors is intact; the head recorded elsewhere says nothing came after.
    result = verify_anchored(ws, cps, expect_head=(cp.seq, cp.hash))
    assert result.checkpoints[0]["ok"] and not result.ok
    assert result.head_problem == "entries 6..6 were appended after the expected head (entry 5)"


def test_edit_state_alone(ws, backend: Backend) -> None:
    assert verify_anchored(ws).ok
    backend.sql("UPDATE records SET value = ? WHERE kind = 'rollout'", ('{"step":0}',))
    assert verify_audit(ws).ok  # the events were not touched
    assert verify_anchored(ws).state_problems == [
        "record rollout/svc (version 5) is not the value audit entry 5 wrote: it was edited "
        "outside releaser"
    ]
    backend.sql("UPDATE records SET value = ?, version = 3 WHERE kind = 'rollout'", ('{"step":4}',))
    assert verify_anchored(ws).state_problems == [
        "record rollout/svc (version 3) names audit entry 5, which wrote version 5: it was "
        "changed outside releaser"
    ]
    backend.sql("UPDATE records SET version = 5, event_seq = 2 WHERE kind = 'rollout'")
    assert verify_anchored(ws).state_problems == [
        "record rollout/svc (version 5) names audit entry 2, which wrote version 2: it was "
        "changed outside releaser"
    ]
    backend.sql("UPDATE records SET event_seq = NULL WHERE kind = 'rollout'")
    text = canonical_json({"model": "forged"})
    cast = "CAST(? AS json)" if backend.name == "postgres" else "?"
    backend.sql(
        "INSERT INTO records (kind, key, version, value, updated_at, event_seq) "
        f"VALUES ('release', 'forged', 1, {cast}, ?, 3)",
        (text, AT),
    )
    assert verify_anchored(ws).state_problems == [
        "record rollout/svc names no audit entry: it was written outside releaser",
        "record release/forged (version 1) names audit entry 3, which did not write it",
    ]


def test_a_checkpoint_that_is_not_an_owners_signature_fails(ws, owner_keys, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="is not listed in any owner's ssh_keys"):
        make_checkpoint(ws, owner_keys.key("mallory"), tmp_path / "m.json")
    cps, path = checkpoint(ws, owner_keys, tmp_path)
    data = json.loads(path.read_text())
    data["statement"] = data["statement"].replace('"seq":5', '"seq":4')
    path.write_text(json.dumps(data))
    edited = [(str(path), load_checkpoint(path))]
    problem = verify_anchored(ws, edited).checkpoints[0]["problem"]
    assert problem.startswith("its signature (priya.shah@example.org) does not verify")
    # Checked against other keys (an allowed_signers file) it does not verify either.
    result = verify_anchored(ws, cps, allowed_signers=f"x@y.z {owner_keys.public('tom')}\n")
    assert not result.ok and "does not verify" in result.checkpoints[0]["problem"]
    path.write_text("{}")
    with pytest.raises(BadInput, match="is not an audit checkpoint: expected a JSON object"):
        load_checkpoint(path)
