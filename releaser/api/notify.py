"""Webhook notifications of rollout transitions: told after the fact, never in the way.

A transition is committed first (state, audit event and owed side effects in one
store transaction) and only then told to the webhooks under ``notifications:``
in releaser.yaml, so a notification never announces something the store does
not hold, and a webhook that is down changes nothing that happened.

Posting is bounded: webhooks are posted in parallel, each within its own
``timeout_s`` (retries with backoff included: on 5xx, 429 and lost
connections), and the command waits no longer than the largest of them; a
webhook still hanging then is left behind on a daemon thread. Nothing here
raises: each failure comes back as a warning for the command to print, and is
recorded in the audit log (``notify.failed``: which webhook, which event, what
went wrong; never the URL, a token or the payload). Payloads pass through the
same redactor as the runbooks, with the webhooks' own URLs and tokens added to
the secrets it replaces.

A transition a webhook takes is owed first: its commit also writes a notice
(:mod:`releaser.api.outbox`), which this module posts right after and marks done.
A command killed between the commit and the post leaves it owed, and the next
command on the service (:func:`deliver_owed`) posts it late, with ``late: true``
and the original ``at``. Every payload carries an ``id``, the same on every
attempt, so a receiver drops what it already has: delivery is at least once.

Events (``releaser.config.alerting.NOTIFY_EVENTS``): ``rollout.started``,
``rollout.step-advanced``, ``rollout.held`` (paused by a person, or held by the
analysis for a reason a person may have to act on: :func:`stuck_hold`), ``rollout.resumed``,
``rollout.promoted``, ``rollout.rolled-back``, ``rollout.aborted``,
``guard.breach`` (:func:`guard_breach`), ``effects.pending`` (a change left
side effects owed: posted, not owed, as it is learnt after the commit) and
``drill.failed`` (:func:`drill_failed`).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from releaser.api import outbox
from releaser.api.context import current_actor, utc_now
from releaser.api.webhook_post import Delivery, hook_secrets, post, shorten
from releaser.api.workspace import Workspace
from releaser.core.audit import EventDraft
from releaser.core.effects import SideEffect
from releaser.errors import ReleaserError, StateConflict
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    from releaser.api.drills import DrillRecord
    from releaser.config.alerting import Webhook
    from releaser.core.rollout import Rollout

__all__ = [
    "EVENT_OF_ACTION",
    "LATE_BUDGET_S",
    "Delivery",
    "after_change",
    "breach_fields",
    "deliver_owed",
    "drill_failed",
    "drill_notice",
    "guard_breach",
    "notify",
    "stuck_hold",
    "send_test",
    "slack_message",
    "transition_notice",
]

EVENT_OF_ACTION: dict[str, str] = {
    "rollout.start": "rollout.started",
    "rollout.advance": "rollout.step-advanced",
    "rollout.pause": "rollout.held",
    "rollout.resume": "rollout.resumed",
    "rollout.abort": "rollout.aborted",
    "rollout.promote": "rollout.promoted",
    "rollout.promote-forced": "rollout.promoted",
    "service.initial-release": "rollout.promoted",
    "rollout.rollback": "rollout.rolled-back",
    "rollback": "rollout.rolled-back",
    "guard.rollback": "guard.breach",
}
"""The notification each audited transition sends."""

FAILED_ACTION = outbox.FAILED_ACTION
LATE_BUDGET_S = 15.0
"""A command starts posting no further late notice after this long (the rest wait)."""
MAX_REASONS = 20
_TITLES = {
    "rollout.started": "rollout started",
    "rollout.step-advanced": "rollout advanced a step",
    "rollout.held": "rollout held",
    "rollout.resumed": "rollout resumed",
    "rollout.promoted": "release promoted",
    "rollout.rolled-back": "rolled back",
    "rollout.aborted": "rollout aborted",
    "guard.breach": "post-promotion guard breached",
    "effects.pending": "side effects left pending",
    "drill.failed": "rollback drill failed",
    "test": "test notification",
}


def _payload(ws: Workspace, event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The generic JSON payload: event, service, releases, step, reasons, actor, at, links."""
    actor = current_actor()
    service = str(fields.get("service", ""))
    links: dict[str, str] = {}
    try:
        base = ws.config.alerts.runbook_base_url.rstrip("/")
        links["runbook"] = f"{base}/{service}.md"
    except ReleaserError:
        pass
    if actor.context.get("run_url"):
        links["run"] = str(actor.context["run_url"])
    reasons = [shorten(str(r)) for r in fields.get("reasons", ())][:MAX_REASONS]
    late = bool(fields.get("late"))
    body: dict[str, Any] = {
        "event": event,
        "title": f"{service}: {_TITLES.get(event, event)}" + (" (told late)" if late else ""),
        # Stable across attempts for a notice (its key); fresh for a post nothing owed.
        "id": fields.get("id") or f"{service}/{secrets.token_hex(8)}",
        **{k: v for k, v in fields.items() if k != "reasons"},
        "late": late,
        "reasons": reasons,
        "actor": actor.name,
        "at": fields.get("at") or utc_now(),
        "links": links,
    }
    return body


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` and ``blocks``) for a generic payload."""
    title = str(payload["title"])
    facts = [
        ("Release", payload.get("release") or payload.get("candidate")),
        ("Stable", payload.get("stable")),
        ("Rollout", payload.get("rollout_id")),
        ("Step", payload.get("step")),
        ("By", payload.get("actor")),
        ("At", payload.get("at")),
    ]
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n`{v}`"} for k, v in facts if v][:10]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": fields},
    ]
    reasons = payload.get("reasons") or []
    if reasons:
        text = "\n".join(f"• {r}" for r in reasons)[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    links = payload.get("links") or {}
    if links:
        text = " | ".join(f"<{url}|{name}>" for name, url in sorted(links.items()))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
    return {"text": title, "blocks": blocks}


def _deliver(ws: Workspace, event: str, fields: Mapping[str, Any]) -> list[Delivery]:
    """Post ``event`` to every webhook that takes it, in parallel, each within its timeout."""
    service = str(fields.get("service", ""))
    hooks = [
        h
        for h in ws.config.notifications
        if (event in h.events or event == "test") and (not h.services or service in h.services)
    ]
    if not hooks:
        return []
    # Only with webhooks to tell: the docs package loads the runbook machinery.
    from releaser.docs.secrets import MIN_SECRET_LENGTH, Redactor

    hidden = hook_secrets(hooks)
    base = Redactor.from_environment(ws.store_url)
    known = {*base.secrets, *(s for s in hidden if len(s) >= MIN_SECRET_LENGTH)}
    redactor = Redactor(tuple(sorted(known, key=lambda s: (-len(s), s))))
    payload = redactor.value(_payload(ws, event, fields))
    bodies = {
        "json": json.dumps(payload, sort_keys=True).encode(),
        "slack": json.dumps(slack_message(payload), sort_keys=True).encode(),
    }
    results: list[Delivery | None] = [None] * len(hooks)
    start = time.monotonic()

    def run(i: int, hook: Webhook) -> None:
        try:
            results[i] = post(hook, bodies[hook.format], start + hook.timeout_s, hidden)
        except Exception as exc:  # noqa: BLE001 - a notification must never fail a command
            results[i] = Delivery(hook.name, event, False, 0, None, type(exc).__name__)

    threads = [
        threading.Thread(target=run, args=(i, h), daemon=True, name=f"notify-{h.name}")
        for i, h in enumerate(hooks)
    ]
    for t in threads:
        t.start()
    for t, hook in zip(threads, hooks, strict=True):
        # A little past the webhook's own deadline: its last attempt is cut off by it.
        t.join(max(0.0, start + hook.timeout_s + 1.0 - time.monotonic()))
    return [
        Delivery(h.name, event, r.ok, r.attempts, r.status, r.error)
        if r is not None
        else Delivery(h.name, event, False, 0, None, f"no answer within {h.timeout_s:g} s")
        for h, r in zip(hooks, results, strict=True)
    ]


def _record_failures(ws: Workspace, event: str, service: str, failed: list[Delivery]) -> str:
    """An audit event naming the webhooks that did not take ``event``; '' or why it could not."""
    actor = current_actor()
    try:
        ws.store.commit(
            [],
            EventDraft(
                actor=actor.name,
                action=FAILED_ACTION,
                subject=f"service:{service}",
                at=utc_now(),
                after={"event": event, "failures": [d.to_dict() for d in failed]},
                reason="a webhook did not take a notification",
                context=actor.context,
            ),
        )
    except ReleaserError as exc:
        return f"the notification failure could not be audited: {exc.message}"
    return ""


def _attempt(
    ws: Workspace, event: str, payload: Mapping[str, Any]
) -> tuple[list[Delivery] | None, list[str]]:
    """(how posting went to each webhook, or None when nothing could be tried; warnings)."""
    try:
        return _deliver(ws, event, payload), []
    except ReleaserError as exc:  # releaser.yaml unreadable: nobody can be told
        return None, [_not_sent(event, exc)]
    except Exception as exc:  # noqa: BLE001 - a notification must never fail a command
        return None, [f"notifications not sent ({event}): {type(exc).__name__}"]


def notify(ws: Workspace, event: str, payload: Mapping[str, Any]) -> list[str]:
    """Tell the webhooks that take ``event`` about it; the warnings to show (never raises).

    ``payload`` holds the event's facts (``service`` at least; ``rollout_id``,
    ``stable``, ``candidate``, ``step``, ``reasons``...); the actor, the time and
    links are added. Call it after the store transaction that made the change.
    Nothing is owed for it: a transition writes its notice in its own commit
    (:func:`transition_notice`) and :func:`after_change` posts that instead.
    """
    service = str(payload.get("service", ""))
    deliveries, warnings = _attempt(ws, event, payload)
    failed = [d for d in deliveries or () if not d.ok]
    if not failed:
        return warnings
    warnings = [f"webhook {d.webhook} was not told {event}: {d.error}" for d in failed]
    problem = _record_failures(ws, event, service, failed)
    return warnings + ([problem] if problem else [])


def _tell(ws: Workspace, rec: Record, *, late: bool) -> list[str]:
    """Post one owed notice and mark it done (``notify.sent`` or ``notify.failed``).

    When nothing could be tried (releaser.yaml unreadable) it stays owed. A notice
    someone else finished since it was read is not posted again.
    """
    event = str(rec.value.get("event"))
    fields = {**rec.value.get("fields", {}), "id": rec.key, "late": late}
    deliveries, warnings = _attempt(ws, event, fields)
    if deliveries is None:
        return warnings
    when = " (late)" if late else ""
    warnings = [
        f"webhook {d.webhook} was not told {event}{when}: {d.error}" for d in deliveries if not d.ok
    ]
    problem = outbox.finish(ws, rec, [d.to_dict() for d in deliveries], late=late)
    return warnings + ([problem] if problem else [])


def _tell_own(ws: Workspace, service: str, event: str) -> list[str] | None:
    """Post what this command owes for ``event`` (late notices of the service first);
    None when it wrote no notice for it."""
    own = outbox.take_own(ws, service, event)
    if own is None:
        return None
    warnings = deliver_owed(ws, service)
    for rec in own:
        warnings += _tell(ws, rec, late=False)
    return warnings


def deliver_owed(ws: Workspace, service: str, *, now: str | None = None) -> list[str]:
    """Post, late, the notices of ``service`` a killed or failed command left owed; the
    warnings to show (never raises).

    Each is claimed first (:func:`releaser.api.outbox.claim`), so of two commands
    racing one posts it; it goes out with ``late: true``, its original ``at`` and
    its ``id``. At most :data:`~releaser.api.outbox.MAX_LATE` a command, none begun
    after :data:`LATE_BUDGET_S`; older than a day, it is marked expired, not posted.
    ``now`` is the wall clock (the notices' ages are measured against it).
    """
    try:
        late, expired = outbox.due(ws, service, now or utc_now())
        warnings = [w for w in [outbox.expire(ws, service, expired)] if w]
        if not late:
            return warnings
        ws.config.notifications  # noqa: B018 - releaser.yaml unreadable: nothing is claimed
        claimed = outbox.claim(ws, service, late, now or utc_now())
    except ReleaserError as exc:
        return [_not_sent("owed notifications", exc)]
    except Exception as exc:  # noqa: BLE001 - a notification must never fail a command
        return [f"notifications not sent (owed notifications): {type(exc).__name__}"]
    started = time.monotonic()
    for i, rec in enumerate(claimed):
        if time.monotonic() - started > LATE_BUDGET_S:
            outbox.release(ws, service, claimed[i:])
            break
        warnings += _tell(ws, rec, late=True)
    return warnings


def _none_configured(ws: Workspace, service: str) -> bool:
    """True when releaser.yaml plainly has no ``notifications:``, read without validating the
    whole file (a rollback opens the store alone and need not pay for that)."""
    if ws._config is not None or ws.degraded is not None:
        return False
    from releaser.config.loader import peek_service

    peeked = peek_service(ws.config_path, service)
    return peeked is not None and not peeked[0].get("notifications")


def _not_sent(event: str, exc: ReleaserError) -> str:
    first = getattr(exc, "first", None)
    why = first() if callable(first) else exc.message.splitlines()[0]
    return f"notifications not sent ({event}): {why}"


def _rollout_fields(rollout: Rollout | None) -> dict[str, Any]:
    if rollout is None:
        return {}
    last = rollout.decisions[-1] if rollout.decisions else None
    return {
        "rollout_id": rollout.id,
        "status": rollout.status,
        "baseline": rollout.baseline,
        "candidate": rollout.candidate,
        "step": rollout.current.name,
        "percent": rollout.current.percent,
        "reasons": list(last.reasons) if last is not None else [],
        "at": last.at if last is not None else rollout.started_at,
    }


def transition_notice(
    ws: Workspace,
    action: str,
    service: str,
    *,
    rollout: Rollout | None,
    stable: str | None,
    at: str,
    fields: Mapping[str, Any] | None = None,
) -> list[Write]:
    """The notice the audited transition ``action`` owes, for its own commit ([] when no
    webhook takes it): what :func:`after_change` posts once the commit is in.

    ``stable`` is the service's stable release after the change; ``fields`` are the
    event's further facts (a rollback's ``kind``, the guard's evidence...). A guard
    rollback (``guard.rollback``) owes ``guard.breach`` with :func:`breach_fields`.
    """
    event = EVENT_OF_ACTION.get(action)
    if event is None:
        return []
    if action == "guard.rollback":
        base = dict(fields or {})
    else:
        base = {"service": service, **_rollout_fields(rollout), "stable": stable, **(fields or {})}
    try:
        return outbox.owe(ws, event, service, base, cause=action, at=at)
    except Exception:  # noqa: BLE001 - a notification never stands in a transition's way
        return []  # nothing owed: after_change posts it as it used to


def after_change(
    ws: Workspace,
    action: str,
    service: str,
    *,
    rollout: Rollout | None = None,
    effects: Iterable[SideEffect] = (),
    **fields: Any,
) -> list[str]:
    """Tell the webhooks about a committed transition (its audit ``action``), and about
    the side effects it left owed; the warnings to show."""
    event = EVENT_OF_ACTION.get(action, action)
    if _none_configured(ws, service):
        return []
    try:
        if not ws.config.notifications:
            return []
    except ReleaserError as exc:  # releaser.yaml unreadable: nobody can be told
        return [_not_sent(event, exc)]
    effects = list(effects)
    warnings = _tell_own(ws, service, event)
    pending = [e for e in effects if e.status == "failed"]
    if warnings is not None and not pending:
        return warnings
    base = {"service": service, **_rollout_fields(rollout), **fields}
    if "stable" not in base:
        from releaser.api.state import service_state

        try:
            base["stable"] = service_state(ws, service).stable
        except ReleaserError:
            base["stable"] = None
    if warnings is None:  # no notice was owed (releaser.yaml changed meanwhile): post it
        warnings = notify(ws, event, base)
    if pending:
        owed = {
            **base,
            "reasons": [f"{e.name}: {e.detail}" for e in pending],
            "retry": sorted({e.retry for e in pending if e.retry}),
        }
        warnings += notify(ws, "effects.pending", owed)
    return warnings


HELD_KIND = "held_notice"
"""Store record (per service) of the last stuck hold told, so each is told once."""


def stuck_hold(
    ws: Workspace, rollout: Rollout, reasons: Sequence[str], why: str, now: str
) -> list[str]:
    """Tell the webhooks, once, that the analysis is holding ``rollout`` for a reason a
    person may have to act on (``why``: a change freeze, or no evidence from the metrics
    source); the warnings to show.

    Routine holds (bake time, samples still coming) are not told: every check of a baking
    step holds. A stuck hold is told once per rollout, step and ``why``: the first one is
    recorded, with its audit event (``rollout.held``), in one store write before it is
    posted; the same hold on the next check finds the record and tells nobody.
    """
    service = rollout.service
    if _none_configured(ws, service):
        return []
    try:
        hooks = ws.config.notifications
        if not any(
            "rollout.held" in h.events and (not h.services or service in h.services) for h in hooks
        ):
            return []
    except ReleaserError as exc:
        return [_not_sent("rollout.held", exc)]
    notice = {"rollout": rollout.id, "step": rollout.step, "why": why}
    rec = ws.store.get(HELD_KIND, service)
    if rec is not None and rec.value == notice:
        return []
    actor = current_actor()
    fields = {"service": service, **_rollout_fields(rollout), "reasons": list(reasons)}
    fields = {**fields, "why": why, "at": now}
    owed = outbox.owe(ws, "rollout.held", service, fields, cause="rollout.held", at=now)
    try:
        ws.store.commit(
            [Write(HELD_KIND, service, notice, rec.version if rec else 0), *owed],
            EventDraft(
                actor=actor.name,
                action="rollout.held",
                subject=f"rollout:{rollout.id}",
                at=now,
                after={"step": rollout.current.name, "why": why, "reasons": list(reasons)},
                reason="; ".join(reasons),
                context=actor.context,
            ),
        )
    except StateConflict:  # another check recorded (and tells) it
        outbox.take_own(ws, service, "rollout.held")
        return []
    told = _tell_own(ws, service, "rollout.held")
    return notify(ws, "rollout.held", fields) if told is None else told


def guard_breach(
    ws: Workspace,
    service: str,
    *,
    release: str,
    reasons: Sequence[str],
    rolled_back_to: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> list[str]:
    """Tell the webhooks that the post-promotion guard found ``release`` breaching its SLOs
    (call it after the rollback it caused is committed, with the notice it owes); the
    warnings to show."""
    told = _tell_own(ws, service, "guard.breach")
    if told is not None:
        return told
    fields = breach_fields(
        service,
        release=release,
        reasons=reasons,
        rolled_back_to=rolled_back_to,
        evidence=evidence,
    )
    return notify(ws, "guard.breach", fields)


def breach_fields(
    service: str,
    *,
    release: str,
    reasons: Sequence[str],
    rolled_back_to: str | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The facts of a ``guard.breach`` notification (a guard rollback's notice holds them)."""
    fields: dict[str, Any] = {
        "service": service,
        "release": release,
        "reasons": list(reasons),
        "rolled_back_to": rolled_back_to,
    }
    if evidence:
        fields["evidence"] = dict(evidence)
    return fields


def _drill_fields(record: DrillRecord) -> dict[str, Any]:
    return {
        "service": record.service,
        "at": record.at,
        "stable": record.from_release,
        "release": record.to_release,
        "kind": record.kind,
        "reasons": [record.detail or "the audit chain of the scratch copy did not verify"],
    }


def drill_notice(ws: Workspace, record: DrillRecord) -> list[Write]:
    """The notice a failed drill owes, for the commit that records it ([] if none)."""
    if record.ok:
        return []
    try:
        fields = _drill_fields(record)
        return outbox.owe(ws, "drill.failed", record.service, fields, cause="drill", at=record.at)
    except Exception:  # noqa: BLE001 - a notification never stands in the record's way
        return []


def drill_failed(ws: Workspace, record: DrillRecord) -> list[str]:
    """Tell the webhooks that a rollback drill failed (after it is recorded, with the
    notice :func:`drill_notice` owed)."""
    told = _tell_own(ws, record.service, "drill.failed")
    return notify(ws, "drill.failed", _drill_fields(record)) if told is None else told


def send_test(ws: Workspace, service: str) -> list[Delivery]:
    """Post a ``test`` event to every webhook that takes ``service``'s events (nothing audited)."""
    ws.config.service(service)
    return _deliver(ws, "test", {"service": service, "reasons": ["a test from releaser"]})
