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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.api.releases import get_release, get_service_release, list_releases
from releaser.config._common import did_you_mean
from releaser.config.service import PHASES, PhaseName
from releaser.core.audit import EventDraft
from releaser.core.signing import APPROVAL_NAMESPACE
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
    "approval_checks",
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
    """One person's signed approval of a release for a role, entering a phase.

    ``approver`` is the owner's email the signature was made for; ``statement`` is
    the exact text signed and ``signature`` the armored SSH signature. ``actor`` is
    who ran the command (the CI run or the machine's user), kept for the record.
    Approvals stored before signing existed carry no statement and never count.
    """

    service: str
    release_id: str
    role: str
    approver: str
    note: str
    at: str
    phase: str | None = None
    approver_name: str | None = None
    statement: str | None = None
    signature: str | None = None
    actor: str | None = None

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


def _approval_phase(service: str, spec: Service, current: PhaseName, role: str) -> PhaseName:
    """The next phase ahead of ``current`` whose criteria ask for ``role``."""
    for phase in PHASES[PHASES.index(current) + 1 :]:
        if any(rule.role == role for rule in spec.phases.criteria(phase).approvals):
            return phase
    asked = [p for p in PHASES if any(r.role == role for r in spec.phases.criteria(p).approvals)]
    raise BadInput(
        f"{service} is in {current}, past every phase that asks the role {role!r} "
        f"({', '.join(asked)})",
        hint="approvals are for the phase a service enters next",
    )


def approve(
    ws: Workspace,
    service: str,
    release_id: str,
    role: str,
    note: str,
    *,
    key: Path | None = None,
) -> Approval:
    """Sign and record an approval of a release for ``role`` (audited).

    The statement is signed with ``key`` (else ``$RELEASER_SIGNING_KEY``, else git's
    SSH signing key). The key must be listed in ``ssh_keys`` of an owner holding
    ``role`` in ``releaser.yaml`` at the release's commit, and that owner must not
    have created the release; otherwise BadInput and nothing is written. The same
    owner approving the same role and phase again counts once (nothing is written).
    """
    from releaser.api.approvals import (
        approval_statement,
        check_signed_approval,
        is_release_creator,
        owners_at_release,
        signing_key,
    )
    from releaser.integrations.ssh_signing import public_key_of, sign

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
    phase = _approval_phase(service, spec, phase_status(ws, service).phase, role)
    actor = current_actor()
    if actor.name == release.created_by:
        raise BadInput(
            f"{actor.name} created release {release.id} and may not approve it",
            hint="ask someone else holding the role to approve (no self-approval)",
        )
    key_file = signing_key(key, ws.root)
    owners = owners_at_release(ws, release)
    if owners.problem is not None:
        raise BadInput(
            f"cannot check who may approve release {release.id}: {owners.problem}",
            hint="approvals are checked against the owners at the release's commit",
        )
    public = public_key_of(key_file)
    holders = [o for o in owners.by_key(public) if o.role == role]
    if not holders:
        others = sorted({f"{o.email} ({o.role})" for o in owners.by_key(public)})
        whose = f"it is the key of {', '.join(others)}" if others else "no owner lists it"
        raise BadInput(
            f"the key {key_file} may not approve as {role} for release {release.id}: {whose} "
            f"in {ws.config_path.name} at commit {owners.sha[:12]}",
            hint=f"add the public key to the {role} owner's ssh_keys and commit it; it counts "
            "for releases created from that commit on",
        )
    owner = holders[0]
    if is_release_creator(owner, release.created_by):
        raise BadInput(
            f"{owner.email} created release {release.id} and may not approve it",
            hint="ask someone else holding the role to approve (no self-approval)",
        )
    key_name = _approval_key(service, release.id)
    for _attempt in range(3):
        record = ws.store.get(APPROVAL_KIND, key_name)
        existing = [Approval(**a) for a in (record.value.get("approvals", []) if record else [])]
        for a in existing:
            if a.approver == owner.email and a.role == role and a.phase == phase:
                return a  # the same person twice counts once
        at = utc_now()
        statement = approval_statement(
            service=service,
            release_id=release.id,
            phase=phase,
            role=role,
            approver=owner.email,
            at=at,
            audit_head=ws.store.audit_head(),
            note=note,
        )
        signature = sign(statement.encode("utf-8"), key_file, APPROVAL_NAMESPACE)
        new = Approval(
            service,
            release.id,
            role,
            owner.email,
            note,
            at,
            phase=phase,
            approver_name=owner.name,
            statement=statement,
            signature=signature,
            actor=actor.name,
        )
        check = check_signed_approval(
            ws, new.to_dict(), release=release, phase=phase, owners=owners
        )
        if not check.counts:
            raise BadInput(
                f"the signed approval would not count: {check.reason}",
                hint="check that --key is the key listed in releaser.yaml at the release's commit",
            )
        value = {
            "service": service,
            "release_id": release.id,
            "approvals": [a.to_dict() for a in [*existing, new]],
        }
        event = EventDraft(
            actor=owner.email,
            action="phase.approve",
            subject=f"release:{release.id}",
            at=at,
            after={
                "service": service,
                "release_id": release.id,
                "role": role,
                "phase": phase,
                "approver": owner.email,
                "signed": True,
            },
            reason=note or None,
            context={**actor.context, "run_by": actor.name},
        )
        try:
            ws.store.commit(
                [Write(APPROVAL_KIND, key_name, value, record.version if record else 0)], event
            )
            return new
        except StateConflict:
            continue
    raise StateConflict(f"approvals of {release.id} kept changing", hint="approve again")


def approval_checks(
    ws: Workspace, service: str, release_id: str, phase: str | None = None
) -> list[tuple[Approval, bool, str]]:
    """Each stored approval of a release with whether it counts and why (signature checks).

    ``phase`` is the phase being entered; an approval signed for another phase
    does not count for it. Without ``phase``, each approval is checked for the
    phase it names.
    """
    from releaser.api.approvals import check_signed_approval, owners_at_release

    release = get_release(ws, release_id)
    given = approvals(ws, service, release.id)
    if not given:
        return []
    owners = owners_at_release(ws, release)
    checked: list[tuple[Approval, bool, str]] = []
    for a in given:
        target = phase or a.phase or ""
        if a.phase is not None and phase is not None and a.phase != phase:
            checked.append((a, False, f"signed for entering {a.phase}, not {phase}"))
            continue
        result = check_signed_approval(
            ws, a.to_dict(), release=release, phase=target, owners=owners
        )
        checked.append((a, result.counts, result.reason))
    return checked


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
    checked = approval_checks(ws, service, rid, target) if rid and criteria.approvals else []
    for rule in criteria.approvals:
        mine = [(a, ok, why) for a, ok, why in checked if a.role == rule.role]
        people = sorted({a.approver for a, ok, _ in mine if ok})
        refused = sorted({f"{a.approver} ({why})" for a, ok, why in mine if not ok})
        met = len(people) >= rule.count
        who = f": {', '.join(people)}" if people else ""
        not_counted = f"; not counted: {'; '.join(refused)}" if refused else ""
        items.append(
            {
                "kind": "approval",
                "id": rule.role,
                "met": met,
                "detail": f"{len(people)} of {rule.count} approval{'s' if rule.count > 1 else ''}"
                f"{who}{not_counted}",
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
