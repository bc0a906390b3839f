"""The notification outbox: what a committed transition still owes the webhooks.

A transition that a configured webhook takes writes, in its one store
transaction, a ``notice`` record beside its state and audit event: the event
name, the payload's fields, the transition's time (``at``), when and by which
process it was written. Only then is anyone told. The command that wrote it
posts it right after the commit (:mod:`releaser.api.notify`) and marks it
``done`` in one more commit, audited as ``notify.sent`` (or ``notify.failed``,
naming the webhooks that did not take it: a refusing webhook is not asked
forever). So a process killed between the commit and the post leaves the
notice ``pending``, and the next command on the service delivers it late.

Unlike the intent journal (:mod:`releaser.api.journal`), where a newer intent
replaces an older one, notices never replace each other: each transition has
its own record, keyed ``SERVICE/STAMP-RANDOM`` (the key, in write order, is
also the payload's stable ``id``, the same on every attempt, so receivers can
drop a repeat). The guarantee is at-least-once: a process killed after a post
and before its mark posts again.

Late delivery (:func:`due`, then :func:`claim`) takes a pending notice when its
writer is gone (same host, process no longer running) or it is older than
:data:`GRACE_S`, so the common case, a writer still posting, is never raced.
A deliverer claims the notices it will post with one compare-and-swap commit
(``notify.claim``); of two racing, one wins each notice and the other skips it.
A claim whose process is gone, or older than :data:`CLAIM_S`, may be taken
again. At most :data:`MAX_LATE` notices are posted per command; a notice older
than :data:`MAX_AGE_S` is not posted but marked ``expired`` (``notify.expired``).
Done and expired notices are removed by ``releaser store prune`` once
:data:`KEEP_DONE_DAYS` old.

Payloads are not redacted here: they hold what the audit event holds, and the
post redacts them as it always did.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.core.audit import EventDraft
from releaser.errors import ReleaserError, StateConflict
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "CLAIM_ACTION",
    "EXPIRED_ACTION",
    "FAILED_ACTION",
    "GRACE_S",
    "KEEP_DONE_DAYS",
    "MAX_AGE_S",
    "MAX_LATE",
    "NOTICE_KIND",
    "SENT_ACTION",
    "claim",
    "due",
    "expire",
    "finish",
    "owe",
    "owed",
    "prunable",
    "release",
    "take_own",
    "wanted",
]

NOTICE_KIND = "notice"
SENT_ACTION = "notify.sent"
FAILED_ACTION = "notify.failed"
CLAIM_ACTION = "notify.claim"
EXPIRED_ACTION = "notify.expired"
GRACE_S = 300.0
"""A pending notice whose writer may still be posting it is left alone this long."""
CLAIM_S = 180.0
"""A claim is honoured this long (three times the longest webhook timeout) unless its
process is seen gone."""
MAX_AGE_S = 24 * 3600.0
"""A notice older than this is not posted late (it would mislead) but marked expired."""
MAX_LATE = 10
"""Late notices posted by one command, at most; the rest wait for the next one."""
KEEP_DONE_DAYS = 7
"""Done and expired notices are kept this long for inspection, then pruned."""
_CLAIM_ATTEMPTS = 3
_PROCESS = secrets.token_hex(8)
"""This process, told apart from an earlier one that had the same pid."""
_OWN: ContextVar[tuple[str, ...]] = ContextVar("releaser_own_notices", default=())
"""Keys of the notices this context wrote and has not posted yet."""


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(at: str) -> str:
    """``2026-03-02T09:00:00.000000Z`` as ``20260302T090000000000Z``: sorts as it reads."""
    return at.replace("-", "").replace(":", "").replace(".", "")


def _process() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "process": _PROCESS}


def _gone(who: Mapping[str, Any] | None) -> bool:
    """True when ``who`` (a writer or claimer) ran on this host and runs no more."""
    if not who or who.get("host") != socket.gethostname():
        return False
    pid = who.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return who.get("process") != _PROCESS  # an earlier process had our pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


def _takes(hook: Mapping[str, Any], service: str, event: str) -> bool:
    """Whether a webhook as written (not validated) may take ``event`` of ``service``;
    when in doubt, yes: a notice nobody takes is only marked done."""
    events, services = hook.get("events"), hook.get("services")
    if isinstance(events, list) and event not in events:
        return False
    return not (isinstance(services, list) and services and service not in services)


def wanted(ws: Workspace, service: str, event: str) -> bool | None:
    """Whether a webhook takes ``event`` of ``service``; None when releaser.yaml cannot say.

    Read cheaply: the file's ``notifications:`` as written, without validating the
    whole file (a rollback does not pay for that before traffic is back), unless the
    validated config is loaded already or the file is not plain enough to peek at.
    """
    if ws._config is None and ws.degraded is None:
        from releaser.config.loader import peek_service

        peeked = peek_service(ws.config_path, service)
        if peeked is not None:
            hooks = peeked[0].get("notifications")
            if not hooks:
                return False
            if isinstance(hooks, list) and all(isinstance(h, dict) for h in hooks):
                return any(_takes(h, service, event) for h in hooks)
    try:
        configured = ws.config.notifications
    except ReleaserError:
        return None
    return any(event in h.events and (not h.services or service in h.services) for h in configured)


def owe(
    ws: Workspace, event: str, service: str, fields: Mapping[str, Any], *, cause: str, at: str
) -> list[Write]:
    """The notice record ``event`` owes, to write in the transition's own commit ([] when
    no webhook takes it). The key is remembered for this context's :func:`take_own`."""
    if not wanted(ws, service, event):
        return []
    written = utc_now()
    key = f"{service}/{_stamp(written)}-{secrets.token_hex(4)}"
    value = {
        "id": key,
        "service": service,
        "event": event,
        "cause": cause,
        "fields": {**fields, "at": fields.get("at") or at},
        "at": fields.get("at") or at,
        "written_at": written,
        "writer": _process(),
        "status": "pending",
        "claim": None,
        "late": False,
        "done_at": None,
    }
    _OWN.set((*_OWN.get(), key))
    return [Write(NOTICE_KIND, key, value, 0)]


def take_own(ws: Workspace, service: str, event: str) -> list[Record] | None:
    """The pending notices of ``event`` this context wrote for ``service`` (and forgets
    them), in write order; None when it wrote none. One whose transition did not commit
    is not there: skipped. One another deliverer took meanwhile (the writer outlived
    the grace) is left to it."""
    prefix = f"{service}/"
    found: list[Record] = []
    kept: list[str] = []
    for key in _OWN.get():
        if not key.startswith(prefix):
            kept.append(key)
            continue
        rec = ws.store.get(NOTICE_KIND, key)
        if rec is not None and rec.value.get("event") != event:
            kept.append(key)
        elif rec is not None:
            found.append(rec)
    _OWN.set(tuple(kept))
    if not found:
        return None
    return [r for r in found if r.value.get("status") == "pending"]


def _listed(ws: Workspace, service: str) -> list[Record]:
    return ws.store.list(NOTICE_KIND, prefix=f"{service}/")


def owed(ws: Workspace, service: str) -> list[dict[str, Any]]:
    """The notices of ``service`` not told yet (pending or claimed), oldest first, as
    ``rollout status`` shows them: id, event, at, written_at, status."""
    return [
        {
            "id": r.key,
            "event": r.value.get("event"),
            "at": r.value.get("at"),
            "written_at": r.value.get("written_at"),
            "status": r.value.get("status"),
        }
        for r in _listed(ws, service)
        if r.value.get("status") in ("pending", "claimed")
    ]


def due(ws: Workspace, service: str, now: str) -> tuple[list[Record], list[Record]]:
    """(notices to post late, at most :data:`MAX_LATE`; notices too old to post), in
    write order. A notice whose writer may still be posting it, or that another live
    deliverer has claimed, is in neither."""
    moment = _parse(now)
    late: list[Record] = []
    expired: list[Record] = []
    for rec in _listed(ws, service):
        v = rec.value
        status = v.get("status")
        if status not in ("pending", "claimed"):
            continue
        written = _parse(str(v.get("written_at")))
        if moment - written > timedelta(seconds=MAX_AGE_S):
            expired.append(rec)
            continue
        if status == "claimed":
            claim = v.get("claim") or {}
            since = moment - _parse(str(claim.get("at") or v.get("written_at")))
            if since <= timedelta(seconds=CLAIM_S) and not _gone(claim):
                continue
        elif moment - written <= timedelta(seconds=GRACE_S) and not _gone(v.get("writer")):
            continue
        if len(late) < MAX_LATE:
            late.append(rec)
    return late, expired


def _commit(ws: Workspace, writes: list[Write], action: str, service: str, after: Any) -> None:
    actor = current_actor()
    ws.store.commit(
        writes,
        EventDraft(
            actor=actor.name,
            action=action,
            subject=f"service:{service}",
            at=utc_now(),
            after=after,
            context=actor.context,
        ),
    )


def claim(ws: Workspace, service: str, records: Sequence[Record], now: str) -> list[Record]:
    """Claim ``records`` for this process in one compare-and-swap commit; the ones won.

    A notice another deliverer claimed or finished meanwhile is dropped and the
    rest claimed again, so of two deliverers racing each notice goes to one.
    """
    keys = [r.key for r in records]
    for _attempt in range(_CLAIM_ATTEMPTS):
        fresh = [ws.store.get(NOTICE_KIND, k) for k in keys]
        still = [r for r in fresh if r is not None and r in records]
        if not still:
            return []
        writes = [
            Write(
                NOTICE_KIND,
                r.key,
                {**r.value, "status": "claimed", "claim": {**_process(), "at": now}},
                r.version,
            )
            for r in still
        ]
        try:
            _commit(
                ws,
                writes,
                CLAIM_ACTION,
                service,
                {"notices": [r.key for r in still], "late": True},
            )
        except StateConflict:
            records = [r for r in still if ws.store.get(NOTICE_KIND, r.key) == r]
            keys = [r.key for r in records]
            continue
        return [ws.store.get(NOTICE_KIND, w.key) or still[i] for i, w in enumerate(writes)]
    return []


def finish(ws: Workspace, rec: Record, deliveries: Iterable[dict[str, Any]], *, late: bool) -> str:
    """Mark ``rec`` done after its post, with ``notify.sent`` or, when a webhook did not
    take it, ``notify.failed`` naming each; '' or why it could not be recorded.

    A notice someone else finished meanwhile is left as it is (it was told twice,
    which its ``id`` lets receivers see)."""
    told = list(deliveries)
    failures = [d for d in told if not d.get("ok")]
    value = {**rec.value, "status": "done", "late": late, "done_at": utc_now()}
    after = {
        "id": rec.key,
        "event": rec.value.get("event"),
        "late": late,
        "delivered": [d["webhook"] for d in told if d.get("ok")],
        **({"failures": failures} if failures else {}),
    }
    action = FAILED_ACTION if failures else SENT_ACTION
    service = str(rec.value.get("service"))
    try:
        _commit(ws, [Write(NOTICE_KIND, rec.key, value, rec.version)], action, service, after)
    except StateConflict:
        return ""
    except ReleaserError as exc:
        what = "the notification failure" if failures else "the notification"
        return f"{what} could not be recorded: {exc.message}"
    return ""


def release(ws: Workspace, service: str, records: Sequence[Record]) -> None:
    """Give claimed notices that were not posted (time ran out) back to the next command."""
    writes = [
        Write(NOTICE_KIND, r.key, {**r.value, "status": "pending", "claim": None}, r.version)
        for r in records
    ]
    if not writes:
        return
    try:
        _commit(ws, writes, CLAIM_ACTION, service, {"released": [r.key for r in records]})
    except ReleaserError:
        pass  # the claims lapse after CLAIM_S all the same


def expire(ws: Workspace, service: str, records: Sequence[Record]) -> str:
    """Mark notices too old to post ``expired`` with one ``notify.expired`` event; '' or
    a warning naming what was not told."""
    if not records:
        return ""
    now = utc_now()
    writes = [
        Write(NOTICE_KIND, r.key, {**r.value, "status": "expired", "done_at": now}, r.version)
        for r in records
    ]
    listed = [
        {"id": r.key, "event": r.value.get("event"), "at": r.value.get("at")} for r in records
    ]
    try:
        _commit(ws, writes, EXPIRED_ACTION, service, {"notices": listed, "max_age_s": MAX_AGE_S})
    except ReleaserError:
        return ""  # changed meanwhile, or the store refused: the next command tries again
    events = ", ".join(str(r.value.get("event")) for r in records)
    return (
        f"{len(records)} notification(s) of {service} ({events}) were never told and are "
        f"over {MAX_AGE_S / 3600:g} h old: not sent (audited as {EXPIRED_ACTION})"
    )


def prunable(ws: Workspace, before: datetime) -> list[Record]:
    """Done and expired notices finished before ``before`` (what ``store prune`` removes)."""
    return [
        r
        for r in ws.store.list(NOTICE_KIND, omit=("fields",))
        if r.value.get("status") in ("done", "expired")
        and r.value.get("done_at")
        and _parse(str(r.value["done_at"])) < before
    ]
