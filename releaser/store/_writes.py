"""Checks and encodings both SQL backends share when they commit a transition.

Writes and audit events are checked and encoded before any transaction starts,
so bad input writes nothing; a compare-and-swap that lost gets one error text
whichever backend ran it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from releaser.core.audit import EventDraft
from releaser.core.canonical import canonical_json
from releaser.errors import BadInput, StateConflict
from releaser.store.base import Write

__all__ = [
    "PreparedWrite",
    "conflict_error",
    "encode_event",
    "prepare_writes",
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
