"""The gateway's mirroring in a shadow step, in-process: its bounds and what it records.

Real HTTP on loopback (uvicorn in a thread, stdlib upstreams), a real sqlite store. The
end-to-end acceptance, with ``releaser serve`` as a process and ``rollout advance``
judging the step, is in ``test_shadow.py``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from releaser.core.shadow import ShadowPlan
from releaser.router import Router
from releaser.serve import Gateway, StaticUpstreams
from releaser.store.base import Store

from .conftest import RunningGateway, Upstream, put_route, rollout_route, wait_until

SERVICE = "svc"


def _shadow_route(**plan: Any) -> Any:
    return rollout_route(SERVICE, percent=0.0, step_name="shadow", shadow=ShadowPlan(**plan))


@pytest.fixture
def start(
    store: Store,
    store_url: str,
    upstreams: tuple[Upstream, Upstream],
    serve_app: Callable[[Any], RunningGateway],
) -> Iterator[Callable[..., tuple[Gateway, Router, str]]]:
    """Put a shadow-step route with the given plan and serve a gateway for it."""
    routers: list[Router] = []
    base, cand = upstreams

    def run(**plan: Any) -> tuple[Gateway, Router, str]:
        put_route(store, _shadow_route(**plan))
        router = Router(store_url, refresh_interval_ms=20, flush_interval_ms=100_000)
        routers.append(router)
        releases = {"rel-base": base.url, "rel-cand": cand.url}
        app = Gateway(SERVICE, router, StaticUpstreams(None, releases=releases, by_role=False))
        return app, router, serve_app(app).url

    yield run
    for router in routers:
        router.close()


def _calls(url: str, count: int, *, body: bytes = b'{"q": 1}') -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [
            client.post("/predict", content=body, headers={"X-User-Id": f"u{i}"})
            for i in range(count)
        ]


def _recorded(store: Store, router: Router) -> Any:
    router.flush()
    return store.read_metrics("ro-1").get((0, "candidate"))


def test_every_user_gets_the_stable_answer_and_mirrored_calls_are_recorded_on_the_candidate(
    start: Callable[..., tuple[Gateway, Router, str]],
    upstreams: tuple[Upstream, Upstream],
    store: Store,
) -> None:
    base, cand = upstreams
    gateway, router, url = start(percent=100, path="path")
    responses = _calls(url, 40)
    assert {(r.status_code, r.headers["x-releaser-release"]) for r in responses} == {
        (200, "rel-base")
    }
    assert {r.json()["upstream"] for r in responses} == {"baseline"}
    assert wait_until(lambda: cand.shadow_hits == 40 and gateway.shadow_in_flight == 0)
    assert base.shadow_hits == 0
    assert cand.last_headers["x-releaser-variant"] == "candidate"
    assert cand.last_headers["x-releaser-release"] == "rel-cand"
    stats = _recorded(store, router)
    # Both endpoints echo the request path, so 'path' agrees on every answer.
    assert (stats.requests, stats.errors, stats.quality_count, stats.quality_sum) == (
        40,
        0,
        40,
        40.0,
    )
    assert store.read_metrics("ro-1")[(0, "baseline")].requests == 40


def test_past_max_in_flight_a_request_is_not_mirrored_and_is_counted(
    start: Callable[..., tuple[Gateway, Router, str]],
    upstreams: tuple[Upstream, Upstream],
    store: Store,
) -> None:
    _, cand = upstreams
    cand.behave = lambda n: (1.0, 200)  # each mirrored call holds its slot for 1 s
    gateway, router, url = start(percent=100, max_in_flight=2, timeout_ms=5000)
    _calls(url, 10)
    metrics = httpx.get(url + "/metrics").text
    assert 'releaser_gateway_shadow_requests_total{outcome="skipped_busy",service="svc"} 8.0' in (
        metrics
    )
    assert wait_until(lambda: gateway.shadow_in_flight == 0)
    assert cand.shadow_hits == 2
    assert _recorded(store, router).requests == 2


def test_a_candidate_past_the_timeout_is_an_error_and_a_5xx_is_not_compared(
    start: Callable[..., tuple[Gateway, Router, str]],
    upstreams: tuple[Upstream, Upstream],
    store: Store,
) -> None:
    _, cand = upstreams
    cand.behave = lambda n: (2.0, 200) if n == 1 else (0.0, 502)
    gateway, router, url = start(percent=100, timeout_ms=300)
    responses = _calls(url, 5)
    assert all(r.status_code == 200 for r in responses)
    assert wait_until(lambda: gateway.shadow_in_flight == 0)
    stats = _recorded(store, router)
    assert (stats.requests, stats.errors, stats.quality_count) == (5, 5, 0)
    metrics = httpx.get(url + "/metrics").text
    assert 'releaser_gateway_shadow_requests_total{outcome="timeout",service="svc"} 1.0' in metrics
    assert 'releaser_gateway_shadow_requests_total{outcome="error",service="svc"} 4.0' in metrics


def test_large_requests_and_unlisted_methods_are_not_mirrored(
    start: Callable[..., tuple[Gateway, Router, str]],
    upstreams: tuple[Upstream, Upstream],
) -> None:
    _, cand = upstreams
    gateway, _, url = start(percent=100, max_body_bytes=100, methods=["POST"])
    _calls(url, 3, body=b"x" * 101)
    with httpx.Client(base_url=url) as client:
        assert client.get("/predict", headers={"X-User-Id": "u1"}).status_code == 200
    _calls(url, 1, body=b"x" * 100)
    assert wait_until(lambda: cand.shadow_hits == 1 and gateway.shadow_in_flight == 0)
    assert cand.hits == 1


def test_a_comparison_function_scores_and_one_that_does_not_load_is_reported(
    start: Callable[..., tuple[Gateway, Router, str]],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("shadow_compare_for_tests")
    module.half = lambda stable, candidate: 0.5  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "shadow_compare_for_tests", module)
    gateway, router, url = start(percent=100, compare="shadow_compare_for_tests:half")
    _calls(url, 4)
    assert wait_until(lambda: gateway.shadow_in_flight == 0)
    stats = _recorded(store, router)
    assert (stats.quality_count, stats.quality_sum) == (4, 2.0)
    assert httpx.get(url + "/healthz").json()["shadow"]["problem"] is None


def test_a_missing_comparison_function_compares_nothing_and_says_why(
    start: Callable[..., tuple[Gateway, Router, str]],
    upstreams: tuple[Upstream, Upstream],
    store: Store,
) -> None:
    _, cand = upstreams
    gateway, router, url = start(percent=100, compare="no_such_module_here:same")
    _calls(url, 3)
    assert wait_until(lambda: cand.shadow_hits == 3 and gateway.shadow_in_flight == 0)
    health = httpx.get(url + "/healthz").json()["shadow"]
    assert "no_such_module_here:same does not load" in health["problem"]
    stats = _recorded(store, router)
    assert (stats.requests, stats.errors, stats.quality_count) == (3, 0, 0)
