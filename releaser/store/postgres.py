"""The shared state store on PostgreSQL (psycopg 3), for teams, CI runners and routers.

Every transition is one READ COMMITTED transaction that first locks the single
``audit_head`` row (``SELECT ... FOR UPDATE``). That lock serialises writers
and the audit chain: a writer that waited sees its predecessor's committed
versions, so its compare-and-swap fails cleanly instead of overwriting. Each
commit sends ``NOTIFY releaser_changes, '<schema>:<seq>'`` so routers can LISTEN:
:meth:`PostgresStore.wait_for_change` does, on the store's one connection. One
connection a store (so one a router process) is what lets a fleet of routers share a
server: a second, dedicated listening connection doubled the count, and 50 routers
then exhausted PostgreSQL's default ``max_connections = 100``.

Metric batches do not take the head lock: additive upserts
(``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``) merge concurrent
flushes row by row, and rows are written in key order so flushers never deadlock.

A ``search_path`` given in the DSN (``?options=-csearch_path%3Dmyschema``)
is honoured: the tables live in that schema.

This module imports psycopg at import time; :func:`releaser.store.open_store`
imports it only when a PostgreSQL URL is opened.
"""

from __future__ import annotations

import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from releaser.core.audit import AuditEvent, EventDraft
from releaser.core.stats_aggregates import VariantStats
from releaser.errors import BadInput, ExternalUnavailable, ReleaserError
from releaser.store._bulk import TABLES, RestoreSource, Snapshot, restore_rows
from releaser.store._reads import AuditReads, bulk_decoding, omit_paths
from releaser.store._writes import (
    anchor_existing_records,
    append_event,
    apply_prune,
    apply_writes,
    encode_event,
    prepare_writes,
    utc_stamp,
)
from releaser.store.base import Delete, MetricDelta, Record, UnitCounts, Write
from releaser.store.metrics import (
    METRIC_COLUMNS,
    PreparedMetric,
    check_batch_id,
    claim_batch_id,
    find_threshold_conflict,
    metric_upserts,
    prepare_metrics,
    stats_from_rows,
)
from releaser.store.migrations import POSTGRES_MIGRATIONS, Migration, pending_migrations
from releaser.store.redact import redact_url, scrub
from releaser.store.units import merge_units, prepare_units, units_from_rows

__all__ = ["BATCH_SIZE", "NOTIFY_CHANNEL", "PostgresStore", "scratch_schema"]

NOTIFY_CHANNEL = "releaser_changes"
BATCH_SIZE = 10_000
_CONNECT_TIMEOUT_S = 10
_RECORD_COLUMNS = "kind, key, version, value, updated_at"
# The class defines a method named ``list``; this alias keeps annotations unambiguous.
_Rows = list[tuple[Any, ...]]
_Cursor = psycopg.Cursor[tuple[Any, ...]]
_Connection = psycopg.Connection[tuple[Any, ...]]
# A whole batch is one statement per table: arrays in, unnest, upsert (the arrays are in
# key order, so concurrent batches lock rows in the same order).
_METRICS_UPSERT, _BIN_UPSERT, _TOKEN_BIN_UPSERT = metric_upserts(
    """SELECT u.*, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    FROM unnest(%s::text[], %s::int[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[],
        %s::float8[], %s::bigint[], %s::float8[], %s::float8[],
        %s::bigint[], %s::bigint[], %s::bigint[], %s::float8[], %s::float8[],
        %s::float8[]) AS u""",
    "SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::int[], %s::bigint[])",
)
_NOW_TEXT = """to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
# A waiter re-reads the token at least this often, even when no notification came.
_WAIT_SLICE_S = 1.0


class PostgresStore(AuditReads):
    """A :class:`~releaser.store.base.Store` in PostgreSQL (CAS, audit chain, NOTIFY)."""

    _PH = "%s"

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
        self._conn: _Connection | None = None
        # Waiters take turns; a waiter holds ``_lock`` only while it reads, never while it
        # sleeps, so it does not block other calls on the connection.
        self._listen_lock = threading.Lock()
        # The connection LISTEN was run on (a replaced connection must LISTEN again).
        self._listening_on: _Connection | None = None
        # Notifications (and LISTENs) counted so far, and the token a waiter last read with
        # the count and time of that read: while the count is unchanged, nothing committed
        # since, and a router's wait every 250 ms needs no query (only its flushes do).
        self._notices = 0
        self._known: tuple[int, int, float] | None = None
        # Written to when a notification is consumed by someone else's query (or on
        # close), so a waiter sleeping in select() on the connection's socket wakes.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
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

    def list(self, kind: str, *, prefix: str = "", omit: Sequence[str] = ()) -> list[Record]:
        """Records of ``kind`` whose key starts with ``prefix``, ordered by key
        (``omit``: dotted paths left out of each value, see the Store protocol)."""
        columns = _RECORD_COLUMNS
        paths = omit_paths(omit)
        if paths:
            removed = "".join(" #- '{" + ",".join(p) + "}'" for p in paths)
            # json has no path operators; the listing's copy goes through jsonb.
            columns = columns.replace("value", f"(value::jsonb{removed}) AS value", 1)
        with bulk_decoding():
            rows = self._read(
                f"SELECT {columns} FROM records "
                "WHERE kind = %s AND starts_with(key, %s) ORDER BY key",
                (kind, prefix),
            )
            return [_record(row) for row in rows]

    def _lock_head(self, cur: _Cursor) -> tuple[Any, ...]:
        """The audit head row, locked: the lock orders all writers until COMMIT."""
        cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
        head = cur.fetchone()
        if head is None:
            raise ReleaserError(
                f"the state store {self._url} has no audit head row",
                hint="the schema was altered by hand; restore it from a backup",
            )
        return tuple(head)

    def commit(
        self, writes: Sequence[Write], event: EventDraft, *, also: Sequence[EventDraft] = ()
    ) -> AuditEvent:
        """Apply ``writes`` with compare-and-swap and append ``event`` (then ``also``), in one
        transaction."""
        prepared = prepare_writes(writes)
        payloads = [(encode_event(event, prepared or None), event.subject)]
        payloads += [(encode_event(e), e.subject) for e in also]
        with self._transaction() as cur:
            head = self._lock_head(cur)
            apply_writes(
                cur.execute,
                prepared,
                event.at,
                ph="%s",
                json_value="%s::json",
                event_seq=int(head[0]) + 1,
            )
            first = None
            for payload, subject in payloads:
                raw = append_event(cur.execute, head, payload, subject, ph="%s")
                head, first = (raw.seq, raw.hash), first or raw
            _notify(cur, raw.seq)
        assert first is not None
        return AuditEvent.from_raw(first)

    def prune(
        self,
        deletes: Sequence[Delete],
        event: EventDraft,
        *,
        histograms_of: Sequence[str] = (),
    ) -> AuditEvent:
        """Remove records and rollouts' latency histograms, and append ``event``, in one
        transaction (see the Store protocol)."""
        payload = encode_event(event)
        with self._transaction() as cur:
            head = self._lock_head(cur)
            apply_prune(cur.execute, deletes, histograms_of, ph="%s")
            raw = append_event(cur.execute, head, payload, event.subject, ph="%s")
            _notify(cur, raw.seq)
        return AuditEvent.from_raw(raw)

    def wait_for_change(self, last_token: int, timeout_s: float) -> int:
        """Block until the change token differs from ``last_token``; wakes on NOTIFY.

        Returns the new token, or the current one (``last_token``) after
        ``timeout_s``. It LISTENs on the store's one connection and sleeps on its
        socket (the connection stays free for other calls meanwhile). The token is
        also re-read every second, so a notification that went astray delays a change
        by a second at most; in between, a wait that heard no notification since the
        last read trusts it (no query). Threads of one store wait one at a time.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        if not self._listen_lock.acquire(timeout=max(0.0, timeout_s)):
            return self.change_token()
        try:
            while True:
                # LISTEN is committed before the token is read, so no commit after the
                # read can go unnoticed (PostgreSQL's rule for setting up a listener).
                self._listen()
                # The channel is shared by every schema in the database: any notification
                # means "read the token again".
                noticed, fd = self._drain_notifications()
                token = self._current_token(noticed)
                remaining = deadline - time.monotonic()
                if token != last_token or remaining <= 0:
                    return token
                try:
                    wake = self._wake_r.fileno()
                    ready, _, _ = select.select([fd, wake], [], [], min(remaining, _WAIT_SLICE_S))
                except (OSError, ValueError):
                    continue  # the connection was closed meanwhile: the next read says so
                if wake in ready:
                    self._drain_wake()
        finally:
            if self._closed:
                self._close_wake()
            self._listen_lock.release()

    def add_metrics(self, batch: Sequence[MetricDelta], *, batch_id: str | None = None) -> bool:
        """Add metric deltas to the stored aggregates in one transaction (not audited).

        Returns False, adding nothing, when ``batch_id`` was added before.
        """
        prepared = prepare_metrics(batch)
        units = prepare_units(batch)
        if batch_id is not None:
            check_batch_id(batch_id)
        if not prepared:
            return True
        bin_rows = [row for p in prepared for row in p.bin_rows()]
        token_bin_rows = [row for p in prepared for row in p.token_bin_rows()]
        with self._transaction() as cur:
            if batch_id is not None and not claim_batch_id(
                cur.execute, batch_id, ph="%s", now_s="extract(epoch FROM now())::bigint"
            ):
                return False
            cur.execute(_METRICS_UPSERT, _columns([p.row() for p in prepared], 16))
            if cur.rowcount != len(prepared):
                raise find_threshold_conflict(prepared, lambda p: _stored_threshold(cur, p))
            if bin_rows:
                cur.execute(_BIN_UPSERT, _columns(bin_rows, 5))
            if token_bin_rows:
                cur.execute(_TOKEN_BIN_UPSERT, _columns(token_bin_rows, 5))
            merge_units(
                cur.execute, units, ph="%s", lock="FOR UPDATE", now=_NOW_TEXT, url=self._url
            )
        return True

    def read_units(self, rollout_id: str) -> UnitCounts:
        """The unit sketches of one rollout by (step, variant, group)."""
        with self._transaction() as cur:
            cur.execute(
                "SELECT step, variant, cohort_group, requests, registers "
                "FROM rollout_unit_sketches WHERE rollout_id = %s "
                "ORDER BY step, variant, cohort_group",
                (rollout_id,),
            )
            rows = cur.fetchall()
        return units_from_rows(rows, url=self._url)

    def read_metrics(self, rollout_id: str) -> dict[tuple[int, str], VariantStats]:
        """The cumulative aggregates of one rollout by (step, variant), from one snapshot."""
        with self._transaction() as cur:
            # One snapshot for every table, so a flush cannot land between the reads.
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute(
                f"SELECT {METRIC_COLUMNS} FROM rollout_metrics "
                "WHERE rollout_id = %s ORDER BY step, variant",
                (rollout_id,),
            )
            metric_rows = cur.fetchall()
            cur.execute(
                "SELECT step, variant, bin, count FROM rollout_latency_bins "
                "WHERE rollout_id = %s ORDER BY step, variant, bin",
                (rollout_id,),
            )
            bin_rows = cur.fetchall()
            cur.execute(
                "SELECT step, variant, bin, count FROM rollout_token_bins "
                "WHERE rollout_id = %s ORDER BY step, variant, bin",
                (rollout_id,),
            )
            token_bin_rows = cur.fetchall()
        return stats_from_rows(metric_rows, bin_rows, token_bin_rows, url=self._url)

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """Every table as one consistent read: one ``REPEATABLE READ, READ ONLY``
        transaction held for the ``with`` block (writers are not blocked)."""
        with self._transaction() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield self._snapshot_of(cur)

    def restore(self, source: RestoreSource, check: Callable[[Snapshot], None]) -> None:
        """Write every table of ``source`` into this empty store in one transaction;
        ``check`` verifies what was written before it commits."""
        with self._transaction() as cur:
            # Readers go on; every writer (commits, metric flushes) waits until we are done,
            # so the store cannot stop being empty between the check and the writes.
            names = ", ".join([t.name for t in TABLES] + ["audit_head"])
            cur.execute(f"LOCK TABLE {names} IN EXCLUSIVE MODE")
            restore_rows(
                cur.execute,
                cur.executemany,
                source,
                self._snapshot_of(cur),
                check,
                ph="%s",
                json_value="%s::json",
            )
            cur.execute(
                "SELECT pg_notify(%s, current_schema() || ':' || %s)",
                (NOTIFY_CHANNEL, str(source.audit_head()[0])),
            )

    def _snapshot_of(self, cur: _Cursor) -> Snapshot:
        def read(sql: str, params: tuple[Any, ...]) -> _Rows:
            cur.execute(sql, params)
            return cur.fetchall()

        return Snapshot(read, backend="postgresql", url=self._url, batch_size=self._batch_size)

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._listening_on = None
        self._wake()  # a waiter ends at once, and closes the wake-up sockets itself
        if self._listen_lock.acquire(blocking=False):
            try:
                self._close_wake()
            finally:
                self._listen_lock.release()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PostgresStore({self._url!r})"

    # -- internals ------------------------------------------------------------

    def _current_token(self, noticed: bool) -> int:
        """The change token: the last one read, unless a notification came since (or a
        second passed), else read now."""
        known = self._known
        if (
            not noticed
            and known is not None
            and known[1] == self._notices
            and time.monotonic() - known[2] < _WAIT_SLICE_S
        ):
            return known[0]
        seen = self._notices  # a notification during the read changes it: read again then
        token = self.change_token()
        self._known = (token, seen, time.monotonic())
        return token

    def _listen(self) -> None:
        """LISTEN on the store's connection, committed, unless it already does."""
        listening = None
        with self._transaction() as cur:
            if self._listening_on is not cur.connection:
                cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
                listening = cur.connection
        if listening is not None:
            # A notification consumed by another call's query reaches the waiter this way
            # (and is not kept in psycopg's backlog, which would grow without end).
            listening.add_notify_handler(self._on_notify)
            self._listening_on = listening
            self._notices += 1

    def _drain_notifications(self) -> tuple[bool, int]:
        """Consume what the server sent on the idle connection: (any notification, socket)."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn is not self._listening_on:
                return True, -1  # lost meanwhile: the next round reconnects and LISTENs
            pgconn = conn.pgconn
            try:
                # libpq may hold a notification already read with an earlier reply; the
                # socket would then not wake select(), so look into its buffer too.
                pgconn.consume_input()
                noticed = False
                while pgconn.notifies() is not None:
                    noticed = True
                if noticed:
                    self._notices += 1
                return noticed, pgconn.socket
            except psycopg.Error as exc:
                conn.close()  # replaced (and LISTENed on again) by the next call
                raise ExternalUnavailable(
                    f"lost the change listener on the state store {self._url}: {self._scrub(exc)}",
                    hint="check that PostgreSQL is running; the next wait reconnects",
                ) from exc

    def _on_notify(self, _notice: psycopg.Notify) -> None:
        self._notices += 1
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed (the store is)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass  # drained (would block) or closed

    def _close_wake(self) -> None:
        """Close the wake-up sockets (call with the listen lock)."""
        self._wake_r.close()
        self._wake_w.close()

    def _connection(self) -> _Connection:
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
                if migration.anchor_records:
                    cur.execute(
                        "SELECT kind, key, version, value::text FROM records "
                        "WHERE event_seq IS NULL"
                    )
                    rows = cur.fetchall()
                    anchor_existing_records(cur.execute, rows, utc_stamp(), ph="%s")
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


@contextmanager
def scratch_schema(dsn: str, *, prefix: str = "releaser_scratch") -> Iterator[str]:
    """A new, empty schema in ``dsn``'s database for the life of the block; yields its DSN.

    For rehearsals (``releaser drill``) on the team's own kind of store: the same
    server, the same network path, a schema of its own, dropped afterwards.
    """
    schema = f"{prefix}_{secrets.token_hex(6)}"
    password = str(conninfo_to_dict(dsn).get("password") or "")
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except psycopg.Error as exc:
        raise ExternalUnavailable(
            f"cannot make a scratch schema in the state store {redact_url(dsn)}: "
            f"{scrub(str(exc).strip(), [password])}",
            hint="the drill needs CREATE on the store's database for a schema it drops "
            "afterwards; grant it to the drill's role, or check that the server is up",
        ) from None
    try:
        yield make_conninfo(dsn, options=f"-csearch_path={schema}")
    finally:
        try:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        finally:
            conn.close()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column: the arrays that ``unnest`` turns back into rows."""
    return [[row[i] for row in rows] for i in range(width)]


def _stored_threshold(cur: _Cursor, p: PreparedMetric) -> float | None:
    cur.execute(
        "SELECT slow_threshold_ms FROM rollout_metrics "
        "WHERE rollout_id = %s AND step = %s AND variant = %s",
        (p.rollout_id, p.step, p.variant),
    )
    row = cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


def _record(row: tuple[Any, ...]) -> Record:
    kind, key, version, value, updated_at = row
    return Record(str(kind), str(key), int(version), dict(value), str(updated_at))


def _notify(cur: _Cursor, seq: int) -> None:
    """Tell listeners of the commit, delivered only when (and if) the transaction commits.

    The channel is shared by every schema in the database: the payload names ours.
    """
    cur.execute("SELECT pg_notify(%s, current_schema() || ':' || %s)", (NOTIFY_CHANNEL, str(seq)))
