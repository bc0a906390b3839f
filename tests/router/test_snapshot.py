"""The compiled decision closures agree with the core's bucketing and cohort rules exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from releaser.core.bucketing import bucket, in_cohort
from releaser.core.routing import GroupDef, compile_groups
from releaser.errors import BadInput
from releaser.router import Assignment, compile_route
from releaser.router.snapshot import load_snapshot
from releaser.store.base import Store

from .conftest import SEED, make_route, put_route, rollout_route

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "bucketing.json"
IDS = [f"user-{i:06d}" for i in range(20_000)]
STAFF = GroupDef(rules=[("email", "ends_with", "@example.org")])
PILOTS = GroupDef(allow=["council-017", "council-042"])
EU_OR_BETA = GroupDef(
    rules=[("region", "in", ["eu-west", "eu-north"]), ("beta", "equals", "yes")], rules_match="any"
)


def test_no_rollout_is_stable_for_everyone() -> None:
    decide = compile_route(make_route()).decide
    expected = Assignment("svc", "rel-stable", "stable", None, None)
    assert {decide(u, None) for u in IDS[:100]} == {expected}
    assert decide(None, None) == expected


@pytest.mark.parametrize("percent", [0.01, 1, 5, 25, 50, 99.99])
def test_percent_only_matches_the_core(percent: float) -> None:
    route = rollout_route(percent=percent)
    decide = compile_route(route).decide
    cohort = route.cohort()
    for unit in IDS:
        expected = in_cohort(cohort, SEED, unit, {}, {})
        assert (decide(unit, None).variant == "candidate") is expected, unit


def test_groups_and_percent_match_the_core() -> None:
    groups = {"staff": STAFF, "pilots": PILOTS, "eu-or-beta": EU_OR_BETA}
    route = rollout_route(percent=5, groups=groups)
    decide = compile_route(route).decide
    compiled = compile_groups(groups)
    cohort = route.cohort()
    attribute_sets: list[dict[str, str]] = [
        {},
        {"email": "a@example.org"},
        {"email": "a@example.org.evil"},
        {"region": "eu-north"},
        {"region": "us-east", "beta": "yes"},
        {"region": "us-east", "beta": "no"},
    ]
    units = [*IDS[:3000], "council-017", "council-042"]
    for attributes in attribute_sets:
        for unit in units:
            expected = in_cohort(cohort, SEED, unit, attributes, compiled)
            got = decide(unit, attributes).variant == "candidate"
            assert got is expected, (unit, attributes)


def test_published_vectors_are_reproduced() -> None:
    vectors = json.loads(VECTORS.read_text(encoding="utf-8"))
    checked = 0
    for case in vectors["cases"]:
        if not case["unit_id"]:
            continue  # an empty id is never bucketed by the router: it gets the baseline
        for percent, expected in case["in_percent"].items():
            route = make_route(
                candidate="c", rollout_id="r", step=0, seed=case["seed"], percent=float(percent)
            )
            decide = compile_route(route).decide
            assert (decide(case["unit_id"], None).variant == "candidate") is expected, case
            checked += 1
    assert checked > 20


@pytest.mark.parametrize("unit", [None, "", 42, b"user-1", ["user-1"]])
@pytest.mark.parametrize("percent", [5, 100])
def test_unusable_unit_ids_get_the_baseline(unit: object, percent: float) -> None:
    for groups in ({}, {"staff": STAFF, "pilots": PILOTS}):
        route = rollout_route(percent=percent, groups=groups)
        got = compile_route(route).decide(unit, {"email": "boss@example.org"})
        assert got == Assignment("svc", "rel-stable", "baseline", 0, "ro-1")


@pytest.mark.parametrize("percent", [5, 100])
def test_an_id_that_cannot_be_encoded_is_not_bucketed(percent: float) -> None:
    unit = "bad-\ud800-surrogate"  # a lone surrogate: no UTF-8 form, so no bucket
    for groups in ({}, {"staff": STAFF}):
        decide = compile_route(rollout_route(percent=percent, groups=groups)).decide
        assert decide(unit, None).variant == "baseline"
    # Group membership does not need the bytes, so a group still admits it (as in the core).
    decide = compile_route(rollout_route(percent=percent, groups={"staff": STAFF})).decide
    assert decide(unit, {"email": "x@example.org"}).variant == "candidate"


def test_malformed_attributes_do_not_break_stickiness() -> None:
    route = rollout_route(percent=50, groups={"staff": STAFF})
    decide = compile_route(route).decide
    for unit in IDS[:500]:
        plain = decide(unit, None)
        assert decide(unit, {"email": 12345}) == plain  # type: ignore[dict-item]
        assert decide(unit, ["not", "a", "mapping"]) == plain  # type: ignore[arg-type]


def test_zero_and_full_percent() -> None:
    nobody = compile_route(rollout_route(percent=0)).decide
    everybody = compile_route(rollout_route(percent=100)).decide
    assert {nobody(u, None).variant for u in IDS[:1000]} == {"baseline"}
    assert {everybody(u, None).variant for u in IDS[:1000]} == {"candidate"}


def test_assignments_name_the_step_and_rollout() -> None:
    route = rollout_route(percent=100, step=3, rollout_id="ro-7")
    got = compile_route(route).decide("someone", None)
    assert got == Assignment("svc", "rel-cand", "candidate", 3, "ro-7")
    assert compile_route(route).threshold == 10_000


def test_undefined_group_is_refused() -> None:
    route = rollout_route(percent=5).model_copy(update={"groups": ["ghosts"]})
    with pytest.raises(BadInput, match="undefined groups: ghosts"):
        compile_route(route)


def test_bucket_used_is_the_core_bucket() -> None:
    # Units exactly at the threshold edge flip between 4.99% and 5%.
    edge = [u for u in IDS if bucket(SEED, u) == 499]
    assert edge
    inside = compile_route(rollout_route(percent=5)).decide
    outside = compile_route(rollout_route(percent=4.99)).decide
    for unit in edge:
        assert inside(unit, None).variant == "candidate"
        assert outside(unit, None).variant == "baseline"


def test_load_snapshot_reuses_unchanged_routes_and_reports_bad_ones(sqlite_store: Store) -> None:
    put_route(sqlite_store, rollout_route("a"))
    put_route(sqlite_store, make_route("b"))
    first = load_snapshot(sqlite_store, sqlite_store.change_token())
    assert sorted(first.routes) == ["a", "b"]
    assert first.problems == {}

    put_route(sqlite_store, rollout_route("a", percent=25))
    # A record a newer writer got wrong: the service keeps its last good route.
    from releaser.core.audit import EventDraft
    from releaser.store.base import Write

    current = sqlite_store.get("route", "b")
    assert current is not None
    bad = {**current.value, "percent": "lots"}
    sqlite_store.commit(
        [Write("route", "b", bad, current.version)],
        EventDraft(actor="tests", action="route.set", subject="route/b", at="2025-01-01T00:00:00Z"),
    )
    second = load_snapshot(sqlite_store, sqlite_store.change_token(), first)
    assert second.routes["a"] is not first.routes["a"]
    assert second.routes["a"].route.percent == 25
    assert second.routes["b"] is first.routes["b"]
    assert "route record version 2" in second.problems["b"]
    assert "percent" in second.problems["b"]
