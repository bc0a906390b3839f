"""Use cases for the audit chain: read it and verify it."""

from __future__ import annotations

from itertools import takewhile

from releaser.api.workspace import Workspace
from releaser.core.audit import AuditEvent, VerifyResult, verify_chain

__all__ = ["audit_log", "verify_audit"]


def audit_log(
    ws: Workspace, *, limit: int | None = None, subject: str | None = None
) -> list[AuditEvent]:
    """Audit events oldest first; with ``limit``, the latest ``limit`` of them."""
    store = ws.store
    if limit is not None and subject is None:
        head_seq, _ = store.audit_head()
        return list(store.events(after_seq=max(0, head_seq - max(limit, 0))))
    events = list(store.events(subject=subject))
    if limit is not None:
        events = events[-limit:] if limit > 0 else []
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
