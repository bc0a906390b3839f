"""Labels that are true: the gateway sends a release only to the endpoint serving it.

Upstream stand-ins answer with the release id they serve (their name), so a test sees
both where a request went and whether its ``X-Releaser-Release`` label matches.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from releaser.api.rollouts import service_state
from releaser.api.workspace import open_workspace
from releaser.core.routing import ServiceRoute
from releaser.demo.traffic import advance_to_step
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import BadInput
from releaser.router import Router
from releaser.router.snapshot import Assignment
from releaser.serve import Gateway, StaticUpstreams
from releaser.store import open_store

from .conftest import Upstream, put_route, rollout_route, wait_until
from .rollout_ws import SERVICE, add_deploy, to_step, two_releases
from .test_limits import GatewayProcess

pytestmark = pytest.mark.slow


def _set_releases(root: Path, mapping: dict[str, str]) -> None:
    """Write ``deploy.upstreams.releases`` (creating the deploy block once) and commit."""
    line = f"upstreams: {{releases: {json.dumps(mapping)}}}"
    cfg = root / "releaser.yaml"
    text = cfg.read_text()
    if "upstreams: {releases:" not in text:
        add_deploy(root, f"deploy:\n  {line}")
        return
    cfg.write_text(re.sub(r"upstreams: \{releases: .*\}", lambda _: line, text, count=1))
    subprocess.run(["git", "commit", "-qam", "endpoints"], cwd=root, check=True)


def _head(root: Path) -> tuple[tuple[int, str], int]:
    """The audit head and the store's change token: unchanged when nothing was written."""
    ws = open_workspace(root)
    try:
        return ws.store.audit_head(), ws.store.change_token()
    finally:
        ws.close()


def _served(client: httpx.Client, unit: str) -> tuple[str, str]:
    r = client.get("/predict", headers={"X-User-Id": unit})
    assert r.status_code == 200, r.text
    return r.json()["upstream"], r.headers["x-releaser-release"]


def test_after_promotion_stable_goes_to_the_new_releases_endpoint_with_a_true_label(
    release_ws: ExampleWorkspace, cli: Any, endpoints: tuple[Upstream, Upstream]
) -> None:
    root = release_ws.root
    one, two = endpoints
    mapping: dict[str, str] = {}

    def deploy(release: str) -> None:
        # The first release under its full id, the second under an 8-character prefix.
        endpoint = one if not mapping else two
        endpoint.name = release
        mapping[release if not mapping else release[:8]] = endpoint.url
        _set_releases(root, mapping)

    r1, r2 = two_releases(root, cli, before_start=deploy)
    to_step(root, "canary-25")
    status = cli("rollout", "status", SERVICE, "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out)["endpoints"] == {
        "stable": {"release": r1, "url": one.url},
        "candidate": {"release": r2, "url": two.url},
    }
    text = cli("rollout", "status", SERVICE)
    assert f"stable {r1} served by {one.url}" in text.out
    assert f"candidate {r2} served by {two.url}" in text.out

    gateway = GatewayProcess(root, service=SERVICE)
    try:
        units = [f"user-{i}" for i in range(200)]
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            before = [_served(client, u) for u in units]
            assert {up for up, _ in before} == {r1, r2}  # mid-rollout: both serve
            assert all(up == label for up, label in before)
            res = cli("rollout", "promote", SERVICE, "--force", "--reason", "labels drill")
            assert res.code == 0, res.err
            assert wait_until(lambda: all(_served(client, u)[0] == r2 for u in units[:20]))
            hits = one.hits
            after = [_served(client, u) for u in units]
            assert after == [(r2, r2)] * len(units)  # went to r2's endpoint, labelled r2
            assert one.hits == hits
    finally:
        gateway.close()
    status = json.loads(cli("rollout", "status", SERVICE, "--json").out)
    assert status["endpoints"] == {"stable": {"release": r2, "url": two.url}}


def test_a_release_without_an_endpoint_is_refused_at_start_serve_and_promote(
    release_ws: ExampleWorkspace, cli: Any, endpoints: tuple[Upstream, Upstream]
) -> None:
    root = release_ws.root
    one, two = endpoints
    ids: list[str] = []

    def deploy(release: str) -> None:
        ids.append(release)
        if len(ids) == 1:  # only the first release gets an endpoint
            _set_releases(root, {release: one.url})

    r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
    deploy(r1)
    assert cli("gate", SERVICE, "--release", r1).code == 0
    assert cli("rollout", "start", SERVICE, "--release", r1, "--initial").code == 0
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r2).code == 0

    # rollout start: r2 has no endpoint; nothing written
    head = _head(root)
    res = cli("rollout", "start", SERVICE, "--release", r2)
    assert res.code == 2
    assert f"no endpoint serves candidate release {r2}" in res.err
    assert "deploy.upstreams" in res.err and "releases" in res.err  # the hint
    assert _head(root) == head

    # with an endpoint for r2 the rollout starts; then r2's entry is removed (e.g. the
    # endpoint was taken down): serve and promote are refused, nothing written
    _set_releases(root, {r1: one.url, r2: two.url})
    assert cli("rollout", "start", SERVICE, "--release", r2).code == 0
    _set_releases(root, {r1: one.url})
    head = _head(root)
    served = subprocess.run(
        [str(Path(sys.executable).parent / "releaser"), "serve", SERVICE],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 2, served.stderr
    assert f"cannot serve {SERVICE}: no endpoint serves candidate release {r2}" in served.stderr
    res = cli("rollout", "promote", SERVICE, "--force", "--reason", "try")
    assert res.code == 2
    assert f"cannot promote {r2}: no endpoint serves stable release {r2}" in res.err
    assert _head(root) == head
    text = cli("rollout", "status", SERVICE)
    assert f"candidate {r2} served by no endpoint" in text.out

    # advance steps while it can, and refuses at the step that would promote
    ws = open_workspace(root)
    try:
        with pytest.raises(BadInput) as err:
            advance_to_step(ws, SERVICE, "no-such-step")
        assert f"cannot promote {r2}" in err.value.message
        state = service_state(ws, SERVICE)
        assert state.stable == r1 and state.active_rollout is not None
    finally:
        ws.close()


def test_role_form_works_until_a_promotion_would_make_it_lie(
    release_ws: ExampleWorkspace, cli: Any, endpoints: tuple[Upstream, Upstream]
) -> None:
    root = release_ws.root
    one, two = endpoints
    add_deploy(root, f'deploy:\n  upstreams: {{baseline: "{one.url}", candidate: "{two.url}"}}')
    r1, r2 = two_releases(root, cli)  # start is accepted: no promotion has happened
    to_step(root, "canary-25")
    one.name, two.name = r1, r2
    gateway = GatewayProcess(root, service=SERVICE)
    try:
        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            got = [_served(client, f"user-{i}") for i in range(100)]
        assert {up for up, _ in got} == {r1, r2} and all(up == lab for up, lab in got)
    finally:
        gateway.close()
    head = _head(root)
    res = cli("rollout", "promote", SERVICE, "--force", "--reason", "try")
    assert res.code == 2
    assert "read only until the first promotion" in res.err
    assert "deploy.upstreams" in res.err
    assert _head(root) == head
    # per-release entries lift the refusal: the promotion goes through
    _set_releases_with_roles(root, one.url, two.url, {r1: one.url, r2: two.url})
    assert cli("rollout", "promote", SERVICE, "--force", "--reason", "now mapped").code == 0


def _set_releases_with_roles(root: Path, base: str, cand: str, mapping: dict[str, str]) -> None:
    cfg = root / "releaser.yaml"
    old = f'upstreams: {{baseline: "{base}", candidate: "{cand}"}}'
    new = f"upstreams: {{releases: {json.dumps(mapping)}}}"
    assert old in cfg.read_text()
    cfg.write_text(cfg.read_text().replace(old, new, 1))
    subprocess.run(["git", "commit", "-qam", "per release"], cwd=root, check=True)


def test_a_route_changed_to_an_unserved_release_keeps_the_previous_mapping(
    store_url: str, serve_app: Any
) -> None:
    base, cand = Upstream("rel-base"), Upstream("rel-cand")
    store = open_store(store_url)
    try:
        put_route(store, rollout_route(SERVICE, percent=50.0))
        ups = StaticUpstreams(
            None, None, {"rel-base": base.url, "rel-cand": cand.url}, by_role=False
        )
        with Router(store_url, refresh_interval_ms=20) as router:
            running = serve_app(Gateway(SERVICE, router, ups))
            with httpx.Client(base_url=running.url, timeout=10) as client:
                units = [f"user-{i}" for i in range(100)]
                before = {u: _served(client, u) for u in units}
                assert {up for up, _ in before.values()} == {"rel-base", "rel-cand"}
                # another process promotes a release no endpoint serves
                put_route(store, ServiceRoute(service=SERVICE, stable="rel-new"))
                assert wait_until(lambda: "not served" in client.get("/healthz").json()["route"])
                health = client.get("/healthz").json()
                assert "rel-new" in health["route"]
                assert health["serving"] == {"stable": "rel-base", "candidate": "rel-cand"}
                assert {u: _served(client, u) for u in units} == before  # same, truthful
                metrics = client.get("/metrics").text
                assert f'releaser_gateway_route_unserved{{service="{SERVICE}"}} 1.0' in metrics
                # once the route names served releases again, it is followed
                put_route(store, ServiceRoute(service=SERVICE, stable="rel-cand"))
                assert wait_until(lambda: client.get("/healthz").json()["route"] == "served")
                assert all(_served(client, u) == ("rel-cand", "rel-cand") for u in units)
    finally:
        store.close()
        base.close()
        cand.close()


def test_role_urls_are_pinned_to_the_first_release_seen_in_each_role() -> None:
    def at(release: str | None, variant: str) -> Assignment:
        return Assignment(SERVICE, release, variant)  # type: ignore[arg-type]

    ups = StaticUpstreams("http://b", "http://c", pin_roles=True)
    assert ups.url_for(at(None, "stable")) == "http://b"  # before the first release
    assert ups.url_for(at("r1", "stable")) == "http://b"
    assert ups.url_for(at("r2", "candidate")) == "http://c"
    assert ups.url_for(at("r2", "stable")) == "http://c"  # promoted: still its endpoint
    assert ups.url_for(at("r1", "baseline")) == "http://b"
    assert ups.url_for(at("r3", "candidate")) is None  # the candidate URL serves r2
    listed = StaticUpstreams(None, None, {"38a2": "http://x"}, by_role=False)
    assert listed.url_for(at("38a2c1d0", "stable")) == "http://x"  # by prefix
    assert listed.url_for(at("9f01b7e4", "candidate")) is None
    assert listed.url_for(at(None, "stable")) is None
