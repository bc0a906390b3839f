"""The audit chain: events, how each links to the one before, and verification.

Every state change appends one event. An event's hash covers its sequence
number, the previous event's hash and its canonical JSON payload, so a flipped
byte, a deleted event or a reordered event breaks the chain at a named place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from releaser.core.canonical import canonical_json

__all__ = [
    "CHECKPOINT_TYPE",
    "GENESIS_HASH",
    "AuditEvent",
    "Checkpoint",
    "EventDraft",
    "RawEvent",
    "VerifyResult",
    "WriteDigest",
    "anchor_problem",
    "chain_hash",
    "checkpoint_statement",
    "event_json",
    "parse_checkpoint",
    "payload_writes",
    "value_digest",
    "verify_chain",
]

GENESIS_HASH = "0" * 64

WriteDigest = tuple[str, str, int, str]
"""A record an event wrote: (kind, key, the version it became, :func:`value_digest`)."""


def value_digest(value_json: str) -> str:
    """SHA-256 of a record value's canonical JSON text."""
    return hashlib.sha256(value_json.encode("utf-8", "surrogateescape")).hexdigest()


def payload_writes(payload: str) -> dict[tuple[str, str], tuple[int, str]] | None:
    """The writes an event's payload lists, by (kind, key); None when it lists none
    (events that wrote nothing, or written before events listed their writes)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    writes = data.get("writes") if isinstance(data, dict) else None
    if not isinstance(writes, list):
        return None
    found: dict[tuple[str, str], tuple[int, str]] = {}
    for w in writes:
        if isinstance(w, list) and len(w) == 4:
            found[(str(w[0]), str(w[1]))] = (int(w[2]), str(w[3]))
    return found


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

    def payload(self, writes: Sequence[WriteDigest] | None = None) -> str:
        """The canonical JSON text that is stored and hashed.

        ``writes`` are the records the event's transaction wrote, each as
        (kind, key, new version, digest of the value): the store adds them, so a
        record edited outside releaser no longer matches the entry that wrote it.
        """
        data: dict[str, Any] = {
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "at": self.at,
            "before": self.before,
            "after": self.after,
            "reason": self.reason,
            "context": self.context,
        }
        if writes is not None:
            data["writes"] = [list(w) for w in writes]
        return canonical_json(data)


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
    """The hash of event ``seq``: SHA-256 over ``seq``, the previous hash and the payload.

    Text read from a damaged store may carry bytes that are not UTF-8 as surrogates
    (``surrogateescape``); they are hashed as the bytes they stand for.
    """
    text = f"{seq}\n{prev_hash}\n{payload}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
        if _not_utf8(ev.payload) or _not_utf8(ev.hash) or _not_utf8(ev.prev_hash):
            return VerifyResult(
                False,
                count,
                prev,
                bad_seq=ev.seq,
                problem=f"entry {ev.seq} holds bytes that are not UTF-8 text: it was edited "
                "outside releaser",
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


CHECKPOINT_TYPE = "releaser-audit-checkpoint/1"
"""The ``type`` of a signed checkpoint statement (its format version)."""


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement that the chain had ``seq`` entries, the last hashing to ``hash``.

    ``first_hash`` is entry 1's hash, so a log rebuilt from nothing (a reset) is
    told apart from one edited part-way. ``signer`` is the principal (an owner's
    email) whose SSH key made ``signature`` over ``statement``.
    """

    seq: int
    hash: str
    first_hash: str
    store: str
    at: str
    signer: str
    statement: str
    signature: str

    def to_dict(self) -> dict[str, str]:
        """The checkpoint file's content: the exact statement signed, and the signature."""
        return {"statement": self.statement, "signature": self.signature}


def checkpoint_statement(
    *, seq: int, hash: str, first_hash: str, store: str, at: str, signer: str
) -> str:
    """The canonical JSON text a checkpoint signs."""
    return canonical_json(
        {
            "type": CHECKPOINT_TYPE,
            "seq": seq,
            "hash": hash,
            "first_hash": first_hash,
            "store": store,
            "at": at,
            "signer": signer,
        }
    )


def parse_checkpoint(data: Any) -> Checkpoint:
    """A checkpoint from its file's JSON; ValueError says what is wrong with it."""
    if not isinstance(data, dict) or not isinstance(data.get("statement"), str):
        raise ValueError("expected a JSON object with 'statement' and 'signature'")
    signature = data.get("signature")
    if not isinstance(signature, str) or not signature:
        raise ValueError("it has no signature")
    try:
        said = json.loads(data["statement"])
    except ValueError:
        raise ValueError("its statement is not JSON") from None
    if not isinstance(said, dict) or said.get("type") != CHECKPOINT_TYPE:
        raise ValueError("its statement is not a releaser audit checkpoint")
    seq, digest, first = said.get("seq"), said.get("hash"), said.get("first_hash")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ValueError("its seq is not a count of entries")
    for name, value in (("hash", digest), ("first_hash", first)):
        if not isinstance(value, str) or len(value) != 64:
            raise ValueError(f"its {name} is not a SHA-256 hex digest")
    return Checkpoint(
        seq=seq,
        hash=str(digest),
        first_hash=str(first),
        store=str(said.get("store", "")),
        at=str(said.get("at", "")),
        signer=str(said.get("signer", "")),
        statement=data["statement"],
        signature=signature,
    )


def anchor_problem(
    seq: int, digest: str, first_hash: str | None, stored: dict[int, str], count: int, what: str
) -> str | None:
    """What a stored chain did to the prefix ``what`` anchors (entry ``seq`` hashing to
    ``digest``), or None when that prefix is intact.

    ``stored`` maps entry numbers to their stored hashes (at least 1 and ``seq``);
    ``count`` is how many entries the store holds. The answer names the attack: a
    reset (entry 1 differs), a rewind (entries deleted and the head moved back),
    or a rewrite (an entry at or before ``seq`` edited or inserted, the chain re-hashed).
    """
    if seq == 0:
        return None
    if first_hash is not None and stored.get(1) not in (None, first_hash):
        return (
            f"the log was reset: entry 1 is not the one {what} anchored, so every entry "
            f"up to {seq} was replaced"
        )
    if count < seq or seq not in stored:
        return (
            f"the log was rewound: {what} anchors entry {seq}, the store holds {count} "
            f"(entries {count + 1}..{seq} were deleted)"
        )
    if stored[seq] != digest:
        return (
            f"entries up to {seq} were rewritten: entry {seq}'s hash is not the one {what} "
            f"anchored (an entry at or before {seq} was edited, inserted or removed and the "
            "chain re-hashed)"
        )
    return None


_PAYLOAD_HEAD = '{"action":'


def event_json(seq: int, prev_hash: str, digest: str, payload: str) -> str | None:
    """The documented ``audit log --json`` object of an event, as compact JSON text with
    its keys sorted, spliced from the stored canonical payload without decoding it.

    The payload is canonical JSON (keys sorted, no spaces), so its top-level keys run
    ``action, actor, after, at, before, context, reason, subject[, writes]``: the
    event's ``hash`` and ``prev_hash`` go before ``reason``, ``seq`` before
    ``subject``, and ``writes`` is left out. ``,"reason":`` cannot occur inside a
    later value (``subject`` and ``writes`` hold only strings, where a quote is
    escaped), so its last occurrence is the top-level key; the tail after it is
    checked as it is read. Returns None for any payload not of that shape; the
    caller then decodes it (:meth:`AuditEvent.from_raw`).
    """
    if not payload.startswith(_PAYLOAD_HEAD):
        return None
    reason_at = payload.rfind(',"reason":')
    if reason_at < 0:
        return None
    pos = reason_at + len(',"reason":')
    try:
        if payload.startswith("null", pos):
            pos += 4
        elif payload.startswith('"', pos):
            _, pos = scanstring(payload, pos + 1)
        else:
            return None
        subject_at = pos
        if not payload.startswith(',"subject":"', pos):
            return None
        _, pos = scanstring(payload, pos + len(',"subject":"'))
    except ValueError:
        return None
    if payload[pos:] != "}" and not payload.startswith(',"writes":[', pos):
        return None
    return (
        f'{payload[:reason_at]},"hash":"{digest}","prev_hash":"{prev_hash}"'
        f'{payload[reason_at:subject_at]},"seq":{int(seq)}{payload[subject_at:pos]}}}'
    )
