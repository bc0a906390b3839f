"""Reading a live rollout: cumulative per-variant metrics, the analysis, ``rollout status``.

``advance`` decides from :func:`decide_step`; ``rollout status`` shows the same
figures and a preview of that decision without writing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releaser.api import journal, outbox
from releaser.api.context import utc_now
from releaser.api.endpoints import Endpoint, endpoints_of
from releaser.api.freeze import FreezeView, freeze_view
from releaser.api.metrics_source import NoEvidence, metrics_source
from releaser.api.state import ROLLOUT_KIND, ServiceState, rollout_record, state_record
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.effects import SideEffect
from releaser.core.stats_aggregates import VariantStats, latency_bin, latency_bin_bounds
from releaser.errors import ConfigError, ReleaserError

if TYPE_CHECKING:
    from releaser.config.deploy import EndpointRole

    # numpy and scipy load with the analysis: only advance and status need them.
    from releaser.core.analysis import Decision
    from releaser.core.guard import GuardCheck
    from releaser.core.stats_guardrails import Agreement
    from releaser.core.stats_state import AnalysisState

Metrics = Mapping[tuple[int, str], VariantStats]
"""A rollout's stored aggregates by (step, variant), as the store reads them."""

__all__ = [
    "StatusReport",
    "decide_step",
    "no_evidence_hold",
    "rollout_status",
    "shadow_agreement",
    "slow_threshold",
    "step_requests",
    "variant_totals",
]


def slow_threshold(ws: Workspace, service: str) -> float | None:
    """A histogram bin edge at or above the latency SLO, so slow counts are exact."""
    svc = ws.config.service(service)
    limit = svc.slos.latency_p95_ms or svc.rollout.guardrails.latency_p95_ms
    if limit is None:
        return None
    index = latency_bin(limit)
    lower, upper = latency_bin_bounds(index)
    return lower if lower >= limit else upper


def variant_totals(ws: Workspace, rollout: ro.Rollout) -> tuple[VariantStats, VariantStats]:
    """Cumulative baseline and candidate aggregates since the rollout began, slow counts
    included (requests over the latency SLO of releaser.yaml)."""
    return _with_slow_counts(_merged_totals(ws, rollout), slow_threshold(ws, rollout.service))


def _merged_totals(
    ws: Workspace, rollout: ro.Rollout, metrics: Metrics | None = None
) -> tuple[VariantStats, VariantStats]:
    """The stored per-step aggregates added up per variant (one store read).

    In a shadow step the candidate's quality scores are agreement scores, so they are left
    out of its quality: the candidate's errors and latency count, its answers' agreement
    is read by :func:`shadow_agreement`.
    """
    if metrics is None:
        metrics = ws.store.read_metrics(rollout.id)
    shadow_steps = {i for i, step in enumerate(rollout.steps) if step.shadow is not None}
    totals = {"baseline": VariantStats(), "candidate": VariantStats()}
    for (step, variant), stats in metrics.items():
        if variant in totals:
            if variant == "candidate" and step in shadow_steps:
                stats = stats.model_copy(
                    update={"quality_count": 0, "quality_sum": 0.0, "quality_sumsq": 0.0}
                )
            totals[variant] = totals[variant].merge(stats)
    return totals["baseline"], totals["candidate"]


def shadow_agreement(rollout: ro.Rollout, metrics: Metrics) -> Agreement | None:
    """The live shadow step's agreement scores and floor; None outside a shadow step."""
    from releaser.core.stats_guardrails import Agreement

    plan = rollout.current.shadow
    if plan is None:
        return None
    stats = metrics.get((rollout.step, "candidate"))
    return Agreement(
        compared=stats.quality_count if stats else 0,
        score_sum=stats.quality_sum if stats else 0.0,
        floor=plan.min_agreement,
    )


def _with_slow_counts(
    totals: tuple[VariantStats, VariantStats], threshold: float | None
) -> tuple[VariantStats, VariantStats]:
    if threshold is None:
        return totals
    baseline, candidate = (
        stats.model_copy(
            update={"slow_threshold_ms": threshold, "slow": stats.latency.count_above(threshold)}
        )
        for stats in totals
    )
    return baseline, candidate


def decide_step(
    ws: Workspace,
    state: ServiceState,
    rollout: ro.Rollout,
    now: str,
    *,
    totals: tuple[VariantStats, VariantStats] | None = None,
    agreement: Agreement | None = None,
    metrics: Metrics | None = None,
) -> Decision:
    """What the analysis would decide for the live step now (pure; nothing written).

    ``totals`` are the variants' :func:`variant_totals`, ``agreement`` the shadow
    step's :func:`shadow_agreement` and ``metrics`` the store's per-step aggregates, when
    the caller has them.
    """
    from releaser.core.analysis import decide
    from releaser.core.stats_guardrails import Guardrails
    from releaser.core.stats_state import AnalysisState

    analysis = AnalysisState.model_validate(state.analysis) if state.analysis else None
    if metrics is None:
        try:
            metrics = metrics_source(ws, rollout.service).read(rollout, now)
        except NoEvidence as exc:
            return no_evidence_hold(exc, analysis)
    if totals is None:
        totals = _with_slow_counts(
            _merged_totals(ws, rollout, metrics), slow_threshold(ws, rollout.service)
        )
        agreement = shadow_agreement(rollout, metrics)
    baseline, candidate = totals
    step = rollout.current
    guard = Guardrails(**rollout.guardrails) if rollout.guardrails else None
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
        agreement=agreement,
        step_requests=step_requests(rollout, metrics),
    )


def no_evidence_hold(exc: NoEvidence, analysis: AnalysisState | None) -> Decision:
    """Hold, saying why: the metrics source gave no evidence (the tests' state is kept)."""
    from releaser.core.analysis import Decision
    from releaser.core.stats_state import AnalysisState

    return Decision(
        action="hold",
        reasons=[f"no evidence, so no decision: {exc.message}"],
        tests=[],
        breaches=[],
        state=analysis or AnalysisState(),
    )


def step_requests(rollout: ro.Rollout, metrics: Metrics) -> tuple[int, int]:
    """The baseline's and the candidate's requests in the live step (``min_samples`` is
    per step: a step's evidence of its own cohort, not what earlier steps saw)."""
    base = metrics.get((rollout.step, "baseline"))
    cand = metrics.get((rollout.step, "candidate"))
    return (base.requests if base else 0, cand.requests if cand else 0)


@dataclass(frozen=True)
class StatusReport:
    """Everything ``rollout status`` shows."""

    state: ServiceState
    rollout: ro.Rollout | None
    baseline: VariantStats | None
    candidate: VariantStats | None
    preview: Decision | None
    in_step_s: float | None
    problems: tuple[str, ...] = ()
    """Why part of the report is missing (e.g. releaser.yaml does not validate)."""
    owed: tuple[SideEffect, ...] = ()
    """Side effects a committed change still owes (status ``planned``, with the command)."""
    endpoints: tuple[Endpoint, ...] | None = None
    """The endpoint serving each side (stable, candidate) when the gateway serves the
    service (its URL None when releaser.yaml names none); None when not known here."""
    agreement: Agreement | None = None
    """In a shadow step: the mirrored answers compared and their agreement."""
    freezes: FreezeView | None = None
    """Change freezes in force now, the windows configured and any manual freeze."""
    guard: GuardCheck | None = None
    """After a promotion, while the guard lasts: what it would say now, with its evidence."""
    now: str = ""
    notices: tuple[dict[str, Any], ...] = ()
    """Notifications a committed change still owes the webhooks (id, event, at,
    written_at, status): the next command on the service posts them late."""

    def to_dict(self) -> dict[str, Any]:
        """The documented ``rollout status --json`` shape."""

        prices = self._prices()

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
                "tokens": _token_figures(v, prices),
            }

        return {
            "service": self.state.service,
            "stable": self.state.stable,
            "known_good": self.state.known_good,
            "rollout": self.rollout.to_value() if self.rollout else None,
            "variants": {"baseline": stats(self.baseline), "candidate": stats(self.candidate)},
            "decision_preview": self.preview.model_dump(mode="json") if self.preview else None,
            "time_in_step_s": self.in_step_s,
            "last_rollback": self.state.last_rollback,
            "owed_effects": [e.__dict__ for e in self.owed],
            "owed_notices": list(self.notices),
            "endpoints": (
                None
                if self.endpoints is None
                else {e.role: {"release": e.release, "url": e.url} for e in self.endpoints}
            ),
            "shadow": self._shadow(),
            "guard": self._guard(),
            "problems": list(self.problems),
            "freezes": self.freezes.to_dict() if self.freezes else None,
        }

    def _guard(self) -> dict[str, Any] | None:
        """The post-promotion guard: its release, window, time left and evidence."""
        if self.guard is None:
            return None
        g = self.guard.state
        return {
            "release": g.release,
            "previous": g.previous,
            "rollout_id": g.rollout_id,
            "started_at": g.started_at,
            "ends_at": g.ends_at,
            "time_left_s": g.time_left_s(self.now) if self.now else None,
            "checks": g.batches,
            "verdict_preview": self.guard.verdict,
            "reasons": self.guard.reasons,
            "observed": self.guard.observed.model_dump(mode="json"),
            "evidence": self.guard.evidence,
        }

    def _prices(self) -> tuple[float, float] | None:
        """(input, output) prices per 1,000 tokens the rollout pinned, if any."""
        pinned = self.rollout.guardrails if self.rollout is not None else {}
        price_in, price_out = pinned.get("price_input_per_1k"), pinned.get("price_output_per_1k")
        return None if price_in is None or price_out is None else (price_in, price_out)

    def _shadow(self) -> dict[str, Any] | None:
        """The shadow step's figures: mirrored calls (the candidate's) and agreement."""
        if self.agreement is None or self.rollout is None:
            return None
        plan = self.rollout.current.shadow
        return {
            "percent": plan.percent if plan else None,
            "mirrored": self.candidate.requests if self.candidate else 0,
            "compared": self.agreement.compared,
            "agreement": self.agreement.rate,
            "min_agreement": self.agreement.floor,
        }


def _token_figures(v: VariantStats, prices: tuple[float, float] | None) -> dict[str, Any] | None:
    """A variant's token figures (None when no request reported tokens): requests counted,
    mean and p95 of total tokens per request, mean prompt and completion tokens, and the
    cost of 1,000 requests at the pinned prices (None without prices)."""
    n = v.token_requests
    if not n:
        return None
    return {
        "requests": n,
        "mean": v.tokens_mean,
        "p95": v.tokens.quantile(0.95),
        "prompt_mean": v.prompt_tokens / n,
        "completion_mean": v.completion_tokens / n,
        "cost_per_1k_requests": None if prices is None else v.cost_per_1k_requests(*prices),
    }


def rollout_status(ws: Workspace, service: str, *, now: str | None = None) -> StatusReport:
    """The service's stable release and, if a rollout is live, its metrics and tests (no writes)."""
    now = now or utc_now()
    state, _ = state_record(ws, service)
    owed = tuple(journal.planned(journal.owed(ws, service=service)))
    notices = tuple(outbox.owed(ws, service))
    frozen = freeze_view(ws, service, now)
    if state.active_rollout is None:
        last = None
        if state.rollouts:
            rec = ws.store.get(ROLLOUT_KIND, f"{service}-{state.rollouts}")
            last = ro.Rollout.model_validate(rec.value) if rec else None
        sides = _endpoints(ws, state, None)
        from releaser.api.guard import guard_preview

        try:
            guard = guard_preview(ws, state, now)
        except ConfigError as exc:  # releaser.yaml broken: the stored state still shows
            guard = None
            idle_problems: tuple[str, ...] = (
                f"releaser.yaml is invalid, so the post-promotion guard is not shown: "
                f"{exc.first()}",
            )
        else:
            idle_problems = ()
        return StatusReport(
            state,
            last,
            None,
            None,
            None,
            None,
            idle_problems,
            owed=owed,
            endpoints=sides,
            guard=guard,
            now=now,
            freezes=frozen,
            notices=notices,
        )
    rollout, _rec = rollout_record(ws, state.active_rollout)
    problems: tuple[str, ...] = ()
    missing: NoEvidence | None = None
    try:
        metrics = metrics_source(ws, service).read(rollout, now)
    except ConfigError:  # releaser.yaml broken: the stored counts still show
        metrics = ws.store.read_metrics(rollout.id)
    except NoEvidence as exc:
        missing, metrics = exc, {}
        problems = (f"no evidence from the metrics source: {exc.message}",)
    totals = _merged_totals(ws, rollout, metrics)
    agreement = shadow_agreement(rollout, metrics)
    try:
        threshold = slow_threshold(ws, service)
    except ConfigError as exc:
        # The stored figures still show; what needs releaser.yaml (the latency SLO for
        # slow counts, the decision preview) waits until the file validates again.
        problems += (f"releaser.yaml is invalid, so there is no decision preview: {exc.first()}",)
        baseline, candidate = totals
        preview = None
    else:
        baseline, candidate = _with_slow_counts(totals, threshold)
        from releaser.core.stats_state import AnalysisState

        running = rollout.status == "running"
        analysis = AnalysisState.model_validate(state.analysis) if state.analysis else None
        preview = (
            no_evidence_hold(missing, analysis)
            if running and missing is not None
            else decide_step(
                ws,
                state,
                rollout,
                now,
                totals=(baseline, candidate),
                agreement=agreement,
                metrics=metrics,
            )
            if running
            else None
        )
    return StatusReport(
        state,
        rollout,
        baseline,
        candidate,
        preview,
        ro.bake_elapsed_s(rollout, now),
        problems,
        owed,
        _endpoints(ws, state, rollout.candidate),
        agreement,
        frozen,
        notices=notices,
    )


def _endpoints(
    ws: Workspace, state: ServiceState, candidate: str | None
) -> tuple[Endpoint, ...] | None:
    """The endpoint of the stable and candidate releases, when the gateway serves the service."""
    if state.stable is None:
        return None
    sides: dict[str, EndpointRole] = {state.stable: "stable"}
    if candidate is not None:
        sides[candidate] = "candidate"
    first = state.known_good[0] if state.known_good else None
    try:
        found = endpoints_of(ws, state.service, sides, first=first, stable=state.stable)
    except ReleaserError:  # releaser.yaml broken or absent: the stored state still shows
        return None
    return None if found is None else tuple(found)
