"""A `matches` rule on a header, in a real gateway process: adversarial values cannot stall it.

The gateway runs in a child process (uvicorn, auto loop and parser as `releaser serve`
uses), so a rule that froze its event loop would stall the child, never this test: every
request below has a client timeout, and the child is killed at the end. The timeouts guard
against a hang (a backtracking engine takes seconds on 30 characters and would not return
on thousands); they do not measure speed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from releaser.core.routing import GroupDef
from releaser.store.base import Store

from .conftest import Upstream, free_port, put_route, rollout_route

SERVICE = "svc"
PATHOLOGICAL = r"^(a+)+$"  # exponential for a backtracking engine on "aaa...a!"
HANG_GUARD_S = 10.0

_CHILD = """
import sys

import uvicorn

from releaser.router import Router
from releaser.serve import Gateway, GatewaySettings, StaticUpstreams

store_url, baseline, candidate, port = sys.argv[1:5]
router = Router(store_url, refresh_interval_ms=20, flush_interval_ms=100_000)
settings = GatewaySettings(attribute_headers={"email": "X-User-Email"})
app = Gateway("svc", router, StaticUpstreams(baseline, candidate), settings)
config = uvicorn.Config(
    app, host="127.0.0.1", port=int(port), log_level="error", access_log=False,
    lifespan="on", loop="auto", http="auto",
)
uvicorn.Server(config).run()
"""


@pytest.fixture
def gateway_process(
    store: Store, store_url: str, upstreams: tuple[Upstream, Upstream]
) -> Iterator[str]:
    """The URL of a gateway process whose only cohort is the group `email matches ^(a+)+$`."""
    group = GroupDef(rules=[("email", "matches", PATHOLOGICAL)])
    put_route(store, rollout_route(SERVICE, percent=0.0, groups=["aaa"], group_defs={"aaa": group}))
    base, cand = upstreams
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, store_url, base.url, cand.url, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline, "the gateway process did not start"
            time.sleep(0.05)
        yield url
    finally:
        child.terminate()
        try:
            child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()


def test_adversarial_header_values_are_answered_and_healthz_stays_prompt(
    gateway_process: str, upstreams: tuple[Upstream, Upstream]
) -> None:
    adversarial = ["a" * 30 + "!", "a" * 4_000 + "!", "a" * 8_000 + "b"]
    with httpx.Client(base_url=gateway_process, timeout=HANG_GUARD_S) as client:

        def routed(email: str) -> str:
            r = client.get("/score", headers={"X-User-Id": "u-1", "X-User-Email": email})
            assert r.status_code == 200, r.text
            upstream: str = r.json()["upstream"]
            return upstream

        # Many adversarial requests in flight while /healthz is asked again and again.
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = pool.map(routed, adversarial * 10)
            healths = [client.get("/healthz").status_code for _ in range(20)]
            served = list(answers)
        assert healths == [200] * 20
        assert served == ["baseline"] * 30  # none of them matches: not in the group

        # Values that do match still reach the candidate, long or short.
        assert routed("aaaa") == "candidate"
        assert routed("a" * 8_000) == "candidate"
        assert routed("ann@example.org") == "baseline"
        # A request without the attribute is outside the group.
        r = client.get("/score", headers={"X-User-Id": "u-1"})
        assert r.json()["upstream"] == "baseline"
    base, cand = upstreams
    assert cand.hits == 2 and base.hits == 32
