"""Advancing a rollout: the step's analysis, the post-promotion guard's judgement, and
the finish of a promotion.

``advance`` takes at most one step (advance, promote, roll back or hold) from the
analysis of the live metrics (:func:`releaser.api.rollout_status.decide_step`); with no
rollout live it judges the post-promotion guard (:mod:`releaser.api.guard`) instead.
A promotion, by ``advance`` or forced (:func:`releaser.api.rollouts.promote_rollout`),
finishes here. Each transition is one commit (:mod:`releaser.api.rollout_commit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from releaser.api import journal, notify
from releaser.api.context import current_actor, utc_now
from releaser.api.endpoints import require_endpoints
from releaser.api.freeze import hold_for_freeze
from releaser.api.releases import get_release
from releaser.api.rollout_commit import TransitionResult, commit_switch
from releaser.api.rollout_commit import commit_change as _commit
from releaser.api.rollout_commit import require_active as _active
from releaser.api.state import SERVICE_KIND, ServiceState, back_to_stable, service_state
from releaser.api.state import rollout_record as _rollout_record
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.audit import EventDraft
from releaser.core.effects import SideEffect
from releaser.core.freeze import ActiveFreeze
from releaser.core.guard import GuardCheck
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    # numpy and scipy load with the analysis (only advance and status need them).
    from releaser.core.analysis import Decision

__all__ = [
    "AdvanceResult",
    "LiveCheck",
    "advance_if_live",
    "advance_rollout",
    "finish_promotion",
    "require_stable_endpoint",
]


@dataclass(frozen=True)
class AdvanceResult:
    """What ``advance`` decided, with its evidence, and the rollout afterwards."""

    decision: Decision
    rollout: ro.Rollout
    transitioned: bool
    side_effects: list[SideEffect] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    frozen: ActiveFreeze | None = None
    """The change freeze that turned an advance or a promotion into this hold, if any."""
    guard: GuardCheck | None = None
    """Set when no rollout was live and the post-promotion guard was judged instead."""


LiveCheck = Literal["idle", "paused"]
"""Why :func:`advance_if_live` did nothing: no rollout in progress, or one held paused."""


def advance_if_live(
    ws: Workspace, service: str, *, now: str | None = None
) -> AdvanceResult | LiveCheck:
    """:func:`advance_rollout` when a rollout is running; ``idle`` or ``paused`` otherwise.

    For schedules that run whether or not a rollout is live: an idle service, or a
    rollout operators hold paused, is not an error (side effects a change still
    owes are finished all the same). An unknown service still is.
    """
    ws.config.service(service)
    late = notify.deliver_owed(ws, service)
    state = service_state(ws, service)
    if state.active_rollout is None:
        guarded = _judge_guard(ws, service, now or utc_now())
        if guarded is not None:
            return replace(guarded, warnings=[*late, *guarded.warnings])
        journal.settle(ws, service=service)
        return "idle"
    if _rollout_record(ws, state.active_rollout)[0].status == "paused":
        journal.settle(ws, service=service)
        return "paused"
    result = _advance(ws, service, now=now)
    return replace(result, warnings=[*late, *result.warnings]) if late else result


def advance_rollout(ws: Workspace, service: str, *, now: str | None = None) -> AdvanceResult:
    """Analyse the live metrics and take at most one step: advance, promote, roll back or hold.

    Safe to call as often as a CI cron likes: the tests are anytime-valid, a
    hold writes only the updated test state, and a finished rollout is refused.
    After a promotion, while its guard lasts, it judges the guard instead
    (:mod:`releaser.api.guard`): a confirmed breach rolls back. Notifications an
    earlier command owes are told first (late).
    """
    late = notify.deliver_owed(ws, service)
    result = _advance(ws, service, now=now)
    return replace(result, warnings=[*late, *result.warnings]) if late else result


def _advance(ws: Workspace, service: str, *, now: str | None = None) -> AdvanceResult:
    now = now or utc_now()
    journal.settle(ws, service=service)  # what an earlier change owes lands first
    if service_state(ws, service).active_rollout is None:
        guarded = _judge_guard(ws, service, now)
        if guarded is not None:
            return guarded
    state, version, rollout, rec = _active(ws, service)
    if rollout.status == "paused":
        raise ro.IllegalTransition(
            f"rollout {rollout.id} is paused", hint=f"'releaser rollout resume {service}' first"
        )
    from releaser.api.rollout_status import decide_step

    # A freeze turns a widening step or a promotion into a hold; a rollback still happens.
    decision, frozen = hold_for_freeze(ws, service, decide_step(ws, state, rollout, now), now)
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
        why = _stuck(decision, frozen)
        told = notify.stuck_hold(ws, rollout, decision.reasons, why, now) if why else []
        return AdvanceResult(decision, rollout, False, warnings=told, frozen=frozen)
    if decision.action == "rollback":
        new = ro.roll_back(rollout, now=now, reasons=decision.reasons, actor=actor)
        new_state = back_to_stable(
            state, rollout.candidate, "automatic: " + "; ".join(decision.reasons), now
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
        told = notify.after_change(ws, "rollout.rollback", service, rollout=new, effects=targets)
        return AdvanceResult(decision, new, True, targets, told)
    new = ro.advance(rollout, now=now, reasons=decision.reasons, actor=actor)
    if new.status == "promoted":
        require_stable_endpoint(ws, state, new.candidate)
        result = finish_promotion(
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
        return AdvanceResult(decision, result.rollout, True, result.side_effects, result.warnings)
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
    told = notify.after_change(ws, "rollout.advance", service, rollout=new, effects=targets)
    return AdvanceResult(decision, new, True, targets, told)


def _stuck(decision: Decision, frozen: ActiveFreeze | None) -> str:
    """Why a hold needs a person, or '' for a routine one (bake time, samples to come)."""
    if frozen is not None:
        return f"change freeze {frozen.name!r}"
    if decision.reasons and decision.reasons[0].startswith("no evidence"):
        return "no evidence from the metrics source"
    return ""


def _judge_guard(ws: Workspace, service: str, now: str) -> AdvanceResult | None:
    """The post-promotion guard's look (:mod:`releaser.api.guard`); on a confirmed breach,
    the rollback's switch committed as ``releaser rollback`` commits it, with the evidence."""
    from releaser.api.guard import judge_guard

    judged = judge_guard(ws, service, now=now)
    if judged is None:
        return None
    sw = judged.switch
    if sw is None:
        decision = judged.decision()
        return AdvanceResult(
            decision, judged.rollout, False, judged.side_effects, guard=judged.check
        )
    breach: dict[str, Any] = {
        "release": sw.rolled_back or judged.rollout.candidate,
        "reasons": judged.check.reasons,
        "rolled_back_to": sw.stable,
        "evidence": judged.evidence,
    }
    commit_switch(
        ws,
        sw,
        action="guard.rollback",
        after={**sw.after, "guard": judged.evidence},
        notice=notify.breach_fields(service, **breach),
    )
    effects = journal.settle(ws, service=service)
    undone = [w for w in sw.extra if w.key == judged.rollout.id]
    rollout = ro.Rollout.model_validate(undone[0].value) if undone else judged.rollout
    told = notify.guard_breach(ws, service, **breach)
    return AdvanceResult(judged.decision(), rollout, True, effects, told, guard=judged.check)


def require_stable_endpoint(ws: Workspace, state: ServiceState, release_id: str) -> None:
    """Refuse a promotion the gateway could not serve truthfully (nothing written yet)."""
    require_endpoints(
        ws,
        state.service,
        {release_id: "stable"},
        state=state,
        stable=release_id,
        doing=f"promote {release_id}",
    )


def finish_promotion(
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
    """Make a promoted rollout's candidate the stable release in one commit, with the
    ``production`` aliases it owes and the post-promotion guard it starts; ``action``
    names it in the audit log (an advance's promotion or a forced one)."""
    from releaser.api.guard import guard_for_promotion

    release = get_release(ws, new.candidate)
    new_state = state.model_copy(
        update={
            "stable": new.candidate,
            "active_rollout": None,
            "analysis": {},
            "known_good": [*state.known_good, new.candidate],
            "last_rollback": None,
            "guard": guard_for_promotion(ws, old, release, now),
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
        aliases=(
            release,
            get_release(ws, old.baseline) if old.baseline else None,
        ),
    )
    return TransitionResult(
        new, targets, notify.after_change(ws, action, new.service, rollout=new, effects=targets)
    )
