"""The state store interface every backend implements.

The store holds versioned records (``kind``/``key`` -> JSON value + version)
and the append-only audit chain. A state transition is one call to
:meth:`Store.commit`: one transaction that applies every write with
compare-and-swap on its version and appends exactly one audit event. Of
several writers racing from the same version exactly one wins; the others get
:class:`~releaser.errors.StateConflict` and nothing of theirs is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from releaser.core.audit import AuditEvent, EventDraft, RawEvent

__all__ = ["Record", "Store", "Write"]


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

    def list(self, kind: str, *, prefix: str = "") -> list[Record]:
        """Records of ``kind`` whose key starts with ``prefix``, ordered by key."""
        ...

    def commit(self, writes: Sequence[Write], event: EventDraft) -> AuditEvent:
        """Apply ``writes`` with compare-and-swap and append ``event``, atomically."""
        ...

    def events(
        self, *, after_seq: int = 0, limit: int | None = None, subject: str | None = None
    ) -> Iterator[AuditEvent]:
        """Audit events in order, optionally after a sequence number or for one subject."""
        ...

    def raw_events(self) -> Iterator[RawEvent]:
        """Every stored audit event, undecoded, in sequence order (for verification)."""
        ...

    def audit_head(self) -> tuple[int, str]:
        """The (seq, hash) of the latest event as recorded by the store; (0, genesis) if none."""
        ...

    def change_token(self) -> int:
        """A cheap number that changes whenever any transition commits (routers poll it)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
