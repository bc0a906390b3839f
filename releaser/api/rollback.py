"""One-command rollback, and reconcile: the simplest and most reliable path in the tool.

The traffic switch is one store commit (service record, rollout record and
routing record together, with compare-and-swap, plus the audit event). It
needs nothing but the store: MLflow is not imported and not called before
traffic is back. Side effects follow, each idempotent and reported on its
own; any that fail are recorded as pending on the service and finished by
``releaser rollback --resume`` or ``releaser reconcile``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from releaser.api.context import current_actor, utc_now
from releaser.api.effects import TrafficChange, apply_targets
from releaser.api.releases import get_release
from releaser.api.rollouts import (
    PRODUCTION_ALIAS,
    SERVICE_KIND,
    ServiceState,
    SideEffect,
    _commit,
    _rollout_record,
    _state_record,
    back_to_stable,
)
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.audit import EventDraft
from releaser.core.release import Release
from releaser.errors import BadInput, NotFound
from releaser.store.base import Write

__all__ = [
    "Drift",
    "RollbackPlan",
    "RollbackResult",
    "plan_rollback",
    "reconcile",
    "rollback",
]


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
        return f"{self.service}: stable release {self.from_release} -> {self.to_release}"


@dataclass(frozen=True)
class RollbackResult:
    """The plan carried out: whether traffic moved, and each side effect's outcome."""

    plan: RollbackPlan
    switched: bool
    dry_run: bool = False
    side_effects: list[SideEffect] = field(default_factory=list)

    @property
    def pending(self) -> list[SideEffect]:
        """Side effects that failed and are left for ``--resume`` / ``reconcile``."""
        return [e for e in self.side_effects if e.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """The documented ``rollback --json`` shape."""
        return {
            "service": self.plan.service,
            "kind": self.plan.kind,
            "from": self.plan.from_release,
            "to": self.plan.to_release,
            "rollout_id": self.plan.rollout_id,
            "switched": self.switched,
            "dry_run": self.dry_run,
            "side_effects": [e.__dict__ for e in self.side_effects],
        }


def _is_irreversible(release: Release) -> bool:
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
            _is_irreversible(get_release(ws, rollout.candidate)),
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
        _is_irreversible(get_release(ws, state.stable)),
    )


def rollback(
    ws: Workspace,
    service: str,
    *,
    reason: str,
    to: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    side_effects: bool = True,
    resume: bool = False,
    now: str | None = None,
) -> RollbackResult:
    """Send all of ``service``'s traffic back to its last known-good release.

    Mid-rollout this aborts to the baseline; after a full promotion it
    returns to the previous known-good release (or ``to``). Running it again
    is harmless: the plan is ``already`` and nothing is written; side effects
    left pending by an earlier run (or all of them, with ``resume``) are redone.
    """
    if not reason.strip():
        raise BadInput("a reason is required", hint="pass --reason 'what went wrong'")
    plan = plan_rollback(ws, service, to=to)
    if plan.irreversible and not force and plan.kind != "already":
        raise BadInput(
            f"release {plan.from_release} is marked irreversible (e.g. it migrated data), "
            "so rolling it back may not restore the old behaviour",
            hint=f"pause instead ('releaser rollout pause {service}'), or pass --force",
        )
    if dry_run:
        return RollbackResult(plan, switched=False, dry_run=True)
    now = now or utc_now()
    if plan.kind != "already":
        _switch(ws, plan, reason, now)
    elif not (resume or _state_record(ws, service)[0].pending_effects):
        # Already rolled back with nothing left to finish: a harmless, fast no-op.
        return RollbackResult(plan, switched=False)
    effects = _side_effects(ws, plan, reason, now) if side_effects else []
    _record_effects(ws, service, effects, now)
    return RollbackResult(plan, switched=plan.kind != "already", side_effects=effects)


def _switch(ws: Workspace, plan: RollbackPlan, reason: str, now: str) -> None:
    """The traffic switch: one atomic store commit (side effects follow separately)."""
    state, version = _state_record(ws, plan.service)
    actor = current_actor().name
    if plan.kind == "mid-rollout":
        assert plan.rollout_id is not None
        rollout, rec = _rollout_record(ws, plan.rollout_id)
        new = ro.roll_back(rollout, now=now, reasons=[f"manual rollback: {reason}"], actor=actor)
        new_state = back_to_stable(state, rollout.candidate, reason, now)
        record = new_state.last_rollback
        _commit(
            ws,
            state=new_state,
            state_version=version,
            rollout=new,
            rollout_version=rec.version,
            stable=state.stable,
            action="rollback",
            now=now,
            reason=reason,
            before={"candidate": plan.from_release, "step": rollout.current.name},
            after=record,
            mirror=False,
        )
        return
    record = {
        "from": plan.from_release,
        "to": plan.to_release,
        "at": now,
        "reason": reason,
        "kind": plan.kind,
    }
    known = [r for r in state.known_good if r != plan.from_release]
    new_state = state.model_copy(
        update={"stable": plan.to_release, "known_good": known, "last_rollback": record}
    )
    _commit(
        ws,
        state=new_state,
        state_version=version,
        rollout=None,
        rollout_version=None,
        stable=plan.to_release,
        action="rollback",
        now=now,
        reason=reason,
        before={"stable": plan.from_release},
        after=record,
        rolled_back=plan.from_release,
        mirror=False,
    )


def _side_effects(ws: Workspace, plan: RollbackPlan, reason: str, now: str) -> list[SideEffect]:
    """Point the production aliases at the release now serving, then the targets (idempotent)."""
    from releaser.api.aliases import move_production_aliases

    retry = f"releaser rollback {plan.service} --resume"
    aliases = [
        SideEffect(e.name, e.status, e.detail, retry if e.status == "failed" else None)
        for e in move_production_aliases(ws, get_release(ws, plan.to_release))
    ]
    change = TrafficChange(
        service=plan.service,
        action="rollback",
        status="rolled_back",
        stable=plan.to_release,
        candidate=plan.from_release,
        rollout_id=plan.rollout_id,
        step=None,
        percent=0.0,
        reason=reason,
        at=now,
    )
    targets = [
        SideEffect(e.name, e.status, e.detail, retry if e.status == "failed" else None)
        for e in apply_targets(ws, change)
    ]
    return [*aliases, *targets]


def _record_effects(ws: Workspace, service: str, effects: list[SideEffect], now: str) -> None:
    """Keep the list of pending side effects on the service record (audited when it changes)."""
    state, version = _state_record(ws, service)
    pending = [e.name for e in effects if e.status == "failed"]
    if pending == state.pending_effects:
        return
    ws.store.commit(
        [
            Write(
                SERVICE_KIND,
                service,
                state.model_copy(update={"pending_effects": pending}).model_dump(mode="json"),
                version,
            )
        ],
        EventDraft(
            actor=current_actor().name,
            action="rollback.side-effects",
            subject=f"service:{service}",
            at=now,
            before={"pending": state.pending_effects},
            after={"pending": pending, "effects": [e.__dict__ for e in effects]},
        ),
    )


@dataclass(frozen=True)
class Drift:
    """An alias that does not point where the stable release says it should."""

    alias: str
    expected: int
    actual: int | None


def reconcile(
    ws: Workspace, service: str, *, fix: bool = True
) -> tuple[list[Drift], list[SideEffect]]:
    """Compare the production aliases with the stable release; move them back unless ``fix`` is off.

    Drift means an alias was moved outside releaser (or a side effect never
    finished). Both are reported; with ``fix`` the aliases are moved and the
    pending list on the service is cleared.
    """
    state: ServiceState = _state_record(ws, service)[0]
    if state.stable is None:
        raise NotFound(f"{service} has no stable release yet; nothing to reconcile")
    release = get_release(ws, state.stable)
    drift: list[Drift] = []
    from releaser.api.prompts import prompt_errors

    m = release.content.model
    if m is not None:
        actual = ws.models.get_alias(m.name, PRODUCTION_ALIAS)
        if actual != m.version:
            drift.append(Drift(f"model {m.name}@{PRODUCTION_ALIAS}", m.version, actual))
    with prompt_errors():
        for p in release.content.prompts:
            actual_p = ws.prompts.aliases(p.name).get(PRODUCTION_ALIAS)
            if actual_p != p.version:
                drift.append(Drift(f"prompt {p.name}@{PRODUCTION_ALIAS}", p.version, actual_p))
    effects: list[SideEffect] = []
    if fix:
        from releaser.api.aliases import move_production_aliases

        now = utc_now()
        effects = move_production_aliases(ws, release)
        if state.active_rollout is None:
            # Mid-rollout the targets follow the rollout's own transitions instead.
            change = TrafficChange(
                service,
                "reconcile",
                "stable",
                state.stable,
                None,
                None,
                None,
                None,
                "reconcile",
                now,
            )
            effects += apply_targets(ws, change)
        _record_effects(ws, service, effects, now)
    return drift, effects
