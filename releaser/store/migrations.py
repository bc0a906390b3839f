"""The schema of the SQL stores: versioned migrations per backend, and checks both share.

Each backend applies its migrations in order when a store is opened, inside
one locked transaction, and records each applied version in
``schema_version``. A store whose schema is newer than this releaser knows is
refused rather than written to.

Tables (both backends):

- ``records(kind, key, version, value, updated_at)``: current state, CAS on ``version``.
- ``audit_events(seq, prev_hash, hash, payload, subject)``: the hash chain;
  ``payload`` is the exact hashed text, ``subject`` a copy for filtering.
- ``audit_head(id = 1, seq, hash)``: the latest event; its row lock serialises writers.
- ``schema_version(version, description, applied_at)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from releaser.core.audit import GENESIS_HASH, EventDraft
from releaser.core.canonical import canonical_json
from releaser.errors import BadInput, ReleaserError, StateConflict
from releaser.store.base import Write

__all__ = [
    "POSTGRES_MIGRATIONS",
    "SQLITE_MIGRATIONS",
    "Migration",
    "PreparedWrite",
    "conflict_error",
    "encode_event",
    "pending_migrations",
    "prepare_writes",
]


@dataclass(frozen=True)
class Migration:
    """One schema step: its version number and the statements that make it."""

    version: int
    description: str
    statements: tuple[str, ...]


SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records, audit chain and head",
        (
            """CREATE TABLE records (
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                version INTEGER NOT NULL CHECK (version > 0),
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE audit_events (
                seq INTEGER PRIMARY KEY,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                payload TEXT NOT NULL,
                subject TEXT NOT NULL
            )""",
            "CREATE INDEX audit_events_subject ON audit_events (subject, seq)",
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL
            )""",
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "records, audit chain and head",
        (
            # COLLATE "C": byte order, so keys sort as they do in sqlite whatever the locale.
            """CREATE TABLE records (
                kind TEXT COLLATE "C" NOT NULL,
                key TEXT COLLATE "C" NOT NULL,
                version BIGINT NOT NULL CHECK (version > 0),
                value JSONB NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (kind, key)
            )""",
            # payload is TEXT, not JSONB: the exact hashed bytes must come back.
            """CREATE TABLE audit_events (
                seq BIGINT PRIMARY KEY,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL,
                payload TEXT NOT NULL,
                subject TEXT NOT NULL
            )""",
            "CREATE INDEX audit_events_subject ON audit_events (subject, seq)",
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq BIGINT NOT NULL,
                hash TEXT NOT NULL
            )""",
            f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
        ),
    ),
)


def pending_migrations(
    migrations: Sequence[Migration], current: int, *, url: str
) -> list[Migration]:
    """The migrations still to apply to a store at schema ``current``, in order.

    Raises :class:`ReleaserError` when the store was written by a newer
    releaser (its schema version is above every version known here).
    """
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3, ... in order; got {versions}")
    latest = versions[-1] if versions else 0
    if current > latest:
        raise ReleaserError(
            f"the state store at {url} has schema version {current}, "
            f"but this releaser knows versions up to {latest}",
            hint="a newer releaser has used this store; upgrade releaser "
            "(pip install --upgrade releaser) and run the command again",
        )
    return [m for m in migrations if m.version > current]


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


def encode_event(event: EventDraft) -> str:
    """The canonical payload of ``event``; a value JSON cannot hold is bad input."""
    try:
        return event.payload()
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
