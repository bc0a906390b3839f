"""The commit every rollout transition makes, shared by start, advance, the simple
transitions and rollback.

Every transition is one store commit that rewrites, with compare-and-swap,
the rollout record, the service record and the service's routing record, and
appends one audit event carrying the evidence. The same commit writes the side
effects the transition owes (MLflow and prompt aliases on promotion, deploy
targets and GitHub on every change) into the journal (:mod:`releaser.api.journal`),
pending; they are applied after it, idempotently, reported one by one, and
never decide the outcome. Routers see the new routing record within their
refresh interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from releaser.api import journal, notify
from releaser.api.context import current_actor
from releaser.api.routes import build_route, route_writes
from releaser.api.state import ROLLOUT_KIND, SERVICE_KIND, ServiceState
from releaser.api.state import rollout_record as _rollout_record
from releaser.api.state import state_record as _state_record
from releaser.api.state import traffic_change as _change
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.audit import EventDraft
from releaser.core.effects import SideEffect, TrafficChange
from releaser.core.guard import guard_metrics_id
from releaser.core.release import Release
from releaser.errors import NotFound
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    from releaser.api.rollback_plan import TrafficSwitch

__all__ = [
    "TransitionResult",
    "commit_change",
    "commit_switch",
    "owed_by",
    "require_active",
]


@dataclass(frozen=True)
class TransitionResult:
    """The rollout after a transition, and the side effects that followed."""

    rollout: ro.Rollout
    side_effects: list[SideEffect] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def require_active(ws: Workspace, service: str) -> tuple[ServiceState, int, ro.Rollout, Record]:
    """The service's state and its live rollout, each with its record version.

    NotFound when no rollout is in progress, after finishing the side effects and the
    notifications an earlier change still owes.
    """
    state, version = _state_record(ws, service)
    if state.active_rollout is None:
        finished = journal.settle(ws, service=service)
        notify.deliver_owed(ws, service)  # audited; the command fails all the same
        owed = f"; finished {len(finished)} side effect(s) the last change owed" if finished else ""
        raise NotFound(
            f"{service} has no rollout in progress (state store {ws.store.url}){owed}",
            hint=f"start one with 'releaser rollout start {service} --release ID'; "
            "if your team shares a store, set RELEASER_STORE (or --store) to it",
        )
    rollout, rec = _rollout_record(ws, state.active_rollout)
    return state, version, rollout, rec


def commit_change(
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
    aliases: tuple[Release, Release | None] | None = None,
    extra: list[Write] | None = None,
    settle: bool = True,
    notice: dict[str, Any] | None = None,
    tell: bool = True,
) -> list[SideEffect]:
    """Commit one traffic change with the side effects it owes, then (``settle``) apply them.

    ``aliases`` is (release, the release it replaces) when the ``production``
    aliases move with the change (a promotion, a rollback after one); ``extra``
    are more records the same commit writes. With ``tell``, the commit also owes
    the change's notification (``notice``: its further facts) when a webhook takes it.
    """
    actor = current_actor()
    # The post-promotion guard lasts while its release is stable and no rollout is live.
    guard = state.guard
    if guard is not None and (guard.release != stable or (rollout and not rollout.final)):
        state = state.model_copy(update={"guard": None})
    writes = [Write(SERVICE_KIND, state.service, state.model_dump(mode="json"), state_version)]
    if rollout is not None and rollout_version is not None:
        writes.append(Write(ROLLOUT_KIND, rollout.id, rollout.to_value(), rollout_version))
    route = build_route(ws, state.service, stable, rollout, now)
    if state.guard is not None and route.candidate is None:
        route = route.model_copy(update={"guard": guard_metrics_id(state.guard.rollout_id)})
    writes += route_writes(ws, route)
    writes += extra or []
    change = _change(state.service, action, stable, rollout, rolled_back, reason, now)
    intents = owed_by(ws, change, aliases)
    subject = f"rollout:{rollout.id}" if rollout else f"service:{state.service}"
    told = (
        notify.transition_notice(
            ws, action, state.service, rollout=rollout, stable=stable, at=now, fields=notice
        )
        if tell
        else []
    )
    ws.store.commit(
        [*writes, *intents.writes, *told],
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
        also=intents.events,
    )
    return journal.settle(ws, service=state.service) if settle else []


def commit_switch(
    ws: Workspace,
    sw: TrafficSwitch,
    *,
    action: str = "rollback",
    after: Any = None,
    notice: dict[str, Any] | None = None,
    tell: bool = True,
) -> None:
    """Commit a rollback's traffic switch (worked out by ``rollback_plan.switch_of``) as one
    store write with the side effects it owes, applied later by the caller's settle, and
    (``tell``) the notification it owes, ``notice`` holding its facts."""
    commit_change(
        ws,
        state=sw.state,
        state_version=sw.state_version,
        rollout=sw.rollout,
        rollout_version=sw.rollout_version,
        stable=sw.stable,
        action=action,
        now=sw.now,
        reason=sw.reason,
        before=sw.before,
        after=sw.after if after is None else after,
        rolled_back=sw.rolled_back,
        aliases=sw.aliases,
        extra=sw.extra,
        settle=False,
        notice=notice,
        tell=tell,
    )


def owed_by(
    ws: Workspace, change: TrafficChange, aliases: tuple[Release, Release | None] | None
) -> journal.Intents:
    """The side effects ``change`` owes: the targets, and the aliases when they move."""
    intents = journal.Intents()
    if aliases is not None:
        release, replaced = aliases
        intents.release_aliases(
            ws,
            release,
            replaced=replaced,
            cause=change.action,
            reason=change.reason or change.action,
            at=change.at,
            move="rollback" if change.status == "rolled_back" else "promote",
        )
    intents.targets(ws, change)
    return intents
