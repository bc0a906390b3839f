"""The rollout state machine: pure transitions over an immutable :class:`Rollout`.

States::

    running(step i) <-> paused(step i)
    running(step i) --advance--> running(step i+1) ... --advance at last step--> promoted
    running | paused --roll_back--> rolled_back
    running | paused --abort--> aborted
    running | paused --promote (forced)--> promoted
    promoted --undo_promotion (a rollback after it)--> rolled_back

``promoted``, ``rolled_back`` and ``aborted`` are final: no step is taken
after them. A rollback after a promotion is still recorded on the rollout
that promoted, so its history tells the whole story. Every function takes
``now`` (an ISO UTC string) from its caller and returns a new Rollout; an
illegal transition raises :class:`IllegalTransition` and changes nothing.
A rollout may begin with a shadow step (``StepPlan.shadow``, percent 0, no groups): the
candidate serves nobody and is judged on mirrored requests (:mod:`releaser.core.shadow`).
Cohorts are cumulative: a step reaches every group named by it *or any
earlier step*, and its percentage never falls, so widening never moves a
unit out of the candidate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from releaser.core.shadow import ShadowPlan
from releaser.errors import BadInput

__all__ = [
    "FINAL",
    "ROLLOUT_RECORD",
    "SERVICE_RECORD",
    "DecisionRecord",
    "IllegalTransition",
    "Rollout",
    "RolloutStatus",
    "StepPlan",
    "abort",
    "advance",
    "bake_elapsed_s",
    "pause",
    "promote",
    "resume",
    "roll_back",
    "start",
    "undo_promotion",
]

ROLLOUT_RECORD = "rollout"
"""The store kind under which rollouts are kept, by id."""
SERVICE_RECORD = "service"
"""The store kind of a service's state (stable release, live rollout), by service name."""

RolloutStatus = Literal["running", "paused", "promoted", "rolled_back", "aborted"]
FINAL: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class IllegalTransition(BadInput):
    """The rollout is not in a state that allows the requested transition."""


class StepPlan(BaseModel):
    """One step as frozen into a rollout at start (cumulative groups)."""

    model_config = _FROZEN

    name: str
    groups: list[str] = Field(default_factory=list)
    percent: float = Field(ge=0, le=100)
    bake_s: float = Field(ge=0)
    min_samples: int = Field(ge=0)
    shadow: ShadowPlan | None = Field(
        default=None, description="Set on a shadow step: the candidate serves no user."
    )


class DecisionRecord(BaseModel):
    """A decision taken on a rollout, kept on it for status and runbooks."""

    model_config = _FROZEN

    at: str
    step: int
    action: str
    reasons: list[str] = Field(default_factory=list)
    actor: str = ""


class Rollout(BaseModel):
    """A rollout of a candidate release over a baseline, step by step."""

    model_config = _FROZEN

    id: str
    service: str
    baseline: str | None
    candidate: str
    seed: int
    steps: list[StepPlan] = Field(min_length=1)
    step: int = 0
    status: RolloutStatus = "running"
    alpha: float = 0.01
    guardrails: dict[str, float] = Field(default_factory=dict)
    comparisons: list[str] = Field(default_factory=list)
    started_at: str
    step_started_at: str
    paused_at: str | None = None
    paused_s_in_step: float = 0.0
    ended_at: str | None = None
    decisions: list[DecisionRecord] = Field(default_factory=list)
    forced: bool = False

    @property
    def current(self) -> StepPlan:
        """The live step."""
        return self.steps[self.step]

    @property
    def final(self) -> bool:
        """True once promoted, rolled back or aborted."""
        return self.status in FINAL

    def to_value(self) -> dict[str, Any]:
        """The JSON value stored under ``rollout/<id>``."""
        return self.model_dump(mode="json")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds(a: str, b: str) -> float:
    return max(0.0, (_ts(b) - _ts(a)).total_seconds())


def cumulative_steps(steps: list[StepPlan]) -> list[StepPlan]:
    """Steps whose groups include every earlier step's groups (order kept)."""
    out: list[StepPlan] = []
    seen: list[str] = []
    for s in steps:
        for g in s.groups:
            if g not in seen:
                seen.append(g)
        out.append(s.model_copy(update={"groups": list(seen)}))
    return out


def start(
    *,
    rollout_id: str,
    service: str,
    baseline: str | None,
    candidate: str,
    seed: int,
    steps: list[StepPlan],
    now: str,
    alpha: float = 0.01,
    guardrails: dict[str, float] | None = None,
    comparisons: list[str] | None = None,
    actor: str = "",
) -> Rollout:
    """A new rollout at its first step."""
    if baseline == candidate:
        raise BadInput(
            f"release {candidate} is already the stable release of {service}",
            hint="create a new release with 'releaser release create' and roll that out",
        )
    shadows = [i for i, s in enumerate(steps) if s.shadow is not None]
    if shadows and (shadows != [0] or steps[0].percent or steps[0].groups or len(steps) < 2):
        raise BadInput(
            "only the first step may be a shadow step, with percent 0 and no groups, "
            "and a real step must follow it",
            hint="a shadow step serves no user: the candidate only answers mirrored requests",
        )
    percents = [s.percent for s in steps]
    if any(b < a for a, b in zip(percents, percents[1:], strict=False)):
        raise BadInput("step percentages must not decrease", hint=f"got {percents}")
    return Rollout(
        id=rollout_id,
        service=service,
        baseline=baseline,
        candidate=candidate,
        seed=seed,
        steps=cumulative_steps(steps),
        alpha=alpha,
        guardrails=dict(guardrails or {}),
        comparisons=list(comparisons or []),
        started_at=now,
        step_started_at=now,
        decisions=[DecisionRecord(at=now, step=0, action="start", actor=actor)],
    )


def _need(r: Rollout, allowed: set[str], what: str) -> None:
    if r.status not in allowed:
        hint = {
            "promoted": "it has been promoted; start a new rollout, or 'releaser rollback'",
            "rolled_back": "it was rolled back; fix the candidate and start a new rollout",
            "aborted": "it was aborted; start a new rollout",
            "paused": "resume it first with 'releaser rollout resume'",
            "running": "it is running",
        }.get(r.status)
        raise IllegalTransition(f"cannot {what} rollout {r.id}: it is {r.status}", hint=hint)


def bake_elapsed_s(r: Rollout, now: str) -> float:
    """Seconds the current step has been running, pauses excluded."""
    end = r.paused_at if r.status == "paused" and r.paused_at else now
    return max(0.0, _seconds(r.step_started_at, end) - r.paused_s_in_step)


def _decide(
    r: Rollout, now: str, action: str, reasons: list[str], actor: str
) -> list[DecisionRecord]:
    return [
        *r.decisions,
        DecisionRecord(at=now, step=r.step, action=action, reasons=reasons, actor=actor),
    ]


def advance(r: Rollout, *, now: str, reasons: list[str] | None = None, actor: str = "") -> Rollout:
    """Move to the next step, or promote after the last one."""
    _need(r, {"running"}, "advance")
    reasons = list(reasons or [])
    if r.step + 1 >= len(r.steps):
        return r.model_copy(
            update={
                "status": "promoted",
                "ended_at": now,
                "decisions": _decide(r, now, "promote", reasons, actor),
            }
        )
    return r.model_copy(
        update={
            "step": r.step + 1,
            "step_started_at": now,
            "paused_s_in_step": 0.0,
            "decisions": _decide(r, now, "advance", reasons, actor),
        }
    )


def pause(r: Rollout, *, now: str, reason: str = "", actor: str = "") -> Rollout:
    """Hold the current step: traffic stays as it is and ``advance`` waits."""
    _need(r, {"running"}, "pause")
    return r.model_copy(
        update={
            "status": "paused",
            "paused_at": now,
            "decisions": _decide(r, now, "pause", [reason] if reason else [], actor),
        }
    )


def resume(r: Rollout, *, now: str, reason: str = "", actor: str = "") -> Rollout:
    """Continue a paused step; paused time does not count as bake time."""
    _need(r, {"paused"}, "resume")
    paused_for = _seconds(r.paused_at or now, now)
    return r.model_copy(
        update={
            "status": "running",
            "paused_at": None,
            "paused_s_in_step": r.paused_s_in_step + paused_for,
            "decisions": _decide(r, now, "resume", [reason] if reason else [], actor),
        }
    )


def roll_back(r: Rollout, *, now: str, reasons: list[str], actor: str = "") -> Rollout:
    """End the rollout sending all traffic back to the baseline."""
    _need(r, {"running", "paused"}, "roll back")
    return r.model_copy(
        update={
            "status": "rolled_back",
            "ended_at": now,
            "paused_at": None,
            "decisions": _decide(r, now, "rollback", reasons, actor),
        }
    )


def abort(r: Rollout, *, now: str, reason: str, actor: str = "") -> Rollout:
    """End the rollout without a verdict; traffic returns to the baseline."""
    _need(r, {"running", "paused"}, "abort")
    return r.model_copy(
        update={
            "status": "aborted",
            "ended_at": now,
            "paused_at": None,
            "decisions": _decide(r, now, "abort", [reason], actor),
        }
    )


def promote(r: Rollout, *, now: str, reason: str, actor: str = "") -> Rollout:
    """Promote at once, skipping remaining steps (a forced, audited decision)."""
    _need(r, {"running", "paused"}, "promote")
    return r.model_copy(
        update={
            "status": "promoted",
            "ended_at": now,
            "paused_at": None,
            "forced": True,
            "decisions": _decide(r, now, "promote-forced", [reason], actor),
        }
    )


def undo_promotion(r: Rollout, *, now: str, reasons: list[str], actor: str = "") -> Rollout:
    """Record that the release this rollout promoted was rolled back after the promotion."""
    _need(r, {"promoted"}, "record a rollback after the promotion of")
    return r.model_copy(
        update={"status": "rolled_back", "decisions": _decide(r, now, "rollback", reasons, actor)}
    )
