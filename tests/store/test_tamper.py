"""Tampering with the stored audit chain is detected, and at the right entry."""

from __future__ import annotations

import pytest

from releaser.core.audit import chain_hash, verify_chain
from releaser.store.base import Store, Write

from .conftest import Backend, draft, insert


@pytest.fixture
def chained(store: Store, backend: Backend) -> Store:
    """A store with five chained events (seq 1..5) that verifies cleanly.

    The database's append-only triggers are dropped first: these tests play an
    attacker who can do that (``test_the_database_refuses_...`` shows they hold).
    """
    insert(store, "rollout", "svc", {"step": 0})
    for version in range(1, 5):
        store.commit([Write("rollout", "svc", {"step": version}, version)], draft())
    assert verify_chain(store.raw_events(), head=store.audit_head()).ok
    backend.unguard()
    return store


def test_the_database_refuses_to_update_or_delete_audit_events(
    store: Store, backend: Backend
) -> None:
    insert(store, "rollout", "svc", {"step": 0})
    for statement in (
        "UPDATE audit_events SET payload = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "DELETE FROM audit_events",
        *(["TRUNCATE audit_events"] if backend.name == "postgres" else []),
    ):
        with pytest.raises(Exception, match="audit events are append-only"):
            backend.sql(statement)
    assert [e.seq for e in store.raw_events()] == [1]
    assert verify_chain(store.raw_events(), head=store.audit_head()).ok


def payload_of(backend: Backend, seq: int) -> str:
    """The stored payload text of event ``seq``."""
    return str(backend.sql("SELECT payload FROM audit_events WHERE seq = ?", (seq,))[0][0])


class TestTamper:
    def test_flipped_byte_in_payload(self, chained: Store, backend: Backend) -> None:
        payload = payload_of(backend, 3)
        # "ci" -> "cj": one byte, still valid JSON.
        tampered = payload.replace('"actor":"ci"', '"actor":"cj"')
        assert tampered != payload
        backend.sql("UPDATE audit_events SET payload = ? WHERE seq = 3", (tampered,))
        result = verify_chain(chained.raw_events(), head=chained.audit_head())
        assert not result.ok
        assert result.bad_seq == 3
        assert result.problem is not None and "altered" in result.problem

    def test_edit_with_recomputed_hash_breaks_the_next_link(
        self, chained: Store, backend: Backend
    ) -> None:
        prev = str(backend.sql("SELECT prev_hash FROM audit_events WHERE seq = 3")[0][0])
        tampered = payload_of(backend, 3).replace('"actor":"ci"', '"actor":"mallory"')
        backend.sql(
            "UPDATE audit_events SET payload = ?, hash = ? WHERE seq = 3",
            (tampered, chain_hash(3, prev, tampered)),
        )
        result = verify_chain(chained.raw_events(), head=chained.audit_head())
        assert (result.ok, result.bad_seq) == (False, 4)
        assert result.problem is not None and "does not link" in result.problem

    def test_deleted_event(self, chained: Store, backend: Backend) -> None:
        backend.sql("DELETE FROM audit_events WHERE seq = 3")
        result = verify_chain(chained.raw_events(), head=chained.audit_head())
        assert (result.ok, result.bad_seq) == (False, 3)
        assert result.problem is not None and "missing" in result.problem

    def test_swapped_events(self, chained: Store, backend: Backend) -> None:
        backend.sql("UPDATE audit_events SET seq = -2 WHERE seq = 2")
        backend.sql("UPDATE audit_events SET seq = 2 WHERE seq = 3")
        backend.sql("UPDATE audit_events SET seq = 3 WHERE seq = -2")
        result = verify_chain(chained.raw_events(), head=chained.audit_head())
        assert (result.ok, result.bad_seq) == (False, 2)
        assert result.problem is not None and "does not link" in result.problem

    def test_deleted_last_event_is_caught_by_the_head(
        self, chained: Store, backend: Backend
    ) -> None:
        backend.sql("DELETE FROM audit_events WHERE seq = 5")
        # The chain that is left is internally consistent ...
        assert verify_chain(chained.raw_events()).ok
        # ... but the recorded head says an entry is gone.
        result = verify_chain(chained.raw_events(), head=chained.audit_head())
        assert (result.ok, result.bad_seq) == (False, 5)
        assert result.problem is not None and "truncated" in result.problem


def test_a_byte_that_is_not_utf8_is_tampering_named_by_its_entry(
    chained: Store, backend: Backend
) -> None:
    if backend.name != "sqlite":
        pytest.skip("PostgreSQL refuses text that is not valid in its encoding")
    payload = payload_of(backend, 3).encode()
    broken = payload.replace(b'"actor":"ci"', b'"actor":"c\xff"')
    backend.sql("UPDATE audit_events SET payload = CAST(? AS TEXT) WHERE seq = 3", (broken,))
    result = verify_chain(chained.raw_events(), head=chained.audit_head())
    assert (result.ok, result.bad_seq) == (False, 3)
    assert result.problem == (
        "entry 3 holds bytes that are not UTF-8 text: it was edited outside releaser"
    )
    # Reading the log decodes what it can and names the entry it cannot.
    assert [e.seq for e in chained.events(after_seq=3)] == [4, 5]
    broken_json = payload.replace(b'"actor":"ci"', b'"actor":\xff')
    backend.sql("UPDATE audit_events SET payload = CAST(? AS TEXT) WHERE seq = 3", (broken_json,))
    from releaser.errors import CheckFailed

    with pytest.raises(CheckFailed, match="audit entry 3 cannot be read"):
        list(chained.events())
