"""Use cases for the audit chain: read it, verify it, and anchor it with signed checkpoints.

A hash chain proves that nothing changed *inside* a log, not that the log is the
one that was written: someone with write access to the store can edit an entry
and re-hash everything after it. A checkpoint closes that gap. ``releaser audit
checkpoint`` signs the head (entry count, its hash, entry 1's hash) with an
owner's SSH key; kept outside the store (committed to git, attached to a GitHub
release, in the handover pack), it lets ``verify_anchored`` prove that the
prefix it anchors is still intact, and name what happened when it is not: a
reset, a rewind, or a rewrite. ``expect_head`` (a head recorded elsewhere, or
the latest checkpoint) also catches entries appended after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path
from typing import Any, Protocol

from releaser.api.context import utc_now
from releaser.api.workspace import Workspace
from releaser.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    Checkpoint,
    RawEvent,
    VerifyResult,
    anchor_problem,
    checkpoint_statement,
    parse_checkpoint,
    payload_writes,
    value_digest,
    verify_chain,
)
from releaser.core.canonical import canonical_json
from releaser.core.signing import CHECKPOINT_NAMESPACE, AllowedSigner, allowed_signers_text
from releaser.errors import BadInput, CheckFailed, ReleaserError
from releaser.store.base import EventSummary

__all__ = [
    "CHECKPOINT_DIR",
    "AnchoredVerify",
    "AuditSource",
    "audit_log",
    "audit_log_json",
    "audit_log_rows",
    "load_checkpoint",
    "make_checkpoint",
    "verify_anchored",
    "verify_audit",
    "verify_content",
]

CHECKPOINT_DIR = "audit-checkpoints"
"""Where ``audit checkpoint`` writes by default, under the workspace (commit it)."""
MAX_CHECKPOINT_BYTES = 64 * 1024


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BadInput(
            f"audit log limit must be a whole number of at least 1, or None for every "
            f"event; got {limit!r}",
            hint="pass limit=N for the latest N events, or leave it out for all of them",
        )


def audit_log(
    ws: Workspace, *, limit: int | None = None, subject: str | None = None
) -> list[AuditEvent]:
    """Audit events oldest first; with ``limit``, the latest ``limit`` of them.

    ``limit`` is None for every event, or a count of at least 1; anything else is
    BadInput (0 is refused rather than guessed: "none" and "no limit" both read into it).
    """
    _check_limit(limit)
    store = ws.store
    if limit is not None and subject is None:
        head_seq, _ = store.audit_head()
        return list(store.events(after_seq=max(0, head_seq - limit)))
    events = list(store.events(subject=subject))
    if limit is not None:
        events = events[-limit:]
    return events


def _window(ws: Workspace, limit: int | None, subject: str | None) -> tuple[int, int | None]:
    """(after_seq, limit) that select the latest ``limit`` events (all of a subject's)."""
    if limit is not None and subject is None:
        head_seq, _ = ws.store.audit_head()
        return max(0, head_seq - limit), None
    return 0, None


def audit_log_rows(
    ws: Workspace, *, limit: int | None = None, subject: str | None = None
) -> Sequence[EventSummary]:
    """What ``audit log`` shows of each event (seq, at, actor, action, subject, reason),
    selected as :func:`audit_log` selects them, read by the database: 100,000 events
    are listed without decoding each one."""
    _check_limit(limit)
    try:
        after, _ = _window(ws, limit, subject)
        rows: Sequence[EventSummary] = ws.store.event_summaries(after_seq=after, subject=subject)
    except ReleaserError:
        # An entry the database cannot read as JSON (tampered): decode what can be.
        rows = [
            (e.seq, e.at, e.actor, e.action, e.subject, e.reason)
            for e in audit_log(ws, limit=limit, subject=subject)
        ]
    return rows[-limit:] if limit is not None else rows


def audit_log_json(
    ws: Workspace, *, limit: int | None = None, subject: str | None = None
) -> Iterator[str]:
    """Each event of :func:`audit_log` as its documented JSON object (compact text, keys
    sorted), spliced from the stored canonical payload; decoded only when it must be."""
    from releaser.core.audit import event_json

    if limit is not None and subject is not None:
        for event in audit_log(ws, limit=limit, subject=subject):
            yield canonical_json(event.to_dict())
        return
    _check_limit(limit)
    after, _ = _window(ws, limit, subject)
    for raw in ws.store.raw_events(after_seq=after, subject=subject):
        text = event_json(raw.seq, raw.prev_hash, raw.hash, raw.payload)
        if text is None:
            try:
                text = canonical_json(AuditEvent.from_raw(raw).to_dict())
            except (ValueError, TypeError, KeyError, AttributeError):
                raise CheckFailed(
                    f"audit entry {raw.seq} cannot be read: it is not what releaser wrote "
                    "(tampered?)",
                    hint="'releaser audit verify' names every entry that was changed",
                ) from None
        yield text


def verify_audit(ws: Workspace) -> VerifyResult:
    """Verify the whole chain against the store's recorded head.

    The head is read first and verification stops there, so a commit landing
    while we read is not mistaken for tampering.
    """
    store = ws.store
    head = store.audit_head()
    upto = head[0]
    return verify_chain(takewhile(lambda e: e.seq <= upto, store.raw_events()), head=head)


@dataclass(frozen=True)
class AnchoredVerify:
    """The chain's own check, and each checkpoint's and the expected head's verdict."""

    chain: VerifyResult
    stored: int
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    head_problem: str | None = None
    state_problems: list[str] = field(default_factory=list)
    records: int = 0

    @property
    def ok(self) -> bool:
        """True when the chain, every record, every checkpoint and the expected head hold."""
        return (
            self.chain.ok
            and self.head_problem is None
            and not self.state_problems
            and all(c["ok"] for c in self.checkpoints)
        )

    @property
    def problems(self) -> list[str]:
        """Each failure, one sentence each."""
        found = [] if self.chain.ok else [f"entry {self.chain.bad_seq}: {self.chain.problem}"]
        found += [f"{c['file']}: {c['problem']}" for c in self.checkpoints if not c["ok"]]
        if self.head_problem:
            found.append(self.head_problem)
        return found + self.state_problems

    def to_dict(self) -> dict[str, Any]:
        """The documented ``audit verify --json`` shape."""
        return {
            "ok": self.ok,
            "count": self.chain.count,
            "head_hash": self.chain.head_hash,
            "bad_seq": self.chain.bad_seq,
            "problem": self.chain.problem,
            "stored": self.stored,
            "checkpoints": self.checkpoints,
            "expected_head": self.head_problem,
            "records": self.records,
            "state_problems": self.state_problems,
            "problems": self.problems,
        }


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint file; BadInput names the file and what is wrong."""
    try:
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise BadInput(f"{path} is larger than a checkpoint ({MAX_CHECKPOINT_BYTES} bytes)")
        data = json.loads(path.read_text(encoding="utf-8"))
        return parse_checkpoint(data)
    except FileNotFoundError:
        raise BadInput(f"checkpoint {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read checkpoint {path}: {exc}") from None
    except ValueError as exc:
        raise BadInput(
            f"{path} is not an audit checkpoint: {exc}",
            hint="checkpoints are written by 'releaser audit checkpoint'",
        ) from None


def _owner_signers(ws: Workspace) -> list[AllowedSigner]:
    from releaser.core.signing import parse_public_key

    return [
        AllowedSigner(o.email, parse_public_key(k)) for o in ws.config.owners for k in o.ssh_keys
    ]


def make_checkpoint(
    ws: Workspace, key: Path | None, out: Path | None = None
) -> tuple[Checkpoint, Path]:
    """Sign the current head with ``key`` (an owner's, per ``releaser.yaml``) and write it.

    The chain is verified first: a broken chain is not anchored (CheckFailed).
    The file goes to ``out``, else ``audit-checkpoints/<seq>.json`` in the workspace.
    """
    from releaser.api.approvals import signing_key
    from releaser.core.signing import parse_public_key
    from releaser.integrations.ssh_signing import public_key_of, sign, verify

    key_file = signing_key(key, ws.root)
    public = parse_public_key(public_key_of(key_file))
    signers = _owner_signers(ws)
    mine = sorted({s.principal for s in signers if s.key.blob == public.blob})
    if not mine:
        raise BadInput(
            f"the key {key_file} is not listed in any owner's ssh_keys in {ws.config_path.name}",
            hint="checkpoints are signed by an owner; add the public key to your owners entry",
        )
    result = verify_audit(ws)
    if not result.ok:
        raise CheckFailed(
            f"the audit chain is broken at entry {result.bad_seq}: {result.problem}",
            hint="a broken chain is not anchored; restore the store from a backup first",
        )
    seq, digest = result.count, result.head_hash
    first = next(iter(ws.store.raw_events()), None)
    statement = checkpoint_statement(
        seq=seq,
        hash=digest,
        first_hash=first.hash if first is not None and seq else GENESIS_HASH,
        store=ws.store.url,
        at=utc_now(),
        signer=mine[0],
    )
    signature = sign(statement.encode("utf-8"), key_file, CHECKPOINT_NAMESPACE)
    allowed = allowed_signers_text(
        [s for s in signers if s.principal == mine[0]], CHECKPOINT_NAMESPACE
    )
    check = verify(statement.encode("utf-8"), signature, allowed, mine[0], CHECKPOINT_NAMESPACE)
    if not check.ok:
        raise BadInput(f"the checkpoint does not verify with {key_file}: {check.reason}")
    checkpoint = parse_checkpoint({"statement": statement, "signature": signature})
    path = out if out is not None else ws.root / CHECKPOINT_DIR / f"{seq}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(checkpoint.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return checkpoint, path


Link = tuple[str, str, int, str]
MAX_STATE_PROBLEMS = 20
"""State problems listed one by one; past this many, the rest are counted."""


def _state_links(store: AuditSource) -> tuple[dict[int, list[Link]], list[str], int]:
    """Each record's link to the audit entry that last wrote it, grouped by entry."""
    links: dict[int, list[Link]] = {}
    problems: list[str] = []
    count = 0
    for kind, key, version, text, seq in store.record_links():
        count += 1
        where = f"record {kind}/{key}"
        try:
            digest = value_digest(canonical_json(json.loads(text)))
        except ValueError:
            problems.append(f"{where} is not JSON: it was edited outside releaser")
            continue
        if seq is None:
            problems.append(f"{where} names no audit entry: it was written outside releaser")
            continue
        links.setdefault(seq, []).append((kind, key, version, digest))
    return links, problems, count


def _check_links(ev: RawEvent, links: list[Link], problems: list[str]) -> None:
    writes = payload_writes(ev.payload) or {}
    for kind, key, version, digest in links:
        wrote = writes.get((kind, key))
        where = f"record {kind}/{key} (version {version})"
        if wrote is None:
            problems.append(f"{where} names audit entry {ev.seq}, which did not write it")
        elif wrote[0] != version:
            problems.append(
                f"{where} names audit entry {ev.seq}, which wrote version {wrote[0]}: "
                "it was changed outside releaser"
            )
        elif wrote[1] != digest:
            problems.append(
                f"{where} is not the value audit entry {ev.seq} wrote: it was edited outside "
                "releaser"
            )


def _tap(
    events: Iterable[RawEvent],
    keep: set[int],
    kept: dict[int, str],
    seen: list[int],
    links: dict[int, list[Link]],
    problems: list[str],
) -> Iterator[RawEvent]:
    for ev in events:
        if ev.seq in keep:
            kept[ev.seq] = ev.hash
        seen[0] = max(seen[0], ev.seq)
        mine = links.pop(ev.seq, None)
        if mine:
            _check_links(ev, mine, problems)
        yield ev


class AuditSource(Protocol):
    """What verification reads: a live store, a snapshot of one, or a store archive."""

    def audit_head(self) -> tuple[int, str]:
        """The recorded (seq, hash) of the last entry."""
        ...

    def raw_events(self) -> Iterator[RawEvent]:
        """Every entry as stored, in order."""
        ...

    def record_links(self) -> Iterator[tuple[str, str, int, str, int | None]]:
        """Each record as (kind, key, version, value text, the entry that last wrote it)."""
        ...


def verify_content(source: AuditSource) -> AnchoredVerify:
    """Verify the chain against its recorded head and every record against the entry
    that last wrote it (``audit verify`` without checkpoints), for any audit source:
    ``store import`` runs it on the archive and again on the target before committing."""
    chain, stored, _, state_problems, records = _verify_source(source, set())
    return AnchoredVerify(chain, stored, [], None, state_problems, records)


def _verify_source(
    source: AuditSource, keep: set[int]
) -> tuple[VerifyResult, int, dict[int, str], list[str], int]:
    """(chain verdict, entries stored, hashes of the entries in ``keep``, state problems,
    records): the chain and the records' links, read once."""
    # Records first, then the head: every entry a record names is then at or before it.
    links, state_problems, records = _state_links(source)
    head = source.audit_head()
    keep = keep | {1, head[0]}
    kept: dict[int, str] = {}
    seen = [0]
    events = _tap(source.raw_events(), keep, kept, seen, links, state_problems)
    chain = verify_chain(takewhile(lambda e: e.seq <= head[0], events), head=head)
    for _ in events:
        pass  # read the rest: a checkpoint is judged on everything stored
    stored = max(seen[0], head[0]) if seen[0] else 0
    for seq, missing in sorted(links.items()):
        for kind, key, version, _ in missing:
            state_problems.append(
                f"record {kind}/{key} (version {version}) names audit entry {seq}, which "
                "does not exist"
            )
    if len(state_problems) > MAX_STATE_PROBLEMS:
        extra = len(state_problems) - MAX_STATE_PROBLEMS
        state_problems = [*state_problems[:MAX_STATE_PROBLEMS], f"... and {extra} more"]
    return chain, stored, kept, state_problems, records


def verify_anchored(
    ws: Workspace,
    checkpoints: Sequence[tuple[str, Checkpoint]] = (),
    *,
    allowed_signers: str | None = None,
    expect_head: tuple[int, str] | None = None,
) -> AnchoredVerify:
    """Verify the chain, each checkpoint's signature and prefix, and the expected head.

    Checkpoint signatures are checked against ``allowed_signers`` (git's
    allowed-signers format) when given, else against the owners' ``ssh_keys`` in
    ``releaser.yaml``. The whole stored log is read, past any break, so each
    checkpoint is judged on what the store holds.
    """
    from releaser.integrations.ssh_signing import verify

    keep = {cp.seq for _, cp in checkpoints}
    if expect_head is not None:
        keep.add(expect_head[0])
    chain, stored, kept, state_problems, records = _verify_source(ws.store, keep)
    if allowed_signers is None and checkpoints:
        try:
            allowed_signers = allowed_signers_text(_owner_signers(ws), CHECKPOINT_NAMESPACE)
        except ReleaserError as exc:
            allowed_signers = ""
            reason = f"no keys to check signatures with: {exc}"
        else:
            reason = ""
    else:
        reason = ""
    verdicts: list[dict[str, Any]] = []
    for name, cp in checkpoints:
        problem: str | None = None
        if not allowed_signers:
            problem = reason or "no keys to check its signature with"
        else:
            checked = verify(
                cp.statement.encode("utf-8"),
                cp.signature,
                allowed_signers,
                cp.signer,
                CHECKPOINT_NAMESPACE,
            )
            if not checked.ok:
                problem = f"its signature ({cp.signer}) does not verify: {checked.reason}"
        if problem is None:
            problem = anchor_problem(
                cp.seq, cp.hash, cp.first_hash, kept, stored, f"checkpoint {cp.seq}"
            )
        verdicts.append(
            {
                "file": name,
                "seq": cp.seq,
                "hash": cp.hash,
                "signer": cp.signer,
                "at": cp.at,
                "ok": problem is None,
                "problem": problem,
            }
        )
    head_problem = None
    if expect_head is not None:
        seq, digest = expect_head
        head_problem = anchor_problem(seq, digest, None, kept, stored, "the expected head")
        if head_problem is None and stored > seq:
            head_problem = (
                f"entries {seq + 1}..{stored} were appended after the expected head (entry {seq})"
            )
    return AnchoredVerify(chain, stored, verdicts, head_problem, state_problems, records)
