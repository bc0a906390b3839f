"""Distinct units: record(unit_id=...) -> flush -> store.read_units, on real stores.

Each unit is counted in the sketch of the group that decided its variant (the first
allow-list by name, then rules by name, then ``(percent)``), hashed under the rollout's
salt exactly as :mod:`releaser.core.unit_sketch` specifies; two routers' flushes merge to
the sketch of the union; a batch whose commit was not confirmed counts its units once;
and no unit id ever reaches the store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from releaser.api.explain import _group_rules, _why
from releaser.core.bucketing import PERCENT_GROUP
from releaser.core.routing import GroupDef
from releaser.core.unit_sketch import REGISTERS, UnitSketch, unit_salt
from releaser.errors import ExternalUnavailable
from releaser.router import Router
from releaser.router.metrics_buffer import MetricsBuffer
from releaser.router.snapshot import compile_route
from releaser.store.base import Store

from .conftest import SEED, LostConfirmation, StoreBackend, make_route, put_route, rollout_route

GROUPS = {
    "pilots": GroupDef(allow=["council-017", "council-042"]),
    "staff": GroupDef(rules=[("email", "ends_with", "@example.org")]),
}


def users(n: int) -> list[tuple[str, dict[str, str]]]:
    """``n`` units, every tenth staff; council-042 is on the pilots' list *and* staff."""
    out = [
        (f"user-{i}", {"email": f"u{i}@{'example.org' if i % 10 == 0 else 'mail.example'}"})
        for i in range(n)
    ]
    out.append(("council-042", {"email": "clerk@example.org"}))
    return out


def expected_sketches(
    router: Router, units: list[tuple[str, dict[str, str]]], rollout_id: str = "ro-1"
) -> dict[tuple[str, str], UnitSketch]:
    """The sketches the core's algorithm makes of ``units``, by (variant, group)."""
    salt = unit_salt(SEED, rollout_id)
    out: dict[tuple[str, str], UnitSketch] = {}
    for unit, attrs in units:
        got = router.assign("svc", unit, attrs)
        assert got.group is not None
        out.setdefault((got.variant, got.group), UnitSketch()).add(salt, unit)
    return out


def test_units_are_counted_per_group_as_the_core_specifies(
    backend: StoreBackend, store: Store
) -> None:
    route = rollout_route(percent=30, step=1, groups=GROUPS)
    put_route(store, route)
    crowd = users(3000)
    with Router(backend.url, flush_interval_ms=60_000) as router:
        for unit, attrs in crowd * 2:  # every unit twice: it counts once
            router.record(router.assign("svc", unit, attrs), latency_ms=9.0, unit_id=unit)
        router.flush()
        expected = expected_sketches(router, crowd)
    stored = store.read_units("ro-1")
    assert {(v, g): s for (_, v, g), (_, s) in stored.items()} == expected
    assert sum(n for n, _ in stored.values()) == 2 * len(crowd)  # every request had a unit
    assert set(stored) == {
        (1, "baseline", PERCENT_GROUP),
        (1, "candidate", PERCENT_GROUP),
        (1, "candidate", "pilots"),
        (1, "candidate", "staff"),
    }
    # council-042 is in both groups: it counts in pilots (allow-lists first), not staff.
    assert stored[(1, "candidate", "pilots")][1].count() == 1
    # The group is the one explain gives as the reason, for every unit.
    rules = _group_rules(route)
    for unit, attrs in crowd[:500] + crowd[-1:]:
        got = compile_route(route).decide(unit, attrs)
        why = _why(route, rules, unit, attrs)
        if got.variant == "candidate":
            assert got.group == (why["group"]["name"] if "group" in why else PERCENT_GROUP)
        else:
            assert "group" not in why and got.group == PERCENT_GROUP


def test_two_routers_over_one_store_merge_to_the_union(backend: StoreBackend, store: Store) -> None:
    put_route(store, rollout_route(percent=50, groups=GROUPS))
    crowd = users(4000)
    with Router(backend.url, flush_interval_ms=60_000) as first:
        with Router(backend.url, flush_interval_ms=60_000) as second:
            for unit, attrs in crowd[:2500]:
                first.record(first.assign("svc", unit, attrs), unit_id=unit)
            for unit, attrs in crowd[1500:]:
                second.record(second.assign("svc", unit, attrs), unit_id=unit)
            first.flush()
            second.flush()
            first.flush()
        expected = expected_sketches(first, crowd)
    stored = store.read_units("ro-1")
    assert {(v, g): s for (_, v, g), (_, s) in stored.items()} == expected
    total = UnitSketch()
    for sketch in expected.values():
        total.merge(sketch)
    assert abs(total.count() - len(crowd)) <= 3 * 0.01625 * len(crowd)


def test_a_batch_whose_commit_was_not_confirmed_counts_its_units_once(
    backend: StoreBackend, store: Store
) -> None:
    route = rollout_route(percent=100)
    put_route(store, route)
    candidate = compile_route(route).decide("anyone", None)
    buffer = MetricsBuffer()
    for i in range(200):
        buffer.add(candidate, unit_id=f"user-{i}")
    flaky = LostConfirmation(store)
    with pytest.raises(ExternalUnavailable):
        buffer.flush(flaky)  # type: ignore[arg-type]
    landed = store.read_units("ro-1")
    assert landed[(0, "candidate", PERCENT_GROUP)][0] == 200  # it did land
    buffer.add(candidate, unit_id="user-new")
    buffer.flush(flaky)  # type: ignore[arg-type]  # the same batch again, then the new one
    requests, sketch = store.read_units("ro-1")[(0, "candidate", PERCENT_GROUP)]
    expected = UnitSketch()
    for unit in [f"user-{i}" for i in range(200)] + ["user-new"]:
        expected.add(unit_salt(SEED, "ro-1"), unit)
    assert requests == 201 and sketch == expected
    assert store.read_metrics("ro-1")[(0, "candidate")].requests == 201


def test_requests_without_a_usable_unit_id_count_no_unit(sqlite_store: Store) -> None:
    route = rollout_route(percent=100)
    candidate = compile_route(route).decide("anyone", None)
    stable = compile_route(make_route()).decide("anyone", None)
    buffer = MetricsBuffer()
    buffer.add(candidate)  # no unit id
    buffer.add(candidate, unit_id="")
    buffer.add(candidate, unit_id=42)  # type: ignore[arg-type]  # never raises
    buffer.add(candidate, unit_id="lone \ud800 surrogate")  # hashed as it is, counted
    buffer.add(stable, unit_id="someone")  # no rollout: nothing is counted at all
    buffer.flush(sqlite_store)
    assert sqlite_store.read_metrics("ro-1")[(0, "candidate")].requests == 4
    requests, sketch = sqlite_store.read_units("ro-1")[(0, "candidate", PERCENT_GROUP)]
    assert requests == 1 and sketch.count() == 1


def test_sketch_state_is_fixed_bytes_per_key(sqlite_store: Store) -> None:
    candidate = compile_route(rollout_route(percent=100)).decide("anyone", None)
    buffer = MetricsBuffer()
    buffer.add(candidate, unit_id="one")
    small = [len(t.units[PERCENT_GROUP].registers) for t in buffer._tallies.values()]
    for i in range(50_000):
        buffer.add(candidate, unit_id=f"user-{i}")
    large = [len(t.units[PERCENT_GROUP].registers) for t in buffer._tallies.values()]
    assert small == large == [REGISTERS]


def test_no_unit_id_reaches_the_store(tmp_path: Path, sqlite_backend: StoreBackend) -> None:
    store = sqlite_backend.open()
    try:
        put_route(store, rollout_route(percent=50, groups=GROUPS))
        secret = [f"NI-QQ{i:06d}C" for i in range(300)]  # ids an appeal tool must not leak
        with Router(sqlite_backend.url) as router:
            for unit in secret:
                router.record(router.assign("svc", unit, {}), unit_id=unit)
        assert sum(n for n, _ in store.read_units("ro-1").values()) == 300
    finally:
        store.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    data = b"".join(p.read_bytes() for p in files)
    assert b"NI-QQ" not in data
