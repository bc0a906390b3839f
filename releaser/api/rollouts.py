"""Use cases for rollouts: start, pause, resume, abort, promote.

Each transition is one store commit with the side effects and the notification it
owes (:mod:`releaser.api.rollout_commit`). Advancing, the post-promotion guard's
judgement and the finish of a promotion live in :mod:`releaser.api.rollout_advance`;
``status`` in :mod:`releaser.api.rollout_status`. Their public names are importable
from here as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releaser.api import journal, notify
from releaser.api.context import current_actor, utc_now
from releaser.api.effects import prepare_targets
from releaser.api.endpoints import require_endpoints
from releaser.api.freeze import refuse_if_frozen
from releaser.api.journal import PRODUCTION_ALIAS
from releaser.api.releases import (
    get_release,
    get_service_release,
    pinned_drift,
    pinned_drift_warning,
)
from releaser.api.rollout_advance import (
    AdvanceResult,
    LiveCheck,
    advance_if_live,
    advance_rollout,
)
from releaser.api.rollout_advance import finish_promotion as _finish_promotion
from releaser.api.rollout_advance import require_stable_endpoint as _require_stable_endpoint
from releaser.api.rollout_commit import TransitionResult
from releaser.api.rollout_commit import commit_change as _commit
from releaser.api.rollout_commit import commit_switch as commit_switch
from releaser.api.rollout_commit import owed_by as owed_by
from releaser.api.rollout_commit import require_active as _active
from releaser.api.state import ROLLOUT_KIND, ServiceState, back_to_stable, service_state
from releaser.api.state import rollout_record as _rollout_record
from releaser.api.state import state_record as _state_record
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.effects import SideEffect
from releaser.core.release import FieldChange, Release
from releaser.core.shadow import ShadowPlan
from releaser.errors import BadInput

# ``commit_switch`` and ``owed_by`` stay importable from here (``x as x``), as before the
# commit moved out. A patch takes effect only where a name is looked up: patch
# ``rollout_advance`` or ``rollout_commit``, not this module.

if TYPE_CHECKING:
    # The config models load with rollout start (a rollback never needs them).
    from releaser.config.service import RolloutPlan

__all__ = [
    "PRODUCTION_ALIAS",
    "AdvanceResult",
    "LiveCheck",
    "PinnedPlan",
    "ServiceState",
    "SideEffect",
    "TransitionResult",
    "abort_rollout",
    "advance_if_live",
    "advance_rollout",
    "pause_rollout",
    "pinned_plan",
    "promote_rollout",
    "resume_rollout",
    "service_state",
    "start_rollout",
]


@dataclass(frozen=True)
class PinnedPlan:
    """The rollout plan a release pinned, and how releaser.yaml's differs from it now."""

    plan: RolloutPlan
    drift: list[FieldChange]

    def warning(self, release_id: str) -> str | None:
        """One line for people when the working tree differs, else None."""
        return pinned_drift_warning("rollout plan", release_id, self.drift)


def pinned_plan(ws: Workspace, release: Release) -> PinnedPlan:
    """The rollout plan (steps, bakes, guardrails, alpha) ``release`` pinned at creation.

    The plan is part of the release's content, so of its id: a rollout is judged by
    the rules it was released with. An edit to releaser.yaml since is reported as
    drift (field by field), never applied.
    """
    from releaser.config.service import RolloutPlan

    pinned = RolloutPlan.model_validate(release.content.config.get("rollout", {}))
    return PinnedPlan(pinned, pinned_drift(ws, release, "rollout"))


def _undone_before(ws: Workspace, service: str, release_id: str) -> list[str]:
    """A warning for each earlier rollout of this release that was rolled back or aborted."""
    out = []
    for record in ws.store.list(ROLLOUT_KIND, prefix=f"{service}-"):
        value = record.value
        if value.get("candidate") != release_id or value.get("status") not in (
            "rolled_back",
            "aborted",
        ):
            continue
        decisions = value.get("decisions") or []
        why = "; ".join(decisions[-1].get("reasons") or []) if decisions else ""
        status = str(value["status"]).replace("_", " ")
        out.append(
            f"release {release_id} was {status} before (rollout {record.key}, "
            f"{value.get('ended_at') or 'date unknown'}"
            + (f": {why})" if why else ")")
            + "; starting it again is allowed, check that the cause is fixed"
        )
    return out


def _steps(plan: RolloutPlan) -> list[ro.StepPlan]:
    return [
        ro.StepPlan(
            name=s.name,
            groups=list(s.groups),
            percent=s.percent,
            bake_s=s.bake_minutes * 60.0,
            min_samples=s.min_samples,
            shadow=None if s.shadow is None else ShadowPlan(**s.shadow.model_dump()),
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
    ws.config.service(service)  # a mistyped service: "did you mean", not a release mismatch
    refuse_if_frozen(ws, service, now, "start a rollout")  # nothing is written while frozen
    release = get_service_release(ws, service, release_ref)
    pinned = pinned_plan(ws, release)
    plan = pinned.plan
    warning = pinned.warning(release.id)
    warnings = [warning] if warning else []
    warnings += _undone_before(ws, service, release.id)
    journal.settle(ws, service=service)  # what an earlier change owes lands first
    warnings += notify.deliver_owed(ws, service)
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
        require_endpoints(
            ws,
            service,
            {release.id: "stable"},
            state=state,
            stable=release.id,
            doing="make it the stable release",
        )
        prepare_targets(ws, service, {release.id: "stable"})
        new_state = state.model_copy(
            update={
                "stable": release.id,
                "known_good": [*state.known_good, release.id],
                "last_rollback": None,
            }
        )
        effects = _commit(
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
            aliases=(release, None),
        )
        placeholder = ro.start(
            rollout_id=f"{service}-initial",
            service=service,
            baseline=None,
            candidate=release.id,
            seed=release.bucketing_seed,
            steps=_steps(plan),
            now=now,
        )
        done = ro.promote(placeholder, now=now, reason="initial")
        warnings += notify.after_change(ws, "service.initial-release", service, effects=effects)
        return TransitionResult(done, effects, warnings)
    if initial:
        raise BadInput(
            f"{service} already has a stable release ({state.stable})",
            hint="drop --initial to roll the new release out step by step",
        )
    rollout_id = f"{service}-{state.rollouts + 1}"
    actor = current_actor().name
    rollout = ro.start(
        rollout_id=rollout_id,
        service=service,
        baseline=state.stable,
        candidate=release.id,
        seed=release.bucketing_seed,
        steps=_steps(plan),
        now=now,
        alpha=plan.alpha,
        guardrails=plan.guardrails.limits(),
        comparisons=list(plan.comparisons),
        actor=actor,
    )
    # The gateway labels only what an endpoint serves: both releases need one first.
    require_endpoints(
        ws,
        service,
        {state.stable: "stable", release.id: "candidate"},
        state=state,
        stable=state.stable,
        doing="start the rollout",
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
            # The plan is the release's; a different one in the file is noted, not used.
            **({"plan_drift": [c.path for c in pinned.drift]} if pinned.drift else {}),
        },
    )
    warnings += notify.after_change(ws, "rollout.start", service, rollout=rollout, effects=targets)
    return TransitionResult(rollout, targets, warnings)


def _simple(
    ws: Workspace, service: str, action: str, reason: str, now: str | None, fn: Any
) -> TransitionResult:
    now = now or utc_now()
    state, version, rollout, rec = _active(ws, service)
    try:
        new = fn(rollout, now)
    except ro.IllegalTransition:
        journal.settle(ws, service=service)  # a re-run (already paused...) still converges
        notify.deliver_owed(ws, service)
        raise
    new_state = state
    if new.final:
        new_state = back_to_stable(state, rollout.candidate, reason, now)
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
    return TransitionResult(
        new, targets, notify.after_change(ws, action, service, rollout=new, effects=targets)
    )


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
    ws: Workspace, service: str, *, reason: str, now: str | None = None, force: bool = False
) -> TransitionResult:
    """End the rollout without a verdict; all traffic goes back to the stable release.

    A candidate marked ``irreversible`` is refused unless ``force``, as ``rollback`` does:
    aborting sends its users back to a release that may not read what it wrote.
    """
    _need_reason(reason)
    state = service_state(ws, service)
    if state.active_rollout is not None and not force:
        candidate = _rollout_record(ws, state.active_rollout)[0].candidate
        if get_release(ws, candidate).content.config.get("irreversible"):
            raise BadInput(
                f"release {candidate} is marked irreversible (e.g. it migrated data), so "
                "aborting its rollout may not restore the old behaviour",
                hint=f"pause instead ('releaser rollout pause {service}'), or pass --force",
            )
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
    done = _already_promoted(ws, service)
    if done is not None:
        effects = journal.settle(ws, service=service)
        return TransitionResult(done, effects, notify.deliver_owed(ws, service))
    state, version, rollout, rec = _active(ws, service)
    refuse_if_frozen(ws, service, now, "promote the rollout")
    new = ro.promote(rollout, now=now, reason=reason, actor=current_actor().name)
    _require_stable_endpoint(ws, state, new.candidate)
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


def _already_promoted(ws: Workspace, service: str) -> ro.Rollout | None:
    """The service's last rollout when it was promoted and is still what serves; else None.

    A re-run of a promotion that committed (the process died before its side
    effects) then finishes what it owes instead of failing for want of a rollout.
    """
    state = service_state(ws, service)
    if state.active_rollout is not None or not state.rollouts:
        return None
    rec = ws.store.get(ROLLOUT_KIND, f"{service}-{state.rollouts}")
    if rec is None:
        return None
    last = ro.Rollout.model_validate(rec.value)
    return last if last.status == "promoted" and last.candidate == state.stable else None


def _need_reason(reason: str) -> None:
    if not reason.strip():
        raise BadInput("a reason is required", hint="pass --reason 'why'")
