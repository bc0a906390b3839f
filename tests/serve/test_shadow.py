"""Shadow steps against a real ``releaser serve`` process, a real workspace and real endpoints.

The stable release's endpoint answers every user. In the shadow step the gateway also
sends requests to the candidate's endpoint after the user has the stable answer, and
``rollout advance`` judges the candidate on what those mirrored calls showed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from releaser.demo.workspace import ExampleWorkspace

from .conftest import Upstream, wait_until
from .rollout_ws import SERVICE, two_releases
from .test_labels import _set_releases
from .test_limits import GatewayProcess

pytestmark = pytest.mark.slow

CANDIDATE_DELAY_S = 3.0
"""How long the candidate's slow answers take: no user request may take this long."""


def _shadow_first(root: Path, shadow: str) -> None:
    """Put a shadow step before the template's first step, and commit."""
    cfg = root / "releaser.yaml"
    text = cfg.read_text()
    first = "        - name: internal\n"
    assert first in text
    step = (
        "        - name: shadow\n"
        "          percent: 0\n"
        "          bake_minutes: 0\n"
        "          min_samples: 100\n"
        f"          shadow: {shadow}\n"
    )
    cfg.write_text(text.replace(first, step + first, 1))
    subprocess.run(["git", "commit", "-qam", "shadow step"], cwd=root, check=True)


def _rolled_out(
    root: Path, cli: Any, endpoints: tuple[Upstream, Upstream], shadow: str
) -> tuple[str, str]:
    """Release 1 stable on endpoint one, release 2 in its shadow step on endpoint two."""
    _shadow_first(root, shadow)
    mapping: dict[str, str] = {}

    def deploy(release: str) -> None:
        endpoint = endpoints[len(mapping)]
        endpoint.name = release
        mapping[release] = endpoint.url
        _set_releases(root, mapping)

    return two_releases(root, cli, before_start=deploy)


def _users(url: str, method: str, count: int) -> list[tuple[float, int, str]]:
    """``count`` user requests from 8 clients at once: (seconds, status, release label)."""

    def one(i: int) -> tuple[float, int, str]:
        start = time.perf_counter()
        r = httpx.request(
            method,
            url + "/predict",
            headers={"X-User-Id": f"user-{i}"},
            content=b'{"text": "a council tax question"}' if method == "POST" else None,
            timeout=30,
        )
        return time.perf_counter() - start, r.status_code, r.headers.get("x-releaser-release", "")

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def _p99(results: list[tuple[float, int, str]]) -> float:
    times = sorted(t for t, _, _ in results)
    return times[int(0.99 * (len(times) - 1))]


def _status(cli: Any) -> dict[str, Any]:
    res = cli("rollout", "status", SERVICE, "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)  # type: ignore[no-any-return]


def test_a_slow_failing_candidate_never_touches_users_and_the_shadow_step_rolls_it_back(
    release_ws: ExampleWorkspace, cli: Any, endpoints: tuple[Upstream, Upstream]
) -> None:
    """The candidate answers 503 at once, and every 10th request only after 3 s (past the
    step's 2.5 s timeout). Users send GETs (not mirrored: the control) and then POSTs
    (mirrored, 100%). Every user gets the stable answer, none fails, and none waits
    anywhere near the candidate's 3 s, mirrored or not; the figures are printed. The
    analysis then rolls the candidate back on its mirrored errors."""
    root = release_ws.root
    stable, candidate = endpoints
    candidate.behave = lambda n: (CANDIDATE_DELAY_S, 200) if n % 10 == 0 else (0.0, 503)
    r1, r2 = _rolled_out(
        root,
        cli,
        endpoints,
        "{percent: 100, methods: [POST], path: path, timeout_ms: 2500, max_in_flight: 8}",
    )
    status = _status(cli)
    assert status["rollout"]["steps"][0]["shadow"]["percent"] == 100
    assert status["shadow"] == {
        "percent": 100.0,
        "mirrored": 0,
        "compared": 0,
        "agreement": None,
        "min_agreement": 0.95,
    }
    gateway = GatewayProcess(root, service=SERVICE)
    try:
        health = httpx.get(gateway.url + "/healthz").json()
        assert health["shadow"]["candidate"] == r2 and health["shadow"]["percent"] == 100
        control = _users(gateway.url, "GET", 200)
        assert candidate.hits == 0  # GET is not a mirrored method here
        mirrored = _users(gateway.url, "POST", 400)
        for results in (control, mirrored):
            assert {(code, label) for _, code, label in results} == {(200, r1)}
            assert max(t for t, _, _ in results) < CANDIDATE_DELAY_S
        print(
            f"users' p99: {1000 * _p99(control):.1f} ms without mirroring, "
            f"{1000 * _p99(mirrored):.1f} ms while a slow, failing candidate is mirrored; "
            f"errors 0 of {len(control)} and 0 of {len(mirrored)}",
            file=sys.__stderr__,  # past the cli fixture's capture: the figures for the record
        )
        assert stable.hits == 600 and stable.shadow_hits == 0
        assert wait_until(lambda: _status(cli)["shadow"]["mirrored"] >= 150, timeout_s=30)
        assert candidate.shadow_hits == candidate.hits > 0
        assert candidate.last_headers["x-releaser-shadow"] == "1"
        assert candidate.last_headers["x-releaser-release"] == r2
        metrics = httpx.get(gateway.url + "/metrics").text
        assert 'releaser_gateway_shadow_requests_total{outcome="error"' in metrics
    finally:
        gateway.close()
    shadow = _status(cli)["shadow"]
    assert shadow["compared"] == 0  # a failed call is not compared, it is an error
    text = cli("rollout", "status", SERVICE).out
    assert "shadow step: 100% of requests mirrored to the candidate, which serves no user" in text
    res = cli("rollout", "advance", SERVICE, "--json")
    after = _status(cli)
    assert after["rollout"]["status"] == "rolled_back", res.out + res.err
    assert after["stable"] == r1
    reasons = " ".join(after["rollout"]["decisions"][-1]["reasons"])
    assert "error rate" in reasons


def test_an_agreeing_candidate_passes_the_shadow_step_and_mirroring_stops(
    release_ws: ExampleWorkspace, cli: Any, endpoints: tuple[Upstream, Upstream]
) -> None:
    """A healthy candidate whose answers agree on the compared field ('path') passes: advance
    moves to the first real step, and the gateway stops mirroring."""
    root = release_ws.root
    _, candidate = endpoints
    _rolled_out(root, cli, endpoints, "{percent: 50, path: path}")
    gateway = GatewayProcess(root, service=SERVICE)
    try:
        _users(gateway.url, "POST", 400)
        assert wait_until(lambda: _status(cli)["shadow"]["compared"] >= 100, timeout_s=30)
        shadow = _status(cli)["shadow"]
        assert shadow["agreement"] == 1.0
        # About half the requests were mirrored (binomial, 400 draws at 50%: 150-250 holds
        # with probability above 0.99999).
        assert 150 <= candidate.shadow_hits <= 250
        res = cli("rollout", "advance", SERVICE, "--json")
        assert res.code == 0, res.out + res.err
        after = _status(cli)
        assert after["rollout"]["status"] == "running"
        assert after["rollout"]["steps"][after["rollout"]["step"]]["name"] == "internal"
        assert after["shadow"] is None
        assert wait_until(
            lambda: httpx.get(gateway.url + "/healthz").json()["shadow"] is None, timeout_s=10
        )
        hits = candidate.shadow_hits
        _users(gateway.url, "POST", 50)
        assert candidate.shadow_hits == hits
        reasons = after["rollout"]["decisions"][-1]["reasons"]
        assert "mirrored requests, agreement 100.00%" in reasons[0]
    finally:
        gateway.close()
