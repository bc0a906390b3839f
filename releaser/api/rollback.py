"""One-command rollback, and reconcile: the simplest and most reliable path in the tool.

The traffic switch is one store commit (service record, rollout record and
routing record together, with compare-and-swap, plus the audit event) that
also writes the side effects it owes into the journal: the ``production``
aliases after a promotion, the deploy targets. It needs nothing but the
store: MLflow is not imported and not called before traffic is back. The
owed effects are applied after it, each idempotent and reported on its own;
one that fails, or a process killed before them, leaves them owed, and any
later ``rollback``, ``reconcile`` or rollout command on the service finishes
them. The plan and the switch's records are worked out in
:mod:`releaser.api.rollback_plan`, which the post-promotion guard shares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from releaser.api import journal, notify
from releaser.api.context import current_actor, utc_now
from releaser.api.journal import PRODUCTION_ALIAS
from releaser.api.releases import get_release
from releaser.api.rollback_plan import (
    RollbackPlan,
    plan_rollback,
    switch_of,
)
from releaser.api.rollout_commit import commit_switch, owed_by
from releaser.api.state import ServiceState
from releaser.api.state import state_record as _state_record
from releaser.api.state import traffic_change as _change
from releaser.api.workspace import Workspace
from releaser.core.audit import EventDraft
from releaser.core.effects import SideEffect
from releaser.core.release import GATE_RECORD, Release, gate_key
from releaser.errors import BadInput, NotFound

__all__ = [
    "Drift",
    "RollbackPlan",
    "RollbackResult",
    "plan_rollback",
    "reconcile",
    "rollback",
]


@dataclass(frozen=True)
class RollbackResult:
    """The plan carried out: whether traffic moved, and each side effect's outcome."""

    plan: RollbackPlan
    switched: bool
    dry_run: bool = False
    side_effects: list[SideEffect] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

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
            "warnings": self.warnings,
        }


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
    returns to the previous known-good release (or ``to``: a known-good release
    or one that passed its gate, unless ``force``). The switch and the
    side effects it owes are one commit; the effects are applied after it
    (unless ``side_effects`` is off: they stay owed). Running it again is
    harmless: the plan is ``already`` and nothing is switched, but whatever an
    earlier run still owes (killed, or a side effect failed) is finished.
    ``resume`` is accepted for the same and changes nothing more.
    """
    del resume  # a re-run always finishes what is owed
    if not reason.strip():
        raise BadInput("a reason is required", hint="pass --reason 'what went wrong'")
    plan = plan_rollback(ws, service, to=to)
    if plan.irreversible and not force and plan.kind != "already":
        raise BadInput(
            f"release {plan.from_release} is marked irreversible (e.g. it migrated data), "
            "so rolling it back may not restore the old behaviour",
            hint=f"pause instead ('releaser rollout pause {service}'), or pass --force",
        )
    if to is not None and plan.kind == "after-promotion" and not force:
        _may_return_to(ws, plan)
    now = now or utc_now()
    if dry_run:
        return RollbackResult(plan, False, True, _planned(ws, plan, reason, now))
    if plan.kind == "already":
        if not side_effects:
            return RollbackResult(plan, switched=False)
        effects = journal.settle(ws, service=service)
        late = notify.deliver_owed(ws, service)  # what a killed run did not tell
        return RollbackResult(plan, switched=False, side_effects=effects, warnings=late)
    sw = switch_of(ws, plan, reason, now)
    told_fields: dict[str, Any] = {
        "stable": plan.to_release,
        "rolled_back": plan.from_release,
        "kind": plan.kind,
        "reasons": [reason],
        "at": now,
    }
    # Traffic first; the notification it owes is written in the same commit.
    commit_switch(ws, sw, notice=told_fields, tell=side_effects)
    if not side_effects:  # nothing outside the store is touched (a drill's scratch copy)
        return RollbackResult(plan, switched=True)
    effects = journal.settle(ws, service=service)
    told = notify.after_change(
        ws, "rollback", service, rollout=sw.rollout, effects=effects, **told_fields
    )
    return RollbackResult(plan, switched=True, side_effects=effects, warnings=told)


def _may_return_to(ws: Workspace, plan: RollbackPlan) -> None:
    """Refuse ``--to`` a release that never served as stable and did not pass its gate."""
    state = _state_record(ws, plan.service)[0]
    target = plan.to_release
    if target in state.known_good:
        return
    gate = ws.store.get(GATE_RECORD, gate_key(plan.service, target))
    if gate is not None and gate.value.get("passed") is True:
        return
    why = "failed its eval gate" if gate is not None else "has not been through the eval gate"
    raise BadInput(
        f"release {target} never served {plan.service} as a known-good stable release and "
        f"{why}: rolling back to it would put an unproven release in front of everyone",
        hint="pick a known-good release ('releaser rollout status "
        f"{plan.service} --json' lists known_good), or pass --force with a --reason to "
        "return to it anyway (audited)",
    )


def _planned(ws: Workspace, plan: RollbackPlan, reason: str, now: str) -> list[SideEffect]:
    """Exactly the side effects the real run would apply: the switch's, then any owed."""
    owed = journal.owed(ws, service=plan.service)
    if plan.kind == "already":
        return journal.planned(owed)
    sw = switch_of(ws, plan, reason, now)
    change = _change(plan.service, "rollback", sw.stable, sw.rollout, sw.rolled_back, reason, now)
    intents = owed_by(ws, change, sw.aliases)
    rest = [r for r in owed if r.key not in intents.values]
    return [*intents.planned(), *journal.planned(rest)]


@dataclass(frozen=True)
class Drift:
    """An alias that does not point where the stable release says it should."""

    alias: str
    expected: int
    actual: int | None
    kind: Literal["model", "prompt"] = "model"
    name: str = ""
    override: bool = False
    """A prompt alias promoted on purpose over the release's pin (left where it is)."""


def _drift(ws: Workspace, release: Release) -> list[Drift]:
    """The production aliases of ``release`` that point elsewhere (reads MLflow and prompts)."""
    from releaser.api.prompts import prompt_errors

    drift: list[Drift] = []
    m = release.content.model
    if m is not None:
        actual = ws.models.get_alias(m.name, PRODUCTION_ALIAS)
        if actual != m.version:
            label = f"model {m.name}@{PRODUCTION_ALIAS}"
            drift.append(Drift(label, m.version, actual, "model", m.name))
    with prompt_errors():
        for p in release.content.prompts:
            actual_p = ws.prompts.aliases(p.name).get(PRODUCTION_ALIAS)
            if actual_p == p.version:
                continue
            rec = ws.store.get(journal.EFFECT_KIND, journal.prompt_key(p.name, PRODUCTION_ALIAS))
            override = (
                rec is not None
                and bool(rec.value.get("override"))
                and rec.value.get("version") == actual_p
            )
            label = f"prompt {p.name}@{PRODUCTION_ALIAS}"
            drift.append(Drift(label, p.version, actual_p, "prompt", p.name, override))
    return drift


def reconcile(
    ws: Workspace, service: str, *, fix: bool = True
) -> tuple[list[Drift], list[SideEffect]]:
    """Compare the production aliases with the stable release; move them back unless ``fix`` is off.

    Drift is an alias that does not point where the stable release says: moved
    outside releaser, or a move still owed. A prompt alias promoted on purpose
    over the release's pin (``prompt promote --override``) is reported as an
    override and left where it is. With ``fix``, what the journal owes is
    applied first, then any other drift is recorded (a ``reconcile`` event with
    each move) and moved back. Without it, the owed effects are returned as
    ``planned``.
    """
    state: ServiceState = _state_record(ws, service)[0]
    if state.stable is None:
        raise NotFound(f"{service} has no stable release yet; nothing to reconcile")
    release = get_release(ws, state.stable)
    if not fix:
        return _drift(ws, release), journal.planned(journal.owed(ws, service=service))
    effects = journal.settle(ws, service=service)
    notify.deliver_owed(ws, service)  # audited (reconcile reports aliases, not webhooks)
    drift = _drift(ws, release)
    moved = [d for d in drift if not d.override]
    if moved:
        now = utc_now()
        intents = journal.Intents()
        for d in moved:
            key = (journal.model_key if d.kind == "model" else journal.prompt_key)(
                d.name, PRODUCTION_ALIAS
            )
            intents.alias(
                d.kind,
                d.name,
                d.expected,
                ws.store.get(journal.EFFECT_KIND, key),
                d.actual,
                service=service,
                cause="reconcile",
                reason=f"reconcile: back to release {release.id}",
                at=now,
                extra={"release": release.id} if d.kind == "prompt" else None,
            )
        actor = current_actor()
        ws.store.commit(
            intents.writes,
            EventDraft(
                actor=actor.name,
                action="reconcile",
                subject=f"service:{service}",
                at=now,
                before={"drift": [d.__dict__ for d in moved]},
                after={"stable": release.id},
                reason="aliases found away from the stable release",
                context=actor.context,
            ),
            also=intents.events,
        )
        effects += journal.settle(ws, service=service)
    return drift, effects
