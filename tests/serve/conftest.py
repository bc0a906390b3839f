"""Real HTTP parts for the gateway tests: upstream servers and the gateway under uvicorn.

Upstreams are stdlib HTTP/1.1 servers on 127.0.0.1 in threads that answer with their own
name (so a test sees where a request really went) and count what they served. The gateway
runs under a real uvicorn server in a thread, with the protocol ``releaser serve`` gives it
(proxied requests on its fast path); routes are written to a real sqlite store.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from releaser.core.audit import EventDraft
from releaser.core.routing import ROUTE_KIND, ServiceRoute
from releaser.serve import Gateway, gateway_config
from releaser.store import open_store
from releaser.store.base import Store, Write

AT = "2025-01-02T03:04:05Z"
SEED = 1_234_567


class Upstream:
    """A model endpoint stand-in: answers JSON naming itself, counts requests per path.

    ``/slow?s=SECONDS`` answers after that long; ``/sink`` reads the body in chunks and
    answers with its size only (for bodies too large to echo). ``behave``, when set, is
    called with the request's number (from 1) and returns (seconds to wait, status) for it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.hits = 0
        self.last_headers: dict[str, str] = {}
        self.last_content_lengths: list[str] = []
        self.shadow_hits = 0
        self.behave: Callable[[int], tuple[float, int]] | None = None
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def _sink(self, length: int) -> None:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                payload = json.dumps({"upstream": upstream.name, "received": length - remaining})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if self.path.startswith("/sink"):
                    self._sink(length)
                    return
                if self.path.startswith("/slow?s="):
                    time.sleep(float(self.path.partition("=")[2]))
                body = self.rfile.read(length) if length else b""
                with upstream._lock:
                    upstream.hits += 1
                    number = upstream.hits
                    upstream.shadow_hits += self.headers.get("x-releaser-shadow") == "1"
                    upstream.last_headers = {k.lower(): v for k, v in self.headers.items()}
                    upstream.last_content_lengths = self.headers.get_all("content-length") or []
                status = 500 if self.path.startswith("/fail") else 200
                if upstream.behave is not None:
                    wait, status = upstream.behave(number)
                    time.sleep(wait)
                payload = json.dumps(
                    {"upstream": upstream.name, "path": self.path, "echo": body.decode()}
                ).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the gateway gave up waiting (an upstream timeout test)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    """A baseline and a candidate upstream, running."""
    base, cand = Upstream("baseline"), Upstream("candidate")
    try:
        yield base, cand
    finally:
        base.close()
        cand.close()


@pytest.fixture
def endpoints() -> Iterator[tuple[Upstream, Upstream]]:
    """Two endpoints, renamed by a test to the release each serves once it exists."""
    one, two = Upstream("v1"), Upstream("v2")
    try:
        yield one, two
    finally:
        one.close()
        two.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RunningGateway:
    """An ASGI app served by uvicorn in a thread, at ``url`` (a Gateway as in production)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        if isinstance(app, Gateway):  # served as `releaser serve` serves it
            config = gateway_config(app, log_level="error", port=port)
        else:
            config = uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="on"
            )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture
def serve_app() -> Iterator[Callable[[Any], RunningGateway]]:
    """Serve ASGI apps under uvicorn for the test; stopped afterwards."""
    running: list[RunningGateway] = []

    def start(app: Any) -> RunningGateway:
        gw = RunningGateway(app)
        running.append(gw)
        return gw

    yield start
    for gw in running:
        gw.close()


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A fresh sqlite store."""
    return f"sqlite://{(tmp_path / 'state.db').as_posix()}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The test's own connection to the store (routers open their own)."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def rollout_route(service: str = "svc", *, percent: float = 30.0, **fields: Any) -> ServiceRoute:
    """A route mid-rollout from ``rel-base`` to ``rel-cand`` at ``percent``."""
    values: dict[str, Any] = {
        "service": service,
        "stable": "rel-base",
        "candidate": "rel-cand",
        "rollout_id": "ro-1",
        "step": 0,
        "step_name": "canary",
        "percent": percent,
        "seed": SEED,
    }
    values.update(fields)
    return ServiceRoute(**values)


def put_route(store: Store, route: ServiceRoute) -> None:
    """Create or replace the route record, as the rollout engine writes it."""
    current = store.get(ROUTE_KIND, route.service)
    expected = 0 if current is None else current.version
    store.commit(
        [Write(ROUTE_KIND, route.service, route.to_value(), expected)],
        EventDraft(actor="tests", action="route.set", subject=f"route/{route.service}", at=AT),
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes (a cap, not an assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
