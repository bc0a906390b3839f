"""Phase gates: poc -> pilot -> production -> operations, with entry criteria.

A service starts in ``poc``. Entering the next phase needs what its
``phases:`` criteria in ``releaser.yaml`` name: the eval gate passed on the
release being judged, approvals (per role, N distinct people, never the
person who created the release), checklist items with evidence, and a
minimum time in the phase before. Every change (an approval, evidence, a
phase move) is one store commit with compare-and-swap and an audit event.

Records: ``phase/<service>`` holds the phase, when it was entered, the
history and checklist evidence; ``approval/<service>/<release>`` holds the
approvals of a release.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.api.releases import get_release, get_service_release, list_releases
from releaser.config._common import did_you_mean
from releaser.config.service import PHASES, PhaseName
from releaser.core.audit import EventDraft
from releaser.errors import BadInput, CheckFailed, NotFound, StateConflict
from releaser.store.base import Write

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.service import Service

__all__ = [
    "Approval",
    "PhaseCheck",
    "PhaseStatus",
    "advance_phase",
    "approvals",
    "approve",
    "check_phase",
    "phase_status",
    "record_evidence",
]

PHASE_KIND = "phase"
APPROVAL_KIND = "approval"


@dataclass(frozen=True)
class Approval:
    """One person's approval of a release for a role."""

    service: str
    release_id: str
    role: str
    approver: str
    note: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


@dataclass(frozen=True)
class PhaseStatus:
    """Where a service is in its lifecycle, since when, and how it got there."""

    service: str
    phase: PhaseName
    entered_at: str | None
    history: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``phase status --json`` shape."""
        return asdict(self)


@dataclass(frozen=True)
class PhaseCheck:
    """Each entry criterion of a phase, met or missing, with what was found."""

    service: str
    phase: PhaseName
    current: PhaseName
    release_id: str | None
    items: list[dict[str, Any]]

    @property
    def ready(self) -> bool:
        """True when every criterion is met."""
        return all(i["met"] for i in self.items)

    @property
    def missing(self) -> list[str]:
        """``kind:id`` of each criterion not met."""
        return [f"{i['kind']}:{i['id']}" for i in self.items if not i["met"]]

    def to_dict(self) -> dict[str, Any]:
        """The documented ``gate check --json`` shape."""
        return {**asdict(self), "ready": self.ready, "missing": self.missing}


def _spec(ws: Workspace, service: str) -> Service:
    return ws.config.service(service)


def _phase_record(ws: Workspace, service: str) -> tuple[dict[str, Any], int]:
    record = ws.store.get(PHASE_KIND, service)
    if record is None:
        return {
            "service": service,
            "phase": "poc",
            "entered_at": None,
            "history": [],
            "evidence": {},
        }, 0
    return dict(record.value), record.version


def phase_status(ws: Workspace, service: str) -> PhaseStatus:
    """The service's phase (``poc`` until it first advances), since when, and its history.

    Before any move the poc phase counts from the service's first release.
    """
    _spec(ws, service)
    value, _ = _phase_record(ws, service)
    entered = value.get("entered_at")
    if entered is None:
        releases = list_releases(ws, service)
        entered = releases[0].created_at if releases else None
    return PhaseStatus(
        service=service,
        phase=value["phase"],
        entered_at=entered,
        history=list(value.get("history", [])),
        evidence=dict(value.get("evidence", {})),
    )


def _phase(name: str) -> PhaseName:
    for p in PHASES:
        if p == name:
            return p
    close = did_you_mean(name, PHASES)
    raise BadInput(f"no phase {name!r}", hint=close or f"phases are: {', '.join(PHASES)}")


def _approval_key(service: str, release_id: str) -> str:
    return f"{service}/{release_id}"


def approvals(ws: Workspace, service: str, release_id: str) -> list[Approval]:
    """The approvals recorded for a release, oldest first (one per person and role)."""
    rid = get_release(ws, release_id).id
    record = ws.store.get(APPROVAL_KIND, _approval_key(service, rid))
    if record is None:
        return []
    return [Approval(**a) for a in record.value.get("approvals", [])]


def _known_roles(spec: Service) -> list[str]:
    roles: list[str] = []
    for phase in PHASES:
        for rule in spec.phases.criteria(phase).approvals:
            if rule.role not in roles:
                roles.append(rule.role)
    return roles


def approve(ws: Workspace, service: str, release_id: str, role: str, note: str) -> Approval:
    """Record the current actor's approval of a release for ``role`` (audited).

    The same person approving the same role again counts once (nothing is
    written). The person who created the release may not approve it.
    """
    spec = _spec(ws, service)
    release = get_service_release(ws, service, release_id)
    roles = _known_roles(spec)
    if role not in roles:
        close = did_you_mean(role, roles)
        listed = ", ".join(roles) if roles else "none (no phase asks for approvals)"
        raise BadInput(
            f"no phase of {service} asks for approval by the role {role!r}",
            hint=close or f"roles that approve: {listed}",
        )
    actor = current_actor()
    if actor.name == release.created_by:
        raise BadInput(
            f"{actor.name} created release {release.id} and may not approve it",
            hint="ask someone else holding the role to approve (no self-approval)",
        )
    key = _approval_key(service, release.id)
    for _attempt in range(3):
        record = ws.store.get(APPROVAL_KIND, key)
        existing = [Approval(**a) for a in (record.value.get("approvals", []) if record else [])]
        for a in existing:
            if a.approver == actor.name and a.role == role:
                return a  # the same person twice counts once
        new = Approval(service, release.id, role, actor.name, note, utc_now())
        value = {
            "service": service,
            "release_id": release.id,
            "approvals": [a.to_dict() for a in [*existing, new]],
        }
        event = EventDraft(
            actor=actor.name,
            action="phase.approve",
            subject=f"release:{release.id}",
            at=new.at,
            after={"service": service, "release_id": release.id, "role": role},
            reason=note or None,
            context=actor.context,
        )
        try:
            ws.store.commit(
                [Write(APPROVAL_KIND, key, value, record.version if record else 0)], event
            )
            return new
        except StateConflict:
            continue
    raise StateConflict(f"approvals of {release.id} kept changing", hint="approve again")


def _checklist_ids(spec: Service) -> list[str]:
    ids: list[str] = []
    for phase in PHASES:
        for item in spec.phases.criteria(phase).checklist:
            if item.id not in ids:
                ids.append(item.id)
    return ids


def record_evidence(ws: Workspace, service: str, item_id: str, evidence: str) -> PhaseStatus:
    """Attach evidence (a link, path or reference) to a checklist item (audited)."""
    spec = _spec(ws, service)
    ids = _checklist_ids(spec)
    if item_id not in ids:
        close = did_you_mean(item_id, ids)
        raise BadInput(
            f"no checklist item {item_id!r} in any phase of {service}",
            hint=close or f"checklist items: {', '.join(ids) or 'none'}",
        )
    if not evidence.strip():
        raise BadInput("evidence must not be empty", hint="give a link, file path or reference")
    actor = current_actor()
    value, version = _phase_record(ws, service)
    now = utc_now()
    evidence_map = dict(value.get("evidence", {}))
    before = evidence_map.get(item_id)
    evidence_map[item_id] = {"evidence": evidence, "by": actor.name, "at": now}
    value = {**value, "evidence": evidence_map}
    ws.store.commit(
        [Write(PHASE_KIND, service, value, version)],
        EventDraft(
            actor=actor.name,
            action="phase.evidence",
            subject=f"service:{service}",
            at=now,
            before=before,
            after={"item": item_id, "evidence": evidence},
            context=actor.context,
        ),
    )
    return phase_status(ws, service)


def _judged_release(ws: Workspace, service: str, release_id: str | None) -> str | None:
    if release_id is not None:
        return get_service_release(ws, service, release_id).id
    from releaser.api.state import service_state

    stable = service_state(ws, service).stable
    if stable is not None:
        return stable
    releases = list_releases(ws, service)
    return releases[-1].id if releases else None


def _days_between(start: str, end: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds() / 86400.0


def check_phase(
    ws: Workspace,
    service: str,
    phase: str,
    *,
    release_id: str | None = None,
    now: str | None = None,
) -> PhaseCheck:
    """Each entry criterion of ``phase`` for the service, met or missing, precisely.

    The release judged (eval gate, approvals) is ``release_id``, else the
    stable release, else the latest release of the service.
    """
    from releaser.api.gates import last_gate

    spec = _spec(ws, service)
    target = _phase(phase)
    status = phase_status(ws, service)
    criteria = spec.phases.criteria(target)
    rid = _judged_release(ws, service, release_id)
    items: list[dict[str, Any]] = []
    current_i, target_i = PHASES.index(status.phase), PHASES.index(target)
    if target_i != current_i + 1:
        detail = (
            f"{service} is already in {status.phase}"
            if target_i <= current_i
            else f"{service} is in {status.phase}; it enters {PHASES[current_i + 1]} first"
        )
        items.append({"kind": "phase", "id": "order", "met": False, "detail": detail})
    if criteria.eval_gate:
        report = last_gate(ws, service, rid) if rid else None
        if rid is None:
            met, detail = False, "no release to judge"
        elif report is None:
            met, detail = False, f"release {rid} has not been through the eval gate"
        elif not report.passed:
            met, detail = False, f"release {rid} failed its gate: " + "; ".join(report.failures[:2])
        else:
            met, detail = True, f"release {rid} passed its gate at {report.at}"
        items.append({"kind": "eval_gate", "id": "eval", "met": met, "detail": detail})
    given = approvals(ws, service, rid) if rid else []
    for rule in criteria.approvals:
        people = sorted({a.approver for a in given if a.role == rule.role})
        met = len(people) >= rule.count
        who = f": {', '.join(people)}" if people else ""
        items.append(
            {
                "kind": "approval",
                "id": rule.role,
                "met": met,
                "detail": f"{len(people)} of {rule.count} approval{'s' if rule.count > 1 else ''}"
                f"{who}",
            }
        )
    for item in criteria.checklist:
        found = status.evidence.get(item.id)
        if found:
            met, detail = True, f"evidence {found['evidence']} ({found['by']}, {found['at']})"
        else:
            met = False
            detail = f"{item.description}: no evidence recorded"
        items.append({"kind": "checklist", "id": item.id, "met": met, "detail": detail})
    if criteria.min_days_in_previous > 0:
        need = criteria.min_days_in_previous
        if status.entered_at is None:
            met, detail = False, f"no record of when {service} entered {status.phase}"
        else:
            days = _days_between(status.entered_at, now or utc_now())
            met = days >= need
            detail = f"{days:.1f} of {need:g} days in {status.phase}"
        items.append(
            {"kind": "min_days", "id": "min_days_in_previous", "met": met, "detail": detail}
        )
    return PhaseCheck(service, target, status.phase, rid, items)


def advance_phase(
    ws: Workspace, service: str, *, release_id: str | None = None, now: str | None = None
) -> PhaseStatus:
    """Move the service to its next phase when every entry criterion is met (audited).

    Raises CheckFailed listing what is missing otherwise; nothing is written then.
    """
    value, version = _phase_record(ws, service)
    current = _phase(str(value["phase"]))
    index = PHASES.index(current)
    if index == len(PHASES) - 1:
        raise NotFound(f"{service} is in {current}, the last phase", hint="nothing to advance to")
    target = PHASES[index + 1]
    result = check_phase(ws, service, target, release_id=release_id, now=now)
    if not result.ready:
        missing = "; ".join(
            f"{i['kind']} {i['id']}: {i['detail']}" for i in result.items if not i["met"]
        )
        raise CheckFailed(
            f"{service} cannot enter {target}: {missing}",
            hint=f"'releaser gate check {service} --phase {target}' lists every criterion",
        )
    actor = current_actor()
    at = now or utc_now()
    entry = {"phase": target, "entered_at": at, "by": actor.name, "release_id": result.release_id}
    history = list(value.get("history", []))
    if not history:
        history.append(
            {
                "phase": current,
                "entered_at": phase_status(ws, service).entered_at,
                "by": None,
                "release_id": None,
            }
        )
    new = {**value, "phase": target, "entered_at": at, "history": [*history, entry]}
    ws.store.commit(
        [Write(PHASE_KIND, service, new, version)],
        EventDraft(
            actor=actor.name,
            action="phase.advance",
            subject=f"service:{service}",
            at=at,
            before={"phase": current},
            after={"phase": target, "release_id": result.release_id, "criteria": result.items},
            context=actor.context,
        ),
    )
    return phase_status(ws, service)
