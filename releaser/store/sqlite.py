"""The default state store: one sqlite file (WAL) under ``.releaser/``.

Every transition is one ``BEGIN IMMEDIATE`` transaction, so writers from any
number of processes queue on sqlite's write lock (up to the busy timeout) and
each one sees the state its predecessor committed: of several writers racing
from the same version exactly one wins.

Metric batches take the same write lock (``BEGIN IMMEDIATE``) and add to the
stored aggregates with upserts, so concurrent flushers queue and none loses a
count. :meth:`SqliteStore.wait_for_change` polls the change token.

A store object holds one connection guarded by a lock, so threads may share
it; each process opens its own store (never pass one across ``fork``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from releaser.core.audit import AuditEvent, EventDraft
from releaser.core.stats_aggregates import VariantStats
from releaser.errors import ExternalUnavailable, ReleaserError
from releaser.store._bulk import RestoreSource, Snapshot, restore_rows
from releaser.store._reads import BYTES_EVENT_COLUMNS, AuditReads, bulk_decoding, omit_paths
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
from releaser.store.migrations import SQLITE_MIGRATIONS, Migration, pending_migrations
from releaser.store.units import merge_units, prepare_units, units_from_rows

__all__ = ["BATCH_SIZE", "BUSY_TIMEOUT_MS", "POLL_INTERVAL_S", "SqliteStore"]

BUSY_TIMEOUT_MS = 30_000
BATCH_SIZE = 10_000
POLL_INTERVAL_S = 0.005
"""How often :meth:`SqliteStore.wait_for_change` reads the change token."""
_METRICS_UPSERT, _BIN_UPSERT, _TOKEN_BIN_UPSERT = metric_upserts(
    f"VALUES ({', '.join(['?'] * 16)}, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    "VALUES (?, ?, ?, ?, ?)",
)
_NOW_TEXT = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
_RECORD_COLUMNS = "kind, key, version, value, updated_at"
# Unix seconds by the database clock (unixepoch() needs sqlite 3.38).
_NOW_S = "CAST(strftime('%s', 'now') AS INTEGER)"
# The class defines a method named ``list``; this alias keeps annotations unambiguous.
_Rows = list[tuple[Any, ...]]


class SqliteStore(AuditReads):
    """A :class:`~releaser.store.base.Store` in one sqlite file (WAL, CAS, audit chain)."""

    _PH = "?"
    _VALUE_TEXT_SQL = "CAST(value AS BLOB)"
    _SUMMARY_SQL = (
        "seq, json_extract(payload, '$.at'), json_extract(payload, '$.actor'), "
        "json_extract(payload, '$.action'), subject, json_extract(payload, '$.reason')"
    )

    def __init__(
        self,
        path: Path,
        *,
        migrations: Sequence[Migration] = SQLITE_MIGRATIONS,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._path = Path(path)
        self._batch_size = max(1, batch_size)
        self._url = f"sqlite://{self._path.as_posix()}"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves.
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=0
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._unavailable(exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _enable_wal(conn, busy_timeout_ms)
            # NORMAL in WAL mode: durable across application crashes, no fsync per commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
            self._migrate(conn, migrations)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise self._unavailable(exc) from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise

    # -- Store protocol -------------------------------------------------------

    @property
    def url(self) -> str:
        """``sqlite:///<absolute path>`` (sqlite files have no password to redact)."""
        return self._url

    @property
    def path(self) -> Path:
        """The sqlite file."""
        return self._path

    def get(self, kind: str, key: str) -> Record | None:
        """The record, or ``None`` if it does not exist."""
        rows = self._read(
            f"SELECT {_RECORD_COLUMNS} FROM records WHERE kind = ? AND key = ?", (kind, key)
        )
        return _record(rows[0]) if rows else None

    def list(self, kind: str, *, prefix: str = "", omit: Sequence[str] = ()) -> list[Record]:
        """Records of ``kind`` whose key starts with ``prefix``, ordered by key
        (``omit``: dotted paths left out of each value, see the Store protocol)."""
        columns = _RECORD_COLUMNS
        paths = omit_paths(omit)
        if paths:
            removed = ", ".join("'$." + ".".join(p) + "'" for p in paths)
            columns = columns.replace("value", f"json_remove(value, {removed})", 1)
        with bulk_decoding():
            rows = self._read(
                f"SELECT {columns} FROM records "
                "WHERE kind = ? AND substr(key, 1, length(?)) = ? ORDER BY key",
                (kind, prefix, prefix),
            )
            return [_record(row) for row in rows]

    def commit(
        self, writes: Sequence[Write], event: EventDraft, *, also: Sequence[EventDraft] = ()
    ) -> AuditEvent:
        """Apply ``writes`` with compare-and-swap and append ``event`` (then ``also``), in one
        transaction."""
        prepared = prepare_writes(writes)
        payloads = [(encode_event(event, prepared or None), event.subject)]
        payloads += [(encode_event(e), e.subject) for e in also]
        with self._immediate() as conn:
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            apply_writes(
                conn.execute, prepared, event.at, ph="?", json_value="?", event_seq=head[0] + 1
            )
            first = None
            for payload, subject in payloads:
                raw = append_event(conn.execute, head, payload, subject, ph="?")
                head, first = (raw.seq, raw.hash), first or raw
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
        with self._immediate() as conn:
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            apply_prune(conn.execute, deletes, histograms_of, ph="?")
            raw = append_event(conn.execute, head, payload, event.subject, ph="?")
        return AuditEvent.from_raw(raw)

    def wait_for_change(self, last_token: int, timeout_s: float) -> int:
        """Poll :meth:`change_token` every 5 ms until it differs from ``last_token``.

        Returns the new token, or the current one (``last_token``) after ``timeout_s``.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            token = self.change_token()
            remaining = deadline - time.monotonic()
            if token != last_token or remaining <= 0:
                return token
            time.sleep(min(POLL_INTERVAL_S, remaining))

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
        with self._immediate() as conn:
            if batch_id is not None and not claim_batch_id(
                conn.execute, batch_id, ph="?", now_s=_NOW_S
            ):
                return False
            cur = conn.executemany(_METRICS_UPSERT, [p.row() for p in prepared])
            if cur.rowcount != len(prepared):
                raise find_threshold_conflict(prepared, lambda p: _stored_threshold(conn, p))
            conn.executemany(_BIN_UPSERT, [row for p in prepared for row in p.bin_rows()])
            conn.executemany(
                _TOKEN_BIN_UPSERT, [row for p in prepared for row in p.token_bin_rows()]
            )
            merge_units(conn.execute, units, ph="?", lock="", now=_NOW_TEXT, url=self._url)
        return True

    def read_units(self, rollout_id: str) -> UnitCounts:
        """The unit sketches of one rollout by (step, variant, group)."""
        rows = self._read(
            "SELECT step, variant, cohort_group, requests, registers FROM rollout_unit_sketches "
            "WHERE rollout_id = ? ORDER BY step, variant, cohort_group",
            (rollout_id,),
        )
        return units_from_rows(rows, url=self._url)

    def read_metrics(self, rollout_id: str) -> dict[tuple[int, str], VariantStats]:
        """The cumulative aggregates of one rollout by (step, variant), from one snapshot."""
        with self._lock:
            conn = self._connection()
            try:
                # One read transaction: every table from the same WAL snapshot.
                conn.execute("BEGIN")
                try:
                    metric_rows = conn.execute(
                        f"SELECT {METRIC_COLUMNS} FROM rollout_metrics "
                        "WHERE rollout_id = ? ORDER BY step, variant",
                        (rollout_id,),
                    ).fetchall()
                    bin_rows = conn.execute(
                        "SELECT step, variant, bin, count FROM rollout_latency_bins "
                        "WHERE rollout_id = ? ORDER BY step, variant, bin",
                        (rollout_id,),
                    ).fetchall()
                    token_bin_rows = conn.execute(
                        "SELECT step, variant, bin, count FROM rollout_token_bins "
                        "WHERE rollout_id = ? ORDER BY step, variant, bin",
                        (rollout_id,),
                    ).fetchall()
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc
        return stats_from_rows(metric_rows, bin_rows, token_bin_rows, url=self._url)

    @contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """Every table as one consistent read: one read transaction (one WAL snapshot)
        held for the ``with`` block; writers in other processes are not blocked."""
        with self._lock:
            conn = self._connection()
            try:
                # Deferred: the first read fixes the snapshot every later read sees.
                conn.execute("BEGIN")
                try:
                    yield self._snapshot_of(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def restore(self, source: RestoreSource, check: Callable[[Snapshot], None]) -> None:
        """Write every table of ``source`` into this empty store in one ``BEGIN IMMEDIATE``
        transaction; ``check`` verifies what was written before it commits."""
        with self._immediate() as conn:
            restore_rows(
                conn.execute,
                conn.executemany,
                source,
                self._snapshot_of(conn),
                check,
                ph="?",
                json_value="?",
            )

    def _snapshot_of(self, conn: sqlite3.Connection) -> Snapshot:
        return Snapshot(
            lambda sql, params: conn.execute(sql, params).fetchall(),
            backend="sqlite",
            url=self._url,
            batch_size=self._batch_size,
        )

    def close(self) -> None:
        """Close the connection; the store cannot be used afterwards."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({self._url!r})"

    # -- internals ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ReleaserError(f"the state store {self._url} is closed")
        return self._conn

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction holding sqlite's write lock: committed on success."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def _read_events(self, rest: str, params: tuple[Any, ...]) -> _Rows:
        """Event rows as text; a batch holding bytes that are not UTF-8 (sqlite keeps what
        was written) is read again as bytes, so verification names the entry."""
        try:
            return self._read(f"SELECT seq, prev_hash, hash, payload {rest}", params)
        except ExternalUnavailable as exc:
            if not isinstance(exc.__cause__, sqlite3.OperationalError) or "decode" not in str(
                exc.__cause__
            ):
                raise
            return self._read(f"SELECT {BYTES_EVENT_COLUMNS} {rest}", params)

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> _Rows:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._failed(exc) from exc

    def _migrate(self, conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
        # Fast path: an up-to-date store needs no write lock.
        current = _schema_version(conn)
        if not pending_migrations(migrations, current, url=self._url):
            return
        # BEGIN IMMEDIATE takes the write lock, so concurrent openers migrate one at a time.
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
            )
            current = _schema_version(conn)
            for migration in pending_migrations(migrations, current, url=self._url):
                for statement in migration.statements:
                    conn.execute(statement)
                if migration.anchor_records:
                    rows = conn.execute(
                        "SELECT kind, key, version, value FROM records WHERE event_seq IS NULL"
                    ).fetchall()
                    anchor_existing_records(conn.execute, rows, utc_stamp(), ph="?")
                conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES (?, ?)",
                    (migration.version, migration.description),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _unavailable(self, exc: BaseException) -> ExternalUnavailable:
        return ExternalUnavailable(
            f"cannot open the state store {self._url}: {exc}",
            hint="check that the directory exists and is writable and that the file is a "
            "releaser state database (or choose another store with --store)",
        )

    def _failed(self, exc: sqlite3.Error) -> ReleaserError:
        if isinstance(exc, sqlite3.OperationalError):
            return ExternalUnavailable(
                f"the state store {self._url} failed: {exc}",
                hint="another process held the write lock for too long; retry"
                if _is_busy(exc)
                else "check disk space and file permissions, then retry",
            )
        return ReleaserError(
            f"the state store {self._url} failed: {exc}",
            hint="the file may be damaged; check it with `releaser audit verify`",
        )


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether sqlite refused because another connection holds a lock."""
    return "locked" in str(exc) or "busy" in str(exc)


def _enable_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to WAL mode, waiting out other processes doing the same.

    sqlite answers ``database is locked`` to ``PRAGMA journal_mode`` at once, without
    calling the busy handler, while another connection is switching a fresh file to
    WAL; so several processes opening a new store together retry here, up to the
    busy timeout, instead of one of them failing.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def _record(row: tuple[Any, ...]) -> Record:
    kind, key, version, value, updated_at = row
    return Record(str(kind), str(key), int(version), json.loads(value), str(updated_at))


def _stored_threshold(conn: sqlite3.Connection, p: PreparedMetric) -> float | None:
    row = conn.execute(
        "SELECT slow_threshold_ms FROM rollout_metrics "
        "WHERE rollout_id = ? AND step = ? AND variant = ?",
        (p.rollout_id, p.step, p.variant),
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])
