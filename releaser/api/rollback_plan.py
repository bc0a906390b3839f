"""What a rollback would do, worked out from the store alone (nothing written).

The plan (from which release to which) and the records of its traffic switch, shared by
``releaser rollback`` (:mod:`releaser.api.rollback`), which commits them, and by the
post-promotion guard's automatic rollback, which commits the same switch from
``advance``. Kept below the rollout use cases so both can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from releaser.api.context import current_actor
from releaser.api.releases import get_release
from releaser.api.state import ROLLOUT_KIND, ServiceState, back_to_stable
from releaser.api.state import rollout_record as _rollout_record
from releaser.api.state import state_record as _state_record
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.release import Release
from releaser.errors import BadInput, NotFound
from releaser.store.base import Record, Write

__all__ = ["RollbackPlan", "TrafficSwitch", "plan_rollback", "switch_of"]


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback would do: from which release to which, and how."""

    service: str
    kind: Literal["mid-rollout", "after-promotion", "already"]
    from_release: str | None
    to_release: str
    rollout_id: str | None = None
    irreversible: bool = False

    def describe(self) -> str:
        """One line for people."""
        if self.kind == "already":
            return f"{self.service} is already rolled back to {self.to_release}"
        if self.kind == "mid-rollout":
            return (
                f"abort rollout {self.rollout_id}: all traffic of {self.service} back to "
                f"{self.to_release} (candidate {self.from_release} gets none)"
            )
        return (
            f"switch {self.service}'s stable release from {self.from_release} to {self.to_release}"
        )


def is_irreversible(release: Release) -> bool:
    return bool(release.content.config.get("irreversible"))


def plan_rollback(ws: Workspace, service: str, *, to: str | None = None) -> RollbackPlan:
    """Work out the rollback without changing anything."""
    state, _ = _state_record(ws, service)
    target = get_release(ws, to).id if to else None
    if target is not None and get_release(ws, target).service != service:
        raise BadInput(f"release {target} is not a release of {service}")
    if state.active_rollout is not None:
        rollout, _rec = _rollout_record(ws, state.active_rollout)
        if state.stable is None:  # pragma: no cover - a rollout always has a baseline
            raise NotFound(f"{service} has no stable release to return to")
        if target is not None and target != state.stable:
            raise BadInput(
                f"mid-rollout, rollback returns to the baseline {state.stable}",
                hint="roll back first, then start a rollout of the release you want",
            )
        return RollbackPlan(
            service,
            "mid-rollout",
            rollout.candidate,
            state.stable,
            rollout.id,
            is_irreversible(get_release(ws, rollout.candidate)),
        )
    if state.stable is None:
        raise NotFound(
            f"{service} has no stable release in the state store {ws.store.url}, "
            "so there is nothing to roll back",
            hint="if your team shares a store, set RELEASER_STORE (or --store) to it; "
            f"'releaser rollout status {service}' shows the state",
        )
    last = state.last_rollback or {}
    if target is None:
        if last.get("to") == state.stable:
            return RollbackPlan(service, "already", last.get("from"), state.stable)
        earlier = [r for r in state.known_good if r != state.stable]
        if not earlier:
            raise NotFound(
                f"{service} has no earlier known-good release to return to",
                hint="pass --to RELEASE to name one ('releaser release list' shows them)",
            )
        target = earlier[-1]
    if target == state.stable:
        return RollbackPlan(service, "already", last.get("from"), target)
    return RollbackPlan(
        service,
        "after-promotion",
        state.stable,
        target,
        None,
        is_irreversible(get_release(ws, state.stable)),
    )


@dataclass(frozen=True)
class TrafficSwitch:
    """The writes of a rollback's traffic switch, ready to commit (or to show)."""

    state: ServiceState
    state_version: int
    rollout: ro.Rollout | None
    rollout_version: int | None
    stable: str
    rolled_back: str | None
    aliases: tuple[Release, Release | None] | None
    extra: list[Write]
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str
    now: str


def switch_of(ws: Workspace, plan: RollbackPlan, reason: str, now: str) -> TrafficSwitch:
    """Work out the switch's records from the store (nothing written)."""
    state, version = _state_record(ws, plan.service)
    actor = current_actor().name
    if plan.kind == "mid-rollout":
        assert plan.rollout_id is not None
        rollout, rec = _rollout_record(ws, plan.rollout_id)
        new = ro.roll_back(rollout, now=now, reasons=[f"manual rollback: {reason}"], actor=actor)
        new_state = back_to_stable(state, rollout.candidate, reason, now)
        return TrafficSwitch(
            new_state,
            version,
            new,
            rec.version,
            plan.to_release,
            None,
            None,
            [],
            {"candidate": plan.from_release, "step": rollout.current.name},
            new_state.last_rollback or {},
            reason,
            now,
        )
    assert plan.from_release is not None
    record = {
        "from": plan.from_release,
        "to": plan.to_release,
        "at": now,
        "reason": reason,
        "kind": plan.kind,
    }
    known = [r for r in state.known_good if r not in (plan.from_release, plan.to_release)]
    known.append(plan.to_release)  # it serves as stable now (last, as the stable always is)
    new_state = state.model_copy(
        update={"stable": plan.to_release, "known_good": known, "last_rollback": record}
    )
    # The rollout that promoted the release going away records the rollback too, so
    # the rollout history, rollouts.md and the timeline show it.
    extra = []
    promoted = _promoting_rollout(ws, plan.service, plan.from_release)
    if promoted is not None:
        undone = ro.undo_promotion(
            ro.Rollout.model_validate(promoted.value),
            now=now,
            reasons=[f"rollback after promotion: {reason}"],
            actor=actor,
        )
        extra.append(Write(ROLLOUT_KIND, promoted.key, undone.to_value(), promoted.version))
    return TrafficSwitch(
        new_state,
        version,
        None,
        None,
        plan.to_release,
        plan.from_release,
        (get_release(ws, plan.to_release), get_release(ws, plan.from_release)),
        extra,
        {"stable": plan.from_release},
        record,
        reason,
        now,
    )


def _promoting_rollout(ws: Workspace, service: str, release_id: str) -> Record | None:
    """The latest rollout of ``service`` that promoted ``release_id``, if any."""
    found = [
        rec
        for rec in ws.store.list(ROLLOUT_KIND, prefix=f"{service}-")
        if rec.value.get("service") == service
        and rec.value.get("candidate") == release_id
        and rec.value.get("status") == "promoted"
    ]
    return max(found, key=lambda r: (r.value.get("ended_at") or "", r.key)) if found else None
