"""Whole-store reads and writes both SQL backends share: a snapshot and a restore.

:class:`Snapshot` reads every table of a store inside one read transaction that
the backend holds open (``BEGIN`` on sqlite, ``REPEATABLE READ, READ ONLY`` on
PostgreSQL), in key order and in batches, so an export sees one consistent state
and holds only a batch in memory. :func:`restore_rows` writes every table into an
empty store inside one write transaction, then hands the caller a snapshot of that
same transaction to verify before it commits: a failure anywhere, or a kill,
leaves the target as empty as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from releaser.core.audit import GENESIS_HASH
from releaser.errors import BadInput
from releaser.store._reads import BYTES_EVENT_COLUMNS, AuditReads
from releaser.store._writes import Execute

__all__ = [
    "TABLES",
    "Column",
    "RestoreSource",
    "Snapshot",
    "Table",
    "restore_rows",
]


@dataclass(frozen=True)
class Column:
    """One column as it travels: its name and JSON type (``str``, ``int``, ``float``)."""

    name: str
    type: type
    nullable: bool = False
    since: int = 1
    """The schema version that added the column; rows of older archives take ``default``."""
    default: Any = None


@dataclass(frozen=True)
class Table:
    """A table a store holds: its columns in order, and its primary key (the read order)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    since: int = 1
    """The schema version that added the table; older archives do not carry it."""

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(c.name for c in self.columns)


def _cols(*spec: str, since: int = 1) -> tuple[Column, ...]:
    """Columns from ``name:type`` (``?`` after the type: nullable), added at ``since``
    (a column added after the table was made defaults to 0)."""
    types = {"str": str, "int": int, "float": float}
    out = []
    for item in spec:
        name, _, kind = item.partition(":")
        column_type = types[kind.rstrip("?")]
        default = column_type(0) if since > 1 and column_type is not str else None
        out.append(Column(name, column_type, kind.endswith("?"), since, default))
    return tuple(out)


TABLES: tuple[Table, ...] = (
    Table(
        "records",
        _cols(
            "kind:str", "key:str", "version:int", "value:str", "updated_at:str", "event_seq:int?"
        ),
        ("kind", "key"),
    ),
    Table(
        "audit_events",
        _cols("seq:int", "prev_hash:str", "hash:str", "payload:str", "subject:str"),
        ("seq",),
    ),
    Table(
        "rollout_metrics",
        _cols(
            "rollout_id:str",
            "step:int",
            "variant:str",
            "requests:int",
            "errors:int",
            "slow:int",
            "slow_threshold_ms:float?",
            "quality_count:int",
            "quality_sum:float",
            "quality_sumsq:float",
            "updated_at:str",
        )
        + _cols(
            "token_requests:int",
            "prompt_tokens:int",
            "completion_tokens:int",
            "tokens_sumsq:float",
            "prompt_tokens_sumsq:float",
            "completion_tokens_sumsq:float",
            since=6,
        ),
        ("rollout_id", "step", "variant"),
    ),
    Table(
        "rollout_latency_bins",
        _cols("rollout_id:str", "step:int", "variant:str", "bin:int", "count:int"),
        ("rollout_id", "step", "variant", "bin"),
    ),
    Table(
        "rollout_token_bins",
        _cols("rollout_id:str", "step:int", "variant:str", "bin:int", "count:int"),
        ("rollout_id", "step", "variant", "bin"),
        since=6,
    ),
    Table("metric_batches", _cols("batch_id:str", "applied_at:int"), ("batch_id",)),
    Table(
        "rollout_unit_sketches",
        _cols(
            "rollout_id:str",
            "step:int",
            "variant:str",
            "cohort_group:str",
            "requests:int",
            "registers:str",
            "updated_at:str",
        ),
        ("rollout_id", "step", "variant", "cohort_group"),
        since=7,
    ),
)
"""Every table that holds state, in the order an archive carries them (records, the
audit chain, then the metric tables). ``schema_version`` and ``audit_head`` are
not carried: the target has its own schema, and its head is the chain's last entry."""

# Text columns read as bytes on sqlite, so a byte that is not UTF-8 reaches
# verification (and is named there) instead of failing the read.
_SQLITE_BYTES = {"value", "prev_hash", "hash", "payload", "subject"}


class Snapshot(AuditReads):
    """Every table of one store as one consistent read, inside an open transaction.

    Also an audit source (``audit_head``, ``raw_events``, ``record_links``), so
    the verification that ``audit verify`` runs can run on it.
    """

    def __init__(
        self,
        read: Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]],
        *,
        backend: str,
        url: str,
        batch_size: int,
    ) -> None:
        self._reader = read
        self._batch_size = max(1, batch_size)
        self.backend = backend
        """``sqlite`` or ``postgresql``."""
        self.url = url
        """Where the store lives, password redacted."""
        if backend == "sqlite":
            self._PH = "?"
            self._VALUE_TEXT_SQL = "CAST(value AS BLOB)"
        else:
            self._PH = "%s"

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._reader(sql, params)

    def _read_events(self, rest: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            # As bytes: a byte that is not UTF-8 is named by verification, not a failed read.
            return self._read(f"SELECT {BYTES_EVENT_COLUMNS} {rest}", params)
        return super()._read_events(rest, params)

    def schema_version(self) -> int:
        """The store's schema version (the highest migration applied)."""
        return int(self._read("SELECT coalesce(max(version), 0) FROM schema_version")[0][0])

    def holds(self) -> list[str]:
        """What the store holds, per table (``records``, ...): empty for an empty store."""
        held = []
        for table in TABLES:
            if self._read(f"SELECT 1 FROM {table.name} LIMIT 1"):
                held.append(table.name)
        if self.audit_head()[0] and "audit_events" not in held:
            held.append("audit_head")
        return held

    def require_empty(self) -> None:
        """BadInput naming what the store holds, unless it holds nothing (a restore's target)."""
        held = self.holds()
        if held:
            raise BadInput(
                f"the state store {self.url} is not empty (it holds {', '.join(held)}); "
                "nothing was written",
                hint="import into a new store: a new sqlite file, or an empty PostgreSQL "
                "database or schema (?options=-csearch_path%3Dname)",
            )

    def rows(self, table: Table) -> Iterator[tuple[Any, ...]]:
        """Every row of ``table`` (columns in :attr:`Table.columns` order), by key, in batches."""
        ph = self._PH
        select = ", ".join(self._select(c.name) for c in table.columns)
        order = ", ".join(table.key)
        positions = [table.names.index(k) for k in table.key]
        last: tuple[Any, ...] | None = None
        while True:
            where = ""
            if last is not None:
                where = f"WHERE ({order}) > ({', '.join([ph] * len(last))}) "
            rows = self._read(
                f"SELECT {select} FROM {table.name} {where}ORDER BY {order} LIMIT {ph}",
                (*(last or ()), self._batch_size),
            )
            for row in rows:
                yield tuple(_plain(v) for v in row)
            if len(rows) < self._batch_size:
                return
            last = tuple(rows[-1][i] for i in positions)

    def _select(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"CAST({name} AS BLOB)" if name in _SQLITE_BYTES else name
        return "value::text" if name == "value" else name


def _plain(value: Any) -> Any:
    """A column value as JSON carries it: bytes become text (bytes that are not UTF-8 kept
    as surrogates, which verification names)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "surrogateescape")
    return value


class RestoreSource(Protocol):
    """What a restore reads: each table's rows, and the audit head they end at."""

    def rows(self, table: Table) -> Iterator[tuple[Any, ...]]:
        """Every row of ``table``, columns in :attr:`Table.columns` order."""
        ...

    def audit_head(self) -> tuple[int, str]:
        """The (seq, hash) of the last audit entry; (0, genesis) for none."""
        ...


_INSERT_BATCH = 1000


def restore_rows(
    execute: Execute,
    executemany: Callable[[str, Sequence[tuple[Any, ...]]], Any],
    source: RestoreSource,
    snapshot: Snapshot,
    check: Callable[[Snapshot], None],
    *,
    ph: str,
    json_value: str,
) -> None:
    """Write every row of ``source`` into the store of the open transaction, which must
    be empty, then move its audit head and run ``check`` on ``snapshot`` (a reader of
    the same transaction) before the caller commits.

    ``ph`` is the backend's placeholder and ``json_value`` the SQL for a JSON value
    parameter. BadInput, writing nothing, when the store is not empty; whatever
    ``check`` raises rolls the transaction back. The caller rolls back on error.
    """
    snapshot.require_empty()
    for table in TABLES:
        marks = ", ".join(json_value if c.name == "value" else ph for c in table.columns)
        sql = f"INSERT INTO {table.name} ({', '.join(table.names)}) VALUES ({marks})"
        for batch in _batches(source.rows(table)):
            executemany(sql, batch)
    seq, digest = source.audit_head()
    execute(
        f"UPDATE audit_head SET seq = {ph}, hash = {ph} WHERE id = 1",
        (seq, digest if seq else GENESIS_HASH),
    )
    check(snapshot)


def _batches(rows: Iterable[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    it = iter(rows)
    while batch := list(islice(it, _INSERT_BATCH)):
        yield batch
