"""Model-server containers per release on a real Docker-API engine (podman), behind the gateway.

Needs an engine: ``RELEASER_TEST_DOCKER_HOST`` (e.g. ``unix://.../podman.sock`` from
``.ci/podman.sh``) with the base image built; skipped with a reason otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from releaser.api.workspace import open_workspace
from releaser.core.bucketing import bucket
from releaser.demo.workspace import ExampleWorkspace

DOCKER_HOST_ENV = "RELEASER_TEST_DOCKER_HOST"
BASE_IMAGE = "localhost/releaser-base:busybox"
SERVE_TESTS = Path(__file__).resolve().parent.parent / "serve"
# Read at import: the shared autouse fixture clears RELEASER_* variables before each test.
ENGINE_URL = os.environ.get(DOCKER_HOST_ENV)


def _load(name: str, path: Path) -> ModuleType:
    """A helper module of the gateway tests, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


rollout_ws = _load("_serve_rollout_ws", SERVE_TESTS / "rollout_ws.py")
SERVICE: str = rollout_ws.SERVICE


@pytest.fixture
def engine() -> str:
    """The engine URL; skips without one or without the base image."""
    url = ENGINE_URL
    if not url:
        pytest.skip(
            f"container tests need a Docker-API engine in {DOCKER_HOST_ENV} (.ci/podman.sh)"
        )
    import docker

    client = docker.DockerClient(base_url=url)
    try:
        client.ping()
        client.images.get(BASE_IMAGE)
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable engine
        pytest.skip(f"engine at {url} unusable or {BASE_IMAGE} missing: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture
def docker_ws(
    release_ws: ExampleWorkspace, engine: str, cli: Any
) -> Iterator[tuple[Path, str, str]]:
    """The example workspace with the docker target, mid-rollout at canary-25; cleaned up."""
    root = release_ws.root
    rollout_ws.add_deploy(
        root,
        f"""
deploy:
  target: docker
  unit_header: X-Case-Worker
  container: {{engine: "{engine}", health_timeout_s: 60}}
""",
    )

    def up(release_id: str) -> None:
        res = cli("containers", "up", SERVICE, "--release", release_id)
        assert res.code == 0, res.out + res.err

    try:
        r1, r2 = rollout_ws.two_releases(root, cli, before_start=up)
        rollout_ws.to_step(root, "canary-25")
        yield root, r1, r2
    finally:
        cli("containers", "down", SERVICE, cwd=root)
        _remove_images(engine)


def _remove_images(engine: str) -> None:
    """Remove the images the test built (vfs storage keeps a full copy of each)."""
    import docker

    client = docker.DockerClient(base_url=engine)
    try:
        for image in client.images.list(filters={"label": f"dev.releaser.service={SERVICE}"}):
            client.images.remove(image.id, force=True)
    finally:
        client.close()


def _service_containers(engine: str) -> list[Any]:
    import docker

    client = docker.DockerClient(base_url=engine)
    try:
        return list(client.containers.list(filters={"label": f"dev.releaser.service={SERVICE}"}))
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.containers
def test_containers_split_sticky_and_rollback_stops_the_candidate(
    docker_ws: tuple[Path, str, str], engine: str, cli: Any
) -> None:
    from releaser.serve import gateway_for

    root, r1, r2 = docker_ws
    running = {c.labels["dev.releaser.release"]: c for c in _service_containers(engine)}
    assert set(running) == {r1, r2}
    labels = running[r2].labels
    assert labels["org.opencontainers.image.version"] == r2
    assert labels["org.opencontainers.image.title"] == SERVICE
    assert labels["dev.releaser.model"] == "case-triage/2"
    assert running[r1].labels["dev.releaser.model"] == "case-triage/1"
    assert "case-triage-system=" in labels["dev.releaser.prompts"]
    assert len(labels["dev.releaser.data-hash"]) == 16
    assert len(labels["org.opencontainers.image.revision"]) == 40

    serve_conftest = _load("_serve_conftest", SERVE_TESTS / "conftest.py")
    ws = open_workspace(root)
    try:
        with gateway_for(ws, SERVICE) as gateway:
            gw = serve_conftest.RunningGateway(gateway)
            try:
                seed = gateway.router.routes()[SERVICE].seed
                clients: list[httpx.Client] = []
                units = [f"worker-{i}" for i in range(5000)]

                local = threading.local()

                def send(unit: str) -> tuple[str, str, str]:
                    client = getattr(local, "client", None)
                    if client is None:
                        client = local.client = httpx.Client(base_url=gw.url, timeout=30)
                        clients.append(client)
                    r = client.get("/release.json", headers={"X-Case-Worker": unit})
                    assert r.status_code == 200, r.text
                    return unit, r.headers["x-releaser-release"], r.json()["release"]

                with ThreadPoolExecutor(8) as pool:
                    results = list(pool.map(send, units + units))  # 10k requests
                served: dict[str, set[str]] = {}
                for unit, header, body_release in results:
                    assert header == body_release  # the container of that release answered
                    served.setdefault(unit, set()).add(body_release)
                assert all(len(v) == 1 for v in served.values())  # sticky
                cohort = {u for u in units if bucket(seed, u) < 2500}
                assert {u for u, v in served.items() if v == {r2}} == cohort
                assert 1000 < len(cohort) < 1500

                res = cli("rollback", SERVICE, "--reason", "container drill", "--yes", cwd=root)
                assert res.code == 0, res.err
                assert "docker: done" in res.out
                switched_at = time.monotonic()
                sample = sorted(cohort)[:50]
                while True:
                    if all(send(u)[1] == r1 for u in sample):
                        break
                    assert time.monotonic() - switched_at < 1.0, "candidate served after 1 s"
                assert all(send(u)[2] == r1 for u in sorted(cohort)[50:150])
            finally:
                for c in clients:
                    c.close()
                gw.close()
    finally:
        ws.close()
    left = {c.labels["dev.releaser.release"] for c in _service_containers(engine)}
    assert left == {r1}  # the rollback stopped and removed the candidate
    _start_health_checks_containers_before_traffic_moves(root, engine, cli, r1, r2)


def _start_health_checks_containers_before_traffic_moves(
    root: Path, engine: str, cli: Any, r1: str, r2: str
) -> None:
    """With no `containers up`, `rollout start` runs and health-checks the containers first."""
    import subprocess

    from releaser.api.rollouts import service_state

    res = cli("rollout", "start", SERVICE, "--release", r2, cwd=root)
    assert res.code == 0, res.out + res.err
    assert {c.labels["dev.releaser.release"] for c in _service_containers(engine)} == {r1, r2}
    assert cli("rollout", "abort", SERVICE, "--reason", "next: a broken health check").code == 0
    assert {c.labels["dev.releaser.release"] for c in _service_containers(engine)} == {r1}

    cfg = root / "releaser.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "health_timeout_s: 60", "health_timeout_s: 2, health_path: /no-such-health"
        )
    )
    subprocess.run(["git", "commit", "-qam", "broken health path"], cwd=root, check=True)
    ws = open_workspace(root)
    try:
        route_before = ws.store.get("route", SERVICE)
    finally:
        ws.close()
    res = cli("rollout", "start", SERVICE, "--release", r2)
    assert res.code == 3, res.out + res.err
    assert "no traffic was moved" in res.err and "containers up" in res.err
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).active_rollout is None
        assert ws.store.get("route", SERVICE) == route_before
    finally:
        ws.close()


NO_ENGINE_CONFIG = """\
version: 1
project: docker-target
owners:
  - {name: Ops, email: ops@example.org, role: service-owner}
prompts: {backend: file}
services:
  assist:
    prompts: [assist-system]
    slos: {error_rate: 0.02}
    deploy:
      target: docker
      container: {engine: "unix://%s"}
"""


def test_the_target_is_configured_and_reports_failure_without_raising(tmp_path: Path) -> None:
    from releaser.api.effects import TrafficChange, configured_targets
    from releaser.integrations.docker_target import DockerTarget

    (tmp_path / "releaser.yaml").write_text(NO_ENGINE_CONFIG % (tmp_path / "none.sock"))
    ws = open_workspace(tmp_path)
    try:
        targets = configured_targets(ws, "assist")
        assert [type(t) for t in targets] == [DockerTarget]
        change = TrafficChange(
            service="assist",
            action="rollback",
            status="rolled_back",
            stable="rel-1",
            candidate=None,
            rollout_id="ro-1",
            step=None,
            percent=None,
            reason="drill",
            at="2030-01-01T00:00:00Z",
        )
        effect = targets[0].apply(change)
    finally:
        ws.close()
    assert effect.name == "docker" and effect.status == "failed"
    assert "no such socket" in effect.detail
    assert effect.retry == "releaser containers up assist"
