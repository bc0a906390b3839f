"""Change freezes: set and lift a manual freeze, read what is in force, and refuse or hold.

A manual freeze is one record per service (kind ``freeze``), written with
compare-and-swap and its audit event in one store transaction: ``freeze`` and
``unfreeze`` are crash-safe and a re-run of the same freeze writes nothing.
Recurring windows come from ``releaser.yaml`` (``freezes:``).

While a freeze is in force, :func:`refuse_if_frozen` stops what would widen a
service's traffic (a rollout start, a forced promotion, a prompt promotion to
``production``) and :func:`hold_for_freeze` turns ``advance``'s "advance" or
"promote" into a hold naming the freeze. A rollback, a pause and an abort are never
checked, and neither is ``advance``'s automatic rollback: a freeze stops change,
not recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.api.workspace import Workspace
from releaser.core.audit import EventDraft
from releaser.core.freeze import (
    ActiveFreeze,
    DatesWindow,
    ManualFreeze,
    WeeklyWindow,
    active_freezes,
    format_utc,
    parse_instant,
    parse_until,
)
from releaser.errors import BadInput, ConfigError, WorkspaceError
from releaser.store.base import Write

if TYPE_CHECKING:
    from releaser.core.analysis import Decision

__all__ = [
    "FREEZE_KIND",
    "ChangeFrozen",
    "FreezeChange",
    "FreezeView",
    "freeze_facts",
    "freeze_service",
    "freeze_view",
    "freezes_now",
    "hold_for_freeze",
    "refuse_if_frozen",
    "refuse_prompt_if_frozen",
    "unfreeze_service",
]

FREEZE_KIND = "freeze"
"""Store kind of a service's manual freeze (key: the service name)."""
MAX_REASON_CHARS = 500


class ChangeFrozen(BadInput):
    """A change refused because a freeze is in force (exit 2, as any refused transition)."""

    def __init__(self, freeze: ActiveFreeze, message: str, *, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.freeze = freeze


@dataclass(frozen=True)
class FreezeChange:
    """What ``freeze`` or ``unfreeze`` did: the manual freeze now, and whether it wrote."""

    service: str
    action: str
    changed: bool
    freeze: dict[str, Any] | None
    audit_seq: int | None = None
    still_frozen: list[ActiveFreeze] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``freeze --json`` / ``unfreeze --json`` shape."""
        return {
            "service": self.service,
            "action": self.action,
            "changed": self.changed,
            "manual": self.freeze,
            "audit_seq": self.audit_seq,
            "in_force": [f.to_dict() for f in self.still_frozen],
        }


@dataclass(frozen=True)
class FreezeView:
    """Freezes of a service: in force now, the windows configured, the manual record."""

    in_force: list[ActiveFreeze]
    windows: list[dict[str, Any]]
    manual: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``freezes`` shape inside ``rollout status --json``."""
        return {
            "in_force": [f.to_dict() for f in self.in_force],
            "windows": self.windows,
            "manual": self.manual,
            "problems": self.problems,
        }


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise BadInput("a reason is required", hint="pass --reason 'why'")
    if len(text) > MAX_REASON_CHARS:
        raise BadInput(
            f"the reason is {len(text)} characters, more than {MAX_REASON_CHARS}",
            hint="say why briefly; link to the change record for the rest",
        )
    return text


def _manual(value: dict[str, Any] | None) -> ManualFreeze | None:
    if not value or value.get("lifted"):
        return None
    return ManualFreeze(
        until=str(value["until"]),
        reason=str(value.get("reason", "")),
        by=str(value.get("by", "")),
        at=str(value.get("at", "")),
    )


def _windows(ws: Workspace, service: str) -> list[WeeklyWindow | DatesWindow]:
    return [w.window() for w in ws.config.freezes if w.applies_to(service)]


def freezes_now(ws: Workspace, service: str, now: str | None = None) -> list[ActiveFreeze]:
    """Every freeze of ``service`` in force at ``now``: the manual one, then windows."""
    moment = parse_instant(now or utc_now())
    rec = ws.store.get(FREEZE_KIND, service)
    return active_freezes(_windows(ws, service), _manual(rec.value if rec else None), moment)


def freeze_view(ws: Workspace, service: str, now: str | None = None) -> FreezeView:
    """What ``rollout status`` shows of freezes; the manual one even if releaser.yaml is broken."""
    moment = parse_instant(now or utc_now())
    rec = ws.store.get(FREEZE_KIND, service)
    manual = _manual(rec.value if rec else None)
    problems: list[str] = []
    configured: list[dict[str, Any]] = []
    windows: list[WeeklyWindow | DatesWindow] = []
    try:
        for spec in ws.config.freezes:
            if spec.applies_to(service):
                windows.append(spec.window())
                configured.append(spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    except (ConfigError, WorkspaceError) as exc:
        first = exc.first() if isinstance(exc, ConfigError) else exc.message
        problems.append(f"freeze windows of releaser.yaml are not known: {first}")
    in_force = active_freezes(windows, manual, moment)
    shown = rec.value if rec is not None and manual is not None else None
    return FreezeView(in_force, configured, shown, problems)


def freeze_facts(ws: Workspace, service: str) -> dict[str, Any]:
    """The freeze windows of ``service`` and its manual freeze as recorded, for the runbook.

    No clock: whether the manual freeze is still in force is for ``rollout status`` to say.
    """
    windows = [
        w.model_dump(mode="json", by_alias=True, exclude_none=True)
        for w in ws.config.freezes
        if w.applies_to(service)
    ]
    rec = ws.store.get(FREEZE_KIND, service)
    manual = rec.value if rec is not None and not rec.value.get("lifted") else None
    return {"windows": windows, "manual": manual}


def refuse_if_frozen(ws: Workspace, service: str, now: str, doing: str) -> None:
    """Raise :class:`ChangeFrozen` naming the freeze when one is in force for ``service``."""
    found = freezes_now(ws, service, now)
    if found:
        first = found[0]
        raise ChangeFrozen(
            first,
            f"cannot {doing} for {service}: {first.describe()}",
            hint="rollback, pause and abort still work; wait until the freeze ends"
            + (
                f", or lift it with 'releaser unfreeze {service} --reason ...'"
                if first.kind == "manual"
                else " (it is a window in releaser.yaml's freezes)"
            ),
        )


def refuse_prompt_if_frozen(ws: Workspace, name: str, alias: str, now: str) -> None:
    """Refuse moving prompt ``name``'s ``production`` alias while a service using it is frozen.

    Other aliases (``staging``...) serve no user, so they move during a freeze.
    """
    from releaser.api.journal import PRODUCTION_ALIAS, release_pins

    if alias != PRODUCTION_ALIAS:
        return
    services = {service for service, _release, _version in release_pins(ws, name)}
    try:
        for service, spec in ws.config.services.items():
            if any(p.name == name for p in spec.prompts):
                services.add(service)
    except (ConfigError, WorkspaceError):
        pass  # the stable releases that pin the prompt are still checked
    for service in sorted(services):
        refuse_if_frozen(ws, service, now, f"move prompt {name}@{alias}")


def hold_for_freeze(
    ws: Workspace, service: str, decision: Decision, now: str
) -> tuple[Decision, ActiveFreeze | None]:
    """``decision`` turned into a hold when it would widen traffic during a freeze.

    A rollback or a hold passes unchanged: a freeze never stops recovery.
    """
    if decision.action not in ("advance", "promote"):
        return decision, None
    found = freezes_now(ws, service, now)
    if not found:
        return decision, None
    would = "promote" if decision.action == "promote" else "advance to the next step"
    reasons = [f"held by {found[0].describe()} (the analysis would {would})", *decision.reasons]
    return decision.model_copy(update={"action": "hold", "reasons": reasons}), found[0]


def freeze_service(
    ws: Workspace, service: str, *, until: str, reason: str, now: str | None = None
) -> FreezeChange:
    """Freeze ``service`` until ``until`` (ISO 8601 or ``2h``/``3d``), in one audited commit.

    The same freeze again writes nothing; a different end or reason replaces it.
    """
    ws.config.service(service)
    why = _reason(reason)
    at = now or utc_now()
    moment = parse_instant(at)
    end = format_utc(parse_until(until, moment))
    rec = ws.store.get(FREEZE_KIND, service)
    current = _manual(rec.value if rec else None)
    live = current is not None and current.active(moment) is not None
    if live and current is not None and current.until == end and current.reason == why:
        return FreezeChange(service, "freeze", False, rec.value if rec else None)
    actor = current_actor()
    value = {"service": service, "until": end, "reason": why, "by": actor.name, "at": at}
    event = ws.store.commit(
        [Write(FREEZE_KIND, service, value, rec.version if rec else 0)],
        EventDraft(
            actor=actor.name,
            action="freeze.set",
            subject=f"service:{service}",
            at=at,
            before=rec.value if live and rec else None,
            after={"until": end},
            reason=why,
            context=actor.context,
        ),
    )
    return FreezeChange(service, "freeze", True, value, event.seq, freezes_now(ws, service, at))


def unfreeze_service(
    ws: Workspace, service: str, *, reason: str, now: str | None = None
) -> FreezeChange:
    """Lift ``service``'s manual freeze, in one audited commit (nothing to lift: no write).

    Windows in releaser.yaml stay in force: they are lifted by editing the file.
    """
    ws.config.service(service)
    why = _reason(reason)
    at = now or utc_now()
    moment = parse_instant(at)
    rec = ws.store.get(FREEZE_KIND, service)
    current = _manual(rec.value if rec else None)
    if rec is None or current is None or current.active(moment) is None:
        return FreezeChange(service, "unfreeze", False, None, None, freezes_now(ws, service, at))
    actor = current_actor()
    lifted = {"at": at, "by": actor.name, "reason": why}
    value = {**rec.value, "lifted": lifted}
    event = ws.store.commit(
        [Write(FREEZE_KIND, service, value, rec.version)],
        EventDraft(
            actor=actor.name,
            action="freeze.lift",
            subject=f"service:{service}",
            at=at,
            before={"until": current.until, "reason": current.reason},
            after={"lifted": True},
            reason=why,
            context=actor.context,
        ),
    )
    return FreezeChange(service, "unfreeze", True, value, event.seq, freezes_now(ws, service, at))
