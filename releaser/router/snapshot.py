"""The router's in-process snapshot: every service's route compiled to one decision closure.

A :class:`~releaser.core.routing.ServiceRoute` is validated and compiled once per record
version, off the request path, into a closure ``decide(unit_id, attributes) -> Assignment``
that holds everything it needs in local cells: the three possible answers (built once, so
a request allocates nothing), the seed's message prefix, the cohort threshold and the
cohort's groups flattened into one allow-list and a tuple of attribute tests. The closure
computes exactly :func:`releaser.core.bucketing.bucket` and ``in_cohort`` (groups first,
then ``bucket < threshold``); the tests check both against the core and the published
vectors.

A :class:`Snapshot` is immutable; the router swaps the reference to a new one when the
store changes, so a request reads one attribute and never takes a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from xxhash import xxh64_intdigest

from releaser.core.bucketing import BUCKETS, PERCENT_GROUP, bucketer, cohort_group_matcher
from releaser.core.routing import ROUTE_KIND, ServiceRoute
from releaser.core.unit_sketch import unit_salt
from releaser.errors import BadInput, ReleaserError
from releaser.store.base import Record, Store

__all__ = [
    "Assignment",
    "CompiledRoute",
    "Decide",
    "Snapshot",
    "Variant",
    "compile_route",
    "load_snapshot",
]

Variant = Literal["stable", "baseline", "candidate"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which release a unit gets for a service, and why.

    ``variant`` is ``stable`` when no rollout is live, otherwise ``baseline`` (the stable
    release, outside the cohort) or ``candidate`` (in the cohort). ``step`` and
    ``rollout_id`` name the live step for metrics; both are None for ``stable``, except
    under the post-promotion guard, when ``rollout_id`` is the guard's metrics key (step 0)
    so that the promoted release's requests keep being counted.

    ``group`` says why, for unit counts: the cohort group the unit matched, or
    :data:`~releaser.core.bucketing.PERCENT_GROUP` when its bucket decided (the baseline's
    units too); None when no rollout is live. ``unit_salt`` is the rollout's salt for
    hashing unit ids (:func:`releaser.core.unit_sketch.unit_salt`). Neither takes part in
    equality: two assignments of the same release and variant are the same answer.
    """

    service: str
    release_id: str | None
    variant: Variant
    step: int | None = None
    rollout_id: str | None = None
    group: str | None = field(default=None, compare=False)
    unit_salt: int = field(default=0, compare=False, repr=False)


Decide = Callable[[Any, Mapping[str, str] | None], Assignment]
"""A compiled route: ``decide(unit_id, attributes)``; never raises, does no I/O."""


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """One service's route as validated from the store, and its decision closure."""

    route: ServiceRoute
    record_version: int
    decide: Decide = field(repr=False, compare=False)
    threshold: int
    """First bucket outside the step's percentage (0 when no rollout is live)."""
    shadow: Assignment | None = None
    """In a shadow step, the candidate's assignment: mirrored requests are recorded on it."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An immutable view of every route, as of one store change token."""

    token: int
    routes: Mapping[str, CompiledRoute]
    table: Mapping[str, Decide] = field(repr=False)
    """service -> decision closure: the only thing the request path reads."""
    problems: Mapping[str, str] = field(default_factory=dict)
    """service -> why its record could not be used (its previous version, if any, is kept)."""


def _constant(answer: Assignment) -> Decide:
    def decide(unit_id: Any, attributes: Mapping[str, str] | None = None) -> Assignment:
        return answer

    return decide


def _percent_only(
    prefix: bytes, threshold: int, baseline: Assignment, candidate: Assignment
) -> Decide:
    hash64 = xxh64_intdigest
    buckets = BUCKETS

    def decide(unit_id: Any, attributes: Mapping[str, str] | None = None) -> Assignment:
        # A missing, empty or non-str id (no .encode, or a lone surrogate) stays on the
        # baseline: there is nothing to be sticky on, and a request must never fail here.
        try:
            if unit_id and hash64(prefix + unit_id.encode()) % buckets < threshold:
                return candidate
        except Exception:
            pass
        return baseline

    return decide


def _with_groups(
    which: Callable[[str, Mapping[str, str]], str | None],
    baseline: Assignment,
    candidates: Mapping[str, Assignment],
) -> Decide:
    """Decide with the core's cohort group matcher (groups first, then the bucket); never
    raise. ``candidates`` holds the candidate's assignment per group it can match."""
    pick = candidates.get

    def decide(unit_id: Any, attributes: Mapping[str, str] | None = None) -> Assignment:
        if not isinstance(unit_id, str) or not unit_id:
            return baseline
        try:
            return pick(which(unit_id, attributes or _NO_ATTRIBUTES), baseline)  # type: ignore[arg-type]
        except Exception:
            pass
        # Malformed attributes (not a mapping, a value no rule can test) match no group:
        # the unit keeps its bucket, so it stays sticky. An id that cannot be hashed
        # (a lone surrogate) gets the baseline.
        try:
            return pick(which(unit_id, _NO_ATTRIBUTES), baseline)  # type: ignore[arg-type]
        except Exception:
            return baseline

    return decide


_NO_ATTRIBUTES: Mapping[str, str] = {}


def _seed_prefix(seed: int) -> bytes:
    bucketer(seed)  # validates the seed exactly as the core does (BadInput otherwise)
    # The bucketing message is ascii(seed) + ":" + utf8(unit_id) (docs/bucketing.md).
    return b"%d:" % seed


def compile_route(route: ServiceRoute, record_version: int = 0) -> CompiledRoute:
    """Compile a route into its decision closure; BadInput if the route is inconsistent."""
    service = route.service
    if route.candidate is None and route.guard is not None:
        stable = Assignment(service, route.stable, "stable", 0, route.guard)
    else:
        stable = Assignment(service, route.stable, "stable")
    if route.candidate is None or route.rollout_id is None:
        return CompiledRoute(route, record_version, _constant(stable), 0)
    step = route.step if route.step is not None else 0  # metrics are keyed by step index
    rollout_id = route.rollout_id
    salt = unit_salt(route.seed, rollout_id)
    baseline = Assignment(service, route.stable, "baseline", step, rollout_id, PERCENT_GROUP, salt)
    candidate = Assignment(
        service, route.candidate, "candidate", step, rollout_id, PERCENT_GROUP, salt
    )
    cohort = route.cohort()
    missing = sorted(name for name in cohort.groups if name not in route.group_defs)
    if missing:
        known = ", ".join(sorted(route.group_defs)) or "none"
        raise BadInput(
            f"the route of {service!r} names undefined groups: {', '.join(missing)}",
            hint=f"the rollout writer must copy every group definition (defined: {known})",
        )
    groups = {name: route.group_defs[name].compile() for name in cohort.groups}
    prefix = _seed_prefix(route.seed)
    threshold = cohort.threshold
    decide: Decide
    if any(g.allow or g.rules for g in groups.values()):
        which = cohort_group_matcher(cohort, route.seed, groups)
        candidates = {
            name: Assignment(service, route.candidate, "candidate", step, rollout_id, name, salt)
            for name in groups
        }
        candidates[PERCENT_GROUP] = candidate
        decide = _with_groups(which, baseline, candidates)
    elif threshold == 0:
        decide = _constant(baseline)
    else:
        decide = _percent_only(prefix, threshold, baseline, candidate)
    shadow = candidate if route.shadow is not None else None
    return CompiledRoute(route, record_version, decide, threshold, shadow)


def _compile_record(record: Record) -> CompiledRoute:
    route = ServiceRoute.model_validate(record.value)
    if route.service != record.key:
        raise BadInput(
            f"route record {record.key!r} holds the route of {route.service!r}",
            hint="the record key must be the service name",
        )
    return compile_route(route, record.version)


def load_snapshot(store: Store, token: int, previous: Snapshot | None = None) -> Snapshot:
    """Read every route record and compile what changed since ``previous``.

    Read ``token`` (``store.change_token()``) before calling: the records are then at least
    as new as the token, so a change committed meanwhile is seen by the next check. A record
    that fails validation is reported in ``problems``; the service keeps its previous
    compiled route if it had one. Store errors propagate.
    """
    records = store.list(ROUTE_KIND)
    old = previous.routes if previous is not None else {}
    routes: dict[str, CompiledRoute] = {}
    problems: dict[str, str] = {}
    for record in records:
        kept = old.get(record.key)
        if kept is not None and kept.record_version == record.version:
            routes[record.key] = kept
            continue
        try:
            routes[record.key] = _compile_record(record)
        except (ValidationError, ReleaserError) as exc:
            problems[record.key] = f"route record version {record.version}: {_one_line(exc)}"
            if kept is not None:
                routes[record.key] = kept
    table = {service: compiled.decide for service, compiled in routes.items()}
    return Snapshot(token=token, routes=routes, table=table, problems=problems)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
