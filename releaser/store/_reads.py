"""Audit-chain reads shared by the sqlite and PostgreSQL stores (same SQL, own placeholder)."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from releaser.core.audit import AuditEvent, RawEvent
from releaser.errors import CheckFailed

__all__ = ["BYTES_EVENT_COLUMNS", "AuditReads", "bulk_decoding", "omit_paths"]

_PATH_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def omit_paths(omit: Sequence[str]) -> list[list[str]]:
    """``omit``'s dotted paths split into keys, each checked (they are spliced into SQL)."""
    paths = []
    for path in omit:
        parts = path.split(".")
        if not all(_PATH_PART.match(p) for p in parts):
            raise ValueError(f"cannot omit {path!r}: dotted names of letters, digits and _ only")
        paths.append(parts)
    return paths


@contextmanager
def bulk_decoding() -> Iterator[None]:
    """Decode many JSON values without the cyclic garbage collector running meanwhile.

    Decoding builds many small dicts and lists, none of them cyclic; each
    allocation burst triggers a collection that re-scans everything decoded so
    far, so a list of 10,000 records cost 2.6x its decoding. JSON values cannot
    hold cycles, so nothing is left for the collector to find.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_EVENT_COLUMNS = "seq, prev_hash, hash, payload"
# sqlite keeps whatever bytes are written to a TEXT column; read as bytes, a byte that is
# not UTF-8 reaches verification (and is reported there as tampering) instead of failing
# the read as if the database were unavailable.
BYTES_EVENT_COLUMNS = "seq, CAST(prev_hash AS BLOB), CAST(hash AS BLOB), CAST(payload AS BLOB)"


def _raws(rows: list[tuple[Any, ...]]) -> list[RawEvent]:
    """Stored rows as RawEvents; only a row holding bytes (a damaged store) is converted."""
    return [
        RawEvent(seq, prev, digest, payload)
        if type(payload) is str and type(prev) is str and type(digest) is str
        else _raw((seq, prev, digest, payload))
        for seq, prev, digest, payload in rows
    ]


def _raw(row: tuple[Any, ...]) -> RawEvent:
    """A stored row as a RawEvent; bytes that are not UTF-8 are kept as surrogates."""
    seq, prev, digest, payload = row
    return RawEvent(int(seq), _text(prev), _text(digest), _text(payload))


def _decoded(raw: RawEvent) -> AuditEvent:
    try:
        return AuditEvent.from_raw(raw)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise CheckFailed(
            f"audit entry {raw.seq} cannot be read: it is not what releaser wrote (tampered?)",
            hint="'releaser audit verify' names every entry that was changed",
        ) from None


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


class AuditReads:
    """``events``, ``raw_events``, ``audit_head`` and ``change_token`` over ``_read``.

    A backend sets ``_PH`` to its DB-API placeholder (``?`` or ``%s``) and
    provides ``_read(sql, params)`` and ``_batch_size``.
    """

    _PH = "?"
    _VALUE_TEXT_SQL = "value::text"
    _SUMMARY_SQL = (
        "seq, payload::json->>'at', payload::json->>'actor', payload::json->>'action', "
        "subject, payload::json->>'reason'"
    )
    _batch_size: int

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _read_events(self, rest: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """``SELECT <event columns> <rest>``: (seq, prev_hash, hash, payload) rows."""
        return self._read(f"SELECT {_EVENT_COLUMNS} {rest}", params)

    def events(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> Iterator[AuditEvent]:
        """Audit events in order, optionally after a sequence number or for one subject."""
        ph = self._PH
        where = f"seq > {ph}" if subject is None else f"seq > {ph} AND subject = {ph}"
        extra: tuple[Any, ...] = () if subject is None else (subject,)
        remaining = limit
        last = after_seq
        while remaining is None or remaining > 0:
            size = self._batch_size if remaining is None else min(self._batch_size, remaining)
            rows = self._read_events(
                f"FROM audit_events WHERE {where} ORDER BY seq LIMIT {ph}", (last, *extra, size)
            )
            for raw in _raws(rows):
                yield _decoded(raw)
            if len(rows) < size:
                return
            last = int(rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)

    def event_summaries(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> Sequence[tuple[int, str, str, str, str, str | None]]:
        """(seq, at, actor, action, subject, reason) of events in order, read by the
        database from each payload: what ``audit log`` shows, without decoding events."""
        ph = self._PH
        where = f"seq > {ph}" if subject is None else f"seq > {ph} AND subject = {ph}"
        params: tuple[Any, ...] = (after_seq,) if subject is None else (after_seq, subject)
        tail = ""
        if limit is not None:
            tail, params = f" LIMIT {ph}", (*params, limit)
        rows = self._read(
            f"SELECT {self._SUMMARY_SQL} FROM audit_events WHERE {where} ORDER BY seq{tail}",
            params,
        )
        return [
            (int(seq), str(at), str(actor), str(action), str(subj), reason)
            for seq, at, actor, action, subj, reason in rows
        ]

    def raw_events(self, *, after_seq: int = 0, subject: str | None = None) -> Iterator[RawEvent]:
        """Stored audit events, undecoded, in sequence order, read in batches: every one,
        or those after ``after_seq`` (and about ``subject``).

        To verify a live store, read :meth:`audit_head` first and stop at its
        seq (``itertools.takewhile``): events committed meanwhile are not part of it.
        """
        ph = self._PH
        where = f"seq > {ph}" if subject is None else f"seq > {ph} AND subject = {ph}"
        extra: tuple[Any, ...] = () if subject is None else (subject,)
        last = after_seq
        while True:
            rows = self._read_events(
                f"FROM audit_events WHERE {where} ORDER BY seq LIMIT {ph}",
                (last, *extra, self._batch_size),
            )
            yield from _raws(rows)
            if len(rows) < self._batch_size:
                return
            last = int(rows[-1][0])

    def record_links(self) -> Iterator[tuple[str, str, int, str, int | None]]:
        """Every record as (kind, key, version, value's JSON text, the audit entry that last
        wrote it), ordered by kind and key, read in batches (for verification)."""
        ph = self._PH
        last: tuple[str, str] | None = None
        while True:
            where = "" if last is None else f"WHERE (kind, key) > ({ph}, {ph}) "
            rows = self._read(
                f"SELECT kind, key, version, {self._VALUE_TEXT_SQL}, event_seq FROM records "
                f"{where}ORDER BY kind, key LIMIT {ph}",
                (*(last or ()), self._batch_size),
            )
            for kind, key, version, value, seq in rows:
                yield (
                    str(kind),
                    str(key),
                    int(version),
                    _text(value),
                    (None if seq is None else int(seq)),
                )
            if len(rows) < self._batch_size:
                return
            last = (str(rows[-1][0]), str(rows[-1][1]))

    def audit_head(self) -> tuple[int, str]:
        """The (seq, hash) of the latest event as recorded by the store; (0, genesis) if none."""
        seq, hash_ = self._read("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
        return int(seq), str(hash_)

    def change_token(self) -> int:
        """The audit head's seq: every commit, from any process, increments it."""
        return int(self._read("SELECT seq FROM audit_head WHERE id = 1")[0][0])
