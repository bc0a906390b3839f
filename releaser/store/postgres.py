"""The shared state store on PostgreSQL (psycopg 3), for teams, CI runners and routers.

Every transition is one READ COMMITTED transaction that first locks the single
``audit_head`` row (``SELECT ... FOR UPDATE``). That lock serialises writers
and the audit chain: a writer that waited sees its predecessor's committed
versions, so its compare-and-swap fails cleanly instead of overwriting. Each
commit sends ``NOTIFY releaser_changes, '<seq>'`` so routers can LISTEN.

A ``search_path`` given in the DSN (``?options=-csearch_path%3Dmyschema``)
is honoured: the tables live in that schema.

This module imports psycopg at import time; :func:`releaser.store.open_store`
imports it only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from releaser.core.audit import AuditEvent, EventDraft, RawEvent, chain_hash
from releaser.errors import BadInput, ExternalUnavailable, ReleaserError
from releaser.store.base import Record, Write
from releaser.store.migrations import (
    POSTGRES_MIGRATIONS,
    Migration,
    conflict_error,
    encode_event,
    pending_migrations,
    prepare_writes,
)
from releaser.store.redact import redact_url, scrub

__all__ = ["BATCH_SIZE", "NOTIFY_CHANNEL", "PostgresStore"]

NOTIFY_CHANNEL = "releaser_changes"
BATCH_SIZE = 10_000
_CONNECT_TIMEOUT_S = 10
_RECORD_COLUMNS = "kind, key, version, value, updated_at"
_EVENT_COLUMNS = "seq, prev_hash, hash, payload"
# The class defines a method named ``list``; this alias keeps annotations unambiguous.
_Rows = list[tuple[Any, ...]]
_Cursor = psycopg.Cursor[tuple[Any, ...]]


class PostgresStore:
    """A :class:`~releaser.store.base.Store` in PostgreSQL (CAS, audit chain, NOTIFY)."""

    def __init__(
        self,
        dsn: str,
        *,
        migrations: Sequence[Migration] = POSTGRES_MIGRATIONS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._dsn = dsn
        self._batch_size = max(1, batch_size)
        self._url = redact_url(dsn)
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise BadInput(
                f"not a valid PostgreSQL URL: {self._url}: {self._scrub(exc)}",
                hint="use postgresql://user:password@host:5432/dbname",
            ) from exc
        self._secrets = [str(params.get("password") or "")]
        self._connect_kwargs: dict[str, Any] = (
            {} if "connect_timeout" in params else {"connect_timeout": _CONNECT_TIMEOUT_S}
        )
        self._lock = threading.Lock()
        self._closed = False
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        try:
            self._migrate(migrations)
        except BaseException:
            self.close()
            raise

    # -- Store protocol -------------------------------------------------------

    @property
    def url(self) -> str:
        """The DSN with any password replaced by ``***``."""
        return self._url

    def get(self, kind: str, key: str) -> Record | None:
        """The record, or ``None`` if it does not exist."""
        rows = self._read(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE kind = %s AND key = %s", (kind, key)
        )
        return _record(rows[0]) if rows else None

    def list(self, kind: str, *, prefix: str = "") -> list[Record]:
        """Records of ``kind`` whose key starts with ``prefix``, ordered by key."""
        rows = self._read(
            f"SELECT {_RECORD_COLUMNS} FROM records "
            "WHERE kind = %s AND starts_with(key, %s) ORDER BY key",
            (kind, prefix),
        )
        return [_record(row) for row in rows]

    def commit(self, writes: Sequence[Write], event: EventDraft) -> AuditEvent:
        """Apply ``writes`` with compare-and-swap and append ``event``, in one transaction."""
        prepared = prepare_writes(writes)
        payload = encode_event(event)
        with self._transaction() as cur:
            # The head row lock orders all writers; it is held until COMMIT.
            cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            head = cur.fetchone()
            if head is None:
                raise ReleaserError(
                    f"the state store {self._url} has no audit head row",
                    hint="the schema was altered by hand; restore it from a backup",
                )
            for w in prepared:
                if w.expected_version == 0:
                    cur.execute(
                        "INSERT INTO records (kind, key, version, value, updated_at) "
                        "VALUES (%s, %s, 1, %s::jsonb, %s) ON CONFLICT (kind, key) DO NOTHING",
                        (w.kind, w.key, w.value_json, event.at),
                    )
                else:
                    cur.execute(
                        "UPDATE records SET version = version + 1, value = %s::jsonb, "
                        "updated_at = %s WHERE kind = %s AND key = %s AND version = %s",
                        (w.value_json, event.at, w.kind, w.key, w.expected_version),
                    )
                if cur.rowcount != 1:
                    cur.execute(
                        "SELECT version FROM records WHERE kind = %s AND key = %s",
                        (w.kind, w.key),
                    )
                    row = cur.fetchone()
                    actual = None if row is None else int(row[0])
                    raise conflict_error(w.kind, w.key, w.expected_version, actual)
            seq = int(head[0]) + 1
            raw = RawEvent(seq, str(head[1]), chain_hash(seq, str(head[1]), payload), payload)
            cur.execute(
                "INSERT INTO audit_events (seq, prev_hash, hash, payload, subject) "
                "VALUES (%s, %s, %s, %s, %s)",
                (raw.seq, raw.prev_hash, raw.hash, raw.payload, event.subject),
            )
            cur.execute(
                "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (raw.seq, raw.hash)
            )
            # Delivered to listeners only when (and if) the transaction commits.
            cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(raw.seq)))
        return AuditEvent.from_raw(raw)

    def events(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> Iterator[AuditEvent]:
        """Audit events in order, optionally after a sequence number or for one subject."""
        where = "seq > %s" if subject is None else "seq > %s AND subject = %s"
        extra: tuple[Any, ...] = () if subject is None else (subject,)
        remaining = limit
        last = after_seq
        while remaining is None or remaining > 0:
            size = self._batch_size if remaining is None else min(self._batch_size, remaining)
            rows = self._read(
                f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE {where} ORDER BY seq LIMIT %s",
                (last, *extra, size),
            )
            for row in rows:
                yield AuditEvent.from_raw(RawEvent(*row))
            if len(rows) < size:
                return
            last = int(rows[-1][0])
            if remaining is not None:
                remaining -= len(rows)

    def raw_events(self) -> Iterator[RawEvent]:
        """Every stored audit event, undecoded, in sequence order, read in batches.

        To verify a live store, read :meth:`audit_head` first and stop at its
        seq (``itertools.takewhile``): events committed meanwhile are not part of it.
        """
        last = 0
        while True:
            rows = self._read(
                f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE seq > %s ORDER BY seq LIMIT %s",
                (last, self._batch_size),
            )
            yield from (RawEvent(*row) for row in rows)
            if len(rows) < self._batch_size:
                return
            last = int(rows[-1][0])

    def audit_head(self) -> tuple[int, str]:
        """The (seq, hash) of the latest event as recorded by the store; (0, genesis) if none."""
        seq, hash_ = self._read("SELECT seq, hash FROM audit_head WHERE id = 1")[0]
        return int(seq), str(hash_)

    def change_token(self) -> int:
        """The audit head's seq: every commit, from any process, increments it."""
        return int(self._read("SELECT seq FROM audit_head WHERE id = 1")[0][0])

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self._url!r})"

    # -- internals ------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._closed:
            raise ReleaserError(f"the state store {self._url} is closed")
        # A connection lost to a server restart is replaced on the next call.
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._dsn, autocommit=False, **self._connect_kwargs)
            conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[_Cursor]:
        """One transaction on the store's connection: committed on success, else rolled back."""
        with self._lock:
            try:
                conn = self._connection()
                try:
                    with conn.cursor() as cur:
                        yield cur
                    conn.commit()
                except BaseException:
                    if not conn.closed:
                        try:
                            conn.rollback()
                        except psycopg.Error:
                            pass  # the original error says more than the failed rollback
                    raise
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise ExternalUnavailable(
                    f"cannot reach the state store {self._url}: {self._scrub(exc)}",
                    hint="check that PostgreSQL is running and that the URL's host, port, "
                    "user, password and database are right",
                ) from exc
            except psycopg.Error as exc:
                raise ReleaserError(
                    f"the state store {self._url} failed: {self._scrub(exc)}",
                    hint="check that the schema in the URL's search_path exists and that the "
                    "user may create and write tables in it",
                ) from exc

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> _Rows:
        with self._transaction() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        # Fast path: an up-to-date store needs no lock.
        if not pending_migrations(migrations, self._schema_version(), url=self._url):
            return
        with self._transaction() as cur:
            # Concurrent openers of the same schema migrate one at a time.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext('releaser.migrate:' || "
                "coalesce(current_schema(), '')))"
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = cur.fetchone()
            current = int(row[0]) if row else 0
            for migration in pending_migrations(migrations, current, url=self._url):
                for statement in migration.statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_version (version, description) VALUES (%s, %s)",
                    (migration.version, migration.description),
                )

    def _schema_version(self) -> int:
        with self._transaction() as cur:
            cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
            row = cur.fetchone()
            if not row or not row[0]:
                return 0
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = cur.fetchone()
            return int(row[0]) if row else 0

    def _scrub(self, exc: BaseException) -> str:
        return scrub(str(exc).strip(), getattr(self, "_secrets", []))


def _record(row: tuple[Any, ...]) -> Record:
    kind, key, version, value, updated_at = row
    return Record(str(kind), str(key), int(version), dict(value), str(updated_at))
