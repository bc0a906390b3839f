"""What releaser knows about a service, gathered once into plain, redacted data.

Runbooks and handover documents are rendered from this one dictionary, so
every document says the same thing and a template can read nothing else.
Everything comes from ``releaser.yaml``, the store (service state, releases,
rollouts, drills, gate evidence, sign-offs) and the audit log; nothing is
invented: what is not known is listed under ``gaps`` with how to fill it.
The facts carry no clock: the time they describe is the latest audit event's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from releaser.api import journal
from releaser.api.freeze import freeze_facts
from releaser.api.releases import get_release
from releaser.api.state import ROLLOUT_KIND, service_state
from releaser.api.workspace import Workspace
from releaser.config.service import PHASES
from releaser.core.release import Release
from releaser.docs.alert_rules import runbook_section
from releaser.docs.alerts import build_alerts, rollback_command
from releaser.docs.secrets import Redactor
from releaser.errors import ReleaserError

__all__ = ["Gap", "collect_facts", "plain"]


@dataclass(frozen=True)
class Gap:
    """Something a document should say but releaser does not know, and how to fill it."""

    section: str
    what: str
    how: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"section": self.section, "what": self.what, "how": self.how}


def plain(value: Any) -> Any:
    """A JSON-ready copy of a report object (``to_dict``, pydantic, dataclass or builtin)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return plain(to_dict())
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return plain(dump(mode="json"))
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    return str(value)


def _release_facts(release: Release) -> dict[str, Any]:
    c = release.content
    model = None
    if c.model is not None:
        m = c.model
        model = {
            "name": m.name,
            "version": m.version,
            "alias": m.alias,
            "run_id": m.run_id,
            "source": m.source,
            "model_uri": m.model_uri,
            "signature": m.signature,
        }
    return {
        "id": release.id,
        "created_at": release.created_at,
        "created_by": release.created_by,
        "created_context": release.created_context,
        "model": model,
        "prompts": [p.model_dump(mode="json") for p in c.prompts],
        "datasets": [d.model_dump(mode="json") for d in c.datasets],
        "code": c.code.model_dump(mode="json"),
        "config_hash": c.config_hash,
        "irreversible": bool(c.config.get("irreversible")),
    }


def _as_of(ws: Workspace) -> dict[str, Any] | None:
    head_seq, head_hash = ws.store.audit_head()
    if head_seq == 0:
        return None
    last = next(iter(ws.store.events(after_seq=head_seq - 1, limit=1)), None)
    return {"seq": head_seq, "hash": head_hash, "at": last.at if last else None}


def _rollout_facts(ws: Workspace, rollout_id: str) -> dict[str, Any] | None:
    rec = ws.store.get(ROLLOUT_KIND, rollout_id)
    if rec is None:
        return None
    v = rec.value
    step = v["steps"][v["step"]]
    return {
        "id": v["id"],
        "status": v["status"],
        "baseline": v.get("baseline"),
        "candidate": v["candidate"],
        "step": step["name"],
        "percent": step["percent"],
        "groups": step.get("groups", []),
        "started_at": v["started_at"],
        "step_started_at": v["step_started_at"],
        "steps": len(v["steps"]),
    }


def _drill(ws: Workspace, service: str, gaps: list[Gap]) -> dict[str, Any] | None:
    from releaser.api.drills import last_drill

    drill: dict[str, Any] | None = plain(last_drill(ws, service))
    if drill is None:
        gaps.append(
            Gap(
                "drill",
                "no rollback drill has been recorded, so the time-to-revert is not known",
                f"run 'releaser drill {service}' during a rollout or after a promotion",
            )
        )
    return drill


def _gate(
    ws: Workspace, service: str, release_id: str | None, gaps: list[Gap]
) -> dict[str, Any] | None:
    from releaser.api.gates import last_gate

    report = None
    if release_id is not None:
        report = last_gate(ws, service, release_id=release_id)
    if report is None:
        gaps.append(
            Gap(
                "evaluation",
                "no eval gate evidence is stored for the deployed release",
                f"run 'releaser gate {service} --release {release_id or 'ID'}'",
            )
        )
        return None
    facts: dict[str, Any] = plain(report)
    markdown = getattr(report, "markdown", None)
    facts["markdown"] = markdown() if callable(markdown) else None
    return facts


def _phases(ws: Workspace, service: str, release_id: str | None, gaps: list[Gap]) -> dict[str, Any]:
    from releaser.api.phases import approval_checks, check_phase, phase_status

    status = plain(phase_status(ws, service))
    signed = None
    if release_id is not None:
        signed = [
            {
                "role": a.role,
                "phase": a.phase,
                "approver": a.approver,
                "approver_name": a.approver_name,
                "at": a.at,
                "note": a.note,
                "counts": counts,
                "why": why,
            }
            for a, counts, why in approval_checks(ws, service, release_id)
        ]
    if status is None:
        gaps.append(
            Gap(
                "phase",
                "the service's lifecycle phase is not recorded",
                f"record phase moves with 'releaser phase advance {service}'",
            )
        )
    if not signed:
        gaps.append(
            Gap(
                "sign-offs",
                "no phase-gate sign-offs are recorded for the deployed release",
                f"'releaser approve {service} --release ID --role ROLE --note ...'",
            )
        )
    next_check = None
    current = status.get("phase") if isinstance(status, dict) else None
    if current in PHASES[:-1]:
        following = PHASES[PHASES.index(current) + 1]
        try:
            next_check = plain(check_phase(ws, service, following, release_id=release_id))
        except ReleaserError as exc:
            gaps.append(
                Gap(
                    "phase",
                    f"the {following} criteria could not be checked: {exc}",
                    f"'releaser gate check {service} --phase {following}'",
                )
            )
    return {"status": status, "approvals": signed or [], "next_check": next_check}


def collect_facts(
    ws: Workspace, service: str, *, redactor: Redactor | None = None
) -> dict[str, Any]:
    """Everything the runbook and handover templates may show about ``service``, redacted."""
    spec = ws.config.service(service)
    redactor = redactor or Redactor.from_environment(ws.store_url)
    gaps: list[Gap] = []
    state = service_state(ws, service)
    deployed = _release_facts(get_release(ws, state.stable)) if state.stable else None
    if deployed is None:
        gaps.append(
            Gap(
                "deployed",
                "no release is deployed yet (no stable release in the store)",
                f"'releaser release create {service}' then "
                f"'releaser rollout start {service} --release ID --initial'",
            )
        )
    rollout = _rollout_facts(ws, state.active_rollout) if state.active_rollout else None
    candidate = None
    if rollout is not None:
        candidate = _release_facts(get_release(ws, rollout["candidate"]))
    slos = spec.slos.model_dump(mode="json")
    guardrails = spec.rollout.guardrails.model_dump(mode="json")
    owners = [o.model_dump(mode="json") for o in ws.config.owners]
    escalation = [e.model_dump(mode="json") for e in ws.config.escalation]
    if not escalation:
        gaps.append(
            Gap(
                "escalation",
                "no escalation contacts are configured",
                "add 'escalation:' (level, name, contact, hours) to releaser.yaml",
            )
        )
    if not spec.description:
        gaps.append(
            Gap(
                "service",
                "the service has no description",
                f"add 'description:' under services.{service} in releaser.yaml",
            )
        )
    gaps.append(
        Gap(
            "alerts",
            "where the alerts are delivered (monitoring system, dashboards, paging) is not "
            "recorded",
            "note it in the runbook template override (runbooks/runbook.md.j2)",
        )
    )
    release_id = deployed["id"] if deployed else None
    drill = _drill(ws, service, gaps)
    gate = _gate(ws, service, release_id, gaps)
    phases = _phases(ws, service, release_id, gaps)
    facts: dict[str, Any] = {
        "project": ws.config.project,
        "service": service,
        "description": spec.description,
        "config_file": ws.config_path.name,
        "prompts_dir": ws.config.prompts.path,
        "store": redactor.url(ws.store.url),
        "as_of": _as_of(ws),
        "deployed": deployed,
        "candidate": candidate,
        "rollout": rollout,
        "state": {
            "stable": state.stable,
            "active_rollout": state.active_rollout,
            "known_good": list(state.known_good),
            "rollouts": state.rollouts,
            "last_rollback": state.last_rollback,
            "pending_effects": [
                f"{e.name} ({e.detail})" for e in journal.planned(journal.owed(ws, service=service))
            ],
        },
        "owners": owners,
        "escalation": escalation,
        "groups": {k: g.description for k, g in sorted(ws.config.groups.items())},
        "slos": slos,
        "guardrails": guardrails,
        "rollout_plan": [s.model_dump(mode="json") for s in spec.rollout.steps],
        "alpha": spec.rollout.alpha,
        "model_spec": spec.model.model_dump(mode="json") if spec.model else None,
        "prompt_specs": [p.model_dump(mode="json") for p in spec.prompts],
        "dataset_specs": [d.model_dump(mode="json") for d in spec.datasets],
        "eval": spec.eval.model_dump(mode="json", by_alias=True) if spec.eval else None,
        "irreversible": spec.irreversible,
        "rollback_command": rollback_command(service, "describe what went wrong"),
        "alerts": build_alerts(service, spec, ws.config.escalation),
        "prometheus": runbook_section(service, spec.slos, ws.config.alerts, state.stable),
        "drill": drill,
        "gate": gate,
        "phases": phases,
        "phase_criteria": spec.phases.model_dump(mode="json"),
        "freezes": freeze_facts(ws, service),
    }
    facts["limitations"] = _limitations(facts)
    facts["gaps"] = [g.to_dict() for g in gaps]
    return redactor.value(facts)  # type: ignore[no-any-return]


def _limitations(facts: dict[str, Any]) -> list[str]:
    """Limits worth knowing that follow from the facts (never guessed)."""
    out: list[str] = []
    deployed = facts["deployed"]
    service = facts["service"]
    if facts["irreversible"]:
        out.append(
            "The service is marked irreversible: a rollback needs --force and may not undo "
            "data changes the release made."
        )
    if deployed is not None:
        if deployed["code"]["dirty"]:
            out.append(
                "The deployed release was built from a dirty working tree: its code does not "
                "match a commit exactly."
            )
        for d in deployed["datasets"]:
            if not d.get("remote"):
                out.append(f"Dataset {d['path']} names no DVC remote: it may exist only locally.")
    gate = facts["gate"]
    if gate is not None:
        for s in gate.get("slices") or []:
            if not s.get("passed", True):
                out.append(
                    f"In the last eval gate the slice {s.get('column')}={s.get('value')} "
                    f"regressed ({s.get('metric')} {s.get('candidate')} vs {s.get('baseline')})."
                )
        rows = gate.get("rows")
        if rows is not None:
            out.append(
                f"Quality is measured on a golden set of {rows} rows; behaviour on inputs "
                "unlike it is not measured."
            )
    if facts["state"]["pending_effects"]:
        pending = ", ".join(facts["state"]["pending_effects"])
        out.append(
            f"Side effects of a committed change are still owed ({pending}): "
            f"finish them with 'releaser reconcile {service}'."
        )
    if not facts["slos"].get("quality_score"):
        out.append(
            "No quality SLO is set: quality is compared between releases during rollouts "
            "only, not watched against an absolute floor."
        )
    out.append(
        "releaser checks SLOs and guardrails during rollouts only; between rollouts the "
        "SLO alerts fire only once the rules 'releaser alerts render' writes are loaded into "
        "the team's Prometheus."
    )
    return out
