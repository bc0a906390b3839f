"""Checks and encodings both SQL backends share when they commit a transition.

Writes and audit events are checked and encoded before any transaction starts,
so bad input writes nothing; a compare-and-swap that lost gets one error text
whichever backend ran it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from releaser.core.audit import EventDraft, RawEvent, chain_hash, value_digest
from releaser.core.canonical import canonical_json
from releaser.errors import BadInput, StateConflict
from releaser.store.base import Delete, Write

__all__ = [
    "PreparedWrite",
    "anchor_existing_records",
    "append_event",
    "apply_prune",
    "apply_writes",
    "conflict_error",
    "encode_event",
    "prepare_writes",
    "utc_stamp",
]


@dataclass(frozen=True)
class PreparedWrite:
    """A :class:`Write` checked and encoded, ready for SQL."""

    kind: str
    key: str
    value_json: str
    expected_version: int


def prepare_writes(writes: Sequence[Write]) -> list[PreparedWrite]:
    """Check and encode ``writes`` before any transaction starts (bad input writes nothing)."""
    prepared: list[PreparedWrite] = []
    seen: set[tuple[str, str]] = set()
    for w in writes:
        where = f"{w.kind}/{w.key}"
        if not w.kind or not w.key:
            raise BadInput(f"record {where!r}: kind and key must not be empty")
        if (w.kind, w.key) in seen:
            raise BadInput(
                f"record {where} is written twice in one transition",
                hint="merge the two writes into one",
            )
        seen.add((w.kind, w.key))
        if w.expected_version < 0:
            raise BadInput(
                f"record {where}: expected_version {w.expected_version} is negative",
                hint="use 0 to create a record, or the version you read to change it",
            )
        if not isinstance(w.value, dict):
            raise BadInput(f"record {where}: value must be a JSON object (a dict)")
        prepared.append(PreparedWrite(w.kind, w.key, _encode(w.value, where), w.expected_version))
    return prepared


def encode_event(event: EventDraft, writes: Sequence[PreparedWrite] | None = None) -> str:
    """The canonical payload of ``event``, listing ``writes`` (each record's new version
    and value digest) when given; a value JSON cannot hold is bad input."""
    digests = (
        None
        if writes is None
        else [(w.kind, w.key, w.expected_version + 1, value_digest(w.value_json)) for w in writes]
    )
    try:
        return event.payload(digests)
    except (TypeError, ValueError) as exc:
        raise BadInput(
            f"audit event {event.action} on {event.subject} cannot be stored as JSON: {exc}",
            hint="use only strings, numbers, booleans, null, lists and dicts (no NaN)",
        ) from exc


def _encode(value: Any, where: str) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise BadInput(
            f"record {where}: value cannot be stored as JSON: {exc}",
            hint="use only strings, numbers, booleans, null, lists and dicts (no NaN)",
        ) from exc


def conflict_error(kind: str, key: str, expected: int, actual: int | None) -> StateConflict:
    """The error for a compare-and-swap that lost: names the record and both versions."""
    found = "it does not exist" if actual is None else f"found version {actual}"
    if expected == 0:
        message = f"record {kind}/{key} already exists ({found}); expected to create it"
    else:
        message = f"record {kind}/{key} changed: expected version {expected}, {found}"
    return StateConflict(
        message,
        hint="someone else committed first and nothing was written; "
        "re-read the current state and retry if the change still applies",
    )


class _Cursor(Protocol):
    """What both DB-API cursors give back from ``execute`` (sqlite3 and psycopg 3)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...


Execute = Callable[[str, tuple[Any, ...]], _Cursor]
"""``execute(sql, params)`` inside the backend's open transaction."""


def apply_writes(
    execute: Execute,
    writes: Sequence[PreparedWrite],
    at: str,
    *,
    ph: str,
    json_value: str,
    event_seq: int,
) -> None:
    """Apply each compare-and-swap write; StateConflict (naming both versions) for a loser.

    ``ph`` is the backend's placeholder and ``json_value`` the SQL for a JSON value
    parameter (``?``, or ``%s::json``). Each record is linked to ``event_seq``, the
    audit entry this transaction appends, which lists its version and value digest.
    The caller rolls the transaction back on error.
    """
    insert = (
        "INSERT INTO records (kind, key, version, value, updated_at, event_seq) "
        f"VALUES ({ph}, {ph}, 1, {json_value}, {ph}, {ph}) ON CONFLICT (kind, key) DO NOTHING"
    )
    update = (
        f"UPDATE records SET version = version + 1, value = {json_value}, updated_at = {ph}, "
        f"event_seq = {ph} WHERE kind = {ph} AND key = {ph} AND version = {ph}"
    )
    current = f"SELECT version FROM records WHERE kind = {ph} AND key = {ph}"
    for w in writes:
        if w.expected_version == 0:
            cur = execute(insert, (w.kind, w.key, w.value_json, at, event_seq))
        else:
            cur = execute(update, (w.value_json, at, event_seq, w.kind, w.key, w.expected_version))
        if cur.rowcount != 1:
            row = execute(current, (w.kind, w.key)).fetchone()
            actual = None if row is None else int(row[0])
            raise conflict_error(w.kind, w.key, w.expected_version, actual)


def append_event(
    execute: Execute, head: tuple[Any, Any], payload: str, subject: str, *, ph: str
) -> RawEvent:
    """Chain ``payload`` after ``head`` (seq, hash), insert it and move the head."""
    seq, prev = int(head[0]) + 1, str(head[1])
    raw = RawEvent(seq, prev, chain_hash(seq, prev, payload), payload)
    execute(
        "INSERT INTO audit_events (seq, prev_hash, hash, payload, subject) "
        f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph})",
        (raw.seq, raw.prev_hash, raw.hash, raw.payload, subject),
    )
    execute(f"UPDATE audit_head SET seq = {ph}, hash = {ph} WHERE id = 1", (raw.seq, raw.hash))
    return raw


def anchor_existing_records(
    execute: Execute, rows: Sequence[tuple[Any, ...]], at: str, *, ph: str
) -> None:
    """Link records written before records named their audit entry (schema v5) to one
    new ``store.anchor`` entry listing each one's version and value digest.

    ``rows`` are (kind, key, version, value as JSON text) of every record whose
    ``event_seq`` is NULL; runs inside the migration's transaction.
    """
    if not rows:
        return
    import json

    from releaser.core.canonical import canonical_json

    prepared = [
        PreparedWrite(str(k), str(key), canonical_json(json.loads(v)), int(version) - 1)
        for k, key, version, v in rows
    ]
    event = EventDraft(
        actor="releaser",
        action="store.anchor",
        subject="store",
        at=at,
        after={"records": len(prepared)},
        reason="each record now names the audit entry that last wrote it; this entry "
        "vouches for the records written before",
    )
    head = execute("SELECT seq, hash FROM audit_head WHERE id = 1", ()).fetchone()
    raw = append_event(execute, head, encode_event(event, prepared), "store", ph=ph)
    execute(f"UPDATE records SET event_seq = {ph} WHERE event_seq IS NULL", (raw.seq,))


def utc_stamp() -> str:
    """The current UTC time as ``audit`` entries write it (ISO 8601, microseconds, ``Z``)."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def apply_prune(
    execute: Execute,
    deletes: Sequence[Delete],
    histograms_of: Sequence[str],
    *,
    ph: str,
) -> None:
    """Delete each record at the version named (StateConflict naming it otherwise) and the
    latency and token bins and the unit sketches of each rollout in ``histograms_of``. The
    caller rolls back on error."""
    current = f"SELECT version FROM records WHERE kind = {ph} AND key = {ph}"
    for d in deletes:
        cur = execute(
            f"DELETE FROM records WHERE kind = {ph} AND key = {ph} AND version = {ph}",
            (d.kind, d.key, d.expected_version),
        )
        if cur.rowcount != 1:
            row = execute(current, (d.kind, d.key)).fetchone()
            actual = None if row is None else int(row[0])
            raise conflict_error(d.kind, d.key, d.expected_version, actual)
    for rollout_id in histograms_of:
        execute(f"DELETE FROM rollout_latency_bins WHERE rollout_id = {ph}", (rollout_id,))
        execute(f"DELETE FROM rollout_token_bins WHERE rollout_id = {ph}", (rollout_id,))
        execute(f"DELETE FROM rollout_unit_sketches WHERE rollout_id = {ph}", (rollout_id,))
