"""Model-server containers per release through a Docker Engine API (Docker or podman).

For each release that serves traffic (the stable one and, mid-rollout, the candidate) the
docker target builds an image from local files only and runs one container, labelled with
OCI labels (``org.opencontainers.image.*``) and releaser's own (``dev.releaser.*``: release
id, model version, prompt versions, data hash), publishes its port on 127.0.0.1 and waits
for its health path before reporting it ready. No registry is needed: the default image is
a stand-in model server (busybox ``httpd`` serving the release's manifest and a predictor
CGI script) on the base image ``.ci/podman.sh`` imports from Debian's busybox-static; a
``deploy.container.context`` folder with a Dockerfile replaces it.

As an :class:`~releaser.api.effects.EffectTarget` it follows every traffic change: mid-
rollout both releases run; after a rollback, abort or promotion only the stable one does
(the others are stopped and removed). Run ``releaser containers up SERVICE`` before
``rollout start`` so the candidate is healthy before any traffic moves.
:class:`ContainerUpstreams` lets the gateway find each release's container.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from releaser.core.effects import SideEffect, TrafficChange
from releaser.errors import BadInput, ExternalUnavailable

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.deploy import ContainerSpec
    from releaser.core.release import Release
    from releaser.router.snapshot import Assignment

__all__ = [
    "ContainerUpstreams",
    "DockerTarget",
    "containers_down",
    "containers_up",
    "release_labels",
]

logger = logging.getLogger("releaser.docker")

LABEL_SERVICE = "dev.releaser.service"
LABEL_RELEASE = "dev.releaser.release"
LABEL_ROLE = "dev.releaser.role"

_PREDICT_CGI = """#!/bin/sh
# Stand-in predictor: answers with the release it belongs to (no model download).
[ -n "$CONTENT_LENGTH" ] && head -c "$CONTENT_LENGTH" >/dev/null
printf 'Content-Type: application/json\\r\\n\\r\\n'
printf '{"release": "%s", "model": "%s", "prediction": "%s"}\\n' \\
  "$(cat /www/release-id)" "$(cat /www/model)" "$(cat /www/model)"
"""


def _engine_url(spec: ContainerSpec | None) -> str | None:
    return (spec.engine if spec is not None else None) or os.environ.get("DOCKER_HOST")


def _client(engine: str | None) -> Any:
    """A docker SDK client on ``engine`` (a Docker API URL) or $DOCKER_HOST."""
    import docker

    hint = "start Docker or 'podman system service', and set DOCKER_HOST or deploy.container.engine"
    if engine and engine.startswith("unix://") and not os.path.exists(engine[len("unix://") :]):
        # Checked first: the SDK leaks the socket of a failed unix connection.
        raise ExternalUnavailable(
            f"cannot reach a Docker Engine API at {engine}: no such socket", hint=hint
        )
    client = None
    try:
        client = docker.DockerClient(base_url=engine) if engine else docker.from_env()
        client.ping()
    except Exception as exc:
        if client is not None:
            client.close()
        raise ExternalUnavailable(
            f"cannot reach a Docker Engine API at {engine or 'the default socket'}: {exc}",
            hint=hint,
        ) from exc
    return client


def release_labels(service: str, release: Release) -> dict[str, str]:
    """OCI and releaser labels of a release's image and container."""
    content = release.content
    data = hashlib.sha256(
        "\n".join(
            f"{d.path}:{d.md5}" for d in sorted(content.datasets, key=lambda d: d.path)
        ).encode()
    ).hexdigest()[:16]
    return {
        "org.opencontainers.image.title": service,
        "org.opencontainers.image.version": release.id,
        "org.opencontainers.image.revision": content.code.sha,
        "org.opencontainers.image.created": release.created_at,
        "org.opencontainers.image.description": f"releaser model server for {service}",
        LABEL_SERVICE: service,
        LABEL_RELEASE: release.id,
        "dev.releaser.model": (
            f"{content.model.name}/{content.model.version}" if content.model else ""
        ),
        "dev.releaser.prompts": ",".join(f"{p.name}={p.version}" for p in content.prompts),
        "dev.releaser.data-hash": data if content.datasets else "",
    }


def _standin_context(release: Release, spec: ContainerSpec, labels: dict[str, str]) -> bytes:
    """A tar build context of the stand-in model server for ``release``."""
    label_lines = "".join(f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in labels.items())
    model = labels["dev.releaser.model"] or "none"
    manifest = json.dumps(
        {"release": release.id, "service": release.content.service, "labels": labels}
    )
    files = {
        "Dockerfile": (
            f"FROM {spec.base_image}\n{label_lines}COPY www /www\n"
            f"EXPOSE {spec.port}\n"
            f'CMD ["httpd", "-f", "-p", "{spec.port}", "-h", "/www"]\n'
        ),
        "www/index.html": manifest + "\n",
        "www/release.json": manifest + "\n",
        "www/release-id": release.id,
        "www/model": model,
        "www/" + (spec.health_path.strip("/") or "healthz"): "ok\n",
        "www/cgi-bin/predict": _PREDICT_CGI,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("www/cgi-bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Engine:
    """Build, run, health-check and remove the containers of one service."""

    def __init__(self, ws: Workspace, service: str) -> None:
        from releaser.config.deploy import ContainerSpec

        self.ws = ws
        self.service = service
        deploy = ws.config.service(service).deploy
        self.spec = deploy.container if deploy is not None else ContainerSpec()
        self.client = _client(_engine_url(self.spec))

    def __enter__(self) -> _Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def containers(self) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True, filters={"label": f"{LABEL_SERVICE}={self.service}"}
            )
        )

    def image(self, release: Release) -> str:
        tag = f"localhost/releaser-{self.service}:{release.id}"
        labels = release_labels(self.service, release)
        try:
            self.client.images.get(tag)
            return tag
        except Exception:  # noqa: BLE001 - not built yet
            pass
        if self.spec.context is not None:
            path = (self.ws.root / self.spec.context).as_posix()
            self.client.images.build(
                path=path, tag=tag, labels=labels, rm=True, buildargs={"RELEASE_ID": release.id}
            )
        else:
            context = _standin_context(release, self.spec, labels)
            self.client.images.build(
                fileobj=io.BytesIO(context), custom_context=True, tag=tag, labels=labels, rm=True
            )
        return tag

    def ensure(self, release_id: str, role: str) -> str:
        """Start the release's container unless it runs; wait for health; its URL."""
        from releaser.integrations._releases import stored_release

        for c in self.containers():
            if c.labels.get(LABEL_RELEASE) == release_id and c.status == "running":
                url = _url_of(c, self.spec.port)
                if url is not None:
                    self.wait_healthy(url)
                    return url
            if c.labels.get(LABEL_RELEASE) == release_id:
                c.remove(force=True)
        release = stored_release(self.ws.store, release_id)
        tag = self.image(release)
        labels = release_labels(self.service, release) | {LABEL_ROLE: role}
        container = self.client.containers.run(
            tag,
            detach=True,
            name=f"releaser-{self.service}-{release_id}",
            labels=labels,
            ports={f"{self.spec.port}/tcp": ("127.0.0.1", None)},
        )
        container.reload()
        url = _url_of(container, self.spec.port)
        if url is None:
            raise ExternalUnavailable(
                f"container {container.name} has no published port {self.spec.port}",
                hint="check the engine's port publishing (rootless engines need slirp4netns)",
            )
        self.wait_healthy(url)
        return url

    def wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + self.spec.health_timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + self.spec.health_path, timeout=2) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise ExternalUnavailable(
            f"{url}{self.spec.health_path} did not answer 200 within "
            f"{self.spec.health_timeout_s:g}s ({last})",
            hint="check the container's logs; raise deploy.container.health_timeout_s",
        )

    def remove_except(self, keep: set[str]) -> list[str]:
        removed = []
        for c in self.containers():
            if c.labels.get(LABEL_RELEASE) not in keep:
                c.remove(force=True)
                removed.append(c.name)
        return removed


def _url_of(container: Any, port: int) -> str | None:
    ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
    bindings = ports.get(f"{port}/tcp") or []
    for b in bindings:
        if b.get("HostPort"):
            host = b.get("HostIp") or "127.0.0.1"
            return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{b['HostPort']}"
    return None


def _serving(ws: Workspace, service: str) -> tuple[str | None, str | None]:
    """(stable, candidate) release ids from the service's route in the store."""
    from releaser.core.routing import ROUTE_KIND, ServiceRoute

    record = ws.store.get(ROUTE_KIND, service)
    if record is None:
        return None, None
    route = ServiceRoute.model_validate(record.value)
    return route.stable, route.candidate


def containers_up(ws: Workspace, service: str, releases: list[str] | None = None) -> list[str]:
    """Start (building if needed) the containers of ``releases`` or of the live route.

    Returns one line per container: release, role and URL. Raises BadInput when there is
    nothing to run, ExternalUnavailable when the engine or a health check fails.
    """
    stable, candidate = _serving(ws, service)
    wanted = [(r, "release") for r in releases] if releases else []
    if not wanted:
        wanted = [(r, role) for r, role in ((stable, "stable"), (candidate, "candidate")) if r]
    if not wanted:
        raise BadInput(
            f"service {service!r} has no release rolled out yet",
            hint=f"pass a release id: releaser containers up {service} --release ID",
        )
    with _Engine(ws, service) as engine:
        return [f"{rid} ({role}): {engine.ensure(rid, role)}" for rid, role in wanted]


def containers_down(ws: Workspace, service: str) -> list[str]:
    """Stop and remove every container of ``service``; their names."""
    with _Engine(ws, service) as engine:
        return engine.remove_except(set())


class DockerTarget:
    """Keeps one healthy container per serving release; removes the others."""

    name = "docker"

    def __init__(self, ws: Workspace, service: str) -> None:
        self.ws = ws
        self.service = service

    def prepare(self, releases: dict[str, str]) -> None:
        """Run each release's container and wait for its health check, before traffic moves."""
        with _Engine(self.ws, self.service) as engine:
            for release_id, role in releases.items():
                try:
                    engine.ensure(release_id, role)
                except Exception as exc:
                    raise ExternalUnavailable(
                        f"the {role} release {release_id} has no healthy container, so no "
                        f"traffic was moved: {exc}",
                        hint=f"releaser containers up {self.service} --release {release_id} "
                        "shows why; check the image and deploy.container.health_path",
                    ) from exc

    def apply(self, change: TrafficChange) -> SideEffect:
        """Run the stable (and live candidate) containers, remove the rest; never raises."""
        retry = f"releaser containers up {self.service}"
        try:
            keep: dict[str, str] = {}
            if change.stable:
                keep[change.stable] = "stable"
            live = change.status in ("in_progress", "paused")
            if live and change.candidate:
                keep[change.candidate] = "candidate"
            with _Engine(self.ws, self.service) as engine:
                removed = engine.remove_except(set(keep))
                urls = [f"{rid[:12]} {engine.ensure(rid, role)}" for rid, role in keep.items()]
        except Exception as exc:  # noqa: BLE001 - a target reports, never raises
            return SideEffect(self.name, "failed", f"{type(exc).__name__}: {exc}", retry)
        detail = "; ".join(urls) + (f"; removed {', '.join(removed)}" if removed else "")
        return SideEffect(self.name, "done", detail)


class ContainerUpstreams:
    """The gateway's upstreams from the engine: each release's running container.

    A background thread lists the service's running containers every ``refresh_s``; the
    request path reads a dict. A release without a running container has no upstream
    (the gateway answers 503 and counts an error).
    """

    def __init__(self, service: str, *, engine: str | None = None, refresh_s: float = 0.5):
        self.service = service
        self._engine = engine or os.environ.get("DOCKER_HOST")
        self._client = _client(self._engine)
        self._urls: dict[str, str] = {}
        self._port: int | None = None
        self._stop = threading.Event()
        self._refresh_s = refresh_s
        self._warned = False
        self.refresh()
        self._thread = threading.Thread(
            target=self._follow, name=f"releaser-containers[{service}]", daemon=True
        )
        self._thread.start()

    def refresh(self) -> None:
        """List the running containers now."""
        urls: dict[str, str] = {}
        found = self._client.containers.list(
            filters={"label": f"{LABEL_SERVICE}={self.service}", "status": "running"}
        )
        for c in found:
            rid = c.labels.get(LABEL_RELEASE)
            ports = (c.attrs.get("NetworkSettings") or {}).get("Ports") or {}
            for key in ports:
                url = _url_of(c, int(key.split("/")[0]))
                if rid and url:
                    urls[rid] = url
                    break
        self._urls = urls

    def _follow(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh()
                self._warned = False
            except Exception as exc:  # noqa: BLE001 - keep the last known map
                if not self._warned:
                    self._warned = True
                    logger.warning("releaser gateway: cannot list containers: %s", exc)

    def url_for(self, assignment: Assignment) -> str | None:
        """The URL of the container serving the assignment's release."""
        rid = assignment.release_id
        return self._urls.get(rid) if rid is not None else None

    def close(self) -> None:
        """Stop following the engine."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.close()
