"""The gateway against real upstreams on 127.0.0.1: split, stickiness, faults, metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from releaser.core.bucketing import bucket
from releaser.router import Router
from releaser.serve import Gateway, GatewaySettings, StaticUpstreams
from releaser.store.base import Store

from .conftest import (
    SEED,
    RunningGateway,
    Upstream,
    free_port,
    put_route,
    rollout_route,
    wait_until,
)

SERVICE = "svc"


@pytest.fixture
def router(store: Store, store_url: str) -> Iterator[Router]:
    put_route(store, rollout_route(SERVICE, percent=30.0))
    r = Router(store_url, refresh_interval_ms=20, flush_interval_ms=100_000)
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def gateway(
    router: Router,
    upstreams: tuple[Upstream, Upstream],
    serve_app: Callable[[Any], RunningGateway],
) -> tuple[Gateway, RunningGateway]:
    base, cand = upstreams
    app = Gateway(
        SERVICE,
        router,
        StaticUpstreams(base.url, cand.url),
        GatewaySettings(unit_cookie="uid", attribute_headers={"email": "X-User-Email"}),
    )
    return app, serve_app(app)


def test_units_split_per_plan_and_stay_sticky(
    gateway: tuple[Gateway, RunningGateway], upstreams: tuple[Upstream, Upstream]
) -> None:
    _, running = gateway
    units = [f"user-{i}" for i in range(300)]
    seen: dict[str, str] = {}
    with httpx.Client(base_url=running.url) as client:
        for round_ in range(2):
            for unit in units:
                r = client.post("/predict?x=1", headers={"X-User-Id": unit}, content=b"hello")
                assert r.status_code == 200
                served_by = r.json()["upstream"]
                # the variant header and the upstream that really answered agree
                assert r.headers["x-releaser-variant"] == served_by
                expected_release = "rel-cand" if served_by == "candidate" else "rel-base"
                assert r.headers["x-releaser-release"] == expected_release
                assert r.json()["path"] == "/predict?x=1" and r.json()["echo"] == "hello"
                if round_ == 0:
                    seen[unit] = served_by
                else:
                    assert seen[unit] == served_by, f"{unit} moved"
    # exactly the units whose bucket is under 30% get the candidate
    expected = {u for u in units if bucket(SEED, u) < 3000}
    assert {u for u, v in seen.items() if v == "candidate"} == expected
    assert 0 < len(expected) < len(units)
    base, cand = upstreams
    assert cand.hits == 2 * len(expected)
    assert base.hits == 2 * (len(units) - len(expected))
    # the upstream is told which release it serves, and gets no hop-by-hop headers
    assert base.last_headers["x-releaser-release"] == "rel-base"
    assert base.last_headers["host"] != running.url.removeprefix("http://")


def test_missing_or_malformed_unit_id_gets_the_baseline(
    store: Store, gateway: tuple[Gateway, RunningGateway], router: Router
) -> None:
    version = router.snapshot_version
    put_route(store, rollout_route(SERVICE, percent=100.0))
    assert wait_until(lambda: router.snapshot_version > version)
    _, running = gateway
    with httpx.Client(base_url=running.url) as client:
        # at 100% every usable id gets the candidate...
        assert client.get("/", headers={"X-User-Id": "u-1"}).json()["upstream"] == "candidate"
        # ...so only the id's absence or malformation explains the baseline
        for headers in (
            {},
            {"X-User-Id": ""},
            {"X-User-Id": "x" * 300},
            {"X-User-Id": "caf\u00e9".encode()},  # not ASCII
        ):
            r = client.get("/", headers=headers)
            assert r.status_code == 200
            assert r.json()["upstream"] == "baseline", headers
            assert r.headers["x-releaser-variant"] == "baseline"
        # the cookie is read when the header is absent
        r = client.get("/", headers={"Cookie": "theme=dark; uid=u-2"})
        assert r.json()["upstream"] == "candidate"


def test_attribute_headers_reach_group_rules(
    store: Store, gateway: tuple[Gateway, RunningGateway], router: Router
) -> None:
    from releaser.core.routing import GroupDef

    staff = GroupDef(rules=[("email", "ends_with", "@example.org")])
    version = router.snapshot_version
    put_route(
        store,
        rollout_route(SERVICE, percent=0.0, groups=["staff"], group_defs={"staff": staff}),
    )
    assert wait_until(lambda: router.snapshot_version > version)
    _, running = gateway
    with httpx.Client(base_url=running.url) as client:
        staff_r = client.get("/", headers={"X-User-Id": "u", "X-User-Email": "a@example.org"})
        other_r = client.get("/", headers={"X-User-Id": "u", "X-User-Email": "a@else.org"})
    assert staff_r.json()["upstream"] == "candidate"
    assert other_r.json()["upstream"] == "baseline"


def test_upstream_down_is_a_502_counted_as_a_candidate_error(
    router: Router, store: Store, upstreams: tuple[Upstream, Upstream], serve_app: Any
) -> None:
    base, _ = upstreams
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = Gateway(SERVICE, router, StaticUpstreams(base.url, dead))
    running = serve_app(app)
    cand_unit = next(u for u in (f"u{i}" for i in range(1000)) if bucket(SEED, u) < 3000)
    base_unit = next(u for u in (f"u{i}" for i in range(1000)) if bucket(SEED, u) >= 3000)
    with httpx.Client(base_url=running.url) as client:
        down = [client.get("/predict", headers={"X-User-Id": cand_unit}) for _ in range(3)]
        up = client.get("/fail", headers={"X-User-Id": base_unit})  # upstream answers 500
        ok = client.get("/", headers={"X-User-Id": base_unit})
    for r in down:
        assert r.status_code == 502
        body = r.json()
        assert body["error"] == "upstream unavailable"
        assert body["variant"] == "candidate" and body["release"] == "rel-cand"
        assert r.headers["x-releaser-release"] == "rel-cand"
    assert up.status_code == 500 and ok.status_code == 200
    router.flush()
    stats = store.read_metrics("ro-1")
    assert stats[(0, "candidate")].requests == 3
    assert stats[(0, "candidate")].errors == 3
    assert stats[(0, "baseline")].requests == 2
    assert stats[(0, "baseline")].errors == 1  # the upstream's 500


def test_healthz_and_metrics(gateway: tuple[Gateway, RunningGateway], router: Router) -> None:
    _, running = gateway
    with httpx.Client(base_url=running.url) as client:
        for i in range(20):
            client.get("/", headers={"X-User-Id": f"user-{i}"})
        health = client.get("/healthz")
        metrics = client.get("/metrics")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "service": SERVICE,
        "snapshot_version": router.snapshot_version,
        "store": "reachable",
        "serving": {"stable": "rel-base", "candidate": "rel-cand"},
        "route": "served",
        "shadow": None,
    }
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    lines = [ln for ln in text.splitlines() if ln.startswith("releaser_gateway_requests_total{")]
    total = sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)
    assert total == 20
    assert any('variant="candidate"' in ln and 'release="rel-cand"' in ln for ln in lines)
    assert any('variant="baseline"' in ln and 'code="200"' in ln for ln in lines)
    assert "releaser_gateway_request_duration_seconds_bucket" in text
    assert "releaser_gateway_store_reachable" in text
    assert f'releaser_gateway_route_unserved{{service="{SERVICE}"}} 0.0' in text


def test_no_route_yet_proxies_to_the_baseline_until_the_first_rollout(
    store: Store, store_url: str, upstreams: tuple[Upstream, Upstream], serve_app: Any
) -> None:
    base, cand = upstreams
    with Router(store_url, refresh_interval_ms=10) as router:
        running = serve_app(Gateway("unrolled", router, StaticUpstreams(base.url, cand.url)))
        for _ in range(3):
            r = httpx.get(running.url + "/", headers={"X-User-Id": "u"})
            assert r.status_code == 200 and r.json()["upstream"] == "baseline"
            assert r.headers["x-releaser-variant"] == "stable"
            assert "x-releaser-release" not in r.headers  # no release before the first rollout
        # The first rollout reaches the gateway without a restart.
        put_route(store, rollout_route("unrolled", percent=100.0))

        def routed() -> bool:
            got = httpx.get(running.url + "/", headers={"X-User-Id": "u"})
            return got.headers.get("x-releaser-variant") == "candidate"

        assert wait_until(routed)


def test_store_unreachable_keeps_serving_the_last_snapshot_and_says_so(
    gateway: tuple[Gateway, RunningGateway], router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    _, running = gateway
    units = [f"user-{i}" for i in range(50)]
    with httpx.Client(base_url=running.url) as client:
        before = {u: client.get("/", headers={"X-User-Id": u}).json()["upstream"] for u in units}
        # Fault injection: the router's own store connection goes away under it.
        router._store.close()
        assert wait_until(lambda: not router.store_reachable)
        after = {u: client.get("/", headers={"X-User-Id": u}).json()["upstream"] for u in units}
        health = client.get("/healthz").json()
        metrics = client.get("/metrics").text
    assert after == before and "candidate" in after.values()
    assert health["store"] == "unreachable: serving the last snapshot"
    assert 'releaser_gateway_store_reachable{service="svc"} 0.0' in metrics
    assert any("serving the last snapshot" in r.getMessage() for r in caplog.records)


def test_a_request_body_reaches_the_upstream_with_one_content_length(
    gateway: tuple[Gateway, RunningGateway], upstreams: tuple[Upstream, Upstream]
) -> None:
    base, _ = upstreams
    _, running = gateway
    with httpx.Client(base_url=running.url) as client:
        r = client.post("/predict", content=b'{"text": "bins not collected"}')
    assert r.status_code == 200
    assert r.json()["echo"] == '{"text": "bins not collected"}'
    # A duplicated Content-Length is a request smuggling risk many servers reject with 400.
    assert base.last_content_lengths == ["30"]


def test_responses_keep_the_upstreams_content_length(
    gateway: tuple[Gateway, RunningGateway], upstreams: tuple[Upstream, Upstream]
) -> None:
    # Passed through unchanged, a sized body stays sized: not re-chunked by the gateway.
    _, running = gateway
    with httpx.Client(base_url=running.url) as client:
        r = client.post("/predict", content=b"abc")
    assert r.status_code == 200
    assert r.headers.get("content-length") == str(len(r.content))
    assert "transfer-encoding" not in r.headers


def test_under_the_post_promotion_guard_the_stable_release_is_counted(
    store: Store, store_url: str, upstreams: tuple[Upstream, Upstream], serve_app: Any
) -> None:
    from releaser.core.routing import ServiceRoute

    base, cand = upstreams
    put_route(store, ServiceRoute(service="guarded", stable="rel-new", guard="ro-1.guard"))
    put_route(store, ServiceRoute(service="plain", stable="rel-new"))
    with Router(store_url, refresh_interval_ms=10, flush_interval_ms=100_000) as router:
        guarded = serve_app(Gateway("guarded", router, StaticUpstreams(base.url, cand.url)))
        plain = serve_app(Gateway("plain", router, StaticUpstreams(base.url, cand.url)))
        with httpx.Client(base_url=guarded.url) as client:
            ok = [client.get("/", headers={"X-User-Id": f"u{i}"}) for i in range(4)]
            failed = client.get("/fail", headers={"X-User-Id": "u9"})
        with httpx.Client(base_url=plain.url) as client:
            assert client.get("/", headers={"X-User-Id": "u1"}).status_code == 200
        router.flush()
        # The plain service's stable request is in no comparison: only the guarded five.
        assert router.metrics_counts().flushed_requests == 5
    assert all(r.status_code == 200 and r.headers["x-releaser-variant"] == "stable" for r in ok)
    assert failed.status_code == 500
    stats = store.read_metrics("ro-1.guard")
    assert list(stats) == [(0, "candidate")]
    assert stats[(0, "candidate")].requests == 5 and stats[(0, "candidate")].errors == 1
