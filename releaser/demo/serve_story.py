"""The gateway chapter of the demo: real HTTP through ``releaser serve``'s app, on loopback.

Two stand-in model endpoints (stdlib HTTP servers that answer with their own name) sit
behind the gateway (uvicorn in a thread); simulated users call it twice each, and the
story reports the split against the plan, stickiness and the release header. Given a
``rollback`` callable, it then rolls back and reports when the candidate stopped getting
requests. Library code: it reports through ``report`` and never prints.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "GatewayStory",
    "JsonHandler",
    "free_port",
    "run_gateway_story",
    "serve_in_thread",
    "serving",
]

Report = Callable[[str], None]


@dataclass(frozen=True)
class GatewayStory:
    """What the gateway chapter measured."""

    requests: int
    to_candidate: int
    sticky: bool
    headers_match: bool
    candidate_after_rollback_s: float | None
    """Seconds from the rollback until the candidate got no more requests (None: no rollback)."""


def _endpoint(name: str) -> ThreadingHTTPServer:
    body = json.dumps({"served_by": name}).encode()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            self.answer(body)

    return serve_in_thread(Handler)


class JsonHandler(BaseHTTPRequestHandler):
    """A stand-in endpoint's handler: keep-alive HTTP/1.1, JSON answers, no access log."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def answer(self, body: bytes) -> None:
        """A 200 with ``body`` as JSON."""
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_in_thread(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A stand-in endpoint on a free port of 127.0.0.1, served by a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@contextmanager
def serving(app: Any) -> Iterator[int]:
    """Serve an ASGI app with uvicorn in a thread on a free port of 127.0.0.1; its port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_gateway_story(
    store_url: str,
    service: str,
    report: Report,
    *,
    users: int = 1000,
    rollback: Callable[[], object] | None = None,
) -> GatewayStory:
    """Serve ``service``'s live route through the gateway and show where users went."""

    from releaser.router import Router
    from releaser.serve import Gateway, StaticUpstreams

    baseline, candidate = _endpoint("baseline"), _endpoint("candidate")
    router = Router(store_url, refresh_interval_ms=20)
    stack = ExitStack()
    try:
        # An endpoint per release, as deploy.upstreams.releases names them.
        live = router.routes()[service]
        releases = {
            str(live.stable): f"http://127.0.0.1:{baseline.server_address[1]}",
            str(live.candidate): f"http://127.0.0.1:{candidate.server_address[1]}",
        }
        upstreams = StaticUpstreams(None, releases=releases, by_role=False)
        gateway = Gateway(service, router, upstreams)
        port = stack.enter_context(serving(gateway))
        report(f"gateway on http://127.0.0.1:{port} in front of two stand-in endpoints")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def call(unit: str) -> tuple[str, str, str]:
            conn.request("GET", "/predict", headers={"X-User-Id": unit})
            r = conn.getresponse()
            served_by = json.loads(r.read())["served_by"]
            return served_by, r.headers["x-releaser-variant"], r.headers["x-releaser-release"]

        ids = [f"user-{i}" for i in range(users)]
        first = {u: call(u) for u in ids}
        second = {u: call(u) for u in ids}
        sticky = first == second
        headers_match = all(served == variant for served, variant, _ in first.values())
        to_candidate = sum(served == "candidate" for served, _, _ in first.values())
        route = router.routes().get(service)
        plan = f"{route.percent:g}%" if route is not None and route.candidate else "0%"
        report(
            f"  {2 * users} requests from {users} users: {to_candidate} users on the candidate "
            f"({100 * to_candidate / users:.1f}%, plan {plan}), "
            f"sticky: {'yes' if sticky else 'NO'}, X-Releaser-Release on every response"
        )
        after: float | None = None
        if rollback is not None:
            cohort = [u for u, (served, _, _) in first.items() if served == "candidate"]
            rollback()
            started = time.monotonic()
            while time.monotonic() - started < 10:
                if all(call(u)[0] == "baseline" for u in cohort):
                    after = time.monotonic() - started
                    break
            if after is not None:
                report(f"  after the rollback the candidate got no requests within {after:.2f}s")
            else:
                report("  after the rollback the candidate still got requests after 10s")
        conn.close()
        router.flush()
        return GatewayStory(2 * users, to_candidate, sticky, headers_match, after)
    finally:
        stack.close()
        router.close()
        for endpoint in (baseline, candidate):
            endpoint.shutdown()
            endpoint.server_close()
