"""The state store interface every backend implements.

The store holds versioned records (``kind``/``key`` -> JSON value + version)
and the append-only audit chain. A state transition is one call to
:meth:`Store.commit`: one transaction that applies every write with
compare-and-swap on its version and appends its audit event (one, or a few
that belong together). Of
several writers racing from the same version exactly one wins; the others get
:class:`~releaser.errors.StateConflict` and nothing of theirs is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from releaser.core.audit import AuditEvent, EventDraft, RawEvent
from releaser.core.stats_aggregates import VariantStats
from releaser.core.unit_sketch import UnitSketch

if TYPE_CHECKING:
    from releaser.store._bulk import RestoreSource, Snapshot

__all__ = [
    "METRIC_VARIANTS",
    "Delete",
    "EventSummary",
    "MetricDelta",
    "Record",
    "Store",
    "UnitCounts",
    "UnitDelta",
    "Write",
]

EventSummary = tuple[int, str, str, str, str, str | None]
"""What ``audit log`` shows of an event: (seq, at, actor, action, subject, reason)."""

METRIC_VARIANTS = ("baseline", "candidate")
"""The variants a rollout measures; metrics for any other name are refused."""


@dataclass(frozen=True)
class Record:
    """A stored record: its value and the version a writer must name to change it."""

    kind: str
    key: str
    version: int
    value: dict[str, Any]
    updated_at: str


@dataclass(frozen=True)
class Write:
    """One write inside a transition.

    ``expected_version`` is the version the writer read; ``0`` means the record
    must not exist yet (an insert). The stored version becomes
    ``expected_version + 1``.
    """

    kind: str
    key: str
    value: dict[str, Any]
    expected_version: int


@dataclass(frozen=True)
class Delete:
    """A record a prune removes, named with the version the pruner read (compare-and-swap)."""

    kind: str
    key: str
    expected_version: int


@dataclass(frozen=True)
class MetricDelta:
    """Aggregates counted since a router's last flush, for one rollout step and variant.

    ``stats`` is a delta: the store adds it to what it holds for
    (``rollout_id``, ``step``, ``variant``). ``variant`` is one of
    :data:`METRIC_VARIANTS`; ``step`` is the rollout step index (0, 1, ...).
    """

    rollout_id: str
    step: int
    variant: str
    stats: VariantStats
    units: tuple[UnitDelta, ...] = field(default=())
    """Distinct units per cohort group, as sketches (never the unit ids)."""


@dataclass(frozen=True)
class UnitDelta:
    """The units a router saw in one cohort group since its last flush, as a sketch.

    ``requests`` counts the requests recorded with a unit id in that group (added); the
    sketch is merged with the stored one register by register (``max``), so merging the
    same delta twice changes nothing.
    """

    group: str
    requests: int
    sketch: UnitSketch


UnitCounts = dict[tuple[int, str, str], tuple[int, UnitSketch]]
"""A rollout's unit sketches by (step, variant, group): (requests with a unit id, sketch)."""


@runtime_checkable
class Store(Protocol):
    """Persistence for records and the audit chain (sqlite and PostgreSQL)."""

    @property
    def url(self) -> str:
        """Where the store lives, with any password redacted (safe to print)."""
        ...

    def get(self, kind: str, key: str) -> Record | None:
        """The record, or ``None`` if it does not exist."""
        ...

    def list(self, kind: str, *, prefix: str = "", omit: Sequence[str] = ()) -> list[Record]:
        """Records of ``kind`` whose key starts with ``prefix``, ordered by key.

        ``omit`` names dotted paths (``content.config``) left out of each value by the
        database, before it is sent and decoded: a listing of thousands of records
        reads only what it shows.
        """
        ...

    def commit(
        self, writes: Sequence[Write], event: EventDraft, *, also: Sequence[EventDraft] = ()
    ) -> AuditEvent:
        """Apply ``writes`` with compare-and-swap and append ``event``, atomically.

        ``also`` are further events chained after ``event`` in the same transaction
        (e.g. each alias move a traffic switch owes); the first event is returned.
        """
        ...

    def prune(
        self,
        deletes: Sequence[Delete],
        event: EventDraft,
        *,
        histograms_of: Sequence[str] = (),
    ) -> AuditEvent:
        """Remove ``deletes`` (compare-and-swap on each version) and the latency histograms
        of the rollouts ``histograms_of`` (their counts stay), and append ``event``, in one
        transaction. StateConflict, removing nothing, when a record changed meanwhile."""
        ...

    def events(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> Iterator[AuditEvent]:
        """Audit events in order, optionally after a sequence number or for one subject."""
        ...

    def event_summaries(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> Sequence[EventSummary]:
        """(seq, at, actor, action, subject, reason) of events in order, as ``events``
        selects them, read by the database without decoding each event."""
        ...

    def raw_events(self, *, after_seq: int = 0, subject: str | None = None) -> Iterator[RawEvent]:
        """Stored audit events, undecoded, in sequence order (for verification): every one,
        or those after ``after_seq`` (and about ``subject``)."""
        ...

    def record_links(self) -> Iterator[tuple[str, str, int, str, int | None]]:
        """Every record as (kind, key, version, value's JSON text, seq of the audit entry
        that last wrote it, None if none), by kind and key: what verification compares."""
        ...

    def audit_head(self) -> tuple[int, str]:
        """The (seq, hash) of the latest event as recorded by the store; (0, genesis) if none."""
        ...

    def change_token(self) -> int:
        """A cheap number that changes whenever any transition commits (routers poll it)."""
        ...

    def wait_for_change(self, last_token: int, timeout_s: float) -> int:
        """Block until :meth:`change_token` differs from ``last_token`` or ``timeout_s`` passes.

        Returns the current token: a new one after a commit (from any process),
        ``last_token`` itself on timeout. PostgreSQL wakes on ``LISTEN``
        (milliseconds); sqlite polls the token every few milliseconds.
        """
        ...

    def add_metrics(self, batch: Sequence[MetricDelta], *, batch_id: str | None = None) -> bool:
        """Add a batch of metric deltas to the stored aggregates, in one transaction.

        With ``batch_id``, a batch is added at most once: a writer that never saw
        its commit confirmed (a dropped connection) re-sends the same batch with
        the same id, and the store returns False, adding nothing, if it already
        has it. Ids are remembered for a week. Returns True when it added the batch.

        Each delta is added (counts, sums, latency bins) to the aggregate of its
        (rollout, step, variant), so concurrent flushers never lose a count.
        A step and variant keep the first non-null ``slow_threshold_ms`` they
        were given. Raises :class:`~releaser.errors.BadInput`, writing nothing
        of the batch, for an unknown variant, a negative step or count,
        inconsistent stats, or a slow threshold that differs from the stored
        one. Each delta's unit sketches are merged (register-wise ``max``) into the
        stored sketch of their (rollout, step, variant, group) in the same
        transaction. Not audited; :meth:`change_token` does not move.
        """
        ...

    def read_metrics(self, rollout_id: str) -> dict[tuple[int, str], VariantStats]:
        """The cumulative aggregates of one rollout by (step, variant), as one consistent read.

        Empty when nothing was reported; ordered by step, then variant.
        """
        ...

    def read_units(self, rollout_id: str) -> UnitCounts:
        """The unit sketches of one rollout by (step, variant, group), ordered by key.

        Empty when no router recorded a unit id (or a prune removed them).
        """
        ...

    def snapshot(self) -> AbstractContextManager[Snapshot]:
        """Every table as one consistent read, for the life of the ``with`` block.

        One read transaction (sqlite) or one ``REPEATABLE READ, READ ONLY``
        transaction (PostgreSQL); rows come in key order and in batches. The
        store's other methods must not be called inside the block.
        """
        ...

    def restore(self, source: RestoreSource, check: Callable[[Snapshot], None]) -> None:
        """Write every table of ``source`` into this store, which must be empty, in one
        transaction; ``check`` verifies what was written before it commits.

        Raises :class:`~releaser.errors.BadInput`, writing nothing, when the store
        holds anything; whatever ``check`` raises rolls everything back.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
