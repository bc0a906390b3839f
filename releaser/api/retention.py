"""Retention: what ``releaser store prune`` may remove, and removing it in one audited commit.

The store keeps two things only for speed or for charts, and both grow with use:

- **gate predictions** (kind ``gate_predictions``, keyed ``<release>-<golden md5>-<tag>``):
  the cache that spares a re-gate predicting again, about 36 kB per 1,000 golden rows
  for every release gated. A release's predictions are kept while it is its service's
  stable release, known-good, in a live rollout, or among the service's latest
  ``keep_releases``, and for ``gate_predictions_days`` after they were written;
  the gate's report (its evidence) is a separate record and is never pruned;
- **latency histograms** of rollouts that ended ``rollout_histograms_days`` ago (when
  set), and with them their token histograms and their distinct-unit sketches (so
  ``explain cohort`` then shows their units as null, saying why): their request, error
  and quality counts stay;
- **route history** (kind ``route_history``): each version of a service's routing record,
  kept so ``releaser explain`` can replay a past assignment, is pruned
  ``route_history_days`` (default 400) after it stopped applying, that is after the next
  version's start; the version in force is always kept;
- **notification notices** (kind ``notice``) that were told or expired more than
  ``KEEP_DONE_DAYS`` (7) days ago: the outbox's record of what a transition owed the
  webhooks (:mod:`releaser.api.outbox`); their audit events stay. A notice still owed
  is never pruned.

Metric batch ids are already forgotten after a week by the store itself. Releases, gate
reports, rollouts and their decisions, approvals, alias history and the audit log are
never pruned: gates, explanations and audits read them.

A prune is one store transaction with compare-and-swap on each record it removes
and one ``store.prune`` audit event naming what went; a record written meanwhile is
not removed (the commit fails with StateConflict and nothing is removed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.api.outbox import KEEP_DONE_DAYS, prunable
from releaser.core.audit import EventDraft
from releaser.core.release import RELEASE_RECORD
from releaser.core.rollout import ROLLOUT_RECORD, SERVICE_RECORD
from releaser.store.base import Delete

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = ["PrunePlan", "plan_prune", "prune_store"]

PREDICTIONS_KIND = "gate_predictions"
# Left out of each listed prediction record by the database: only its age is needed.
_PREDICTION_BULK = ("values", "ok", "latency_ms", "errors")
_RELEASE_BULK = ("content.config",)


@dataclass(frozen=True)
class PrunePlan:
    """What a prune removes and why the rest stays."""

    at: str
    predictions: list[dict[str, Any]] = field(default_factory=list)
    histograms: list[dict[str, Any]] = field(default_factory=list)
    route_history: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    kept_predictions: int = 0
    kept_releases: dict[str, list[str]] = field(default_factory=dict)
    applied: bool = False
    audit_seq: int | None = None

    @property
    def empty(self) -> bool:
        """True when there is nothing to remove."""
        return (
            not self.predictions
            and not self.histograms
            and not self.route_history
            and not self.notices
        )

    def to_dict(self) -> dict[str, Any]:
        """The documented ``store prune --json`` shape."""
        return asdict(self)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _protected(ws: Workspace, keep_latest: int) -> dict[str, list[str]]:
    """Per service, the releases whose predictions stay whatever their age."""
    by_service: dict[str, list[tuple[str, str]]] = {}
    for rec in ws.store.list(RELEASE_RECORD, omit=_RELEASE_BULK):
        service = str(rec.value.get("content", {}).get("service", ""))
        by_service.setdefault(service, []).append((str(rec.value.get("created_at", "")), rec.key))
    protected: dict[str, list[str]] = {}
    for service, releases in by_service.items():
        latest = [rid for _, rid in sorted(releases)[-keep_latest:]]
        protected[service] = latest
    for rec in ws.store.list(SERVICE_RECORD):
        service = rec.key
        keep = protected.setdefault(service, [])
        state = rec.value
        for rid in [state.get("stable"), *state.get("known_good", [])]:
            if rid and rid not in keep:
                keep.append(str(rid))
        live = state.get("active_rollout")
        if live:
            rollout = ws.store.get(ROLLOUT_RECORD, str(live))
            if rollout is not None:
                for rid in (rollout.value.get("baseline"), rollout.value.get("candidate")):
                    if rid and rid not in keep:
                        keep.append(str(rid))
    return protected


def _old_routes(ws: Workspace, ended_before: datetime) -> list[dict[str, Any]]:
    """Route history entries whose successor started before ``ended_before``."""
    from releaser.api.routes import ROUTE_HISTORY_KIND

    doomed: list[dict[str, Any]] = []
    entries = ws.store.list(ROUTE_HISTORY_KIND, omit=("route",))
    for rec, after in zip(entries, entries[1:], strict=False):
        same = rec.value.get("service") == after.value.get("service")
        if same and _parse(str(after.value["from"])) < ended_before:
            doomed.append(
                {
                    "kind": ROUTE_HISTORY_KIND,
                    "key": rec.key,
                    "version": rec.version,
                    "service": rec.value.get("service"),
                    "until": after.value["from"],
                }
            )
    return doomed


def plan_prune(ws: Workspace, *, now: str | None = None) -> PrunePlan:
    """What the workspace's ``retention`` settings let a prune remove now (nothing is written)."""
    retention = ws.config.retention
    at = now or utc_now()
    moment = _parse(at)
    protected = _protected(ws, retention.keep_releases)
    keep_ids = {rid for ids in protected.values() for rid in ids}
    cutoff = moment - timedelta(days=retention.gate_predictions_days)
    doomed: list[dict[str, Any]] = []
    kept = 0
    for rec in ws.store.list(PREDICTIONS_KIND, omit=_PREDICTION_BULK):
        release_id = rec.key.split("-", 1)[0]
        if release_id in keep_ids or _parse(rec.updated_at) >= cutoff:
            kept += 1
            continue
        doomed.append(
            {
                "kind": PREDICTIONS_KIND,
                "key": rec.key,
                "version": rec.version,
                "release_id": release_id,
                "written_at": rec.updated_at,
            }
        )
    histograms: list[dict[str, Any]] = []
    if retention.rollout_histograms_days is not None:
        ended_before = moment - timedelta(days=retention.rollout_histograms_days)
        stats_of = ws.store.read_metrics
        for rec in ws.store.list(ROLLOUT_RECORD):
            ended = rec.value.get("ended_at")
            if not ended or _parse(str(ended)) >= ended_before:
                continue
            stored = stats_of(rec.key).values()
            if any(any(s.latency.counts) or any(s.tokens.counts) for s in stored) or (
                ws.store.read_units(rec.key)
            ):
                histograms.append({"rollout_id": rec.key, "ended_at": ended})
    told = prunable(ws, moment - timedelta(days=KEEP_DONE_DAYS))
    return PrunePlan(
        at=at,
        predictions=doomed,
        histograms=histograms,
        route_history=_old_routes(ws, moment - timedelta(days=retention.route_history_days)),
        notices=[
            {"kind": r.kind, "key": r.key, "version": r.version, "done_at": r.value["done_at"]}
            for r in told
        ],
        kept_predictions=kept,
        kept_releases={s: sorted(ids) for s, ids in sorted(protected.items())},
    )


def prune_store(ws: Workspace, *, now: str | None = None) -> PrunePlan:
    """Remove what :func:`plan_prune` finds, in one audited store transaction.

    Nothing is written when there is nothing to remove. StateConflict (nothing
    removed) when a record to remove was written meanwhile: run it again.
    """
    plan = plan_prune(ws, now=now)
    if plan.empty:
        return plan
    actor = current_actor()
    retention = ws.config.retention
    event = EventDraft(
        actor=actor.name,
        action="store.prune",
        subject="store",
        at=plan.at,
        after={
            "gate_predictions": [p["key"] for p in plan.predictions],
            "latency_histograms_of": [h["rollout_id"] for h in plan.histograms],
            "route_history": [r["key"] for r in plan.route_history],
            "notices": [n["key"] for n in plan.notices],
            "retention": retention.model_dump(mode="json"),
        },
        context=actor.context,
    )
    done = ws.store.prune(
        [
            Delete(p["kind"], p["key"], p["version"])
            for p in [*plan.predictions, *plan.route_history, *plan.notices]
        ],
        event,
        histograms_of=[h["rollout_id"] for h in plan.histograms],
    )
    return PrunePlan(
        at=plan.at,
        predictions=plan.predictions,
        histograms=plan.histograms,
        route_history=plan.route_history,
        notices=plan.notices,
        kept_predictions=plan.kept_predictions,
        kept_releases=plan.kept_releases,
        applied=True,
        audit_seq=done.seq,
    )
