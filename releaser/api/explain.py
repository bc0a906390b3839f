"""Which release a unit got at a time, and why; and how many requests each release served.

:func:`explain_unit` replays the bucketing against the route history (kept by
:func:`releaser.api.routes.route_writes`, one entry per version of the service's
routing record, in the same commit as the change): it finds the version in force at
the time asked, compiles it exactly as routers do
(:func:`releaser.router.snapshot.compile_route`) for the verdict, and gives the reason
from the core's bucketing: the named group the unit matched (by allow-list or
attribute rule) or its bucket against the step's percentage.

:func:`cohort_export` lists, per route period in a window, the cohort, the requests each
release served and the **distinct units** it served, in all and per cohort group. Routers
aggregate requests per (rollout, step, variant) and units as a HyperLogLog sketch per
(rollout, step, variant, group) (:mod:`releaser.core.unit_sketch`: estimates within 1.625 %
relative standard error; a few units exactly, or one fewer when two share a register; no
unit id is ever stored). A release's units are its groups' sketches merged, so a unit counts
once however many requests it made. A step's counts cover the whole step (they carry no time
within it). Periods with no rollout live are not counted at all (routers count only baseline
and candidate requests). Units are null, with the reason in ``units_note``, when the
service's metrics come from Prometheus (its series carry no unit ids) or no router recorded
a unit id in the step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from releaser.api.context import utc_now
from releaser.api.routes import ROUTE_HISTORY_KIND
from releaser.api.workspace import Workspace
from releaser.core.bucketing import BUCKETS, GroupRule, bucket
from releaser.core.freeze import format_utc, parse_instant
from releaser.core.routing import ROUTE_KIND, ServiceRoute
from releaser.core.unit_sketch import RELATIVE_ERROR, UnitSketch
from releaser.errors import BadInput, NotFound, ReleaserError

if TYPE_CHECKING:
    from releaser.router.snapshot import Assignment

__all__ = [
    "MAX_ATTRIBUTES",
    "MAX_UNIT_CHARS",
    "CohortExport",
    "CohortRow",
    "Explanation",
    "RoutePeriod",
    "cohort_export",
    "explain_unit",
    "explain_units",
    "route_periods",
]

MAX_UNIT_CHARS = 1_000
"""Longest unit id ``explain`` accepts."""
MAX_ATTRIBUTES = 64
"""Most attributes ``explain`` accepts (each key and value up to MAX_UNIT_CHARS)."""


@dataclass(frozen=True)
class RoutePeriod:
    """One version of a service's routing record and the time it applied."""

    version: int
    start: datetime
    end: datetime | None
    route: ServiceRoute


@dataclass(frozen=True)
class Explanation:
    """Which release ``unit_id`` got at ``at``, and why (the ``explain --json`` shape)."""

    service: str
    unit_id: str
    at: str
    release_id: str | None
    variant: str
    reason: str
    rollout_id: str | None = None
    step: int | None = None
    step_name: str | None = None
    matched_group: dict[str, Any] | None = None
    bucket: int | None = None
    threshold: int | None = None
    percent: float | None = None
    seed: int | None = None
    route_version: int = 0
    route_from: str = ""
    route_until: str | None = None
    history_from: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``explain --json`` shape."""
        return asdict(self)


def _check_unit(unit_id: str, attributes: Mapping[str, str]) -> None:
    if not unit_id or len(unit_id) > MAX_UNIT_CHARS:
        raise BadInput(
            f"the unit id must be 1 to {MAX_UNIT_CHARS} characters, not {len(unit_id)}",
            hint="give the id the service routes on (a user or session id)",
        )
    if len(attributes) > MAX_ATTRIBUTES:
        raise BadInput(
            f"{len(attributes)} attributes given, more than {MAX_ATTRIBUTES}",
            hint="give only the attributes the service's groups test",
        )
    for key, value in attributes.items():
        if len(key) > MAX_UNIT_CHARS or len(value) > MAX_UNIT_CHARS:
            raise BadInput(
                f"attribute {key[:40]!r} is longer than {MAX_UNIT_CHARS} characters",
                hint="give the attribute as the service sent it to the router",
            )


def route_periods(ws: Workspace, service: str) -> list[RoutePeriod]:
    """Every kept version of ``service``'s routing record, oldest first, with its period.

    A store written before route history was kept has only the record in force: it is
    returned alone, from the time it was written.
    """
    entries = ws.store.list(ROUTE_HISTORY_KIND, prefix=f"{service}/")
    found = [
        (int(e.value["version"]), parse_instant(str(e.value["from"])), e.value["route"])
        for e in entries
    ]
    if not found:
        rec = ws.store.get(ROUTE_KIND, service)
        if rec is None:
            return []
        route = ServiceRoute.model_validate(rec.value)
        found = [(rec.version, parse_instant(route.updated_at or rec.updated_at), rec.value)]
    found.sort(key=lambda item: item[0])
    periods: list[RoutePeriod] = []
    for i, (version, start, value) in enumerate(found):
        end = found[i + 1][1] if i + 1 < len(found) else None
        periods.append(RoutePeriod(version, start, end, ServiceRoute.model_validate(value)))
    return periods


def _period_at(periods: list[RoutePeriod], moment: datetime, service: str) -> RoutePeriod:
    chosen = None
    for period in periods:  # several versions may share a start: the latest one applied
        if period.start <= moment:
            chosen = period
    if chosen is None:
        if not periods:
            raise NotFound(
                f"the state store has no route of {service!r}",
                hint="a service gets a route with its first 'releaser rollout start'",
            )
        raise NotFound(
            f"no route of {service} is known at {format_utc(moment)}: its route history "
            f"starts at {format_utc(periods[0].start)}",
            hint="retention.route_history_days in releaser.yaml says how long it is kept",
        )
    return chosen


def _group_rules(route: ServiceRoute) -> dict[str, GroupRule]:
    """The cohort's groups compiled, in name order (the order routers test them in)."""
    return {n: route.group_defs[n].compile() for n in sorted(route.groups) if n in route.group_defs}


def _why(
    route: ServiceRoute, rules: dict[str, GroupRule], unit_id: str, attributes: Mapping[str, str]
) -> dict[str, Any]:
    """The core's account of the assignment: a matched group, else the bucket."""
    # Allow-lists of every cohort group first, then rules: as
    # releaser.core.bucketing.cohort_matcher tests them.
    names = list(rules)
    for name in names:
        if name in rules and unit_id in rules[name].allow:
            return {"group": {"name": name, "by": "allow-list"}}
    for name in names:
        group = rules.get(name)
        if group is not None and group.rules and group.contains(unit_id, attributes):
            shown = [list(r) for r in route.group_defs[name].rules]
            how = route.group_defs[name].rules_match
            return {"group": {"name": name, "by": "rules", "rules": shown, "match": how}}
    threshold = route.cohort().threshold
    try:
        number = bucket(route.seed, unit_id)
    except BadInput:
        return {"bucket": None, "threshold": threshold}
    return {"bucket": number, "threshold": threshold}


def explain_unit(
    ws: Workspace,
    service: str,
    unit_id: str,
    *,
    at: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Explanation:
    """Which release ``unit_id`` got for ``service`` at ``at`` (default now), and why."""
    return explain_units(ws, service, [(unit_id, dict(attributes or {}))], at=at)[0]


def explain_units(
    ws: Workspace,
    service: str,
    units: Sequence[tuple[str, Mapping[str, str]]],
    *,
    at: str | None = None,
) -> list[Explanation]:
    """:func:`explain_unit` for many (unit id, attributes) at one time: one store read."""
    from releaser.router.snapshot import compile_route

    for unit_id, attrs in units:
        _check_unit(unit_id, attrs)
    moment = parse_instant(at or utc_now())
    periods = route_periods(ws, service)
    period = _period_at(periods, moment, service)
    decide = compile_route(period.route, period.version).decide
    base: dict[str, Any] = {
        "service": service,
        "at": format_utc(moment),
        "route_version": period.version,
        "route_from": format_utc(period.start),
        "route_until": format_utc(period.end) if period.end else None,
        "history_from": format_utc(periods[0].start),
    }
    rules = _group_rules(period.route)
    return [_explain(period.route, rules, decide(u, a), u, a, base) for u, a in units]


def _explain(
    route: ServiceRoute,
    rules: dict[str, GroupRule],
    got: Assignment,
    unit_id: str,
    attrs: Mapping[str, str],
    base: dict[str, Any],
) -> Explanation:
    common = {**base, "unit_id": unit_id, "release_id": got.release_id, "variant": got.variant}
    if route.candidate is None:
        reason = f"no rollout was live: every unit got the stable release {route.stable}"
        return Explanation(**common, reason=reason)
    why = _why(route, rules, unit_id, attrs)
    notes: list[str] = []
    group = why.get("group")
    number, threshold = why.get("bucket"), why.get("threshold")
    if group is not None:
        reason = f"in group {group['name']!r} ({group['by']}) of step {route.step_name!r}"
    elif number is None:
        reason = "the unit id cannot be hashed (not valid Unicode): routers give the baseline"
    else:
        inside = "<" if number < (threshold or 0) else ">="
        reason = (
            f"bucket {number} of {BUCKETS} {inside} {threshold} "
            f"(step {route.step_name!r} takes {route.percent:g}% of units outside its groups)"
        )
    if route.paused:
        notes.append("the rollout was paused: the cohort kept what it had")
    if route.shadow is not None:
        notes.append("a shadow step: the candidate answered mirrored requests only")
    if route.groups and not attrs:
        notes.append(
            "no attributes were given: a unit in a group by attribute rules shows here as "
            "outside it (pass --attr as the service sent them)"
        )
    return Explanation(
        **common,
        reason=f"{got.variant} {got.release_id}: {reason}",
        rollout_id=route.rollout_id,
        step=route.step,
        step_name=route.step_name,
        matched_group=group,
        bucket=number,
        threshold=threshold,
        percent=route.percent,
        seed=route.seed,
        notes=notes,
    )


@dataclass(frozen=True)
class CohortRow:
    """One route period in the window: who got what, and the requests each side served."""

    start: str
    end: str | None
    stable: str | None
    candidate: str | None
    rollout_id: str | None
    step: int | None
    step_name: str | None
    groups: list[str]
    percent: float
    baseline_requests: int | None
    candidate_requests: int | None
    baseline_units: int | None = None
    """Distinct units the stable release served in the step (a sketch's estimate)."""
    candidate_units: int | None = None
    """Distinct units the candidate served in the step (a sketch's estimate)."""
    candidate_units_by_group: dict[str, int] | None = None
    """The candidate's distinct units per cohort group it matched (``(percent)``: by bucket)."""
    units_note: str | None = None
    """Why the units are null, or what they leave out (requests recorded without a unit id)."""


@dataclass(frozen=True)
class CohortExport:
    """Requests each release served per route period (the ``explain cohort --json`` shape)."""

    service: str
    start: str
    end: str
    counted: str
    rows: list[CohortRow]

    def to_dict(self) -> dict[str, Any]:
        """The documented ``explain cohort --json`` shape."""
        return asdict(self)


COUNTED = (
    "requests, and distinct units, per rollout step and variant, over the whole step (a "
    "step's counts carry no time within it); units are HyperLogLog estimates (relative "
    f"standard error {RELATIVE_ERROR:.3%}; a few units exactly, or one fewer when two "
    "share a register; no unit id is stored), "
    "per release and per cohort group ('(percent)': the units the step's percentage "
    "decided); periods with no rollout live are not counted (null)"
)
PROMETHEUS_UNITS = (
    "the service's metrics come from Prometheus, whose series carry no unit ids: "
    "distinct units are not counted"
)
NO_UNITS = (
    "no unit sketch for this step: no router recorded a unit id (record(..., unit_id=...)), "
    "or 'store prune' removed it with the rollout's histograms"
)


def cohort_export(ws: Workspace, service: str, start: str, end: str) -> CohortExport:
    """Each route period of ``service`` overlapping [start, end) and the requests served.

    Consecutive periods of the same rollout step (a pause and a resume) are one row.
    """
    lo, hi = parse_instant(start), parse_instant(end)
    if hi <= lo:
        raise BadInput(
            f"--to {format_utc(hi)} is not after --from {format_utc(lo)}",
            hint="give a window that ends after it starts",
        )
    merged: list[tuple[datetime, datetime | None, ServiceRoute]] = []
    for period in route_periods(ws, service):
        route = period.route
        last = merged[-1] if merged else None
        live = route.candidate is not None
        if (
            last is not None
            and live
            and (last[2].rollout_id, last[2].step) == (route.rollout_id, route.step)
        ):
            merged[-1] = (last[0], period.end, route)
        else:
            merged.append((period.start, period.end, route))
    metrics: dict[str, Any] = {}
    units: dict[str, Any] = {}
    from_prometheus = _from_prometheus(ws, service)
    rows: list[CohortRow] = []
    for begin, finish, route in merged:
        if begin >= hi or (finish is not None and finish <= lo):
            continue
        counts: tuple[int | None, int | None] = (None, None)
        unit_fields: dict[str, Any] = {}
        if route.rollout_id is not None and route.step is not None:
            if route.rollout_id not in metrics:
                metrics[route.rollout_id] = ws.store.read_metrics(route.rollout_id)
                if not from_prometheus:
                    units[route.rollout_id] = ws.store.read_units(route.rollout_id)
            stats = metrics[route.rollout_id]
            base, cand = stats.get((route.step, "baseline")), stats.get((route.step, "candidate"))
            counts = (base.requests if base else 0, cand.requests if cand else 0)
            if from_prometheus:
                unit_fields = {"units_note": PROMETHEUS_UNITS}
            else:
                unit_fields = _unit_fields(units[route.rollout_id], route.step, counts)
        rows.append(
            CohortRow(
                start=format_utc(begin),
                end=format_utc(finish) if finish else None,
                stable=route.stable,
                candidate=route.candidate,
                rollout_id=route.rollout_id,
                step=route.step,
                step_name=route.step_name,
                groups=sorted(route.groups),
                percent=route.percent if route.candidate else 0.0,
                baseline_requests=counts[0],
                candidate_requests=counts[1],
                **unit_fields,
            )
        )
    return CohortExport(service, format_utc(lo), format_utc(hi), COUNTED, rows)


def _from_prometheus(ws: Workspace, service: str) -> bool:
    """Whether releaser.yaml says the service's metrics come from Prometheus (False when
    it cannot be read: the store alone then answers)."""
    try:
        return ws.config.service(service).metrics.source == "prometheus"
    except ReleaserError:
        return False


def _unit_fields(
    stored: Mapping[tuple[int, str, str], tuple[int, UnitSketch]],
    step: int,
    requests: tuple[int | None, int | None],
) -> dict[str, Any]:
    """The unit columns of one step's row: per release, the candidate's per group, a note."""
    merged: dict[str, UnitSketch] = {}
    recorded = {"baseline": 0, "candidate": 0}
    by_group: dict[str, int] = {}
    for (at_step, variant, group), (unit_requests, sketch) in stored.items():
        if at_step != step:
            continue
        recorded[variant] = recorded.get(variant, 0) + unit_requests
        if variant == "candidate":
            by_group[group] = sketch.count()
        kept = merged.get(variant)
        if kept is None:
            merged[variant] = sketch.copy()
        else:
            kept.merge(sketch)
    if not merged:
        return {"units_note": NO_UNITS}
    missing = [
        f"{(total or 0) - recorded[variant]} of {total} {variant} requests"
        for variant, total in zip(("baseline", "candidate"), requests, strict=True)
        if (total or 0) > recorded[variant]
    ]
    note = (
        f"{' and '.join(missing)} were recorded without a unit id: their units are not counted"
        if missing
        else None
    )
    base, cand = merged.get("baseline"), merged.get("candidate")
    return {
        "baseline_units": base.count() if base is not None else 0,
        "candidate_units": cand.count() if cand is not None else 0,
        "candidate_units_by_group": dict(sorted(by_group.items())),
        "units_note": note,
    }
