"""The gateway of a real workspace: config-driven upstreams, and a rollback it follows."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from releaser.api.workspace import open_workspace
from releaser.core.bucketing import bucket
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import BadInput
from releaser.serve import gateway_for

from .conftest import Upstream
from .rollout_ws import SERVICE, add_deploy, to_step, two_releases

pytestmark = pytest.mark.slow


def test_after_rollback_the_candidate_gets_no_requests_within_a_second(
    release_ws: ExampleWorkspace,
    cli: Any,
    upstreams: tuple[Upstream, Upstream],
    serve_app: Any,
) -> None:
    root = release_ws.root
    base, cand = upstreams
    add_deploy(
        root,
        f"""
deploy:
  upstreams: {{baseline: "{base.url}", candidate: "{cand.url}"}}
  unit_header: X-Case-Worker
""",
    )
    r1, r2 = two_releases(root, cli)
    to_step(root, "canary-25")
    ws = open_workspace(root)
    with gateway_for(ws, SERVICE) as gateway:
        running = serve_app(gateway)
        seed = gateway.router.routes()[SERVICE].seed
        units = [f"worker-{i}" for i in range(400)]
        in_cohort = [u for u in units if bucket(seed, u) < 2500]
        with httpx.Client(base_url=running.url) as client:

            def served(unit: str) -> tuple[str, str]:
                r = client.get("/score", headers={"X-Case-Worker": unit})
                assert r.status_code == 200
                return r.json()["upstream"], r.headers["x-releaser-release"]

            before = {u: served(u) for u in units}
            assert {u for u, (up, _) in before.items() if up == "candidate"} == set(in_cohort)
            assert all(rel == (r2 if up == "candidate" else r1) for up, rel in before.values())
            res = cli("rollback", SERVICE, "--reason", "gateway drill", "--yes")
            assert res.code == 0, res.err
            switched_at = time.monotonic()
            # poll: within 1 s of the rollback, no unit of the cohort reaches the candidate
            while True:
                now = [served(u) for u in in_cohort]
                if all(up == "baseline" and rel == r1 for up, rel in now):
                    break
                assert time.monotonic() - switched_at < 1.0, "candidate still served after 1 s"
            hits = cand.hits
            for u in units:
                assert served(u) == ("baseline", r1)
            assert cand.hits == hits
    ws.close()


def test_a_service_without_upstreams_is_refused_with_a_hint(release_ws: ExampleWorkspace) -> None:
    ws = open_workspace(release_ws.root)
    try:
        with pytest.raises(BadInput) as err, gateway_for(ws, SERVICE):
            pass
        assert "no upstreams" in err.value.message and "deploy:" in (err.value.hint or "")
    finally:
        ws.close()
