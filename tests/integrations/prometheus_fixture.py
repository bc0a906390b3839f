"""A real Prometheus server for tests, scraping a stand-in exporter the test drives.

``prometheus`` (session scope: one server per test process, i.e. per xdist worker) starts
``prometheus`` from PATH (or ``RELEASER_TEST_PROMETHEUS``) on a free port with a 1 s
scrape interval, scraping :class:`Exporter`, an HTTP server in a thread that serves the
text exposition format of counters and a histogram per (test, release). Each test labels
its series with its own ``test`` value, so tests sharing the server do not see each
other. Tests skip, saying why, when the binary is missing.

Import the fixtures into a test module (``from tests.integrations.prometheus_fixture import
exporter, prometheus``) and mark it ``pytest.mark.prometheus``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.conftest import free_port

BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class _Counts:
    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=lambda: dict.fromkeys(BUCKETS_S, 0.0))
    count: float = 0.0


class Exporter:
    """Per-(test, release) counters ``stub_requests_total``, ``stub_errors_total`` and the
    histogram ``stub_latency_seconds``, served at ``/metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Counts] = {}
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, test: str, release: str, requests: int, errors: int, seconds: float) -> None:
        """Count ``requests`` (``errors`` of them failed), each taking ``seconds``."""
        with self._lock:
            c = self._series.setdefault((test, release), _Counts())
            c.requests += requests
            c.errors += errors
            c.count += requests
            for le in BUCKETS_S:
                if seconds <= le:
                    c.buckets[le] += requests

    def restart(self, test: str, release: str) -> None:
        """The process serving ``release`` restarted: its counters begin again at 0."""
        with self._lock:
            self._series[(test, release)] = _Counts()

    def value(self, test: str, release: str) -> float:
        """The requests counter as exported now."""
        with self._lock:
            return self._series[(test, release)].requests

    def exposition(self) -> str:
        """The text exposition format of every series."""
        lines = []
        with self._lock:
            for (test, release), c in self._series.items():
                labels = f'test="{test}",release="{release}"'
                lines.append(f"stub_requests_total{{{labels}}} {c.requests}")
                lines.append(f"stub_errors_total{{{labels}}} {c.errors}")
                for le, v in [*c.buckets.items(), (math.inf, c.count)]:
                    bound = "+Inf" if math.isinf(le) else repr(le)
                    lines.append(f'stub_latency_seconds_bucket{{{labels},le="{bound}"}} {v}')
                lines.append(f"stub_latency_seconds_count{{{labels}}} {c.count}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Prometheus:
    """A running Prometheus server."""

    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def stop(self) -> None:
        """Stop it (and wait until it has)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def wait_for(self, selector: str, expected: dict[str, float], timeout_s: float = 15) -> None:
        """Wait until the latest scrape shows ``expected`` values per release."""
        deadline = time.monotonic() + timeout_s
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": selector}).json()
            seen = {
                r["metric"].get("release", ""): float(r["value"][1])
                for r in answer["data"]["result"]
            }
            if all(seen.get(k) == v for k, v in expected.items()):
                return
            time.sleep(0.2)
        raise AssertionError(f"Prometheus did not scrape {expected} in time (saw {seen})")


def prometheus_binary() -> str | None:
    """The prometheus executable to run, if any."""
    return os.environ.get("RELEASER_TEST_PROMETHEUS") or shutil.which("prometheus")


def start_prometheus(binary: str, directory: Path, target_port: int) -> Prometheus:
    """Start Prometheus scraping ``127.0.0.1:target_port`` every second; ready on return."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: stub\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n",
        encoding="utf-8",
    )
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError(f"prometheus exited: see {directory / 'prometheus.log'}")
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("prometheus did not become ready in 30 s")


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    """The stand-in exporter, for the whole test process."""
    served = Exporter()
    yield served
    served.close()


@pytest.fixture(scope="session")
def prometheus(
    exporter: Exporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A real Prometheus scraping :func:`exporter` every second (one per test process)."""
    binary = prometheus_binary()
    if binary is None:
        pytest.skip(
            "no prometheus binary (apt-get install prometheus, or set RELEASER_TEST_PROMETHEUS)"
        )
    server = start_prometheus(binary, tmp_path_factory.mktemp("prometheus"), exporter.port)
    yield server
    server.stop()
