"""The audit chain: events, how each links to the one before, and verification.

Every state change appends one event. An event's hash covers its sequence
number, the previous event's hash and its canonical JSON payload, so a flipped
byte, a deleted event or a reordered event breaks the chain at a named place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from releaser.core.canonical import canonical_json

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "EventDraft",
    "RawEvent",
    "VerifyResult",
    "chain_hash",
    "verify_chain",
]

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class EventDraft:
    """What a caller says about a state change; the store adds seq and hashes."""

    actor: str
    action: str
    subject: str
    at: str
    before: Any = None
    after: Any = None
    reason: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> str:
        """The canonical JSON text that is stored and hashed."""
        return canonical_json(
            {
                "actor": self.actor,
                "action": self.action,
                "subject": self.subject,
                "at": self.at,
                "before": self.before,
                "after": self.after,
                "reason": self.reason,
                "context": self.context,
            }
        )


@dataclass(frozen=True)
class RawEvent:
    """An event as stored: what verification reads."""

    seq: int
    prev_hash: str
    hash: str
    payload: str


@dataclass(frozen=True)
class AuditEvent:
    """A stored, chained audit event, decoded."""

    seq: int
    prev_hash: str
    hash: str
    actor: str
    action: str
    subject: str
    at: str
    before: Any
    after: Any
    reason: str | None
    context: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: RawEvent) -> AuditEvent:
        """Decode a stored event."""
        data = json.loads(raw.payload)
        return cls(
            seq=raw.seq,
            prev_hash=raw.prev_hash,
            hash=raw.hash,
            actor=data["actor"],
            action=data["action"],
            subject=data["subject"],
            at=data["at"],
            before=data.get("before"),
            after=data.get("after"),
            reason=data.get("reason"),
            context=data.get("context") or {},
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the documented ``audit log --json`` shape)."""
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "reason": self.reason,
            "before": self.before,
            "after": self.after,
            "context": self.context,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def chain_hash(seq: int, prev_hash: str, payload: str) -> str:
    """The hash of event ``seq``: SHA-256 over ``seq``, the previous hash and the payload."""
    return hashlib.sha256(f"{seq}\n{prev_hash}\n{payload}".encode()).hexdigest()


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of verifying a chain; ``bad_seq`` names the first bad entry."""

    ok: bool
    count: int
    head_hash: str
    bad_seq: int | None = None
    problem: str | None = None


def verify_chain(
    events: Iterable[RawEvent], *, head: tuple[int, str] | None = None
) -> VerifyResult:
    """Check that ``events`` (in stored order) form an unbroken chain.

    ``head`` is the (seq, hash) the store recorded as its latest event; when
    given, a chain that stops short of it (deleted tail) is reported too.
    """
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for ev in events:
        if ev.seq != expected_seq:
            what = "missing (deleted?)" if ev.seq > expected_seq else "out of order"
            return VerifyResult(
                False,
                count,
                prev,
                bad_seq=expected_seq,
                problem=f"entry {expected_seq} is {what}; found entry {ev.seq} in its place",
            )
        if ev.prev_hash != prev:
            return VerifyResult(
                False,
                count,
                prev,
                bad_seq=ev.seq,
                problem=f"entry {ev.seq} does not link to entry {ev.seq - 1} (reordered or edited)",
            )
        if chain_hash(ev.seq, ev.prev_hash, ev.payload) != ev.hash:
            return VerifyResult(
                False,
                count,
                prev,
                bad_seq=ev.seq,
                problem=f"entry {ev.seq} has been altered (its content no longer matches its hash)",
            )
        prev = ev.hash
        count += 1
        expected_seq += 1
    if head is not None and head != (count, prev) and not (head[0] == 0 and count == 0):
        head_seq, _ = head
        if head_seq > count:
            return VerifyResult(
                False,
                count,
                prev,
                bad_seq=count + 1,
                problem=f"entries {count + 1}..{head_seq} are missing (the log was truncated)",
            )
        return VerifyResult(
            False,
            count,
            prev,
            bad_seq=head_seq,
            problem=f"the recorded head (entry {head_seq}) does not match the chain",
        )
    return VerifyResult(True, count, prev)
