"""The post-promotion guard as a use case: start it at promotion, judge it on ``advance``.

A promotion writes, in its one commit, the guard's state into the service record (the
rule and its references: :mod:`releaser.core.guard`) and its metrics key into the routing
record, so routers and the gateway keep counting the new stable release under
``<rollout id>.guard``. While the window lasts, ``rollout advance`` (and the scheduled
``advance --if-live``) judges the counts since the last check. A service whose
``metrics.source`` is Prometheus is judged on Prometheus' counts instead: the stable
release's counter increases since the last check (:func:`guard_counts`). No evidence
(Prometheus down, no series of the release) is no check: a hold with the reason, nothing
written, never a rollback.

- no breach: one write of the guard's new state with a ``guard.check`` audit event (none
  between two checks: a re-run in the same interval writes nothing);
- a confirmed breach: the same one-commit rollback as ``releaser rollback`` after a
  promotion (:mod:`releaser.api.rollback`), audited as ``guard.rollback`` with the
  evidence, its side effects owed through the journal. A re-run after a kill converges:
  before the commit it judges the same counts again; after it there is no guard left and
  what the rollback owes is finished;
- the window over: one ``guard.end`` write clears the guard and the routing record's key;
  ``advance --if-live`` then says ``idle``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from releaser.api import journal
from releaser.api.context import current_actor
from releaser.api.metrics_source import NoEvidence, PrometheusMetricsSource, metrics_source
from releaser.api.rollback_plan import TrafficSwitch, plan_rollback, switch_of
from releaser.api.routes import build_route, route_write
from releaser.api.state import SERVICE_KIND, ServiceState, rollout_record, state_record
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.audit import EventDraft
from releaser.core.effects import SideEffect
from releaser.core.guard import GuardCheck, GuardCounts, GuardState, guard_metrics_id, observe
from releaser.core.guard import start_guard as _start
from releaser.core.release import Release
from releaser.core.stats_aggregates import VariantStats, latency_bin, latency_bin_bounds
from releaser.store.base import Write

__all__ = [
    "GuardJudgement",
    "guard_counts",
    "guard_for_promotion",
    "guard_preview",
    "judge_guard",
]

if TYPE_CHECKING:
    from releaser.core.analysis import Decision  # numpy and scipy: loaded when judged

_SLOW_SHARE = 0.05
"""A p95 latency SLO allows 5% of requests above it."""


def _slow_threshold(slos: dict[str, Any], guardrails: dict[str, Any]) -> float | None:
    """The histogram edge at or above the pinned latency SLO (as the rollout counts slow)."""
    limit = slos.get("latency_p95_ms") or guardrails.get("latency_p95_ms")
    if limit is None:
        return None
    lower, upper = latency_bin_bounds(latency_bin(float(limit)))
    return float(lower if lower >= limit else upper)


def _slo_rates(slos: dict[str, Any]) -> dict[str, float]:
    """The SLO limits the guard holds the release to, as rates."""
    limits = [float(slos["error_rate"])] if slos.get("error_rate") is not None else []
    if slos.get("availability") is not None:
        limits.append(1.0 - float(slos["availability"]))
    rates = {"error_rate": min(limits)} if limits else {}
    if slos.get("latency_p95_ms") is not None:
        rates["slow_rate"] = _SLOW_SHARE
    return rates


def _counts(stats: VariantStats | None, threshold: float | None) -> GuardCounts:
    if stats is None:
        return GuardCounts()
    slow = stats.latency.count_above(threshold) if threshold is not None else 0
    return GuardCounts(requests=stats.requests, errors=stats.errors, slow=slow)


def _unix(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


def guard_for_promotion(
    ws: Workspace, old: ro.Rollout, release: Release, now: str
) -> GuardState | None:
    """The guard a promotion of ``release`` (ending rollout ``old``) starts; None when off.

    Its rule is the one the release pinned (``rollout.guard``), its references the pinned
    SLOs and the previous stable release's counts during ``old``, read from the service's
    metrics source as the rollout's analysis read them (unknown when it gives none).
    """
    from releaser.config.service import RolloutPlan

    if old.baseline is None:
        return None
    config = release.content.config
    plan = RolloutPlan.model_validate(config.get("rollout", {})).guard
    if plan.window_hours <= 0:
        return None
    slos = dict(config.get("slos") or {})
    threshold = _slow_threshold(slos, dict(config.get("rollout", {}).get("guardrails") or {}))
    baseline = VariantStats()
    try:
        # The rollout's evidence, from where the analysis read it (store or Prometheus).
        metrics = metrics_source(ws, old.service).read(old, now)
    except NoEvidence:
        metrics = {}  # the previous release's numbers unknown: the SLOs are the references
    for (_step, variant), stats in metrics.items():
        if variant == "baseline":
            baseline = baseline.merge(stats)
    previous = _counts(baseline, threshold)
    return _start(
        rollout_id=old.id,
        release=release.id,
        previous=old.baseline,
        now=now,
        window_s=plan.window_hours * 3600.0,
        check_s=plan.check_minutes * 60.0,
        alpha=plan.alpha,
        slo_rates=_slo_rates(slos),
        previous_counts=previous if previous.requests else None,
        slow_threshold_ms=threshold,
    )


def guard_counts(ws: Workspace, service: str, guard: GuardState, now: str) -> GuardCounts:
    """The guarded release's cumulative counts since its promotion, from the service's
    metrics source; raises :class:`NoEvidence` when Prometheus gives none.

    The store: what routers and the gateway counted under ``<rollout id>.guard``.
    Prometheus: the counts of the last check plus the release's counter increases since
    it (``last_at`` to ``now``, per release label, resets handled); once the window is
    over nothing is read, as the guard only ends then.
    """
    source = metrics_source(ws, service)
    # The store keeps one running total per guard; Prometheus answers for a time window.
    # Both come out as the cumulative counts the rule (observe) takes.
    if isinstance(source, PrometheusMetricsSource):
        if guard.time_left_s(now) <= 0:
            return guard.last
        since = source.read_release(guard.release, _unix(guard.last_at), _unix(now))
        more = _counts(since, guard.slow_threshold_ms)
        return GuardCounts(
            requests=guard.last.requests + more.requests,
            errors=guard.last.errors + more.errors,
            slow=guard.last.slow + more.slow,
        )
    metrics = ws.store.read_metrics(guard_metrics_id(guard.rollout_id))
    return _counts(metrics.get((0, "candidate")), guard.slow_threshold_ms)


def _look(ws: Workspace, service: str, guard: GuardState, now: str) -> GuardCheck:
    """The rule over the source's counts; with no evidence, no check this time (a reason)."""
    try:
        counts = guard_counts(ws, service, guard, now)
    except NoEvidence as exc:
        # Missing data is never a breach, nor a healthy batch: the state stays as it was,
        # and the next look reads from the same last check on.
        return GuardCheck(
            verdict="waiting" if guard.batches == 0 else "watching",
            state=guard,
            observed=guard.last,
            evidence=[],
            reasons=[f"no evidence, so no guard check this time: {exc.message}"],
        )
    return observe(guard, counts, now)


def guard_preview(ws: Workspace, state: ServiceState, now: str) -> GuardCheck | None:
    """What the guard would say now (nothing written); None when no guard is on."""
    if state.guard is None:
        return None
    return _look(ws, state.service, state.guard, now)


@dataclass(frozen=True)
class GuardJudgement:
    """One look at the live guard, and the rollback it calls for (committed by the caller)."""

    check: GuardCheck
    rollout: ro.Rollout
    """The rollout that promoted the guarded release."""
    switch: TrafficSwitch | None = None
    """On a confirmed breach: the rollback's traffic switch, not yet committed."""
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    side_effects: list[SideEffect] = field(default_factory=list)

    def decision(self) -> Decision:
        """The look as ``advance`` reports a decision: ``rollback`` on a breach, else ``hold``."""
        from releaser.core.analysis import Decision
        from releaser.core.stats_state import AnalysisState

        return Decision(
            action="rollback" if self.switch is not None else "hold",
            reasons=self.check.reasons,
            tests=[],
            breaches=[],
            state=AnalysisState(),
        )


def judge_guard(ws: Workspace, service: str, *, now: str) -> GuardJudgement | None:
    """Judge the live guard once; None when there is none, or it just ended (``idle``).

    A look with no breach is written here (the guard's new state); a confirmed breach
    comes back with the rollback's switch for ``advance`` to commit in one write.
    """
    state, version = state_record(ws, service)
    guard = state.guard
    if guard is None or state.active_rollout is not None:
        return None
    check = _look(ws, service, guard, now)
    actor = current_actor()
    subject = f"rollout:{guard.rollout_id}"
    evidence: dict[str, Any] = {
        "verdict": check.verdict,
        "reasons": check.reasons,
        "release": guard.release,
        "previous": guard.previous,
        "ends_at": guard.ends_at,
        "batches": check.state.batches,
        "evidence": check.evidence,
    }
    if check.verdict == "ended":
        ended = state.model_copy(update={"guard": None})
        route = build_route(ws, service, state.stable, None, now)
        ws.store.commit(
            [
                Write(SERVICE_KIND, service, ended.model_dump(mode="json"), version),
                route_write(ws, route),
            ],
            EventDraft(
                actor=actor.name,
                action="guard.end",
                subject=subject,
                at=now,
                after=evidence,
                reason=check.reasons[0],
                context=actor.context,
            ),
        )
        journal.settle(ws, service=service)
        return None
    rollout = rollout_record(ws, guard.rollout_id)[0]
    if check.verdict == "breach":
        plan = plan_rollback(ws, service, to=guard.previous)
        if not plan.irreversible:
            reason = "guard: " + "; ".join(check.reasons)
            switch = switch_of(ws, plan, reason, now)
            return GuardJudgement(check, rollout, switch, reason, evidence)
        check = check.model_copy(
            update={
                "reasons": [
                    *check.reasons,
                    f"release {guard.release} is marked irreversible: not rolled back "
                    f"automatically; 'releaser rollback {service} --force --reason ...' does",
                ]
            }
        )
    if check.state != guard:
        ws.store.commit(
            [
                Write(
                    SERVICE_KIND,
                    service,
                    state.model_copy(update={"guard": check.state}).model_dump(mode="json"),
                    version,
                )
            ],
            EventDraft(
                actor=actor.name,
                action="guard.check",
                subject=subject,
                at=now,
                after=evidence,
                reason="; ".join(check.reasons),
                context=actor.context,
            ),
        )
    effects = journal.settle(ws, service=service)
    return GuardJudgement(check, rollout, evidence=evidence, side_effects=effects)
