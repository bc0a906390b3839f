"""The gateway counts distinct units: the id it routed on reaches the router's sketch.

Real upstreams on 127.0.0.1 and a real store; the unit ids come in the header and the
cookie the gateway routes on, and only the sketch reaches the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from releaser.core.bucketing import PERCENT_GROUP
from releaser.core.unit_sketch import RELATIVE_ERROR, UnitSketch, unit_salt
from releaser.router import Router
from releaser.serve import Gateway, GatewaySettings, StaticUpstreams
from releaser.store.base import Store

from .conftest import SEED, RunningGateway, Upstream, free_port, put_route, rollout_route

SERVICE = "svc"


def test_the_gateway_counts_each_unit_once_per_variant(
    store: Store,
    store_url: str,
    upstreams: tuple[Upstream, Upstream],
    serve_app: Callable[[Any], RunningGateway],
) -> None:
    put_route(store, rollout_route(SERVICE, percent=30.0))
    base, cand = upstreams
    router = Router(store_url, refresh_interval_ms=20, flush_interval_ms=100_000)
    try:
        app = Gateway(
            SERVICE, router, StaticUpstreams(base.url, cand.url), GatewaySettings(unit_cookie="uid")
        )
        running = serve_app(app)
        units = [f"user-{i}" for i in range(200)]
        served: dict[str, set[str]] = {"baseline": set(), "candidate": set()}
        with httpx.Client(base_url=running.url) as client:
            for unit in units * 3:  # three requests each: a unit counts once
                r = client.get("/", headers={"X-User-Id": unit})
                served[r.headers["x-releaser-variant"]].add(unit)
            for unit in units[:20]:  # the cookie names the same units again
                client.get("/", headers={"Cookie": f"uid={unit}"})
            client.get("/")  # no unit id: a request, no unit
        router.flush()
    finally:
        router.close()
    stored = store.read_units("ro-1")
    salt = unit_salt(SEED, "ro-1")
    for variant, ids in served.items():
        expected = UnitSketch()
        for unit in ids:
            expected.add(salt, unit)
        requests, sketch = stored[(0, variant, PERCENT_GROUP)]
        assert sketch == expected, variant
        assert abs(sketch.count() - len(ids)) <= 3 * RELATIVE_ERROR * len(ids)
    assert sum(n for n, _ in stored.values()) == 3 * 200 + 20
    metrics = store.read_metrics("ro-1")
    assert sum(s.requests for s in metrics.values()) == 3 * 200 + 20 + 1


def test_a_unit_answered_502_counts_as_served_by_its_variant(
    store: Store,
    store_url: str,
    upstreams: tuple[Upstream, Upstream],
    serve_app: Callable[[Any], RunningGateway],
) -> None:
    """The candidate's endpoint is down: its units get 502s, and are counted as units the
    candidate served (exposed to it), as its errors are counted against it."""
    put_route(store, rollout_route(SERVICE, percent=30.0))
    base, _ = upstreams
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    router = Router(store_url, refresh_interval_ms=20, flush_interval_ms=100_000)
    try:
        running = serve_app(Gateway(SERVICE, router, StaticUpstreams(base.url, dead)))
        failed: set[str] = set()
        with httpx.Client(base_url=running.url) as client:
            for unit in (f"user-{i}" for i in range(100)):
                r = client.get("/", headers={"X-User-Id": unit})
                if r.headers["x-releaser-variant"] == "candidate":
                    assert r.status_code == 502
                    failed.add(unit)
        router.flush()
    finally:
        router.close()
    assert failed
    expected = UnitSketch()
    for unit in failed:
        expected.add(unit_salt(SEED, "ro-1"), unit)
    requests, sketch = store.read_units("ro-1")[(0, "candidate", PERCENT_GROUP)]
    assert requests == len(failed) and sketch == expected
