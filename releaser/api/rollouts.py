"""Use cases for rollouts: start, status, advance, pause, resume, abort, promote.

Every transition is one store commit that rewrites, with compare-and-swap,
the rollout record, the service record and the service's routing record, and
appends one audit event carrying the evidence. Routers see the new routing
record within their refresh interval. Side effects outside the store (MLflow
and prompt aliases on promotion) follow the commit, are idempotent and are
reported one by one; they never decide the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from releaser.api.context import current_actor, utc_now
from releaser.api.effects import ChangeStatus, TrafficChange, apply_targets, prepare_targets
from releaser.api.releases import get_release
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.audit import EventDraft
from releaser.core.release import Release
from releaser.core.routing import ROUTE_KIND, GroupDef, ReleaseArtifacts, ServiceRoute
from releaser.core.stats_aggregates import VariantStats, latency_bin, latency_bin_bounds
from releaser.errors import BadInput, NotFound
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    # numpy and scipy load with the analysis: only advance and status need them.
    from releaser.core.analysis import Decision

__all__ = [
    "PRODUCTION_ALIAS",
    "AdvanceResult",
    "ServiceState",
    "SideEffect",
    "StatusReport",
    "TransitionResult",
    "abort_rollout",
    "advance_rollout",
    "pause_rollout",
    "promote_rollout",
    "resume_rollout",
    "rollout_status",
    "service_state",
    "start_rollout",
]

SERVICE_KIND = "service"
ROLLOUT_KIND = "rollout"
PRODUCTION_ALIAS = "production"
"""The MLflow model alias and prompt alias releaser points at the stable release."""


class ServiceState(BaseModel):
    """What releaser knows about a service: stable release, live rollout, known-good history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    stable: str | None = None
    active_rollout: str | None = None
    known_good: list[str] = Field(default_factory=list, description="Oldest first.")
    rollouts: int = 0
    analysis: dict[str, Any] = Field(default_factory=dict, description="State of the live tests.")
    last_rollback: dict[str, Any] | None = Field(
        default=None, description="The last return to a known-good release (cleared on promotion)."
    )
    pending_effects: list[str] = Field(
        default_factory=list, description="Side effects of the last switch still to finish."
    )


@dataclass(frozen=True)
class SideEffect:
    """One effect outside the store, with its outcome and how to finish it if it failed."""

    name: str
    status: Literal["done", "unchanged", "failed", "skipped"]
    detail: str = ""
    retry: str | None = None


@dataclass(frozen=True)
class TransitionResult:
    """The rollout after a transition, and the side effects that followed."""

    rollout: ro.Rollout
    side_effects: list[SideEffect] = field(default_factory=list)


@dataclass(frozen=True)
class AdvanceResult:
    """What ``advance`` decided, with its evidence, and the rollout afterwards."""

    decision: Decision
    rollout: ro.Rollout
    transitioned: bool
    side_effects: list[SideEffect] = field(default_factory=list)


# --- reading -------------------------------------------------------------------------------


def _state_record(ws: Workspace, service: str) -> tuple[ServiceState, int]:
    ws.config.service(service)
    rec = ws.store.get(SERVICE_KIND, service)
    if rec is None:
        return ServiceState(service=service), 0
    return ServiceState.model_validate(rec.value), rec.version


def service_state(ws: Workspace, service: str) -> ServiceState:
    """The service's stable release, live rollout and known-good history."""
    return _state_record(ws, service)[0]


def _rollout_record(ws: Workspace, rollout_id: str) -> tuple[ro.Rollout, Record]:
    rec = ws.store.get(ROLLOUT_KIND, rollout_id)
    if rec is None:
        raise NotFound(f"rollout {rollout_id} is missing from the store")
    return ro.Rollout.model_validate(rec.value), rec


def _active(ws: Workspace, service: str) -> tuple[ServiceState, int, ro.Rollout, Record]:
    state, version = _state_record(ws, service)
    if state.active_rollout is None:
        raise NotFound(
            f"{service} has no rollout in progress",
            hint=f"start one with 'releaser rollout start {service} --release ID'",
        )
    rollout, rec = _rollout_record(ws, state.active_rollout)
    return state, version, rollout, rec


# --- routing -------------------------------------------------------------------------------


def _group_defs(ws: Workspace, names: list[str]) -> dict[str, GroupDef]:
    out: dict[str, GroupDef] = {}
    for name in names:
        group = ws.config.groups[name]
        rules: list[tuple[str, str, str | list[str]]] = []
        for rule in group.rules:
            for op, value in (
                ("equals", rule.equals),
                ("in", rule.in_),
                ("matches", rule.matches),
                ("ends_with", rule.ends_with),
            ):
                if value is not None:
                    rules.append((rule.attribute, op, value))
        out[name] = GroupDef(allow=list(group.allow), rules=rules, rules_match="all")
    return out


def _artifacts(release: Release) -> ReleaseArtifacts:
    m = release.content.model
    return ReleaseArtifacts(
        model=f"{m.name}/{m.version}" if m else None,
        model_uri=m.model_uri if m else None,
        prompts={p.name: p.version for p in release.content.prompts},
    )


def build_route(
    ws: Workspace, service: str, stable: str | None, rollout: ro.Rollout | None, now: str
) -> ServiceRoute:
    """The routing record for ``service``: the stable release and any live cohort."""
    ids = [i for i in (stable, rollout.candidate if rollout else None) if i]
    artifacts = {i: _artifacts(get_release(ws, i)) for i in ids}
    live = rollout is not None and not rollout.final
    if not live or rollout is None:
        return ServiceRoute(service=service, stable=stable, artifacts=artifacts, updated_at=now)
    step = rollout.current
    return ServiceRoute(
        service=service,
        stable=stable,
        candidate=rollout.candidate,
        rollout_id=rollout.id,
        step=rollout.step,
        step_name=step.name,
        seed=rollout.seed,
        percent=step.percent,
        groups=list(step.groups),
        group_defs=_group_defs(ws, step.groups),
        paused=rollout.status == "paused",
        artifacts=artifacts,
        updated_at=now,
    )


def _route_write(ws: Workspace, route: ServiceRoute) -> Write:
    rec = ws.store.get(ROUTE_KIND, route.service)
    return Write(ROUTE_KIND, route.service, route.to_value(), rec.version if rec else 0)


def _commit(
    ws: Workspace,
    *,
    state: ServiceState,
    state_version: int,
    rollout: ro.Rollout | None,
    rollout_version: int | None,
    stable: str | None,
    action: str,
    now: str,
    reason: str | None,
    before: Any,
    after: Any,
    rolled_back: str | None = None,
    mirror: bool = True,
) -> list[SideEffect]:
    """Commit one traffic change, then (with ``mirror``) apply it to the external targets."""
    actor = current_actor()
    writes = [Write(SERVICE_KIND, state.service, state.model_dump(mode="json"), state_version)]
    if rollout is not None and rollout_version is not None:
        writes.append(Write(ROLLOUT_KIND, rollout.id, rollout.to_value(), rollout_version))
    writes.append(_route_write(ws, build_route(ws, state.service, stable, rollout, now)))
    subject = f"rollout:{rollout.id}" if rollout else f"service:{state.service}"
    ws.store.commit(
        writes,
        EventDraft(
            actor=actor.name,
            action=action,
            subject=subject,
            at=now,
            before=before,
            after=after,
            reason=reason,
            context=actor.context,
        ),
    )
    return apply_targets(
        ws, _change(state.service, action, stable, rollout, rolled_back, reason, now)
    )


def _change(
    service: str,
    action: str,
    stable: str | None,
    rollout: ro.Rollout | None,
    rolled_back: str | None,
    reason: str | None,
    now: str,
) -> TrafficChange:
    status: ChangeStatus
    if rollout is None:
        status = "rolled_back" if rolled_back else "stable"
        return TrafficChange(
            service,
            action,
            status,
            stable,
            rolled_back,
            None,
            None,
            0.0 if rolled_back else None,
            reason or "",
            now,
        )
    status = {"running": "in_progress", "paused": "paused"}.get(rollout.status, rollout.status)  # type: ignore[assignment]
    percent = {"promoted": 100.0, "rolled_back": 0.0, "aborted": 0.0}.get(
        rollout.status, rollout.current.percent
    )
    return TrafficChange(
        service,
        action,
        status,
        stable,
        rollout.candidate,
        rollout.id,
        rollout.current.name,
        percent,
        reason or "",
        now,
    )


# --- transitions ---------------------------------------------------------------------------


def _steps(ws: Workspace, service: str) -> list[ro.StepPlan]:
    plan = ws.config.service(service).rollout
    return [
        ro.StepPlan(
            name=s.name,
            groups=list(s.groups),
            percent=s.percent,
            bake_s=s.bake_minutes * 60.0,
            min_samples=s.min_samples,
        )
        for s in plan.steps
    ]


def start_rollout(
    ws: Workspace,
    service: str,
    release_ref: str,
    *,
    initial: bool = False,
    now: str | None = None,
    reason: str | None = None,
    force: bool = False,
) -> TransitionResult:
    """Start rolling ``release_ref`` out over the stable release, at the plan's first step.

    A service with no stable release yet has nothing to compare against: pass
    ``initial=True`` to make the release stable at once (audited as such).
    A release with an eval suite must have passed its gate first, unless
    ``force`` with a ``reason`` (audited; see :func:`releaser.api.gates.require_gates`).
    """
    now = now or utc_now()
    release = get_release(ws, release_ref)
    if release.service != service:
        raise BadInput(
            f"release {release.id} belongs to {release.service}, not {service}",
            hint=f"'releaser release list {service}' shows {service}'s releases",
        )
    state, version = _state_record(ws, service)
    if state.active_rollout is not None:
        raise BadInput(
            f"{service} already has rollout {state.active_rollout} in progress",
            hint="advance, abort or roll it back before starting another",
        )
    if (state.stable is None) == initial:
        from releaser.api.gates import require_gates

        require_gates(ws, service, release.id, force=force, reason=reason)
    if state.stable is None:
        if not initial:
            raise BadInput(
                f"{service} has no stable release yet, so there is nothing to compare with",
                hint="pass --initial to make this release the stable one (first deployment)",
            )
        prepare_targets(ws, service, {release.id: "stable"})
        new_state = state.model_copy(
            update={"stable": release.id, "known_good": [*state.known_good, release.id]}
        )
        targets = _commit(
            ws,
            state=new_state,
            state_version=version,
            rollout=None,
            rollout_version=None,
            stable=release.id,
            action="service.initial-release",
            now=now,
            reason=reason or "first deployment",
            before={"stable": None},
            after={"stable": release.id},
        )
        effects = [*_move_aliases(ws, release), *targets]
        placeholder = ro.start(
            rollout_id=f"{service}-initial",
            service=service,
            baseline=None,
            candidate=release.id,
            seed=release.bucketing_seed,
            steps=_steps(ws, service),
            now=now,
        )
        return TransitionResult(ro.promote(placeholder, now=now, reason="initial"), effects)
    if initial:
        raise BadInput(
            f"{service} already has a stable release ({state.stable})",
            hint="drop --initial to roll the new release out step by step",
        )
    plan = ws.config.service(service).rollout
    rollout_id = f"{service}-{state.rollouts + 1}"
    actor = current_actor().name
    rollout = ro.start(
        rollout_id=rollout_id,
        service=service,
        baseline=state.stable,
        candidate=release.id,
        seed=release.bucketing_seed,
        steps=_steps(ws, service),
        now=now,
        alpha=plan.alpha,
        guardrails={k: v for k, v in plan.guardrails.model_dump().items() if v is not None},
        comparisons=list(plan.comparisons),
        actor=actor,
    )
    # Deploy targets start and health-check both releases before any traffic moves.
    prepare_targets(ws, service, {state.stable: "stable", release.id: "candidate"})
    new_state = state.model_copy(
        update={"active_rollout": rollout_id, "rollouts": state.rollouts + 1, "analysis": {}}
    )
    targets = _commit(
        ws,
        state=new_state,
        state_version=version,
        rollout=rollout,
        rollout_version=0,
        stable=state.stable,
        action="rollout.start",
        now=now,
        reason=reason,
        before={"stable": state.stable},
        after={
            "candidate": release.id,
            "step": rollout.current.name,
            "percent": rollout.current.percent,
            "groups": rollout.current.groups,
        },
    )
    return TransitionResult(rollout, targets)


def _slow_threshold(ws: Workspace, service: str) -> float | None:
    """A histogram bin edge at or above the latency SLO, so slow counts are exact."""
    svc = ws.config.service(service)
    limit = svc.slos.latency_p95_ms or svc.rollout.guardrails.latency_p95_ms
    if limit is None:
        return None
    index = latency_bin(limit)
    lower, upper = latency_bin_bounds(index)
    return lower if lower >= limit else upper


def _variant_totals(ws: Workspace, rollout: ro.Rollout) -> tuple[VariantStats, VariantStats]:
    """Cumulative baseline and candidate aggregates since the rollout began."""
    per_step = ws.store.read_metrics(rollout.id)
    totals = {"baseline": VariantStats(), "candidate": VariantStats()}
    for (_step, variant), stats in per_step.items():
        if variant in totals:
            totals[variant] = totals[variant].merge(stats)
    threshold = _slow_threshold(ws, rollout.service)
    if threshold is not None:
        for name, stats in totals.items():
            totals[name] = stats.model_copy(
                update={
                    "slow_threshold_ms": threshold,
                    "slow": stats.latency.count_above(threshold),
                }
            )
    return totals["baseline"], totals["candidate"]


def _decide(ws: Workspace, state: ServiceState, rollout: ro.Rollout, now: str) -> Decision:
    from releaser.core.analysis import decide
    from releaser.core.stats_guardrails import Guardrails
    from releaser.core.stats_state import AnalysisState

    baseline, candidate = _variant_totals(ws, rollout)
    step = rollout.current
    guard = Guardrails(**rollout.guardrails) if rollout.guardrails else None
    analysis = AnalysisState.model_validate(state.analysis) if state.analysis else None
    return decide(
        baseline,
        candidate,
        state=analysis,
        alpha=rollout.alpha,
        guardrails=guard,
        min_samples=step.min_samples,
        bake_elapsed_s=ro.bake_elapsed_s(rollout, now),
        bake_required_s=step.bake_s,
        is_last_step=rollout.step + 1 >= len(rollout.steps),
        comparisons=rollout.comparisons or ("error_rate", "latency", "quality_score"),  # type: ignore[arg-type]
    )


def advance_rollout(ws: Workspace, service: str, *, now: str | None = None) -> AdvanceResult:
    """Analyse the live metrics and take at most one step: advance, promote, roll back or hold.

    Safe to call as often as a CI cron likes: the tests are anytime-valid, a
    hold writes only the updated test state, and a finished rollout is refused.
    """
    now = now or utc_now()
    state, version, rollout, rec = _active(ws, service)
    if rollout.status == "paused":
        raise ro.IllegalTransition(
            f"rollout {rollout.id} is paused", hint=f"'releaser rollout resume {service}' first"
        )
    decision = _decide(ws, state, rollout, now)
    evidence = {
        "decision": decision.action,
        "reasons": decision.reasons,
        "tests": [t.model_dump(mode="json") for t in decision.tests],
        "breaches": [b.model_dump(mode="json") for b in decision.breaches],
        "step": rollout.current.name,
    }
    analysis = decision.state.model_dump(mode="json")
    actor = current_actor().name
    if decision.action == "hold":
        if analysis != state.analysis:
            ws.store.commit(
                [
                    Write(
                        SERVICE_KIND,
                        service,
                        state.model_copy(update={"analysis": analysis}).model_dump(mode="json"),
                        version,
                    )
                ],
                EventDraft(
                    actor=actor,
                    action="rollout.check",
                    subject=f"rollout:{rollout.id}",
                    at=now,
                    after=evidence,
                    reason="; ".join(decision.reasons),
                ),
            )
        return AdvanceResult(decision, rollout, False)
    if decision.action == "rollback":
        new = ro.roll_back(rollout, now=now, reasons=decision.reasons, actor=actor)
        new_state = state.model_copy(
            update={
                "active_rollout": None,
                "analysis": {},
                "last_rollback": {
                    "from": rollout.candidate,
                    "to": state.stable,
                    "at": now,
                    "reason": "automatic: " + "; ".join(decision.reasons),
                    "kind": "mid-rollout",
                },
            }
        )
        targets = _commit(
            ws,
            state=new_state,
            state_version=version,
            rollout=new,
            rollout_version=rec.version,
            stable=state.stable,
            action="rollout.rollback",
            now=now,
            reason="; ".join(decision.reasons),
            before={"step": rollout.step},
            after=evidence,
        )
        return AdvanceResult(decision, new, True, targets)
    new = ro.advance(rollout, now=now, reasons=decision.reasons, actor=actor)
    if new.status == "promoted":
        result = _finish_promotion(
            ws,
            state,
            version,
            rollout,
            rec,
            new,
            now,
            evidence,
            "rollout.promote",
            "; ".join(decision.reasons),
        )
        return AdvanceResult(decision, result.rollout, True, result.side_effects)
    new_state = state.model_copy(update={"analysis": analysis})
    targets = _commit(
        ws,
        state=new_state,
        state_version=version,
        rollout=new,
        rollout_version=rec.version,
        stable=state.stable,
        action="rollout.advance",
        now=now,
        reason="; ".join(decision.reasons),
        before={"step": rollout.current.name},
        after={**evidence, "to_step": new.current.name, "percent": new.current.percent},
    )
    return AdvanceResult(decision, new, True, targets)


def _finish_promotion(
    ws: Workspace,
    state: ServiceState,
    version: int,
    old: ro.Rollout,
    rec: Record,
    new: ro.Rollout,
    now: str,
    evidence: Any,
    action: str,
    reason: str,
) -> TransitionResult:
    new_state = state.model_copy(
        update={
            "stable": new.candidate,
            "active_rollout": None,
            "analysis": {},
            "known_good": [*state.known_good, new.candidate],
        }
    )
    targets = _commit(
        ws,
        state=new_state,
        state_version=version,
        rollout=new,
        rollout_version=rec.version,
        stable=new.candidate,
        action=action,
        now=now,
        reason=reason,
        before={"stable": old.baseline},
        after={**(evidence or {}), "stable": new.candidate},
    )
    return TransitionResult(new, [*_move_aliases(ws, get_release(ws, new.candidate)), *targets])


def _move_aliases(ws: Workspace, release: Release) -> list[SideEffect]:
    """Point the model's and prompts' ``production`` aliases at ``release``; idempotent."""
    effects: list[SideEffect] = []
    retry = f"releaser reconcile {release.service}"
    m = release.content.model
    if m is not None:
        name = f"MLflow alias {m.name}@{PRODUCTION_ALIAS}"
        try:
            current = ws.models.get_alias(m.name, PRODUCTION_ALIAS)
            if current == m.version:
                effects.append(SideEffect(name, "unchanged", f"already v{m.version}"))
            else:
                ws.models.set_alias(m.name, PRODUCTION_ALIAS, m.version)
                effects.append(SideEffect(name, "done", f"v{current} -> v{m.version}"))
        except Exception as exc:  # noqa: BLE001 - reported per effect; traffic already moved
            effects.append(SideEffect(name, "failed", str(exc), retry))
    for p in release.content.prompts:
        name = f"prompt alias {p.name}@{PRODUCTION_ALIAS}"
        try:
            from releaser.api.prompts import prompt_errors

            with prompt_errors():
                change = ws.prompts.promote(
                    p.name,
                    p.version,
                    PRODUCTION_ALIAS,
                    f"release {release.id}",
                    current_actor().name,
                )
            status: Literal["done", "unchanged"] = "done" if change.changed else "unchanged"
            effects.append(SideEffect(name, status, f"v{change.from_version} -> v{p.version}"))
        except Exception as exc:  # noqa: BLE001 - reported per effect
            effects.append(SideEffect(name, "failed", str(exc), retry))
    return effects


def _simple(
    ws: Workspace, service: str, action: str, reason: str, now: str | None, fn: Any
) -> TransitionResult:
    now = now or utc_now()
    state, version, rollout, rec = _active(ws, service)
    new = fn(rollout, now)
    new_state = state
    if new.final:
        new_state = state.model_copy(
            update={
                "active_rollout": None,
                "analysis": {},
                "last_rollback": {
                    "from": rollout.candidate,
                    "to": state.stable,
                    "at": now,
                    "reason": reason,
                    "kind": "mid-rollout",
                },
            }
        )
    targets = _commit(
        ws,
        state=new_state,
        state_version=version,
        rollout=new,
        rollout_version=rec.version,
        stable=state.stable,
        action=action,
        now=now,
        reason=reason or None,
        before={"status": rollout.status},
        after={"status": new.status},
    )
    return TransitionResult(new, targets)


def pause_rollout(
    ws: Workspace, service: str, *, reason: str = "", now: str | None = None
) -> TransitionResult:
    """Hold the live step: traffic stays as it is; ``advance`` waits for ``resume``."""
    actor = current_actor().name
    return _simple(
        ws,
        service,
        "rollout.pause",
        reason,
        now,
        lambda r, t: ro.pause(r, now=t, reason=reason, actor=actor),
    )


def resume_rollout(
    ws: Workspace, service: str, *, reason: str = "", now: str | None = None
) -> TransitionResult:
    """Continue a paused rollout."""
    actor = current_actor().name
    return _simple(
        ws,
        service,
        "rollout.resume",
        reason,
        now,
        lambda r, t: ro.resume(r, now=t, reason=reason, actor=actor),
    )


def abort_rollout(
    ws: Workspace, service: str, *, reason: str, now: str | None = None
) -> TransitionResult:
    """End the rollout without a verdict; all traffic goes back to the stable release."""
    _need_reason(reason)
    actor = current_actor().name
    return _simple(
        ws,
        service,
        "rollout.abort",
        reason,
        now,
        lambda r, t: ro.abort(r, now=t, reason=reason, actor=actor),
    )


def promote_rollout(
    ws: Workspace, service: str, *, reason: str, now: str | None = None
) -> TransitionResult:
    """Promote the candidate now, skipping the remaining steps (forced, audited)."""
    _need_reason(reason)
    now = now or utc_now()
    state, version, rollout, rec = _active(ws, service)
    new = ro.promote(rollout, now=now, reason=reason, actor=current_actor().name)
    return _finish_promotion(
        ws,
        state,
        version,
        rollout,
        rec,
        new,
        now,
        {"forced": True, "step": rollout.current.name},
        "rollout.promote-forced",
        reason,
    )


def _need_reason(reason: str) -> None:
    if not reason.strip():
        raise BadInput("a reason is required", hint="pass --reason 'why'")


@dataclass(frozen=True)
class StatusReport:
    """Everything ``rollout status`` shows."""

    state: ServiceState
    rollout: ro.Rollout | None
    baseline: VariantStats | None
    candidate: VariantStats | None
    preview: Decision | None
    in_step_s: float | None

    def to_dict(self) -> dict[str, Any]:
        """The documented ``rollout status --json`` shape."""

        def stats(v: VariantStats | None) -> dict[str, Any] | None:
            if v is None:
                return None
            return {
                "requests": v.requests,
                "errors": v.errors,
                "error_rate": v.errors / v.requests if v.requests else None,
                "latency_p95_ms": v.latency.quantile(0.95),
                "quality_mean": v.quality_sum / v.quality_count if v.quality_count else None,
                "quality_count": v.quality_count,
            }

        return {
            "service": self.state.service,
            "stable": self.state.stable,
            "known_good": self.state.known_good,
            "rollout": self.rollout.to_value() if self.rollout else None,
            "variants": {"baseline": stats(self.baseline), "candidate": stats(self.candidate)},
            "decision_preview": self.preview.model_dump(mode="json") if self.preview else None,
            "time_in_step_s": self.in_step_s,
        }


def rollout_status(ws: Workspace, service: str, *, now: str | None = None) -> StatusReport:
    """The service's stable release and, if a rollout is live, its metrics and tests (no writes)."""
    now = now or utc_now()
    state, _ = _state_record(ws, service)
    if state.active_rollout is None:
        last = None
        if state.rollouts:
            rec = ws.store.get(ROLLOUT_KIND, f"{service}-{state.rollouts}")
            last = ro.Rollout.model_validate(rec.value) if rec else None
        return StatusReport(state, last, None, None, None, None)
    rollout, _rec = _rollout_record(ws, state.active_rollout)
    baseline, candidate = _variant_totals(ws, rollout)
    preview = _decide(ws, state, rollout, now) if rollout.status == "running" else None
    return StatusReport(
        state, rollout, baseline, candidate, preview, ro.bake_elapsed_s(rollout, now)
    )
