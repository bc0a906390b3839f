"""``explain`` against the router: real store, real router, the clock passed explicitly.

A rollout walks three steps (internal, canary-5, canary-25) and is rolled back. At each
phase the real :class:`~releaser.router.Router` assigns 10,000 units (with the email
attribute the staff group tests); afterwards ``explain`` replays each phase's time from
the route history and must give every unit the same release and variant.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from releaser.api.explain import cohort_export, explain_unit, explain_units, route_periods
from releaser.api.retention import plan_prune, prune_store
from releaser.api.rollback import rollback
from releaser.api.rollouts import advance_rollout, start_rollout
from releaser.api.routes import ROUTE_HISTORY_KIND
from releaser.api.workspace import Workspace
from releaser.core.bucketing import PERCENT_GROUP
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.core.unit_sketch import RELATIVE_ERROR, UnitSketch, unit_salt
from releaser.demo.traffic import make_users
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import BadInput, NotFound
from releaser.router import Router
from releaser.store.base import MetricDelta
from tests.conftest import stable_and_candidate

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UNITS = 10_000


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _healthy_step(ws: Workspace, rollout_id: str, step: int, requests: int) -> None:
    stats = VariantStats(
        requests=requests, errors=requests // 100, latency=LatencyHistogram.of([150.0] * requests)
    )
    ws.store.add_metrics(
        [
            MetricDelta(rollout_id, step, "baseline", stats),
            MetricDelta(rollout_id, step, "candidate", stats),
        ]
    )


def _router_answers(router: Router, written: str, units: list[tuple[str, dict[str, str]]]):
    """The router's answers once its snapshot holds the route written at ``written``."""
    deadline = time.monotonic() + 10
    while router.routes()[SERVICE].updated_at != written:
        assert time.monotonic() < deadline, "the router never saw the new route"
        time.sleep(0.005)
    return [(a.release_id, a.variant) for a in (router.assign(SERVICE, u, x) for u, x in units)]


@pytest.fixture
def phases(release_ws: ExampleWorkspace):
    """(workspace, r1, r2, [(phase name, time inside it, router answers)])."""
    root = release_ws.root
    ws, r1, r2 = stable_and_candidate(root, SERVICE, _iso(T0))
    users = make_users(UNITS, seed=7)
    users[3] = ("council-042", {})  # allow-listed in pilot-councils from canary-5 on
    recorded: list[tuple[str, datetime, list[tuple[str | None, str]]]] = []
    router = Router(ws.store_url, refresh_interval_ms=5)

    def record(name: str, at: datetime) -> None:
        answers = _router_answers(router, _iso(at), users)
        recorded.append((name, at + timedelta(minutes=1), answers))

    try:
        record("stable", T0)
        t = T0 + timedelta(hours=1)
        rollout_id = start_rollout(ws, SERVICE, r2, now=_iso(t)).rollout.id
        record("internal", t)
        for step, name in ((0, "canary-5"), (1, "canary-25")):
            _healthy_step(ws, rollout_id, step, 5000)
            t += timedelta(hours=5)
            res = advance_rollout(ws, SERVICE, now=_iso(t))
            assert res.rollout.current.name == name, res.decision.reasons
            record(name, t)
        t += timedelta(hours=2)
        back = rollback(ws, SERVICE, reason="drill", now=_iso(t))
        assert back.switched and back.plan.kind == "mid-rollout"
        record("rolled back", t)
    finally:
        router.close()
    yield ws, r1, r2, users, recorded
    ws.close()


def test_explain_agrees_with_the_router_at_every_phase(phases) -> None:
    ws, r1, r2, users, recorded = phases
    assert [name for name, _, _ in recorded] == [
        "stable",
        "internal",
        "canary-5",
        "canary-25",
        "rolled back",
    ]
    for name, at, answers in recorded:
        explained = explain_units(ws, SERVICE, users, at=_iso(at))
        replayed = [(e.release_id, e.variant) for e in explained]
        mismatched = [u for (u, _), a, b in zip(users, answers, replayed, strict=True) if a != b]
        assert not mismatched, f"{name}: {len(mismatched)} units differ, e.g. {mismatched[:3]}"
    by_phase = {name: answers for name, _, answers in recorded}
    share = {n: sum(v == "candidate" for _, v in a) / UNITS for n, a in by_phase.items()}
    # The phases really differ: staff only, then +pilot +5 %, then 25 %, then nobody.
    assert all(a == (r1, "stable") for a in by_phase["stable"])
    assert all(a == (r1, "stable") for a in by_phase["rolled back"])
    assert 0.07 < share["internal"] < 0.13  # make_users makes 10 % staff
    assert share["internal"] < share["canary-5"] < share["canary-25"]
    assert 0.28 < share["canary-25"] < 0.36  # staff, then 25 % of everyone else
    assert by_phase["canary-5"][3] == (r2, "candidate")  # council-042, allow-listed
    assert by_phase["internal"][3][1] == "baseline"


def test_explain_says_why_a_group_or_a_bucket(phases) -> None:
    ws, r1, r2, users, recorded = phases
    at_canary5 = _iso(recorded[2][1])
    pilot = explain_unit(ws, SERVICE, "council-042", at=at_canary5)
    assert pilot.release_id == r2 and pilot.variant == "candidate"
    assert pilot.matched_group == {"name": "pilot-councils", "by": "allow-list"}
    staff_id, staff_attrs = next(u for u in users if u[1].get("email", "").endswith("@example.org"))
    staff = explain_unit(ws, SERVICE, staff_id, at=at_canary5, attributes=staff_attrs)
    assert staff.matched_group is not None and staff.matched_group["name"] == "staff"
    assert staff.matched_group["rules"] == [["email", "ends_with", "@example.org"]]
    outsider = explain_unit(
        ws, SERVICE, "user-x", at=at_canary5, attributes={"email": "x@mail.example"}
    )
    assert outsider.matched_group is None and outsider.threshold == 500
    assert outsider.bucket is not None
    expected = "candidate" if outsider.bucket < 500 else "baseline"
    assert outsider.variant == expected and f"bucket {outsider.bucket}" in outsider.reason
    assert outsider.step_name == "canary-5" and outsider.rollout_id == f"{SERVICE}-1"
    before = explain_unit(ws, SERVICE, "user-x", at=_iso(recorded[0][1]))
    assert before.release_id == r1 and "no rollout was live" in before.reason
    # At the exact start of a route version, that version applies.
    exact = explain_unit(ws, SERVICE, "council-042", at=pilot.route_from)
    assert exact.route_version == pilot.route_version


def test_a_wrong_time_gives_a_different_answer(phases) -> None:
    """The replay depends on the time: canary-25's answers differ from canary-5's."""
    ws, _r1, _r2, users, recorded = phases
    replayed = explain_units(ws, SERVICE, users, at=_iso(recorded[2][1]))
    differ = sum(
        (e.release_id, e.variant) != a for e, a in zip(replayed, recorded[3][2], strict=True)
    )
    assert differ > 1000


def test_explain_before_history_and_bad_input_are_refused(phases) -> None:
    ws, *_ = phases
    with pytest.raises(NotFound, match="history starts at 2026-03-02T09:00:00Z"):
        explain_unit(ws, SERVICE, "u", at="2026-01-01T00:00:00Z")
    with pytest.raises(BadInput, match="1 to 1000 characters"):
        explain_unit(ws, SERVICE, "x" * 1001)
    with pytest.raises(BadInput, match="not an ISO 8601 time"):
        explain_unit(ws, SERVICE, "u", at="yesterday")
    with pytest.raises(NotFound, match="no route of 'nope'"):
        explain_unit(ws, "nope", "u")


def test_cohort_export_counts_requests_per_step(phases) -> None:
    ws, r1, r2, _users, recorded = phases
    export = cohort_export(ws, SERVICE, _iso(T0), _iso(recorded[-1][1] + timedelta(days=1)))
    assert "distinct units" in export.counted and "1.625%" in export.counted
    # _healthy_step's synthetic counts carry no units, and a unit is never made up.
    assert all(row.baseline_units is None and row.candidate_units is None for row in export.rows)
    assert (
        export.rows[1].units_note is not None and "no router recorded" in export.rows[1].units_note
    )
    steps = [(row.step_name, row.baseline_requests, row.candidate_requests) for row in export.rows]
    assert steps == [
        (None, None, None),
        ("internal", 5000, 5000),
        ("canary-5", 5000, 5000),
        ("canary-25", 0, 0),
        (None, None, None),
    ]
    assert export.rows[2].groups == ["pilot-councils", "staff"]
    assert export.rows[2].candidate == r2 and export.rows[2].stable == r1
    window = cohort_export(
        ws, SERVICE, _iso(recorded[2][1]), _iso(recorded[2][1] + timedelta(minutes=5))
    )
    assert [row.step_name for row in window.rows] == ["canary-5"]
    with pytest.raises(BadInput, match="is not after"):
        cohort_export(ws, SERVICE, _iso(T0), _iso(T0))


def test_route_history_is_pruned_after_its_retention_and_the_live_version_kept(phases) -> None:
    ws, r1, *_ = phases
    kept = route_periods(ws, SERVICE)
    assert len(kept) == 5
    assert not plan_prune(ws, now="2027-03-01T00:00:00Z").route_history  # < 400 days
    later = "2027-06-01T00:00:00Z"
    plan = plan_prune(ws, now=later)
    assert [r["key"] for r in plan.route_history] == [
        f"{SERVICE}/{p.version:010d}" for p in kept[:-1]
    ]
    done = prune_store(ws, now=later)
    assert done.applied
    left = ws.store.list(ROUTE_HISTORY_KIND, prefix=f"{SERVICE}/")
    assert [r.key for r in left] == [f"{SERVICE}/{kept[-1].version:010d}"]
    assert explain_unit(ws, SERVICE, "u", at=later).release_id == r1
    with pytest.raises(NotFound, match="history starts at"):
        explain_unit(ws, SERVICE, "u", at=_iso(T0 + timedelta(hours=2)))


@pytest.mark.parametrize("backend_name", ["sqlite", "postgresql"])
def test_route_history_explain_and_freeze_on_each_store_backend(
    backend_name: str, release_ws: ExampleWorkspace, tmp_path: Path, monkeypatch
) -> None:
    """The same history, replay and freeze record on sqlite and on PostgreSQL."""
    from releaser.api.freeze import freeze_service, freezes_now
    from tests.store_backends import make_backend

    if backend_name == "postgresql" and not os.environ.get("RELEASER_TEST_POSTGRES_DSN"):
        pytest.skip("set RELEASER_TEST_POSTGRES_DSN to run the PostgreSQL store tests")
    (tmp_path / "store").mkdir()
    backend = make_backend(backend_name, tmp_path / "store")
    monkeypatch.setenv("RELEASER_STORE", backend.url)
    root = release_ws.root
    try:
        ws, r1, r2 = stable_and_candidate(root, SERVICE, _iso(T0))
        t = T0 + timedelta(hours=1)
        start_rollout(ws, SERVICE, r2, now=_iso(t))
        rollback(ws, SERVICE, reason="drill", now=_iso(t + timedelta(hours=1)))
        assert ws.store.url.split(":")[0] == backend.url.split(":")[0]
        assert [p.route.step_name for p in route_periods(ws, SERVICE)] == [None, "internal", None]
        staff = explain_unit(
            ws,
            SERVICE,
            "s",
            at=_iso(t + timedelta(minutes=1)),
            attributes={"email": "a@example.org"},
        )
        assert (staff.release_id, staff.matched_group["name"]) == (r2, "staff")  # type: ignore[index]
        assert explain_unit(ws, SERVICE, "s", at=_iso(t + timedelta(hours=2))).release_id == r1
        freeze_service(ws, SERVICE, until="1d", reason="x", now=_iso(t))
        assert [f.name for f in freezes_now(ws, SERVICE, _iso(t + timedelta(hours=3)))] == [
            "manual"
        ]
        ws.close()
    finally:
        backend.cleanup()


def test_cohort_export_counts_distinct_units_per_release_and_group(
    release_ws: ExampleWorkspace,
) -> None:
    """Two routers over one store record overlapping units, many requests each; the export
    gives each release's and each group's distinct units, counted once."""
    ws, r1, r2 = stable_and_candidate(release_ws.root, SERVICE, _iso(T0))
    try:
        t = T0 + timedelta(hours=1)
        rollout_id = start_rollout(ws, SERVICE, r2, now=_iso(t)).rollout.id
        _healthy_step(ws, rollout_id, 0, 5000)
        t += timedelta(hours=5)
        assert advance_rollout(ws, SERVICE, now=_iso(t)).rollout.current.name == "canary-5"
        users = make_users(3000, seed=11)
        # In two groups: staff by its email, pilot-councils by allow-list (tested first).
        users.append(("council-042", {"email": "clerk@example.org"}))
        first, second = Router(ws.store_url), Router(ws.store_url)
        try:
            for router in (first, second):
                _router_answers(router, _iso(t), [])
            for _ in range(3):  # repeat requests: a unit counts once however often
                for unit, attrs in users[:2000]:
                    first.record(first.assign(SERVICE, unit, attrs), latency_ms=20.0, unit_id=unit)
            for unit, attrs in [*users[1000:], users[5]]:  # overlaps the first router's
                second.record(second.assign(SERVICE, unit, attrs), latency_ms=20.0, unit_id=unit)
            route = first.routes()[SERVICE]
            truth: dict[tuple[str, str | None], set[str]] = {}
            for unit, attrs in users:
                got = first.assign(SERVICE, unit, attrs)
                truth.setdefault((got.variant, got.group), set()).add(unit)
        finally:
            first.close()
            second.close()
        export = cohort_export(ws, SERVICE, _iso(T0), _iso(t + timedelta(days=1)))
        stored = ws.store.read_units(rollout_id)
    finally:
        ws.close()
    row = next(r for r in export.rows if r.step_name == "canary-5")
    assert (row.baseline_requests or 0) + (row.candidate_requests or 0) == 3 * 2000 + 2001 + 1
    assert row.units_note is None  # every request of this step came with its unit id

    def within_error(estimate: int | None, units: set[str]) -> bool:
        # Three standard errors, and exact for a handful of units.
        return estimate is not None and abs(estimate - len(units)) <= max(
            0.5, 3 * RELATIVE_ERROR * len(units)
        )

    candidate = set().union(*(u for (v, _), u in truth.items() if v == "candidate"))
    baseline = truth[("baseline", PERCENT_GROUP)]
    assert len(candidate) + len(baseline) == 3001
    assert within_error(row.candidate_units, candidate)
    assert within_error(row.baseline_units, baseline)
    by_group = row.candidate_units_by_group
    assert by_group is not None and set(by_group) == {"pilot-councils", "staff", PERCENT_GROUP}
    assert by_group["pilot-councils"] == 1  # council-042, counted in its first group only
    assert "council-042" not in truth[("candidate", "staff")]
    for group in ("staff", PERCENT_GROUP):
        assert within_error(by_group[group], truth[("candidate", group)])
    # Merging two routers' flushes gives exactly the sketch of the union.
    salt = unit_salt(route.seed, rollout_id)
    for (variant, group), units in truth.items():
        alone = UnitSketch()
        for unit in units:
            alone.add(salt, unit)
        assert stored[(1, variant, str(group))][1] == alone, (variant, group)
    assert by_group[PERCENT_GROUP] > 0 and len(truth[("candidate", "staff")]) > 200

    # Once the service's metrics come from Prometheus (whose series carry no unit ids),
    # units are null with the reason, even with sketches in the store: never a made-up number.
    config = release_ws.root / "releaser.yaml"
    text = config.read_text()
    config.write_text(
        text.replace(
            "  case-triage:\n", "  case-triage:\n    metrics:\n      source: prometheus\n", 1
        )
    )
    from releaser.api.workspace import open_workspace

    prom_ws = open_workspace(release_ws.root)
    try:
        assert prom_ws.config.service(SERVICE).metrics.source == "prometheus"
        again = cohort_export(prom_ws, SERVICE, _iso(T0), _iso(t + timedelta(days=1)))
    finally:
        prom_ws.close()
    live = [r for r in again.rows if r.rollout_id is not None]
    assert live and all(r.baseline_units is None and r.candidate_units is None for r in live)
    assert all("Prometheus" in (r.units_note or "") for r in live)
