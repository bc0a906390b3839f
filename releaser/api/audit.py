"""Use cases for the audit chain: read it and verify it."""

from __future__ import annotations

from itertools import takewhile

from releaser.api.workspace import Workspace
from releaser.core.audit import AuditEvent, VerifyResult, verify_chain
from releaser.errors import BadInput

__all__ = ["audit_log", "verify_audit"]


def audit_log(
    ws: Workspace, *, limit: int | None = None, subject: str | None = None
) -> list[AuditEvent]:
    """Audit events oldest first; with ``limit``, the latest ``limit`` of them.

    ``limit`` is None for every event, or a count of at least 1; anything else is
    BadInput (0 is refused rather than guessed: "none" and "no limit" both read into it).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise BadInput(
            f"audit log limit must be a whole number of at least 1, or None for every "
            f"event; got {limit!r}",
            hint="pass limit=N for the latest N events, or leave it out for all of them",
        )
    store = ws.store
    if limit is not None and subject is None:
        head_seq, _ = store.audit_head()
        return list(store.events(after_seq=max(0, head_seq - limit)))
    events = list(store.events(subject=subject))
    if limit is not None:
        events = events[-limit:]
    return events


def verify_audit(ws: Workspace) -> VerifyResult:
    """Verify the whole chain against the store's recorded head.

    The head is read first and verification stops there, so a commit landing
    while we read is not mistaken for tampering.
    """
    store = ws.store
    head = store.audit_head()
    upto = head[0]
    return verify_chain(takewhile(lambda e: e.seq <= upto, store.raw_events()), head=head)
