"""Bounded requests against a real ``releaser serve`` process: each abuse is cut off, others served.

Every test starts the gateway as its own process (``releaser serve --port 0``, the URL read
from what it prints) with small limits and short timeouts in releaser.yaml, abuses it over
raw sockets, and makes a normal request meanwhile that must succeed. Timeouts in the tests
are hang guards, never assertions about speed.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Upstream, wait_until

pytestmark = pytest.mark.slow

GUARD_S = 15.0  # longest any socket read may block before the test fails instead of hanging

CONFIG = """\
version: 1
project: limits
owners:
  - {{name: Ops, email: ops@example.org, role: service-owner}}
prompts: {{backend: file}}
services:
  assist:
    prompts: [assist-system]
    slos: {{error_rate: 0.02}}
    deploy:
      upstreams: {{baseline: "{upstream}"}}
      timeout_s: {timeout_s}
      limits: {limits}
"""


class GatewayProcess:
    """``releaser serve SERVICE --port 0`` in a workspace of its own; ``url`` as it printed."""

    def __init__(
        self,
        root: Path,
        *,
        nofile: int | None = None,
        extra_args: tuple[str, ...] = (),
        service: str = "assist",
    ) -> None:
        def limit_files() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"}
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "releaser"), "serve", service, "--port", "0"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=limit_files,
        )
        assert self.proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while "releaser gateway for" not in line:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"the gateway did not start: {self.stderr()}")
        self.url = line.split(" on ", 1)[1].split()[0]
        host_port = self.url.removeprefix("http://")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        assert wait_until(lambda: self._healthy(), timeout_s=30), self.stderr()

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def peak_rss_kib(self) -> int:
        """The process's peak resident memory (VmHWM), KiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def start_gateway(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream]
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start a gateway process with ``limits`` (and ``timeout_s``) in its releaser.yaml."""
    base, _ = upstreams
    started: list[GatewayProcess] = []

    def start(timeout_s: float = 30, nofile: int | None = None, **limits: Any) -> GatewayProcess:
        root = tmp_path / f"ws{len(started)}"
        root.mkdir()
        text = CONFIG.format(upstream=base.url, timeout_s=timeout_s, limits=json.dumps(limits))
        (root / "releaser.yaml").write_text(text)
        gw = GatewayProcess(root, nofile=nofile)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.close()


def assert_served(gw: GatewayProcess) -> None:
    """A normal request on a new connection gets the upstream's answer."""
    r = httpx.post(gw.url + "/predict", content=b"hello", timeout=GUARD_S)
    assert r.status_code == 200, r.text
    assert r.json()["upstream"] == "baseline" and r.json()["echo"] == "hello"


def connect(gw: GatewayProcess) -> socket.socket:
    sock = socket.create_connection((gw.host, gw.port), timeout=GUARD_S)
    return sock


def read_reply(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection (b"" on a reset)."""
    parts = []
    try:
        while chunk := sock.recv(65536):
            parts.append(chunk)
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return b"".join(parts)


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def trickle(sock: socket.socket, stop: threading.Event) -> threading.Thread:
    """Send one byte every 50 ms until the gateway cuts the connection or ``stop`` is set."""

    def run() -> None:
        while not stop.is_set():
            try:
                sock.send(b"x")
            except OSError:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- the port -----------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_a_port_out_of_range_exits_2_and_starts_nothing(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream], cli: Any, port: str
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    base, _ = upstreams
    (root / "releaser.yaml").write_text(CONFIG.format(upstream=base.url, timeout_s=30, limits={}))
    res = cli("serve", "assist", "--port", port, cwd=root)
    assert res.code == 2
    assert f"port {port} is out of range" in res.err and "1 to 65535" in res.err
    assert "releaser gateway for" not in res.out


def test_a_busy_port_exits_2_and_names_it(
    tmp_path: Path, upstreams: tuple[Upstream, Upstream], cli: Any
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    base, _ = upstreams
    (root / "releaser.yaml").write_text(CONFIG.format(upstream=base.url, timeout_s=30, limits={}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        res = cli("serve", "assist", "--port", port, cwd=root)
    assert res.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in res.err and "--port" in res.err
    assert "releaser gateway for" not in res.out


def test_port_0_listens_on_a_free_port_and_prints_that_url(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway()
    assert gw.port != 0
    assert httpx.get(gw.url + "/healthz", timeout=GUARD_S).json()["status"] == "ok"
    assert_served(gw)


# -- headers --------------------------------------------------------------------------------


def test_slow_headers_get_408_and_idle_connections_are_closed(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(header_timeout_s=0.5)
    partial = connect(gw)
    partial.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\n")
    idle = connect(gw)
    slow = connect(gw)
    slow.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\nx-pad: ")
    stop = threading.Event()
    trickler = trickle(slow, stop)
    assert_served(gw)
    assert status_of(read_reply(partial)) == 408
    assert read_reply(idle) == b""
    # one byte every 50 ms never completes the headers: cut off (408, or a reset when the
    # close meets bytes still in flight)
    assert status_of(read_reply(slow)) in (408, 0)
    stop.set()
    trickler.join(GUARD_S)
    assert_served(gw)


def test_the_next_request_on_a_kept_alive_connection_is_on_the_header_clock(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(header_timeout_s=0.5, keep_alive_s=60)
    kept = connect(gw)
    kept.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\n\r\n")
    first = b""
    while b"baseline" not in first:  # the first response, complete (its JSON names it)
        chunk = kept.recv(65536)
        assert chunk, "closed before the first response"
        first += chunk
    assert status_of(first) == 200
    kept.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\n")  # never finished
    assert_served(gw)
    assert status_of(read_reply(kept)) == 408
    assert_served(gw)


def test_an_idle_kept_alive_connection_is_closed_at_keep_alive_s(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(header_timeout_s=60, keep_alive_s=0.5)
    kept = connect(gw)
    kept.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\n\r\n")
    first = b""
    while b"baseline" not in first:  # the first response, complete (its JSON names it)
        chunk = kept.recv(65536)
        assert chunk, "closed before the first response"
        first += chunk
    assert status_of(first) == 200
    # closed without a word, long before the header clock's 60 s (or the read times out)
    assert read_reply(kept) == b""
    assert_served(gw)


def test_headers_past_the_limit_get_431(start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(max_header_bytes=4096)
    big = connect(gw)  # complete headers, too large (refused by the app)
    big.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8000 + b"\r\n\r\n")
    endless = connect(gw)  # headers that never end (refused before they are complete)
    endless.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 8000)
    assert_served(gw)
    assert status_of(read_reply(big)) == 431
    assert status_of(read_reply(endless)) == 431
    assert_served(gw)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET /predict HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: twelve\r\n\r\n",
    ],
)
def test_malformed_requests_get_400(
    start_gateway: Callable[..., GatewayProcess], request_bytes: bytes
) -> None:
    gw = start_gateway()
    bad = connect(gw)
    bad.sendall(request_bytes)
    assert_served(gw)
    assert status_of(read_reply(bad)) == 400
    assert_served(gw)


# -- bodies -----------------------------------------------------------------------------------


def test_a_slow_body_gets_408(start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(body_timeout_s=0.5)
    stalled = connect(gw)
    stalled.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789")
    slow = connect(gw)
    slow.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
    stop = threading.Event()
    trickler = trickle(slow, stop)
    assert_served(gw)
    assert status_of(read_reply(stalled)) == 408
    assert status_of(read_reply(slow)) in (408, 0)
    stop.set()
    trickler.join(GUARD_S)
    assert_served(gw)


def test_a_body_declared_past_the_limit_gets_413_without_being_read(
    start_gateway: Callable[..., GatewayProcess], upstreams: tuple[Upstream, Upstream]
) -> None:
    gw = start_gateway(max_body_bytes=1_048_576)
    base, _ = upstreams
    big = connect(gw)
    big.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 300000000\r\n\r\n")
    assert_served(gw)
    hits = base.hits
    reply = read_reply(big)
    assert status_of(reply) == 413 and b"1048576 bytes" in reply
    assert base.hits == hits  # never reached the upstream
    assert_served(gw)


def test_a_chunked_body_past_the_limit_is_cut_off(
    start_gateway: Callable[..., GatewayProcess], upstreams: tuple[Upstream, Upstream]
) -> None:
    gw = start_gateway(max_body_bytes=65_536)
    base, _ = upstreams
    hits = base.hits
    big = connect(gw)
    chunk = b"%x\r\n%s\r\n" % (16_384, b"a" * 16_384)

    def send() -> None:
        try:
            big.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(64):  # 1 MiB in all
                big.sendall(chunk)
        except OSError:
            pass  # cut off mid-body, as it should be

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    reply = read_reply(big)
    sender.join(GUARD_S)
    assert status_of(reply) in (413, 0)
    assert base.hits == hits  # a chunked body is read (bounded) before the upstream is called
    assert_served(gw)


def test_a_large_body_is_streamed_not_held_in_memory(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    size = 64 * 1_048_576
    gw = start_gateway(max_body_bytes=size)
    assert_served(gw)
    before = gw.peak_rss_kib()

    def body() -> Iterator[bytes]:
        block = b"b" * 1_048_576
        for _ in range(size // len(block)):
            yield block

    result: dict[str, Any] = {}

    def upload() -> None:
        r = httpx.post(
            gw.url + "/sink",
            content=body(),
            headers={"content-length": str(size)},
            timeout=60,
        )
        result["status"], result["json"] = r.status_code, r.json()

    uploader = threading.Thread(target=upload, daemon=True)
    uploader.start()
    assert_served(gw)
    uploader.join(60)
    assert result["status"] == 200 and result["json"]["received"] == size
    # the gateway's peak memory grew by far less than the body (a buffered body: 64 MiB+)
    assert gw.peak_rss_kib() - before < 16 * 1024


# -- concurrency ------------------------------------------------------------------------------


def test_past_the_request_limit_503_with_retry_after(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(max_concurrent_requests=2, body_timeout_s=60, retry_after_s=3)
    holders = []
    for _ in range(2):  # two requests in flight, their bodies still coming
        s = connect(gw)
        s.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
        holders.append(s)

    def refused() -> bool:
        r = httpx.post(gw.url + "/predict", content=b"hello", timeout=GUARD_S)
        return r.status_code == 503 and r.headers.get("retry-after") == "3"

    assert wait_until(refused, timeout_s=GUARD_S)
    # the gateway's own endpoints are still answered
    assert httpx.get(gw.url + "/healthz", timeout=GUARD_S).status_code == 200
    metrics = httpx.get(gw.url + "/metrics", timeout=GUARD_S).text
    assert 'reason="too_many_requests"' in metrics
    for s in holders:
        s.close()
    # the slots free as the holders leave: normal requests are served again
    assert wait_until(lambda: _served_now(gw), timeout_s=GUARD_S)


def _served_now(gw: GatewayProcess) -> bool:
    return httpx.post(gw.url + "/predict", content=b"x", timeout=GUARD_S).status_code == 200


def test_slow_connections_past_the_limit_do_not_lock_out_normal_clients(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(max_connections=20, header_timeout_s=60)
    slow = []
    for _ in range(60):
        s = connect(gw)
        s.sendall(b"GET /predict HTTP/1.1\r\nhost: x\r\n")
        slow.append(s)
    for _ in range(5):
        assert_served(gw)
    # the longest-waiting slow connections made room: at most 20 are still open

    def closed_by_gateway() -> int:
        ready, _, _ = select.select(slow, [], [], 0)
        return sum(s.recv(1) == b"" for s in ready)

    assert wait_until(lambda: closed_by_gateway() >= 40, timeout_s=GUARD_S)
    assert_served(gw)
    for s in slow:
        s.close()


def test_a_thousand_slow_connections_under_a_low_file_limit(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    # The case, scaled: open files 256, default limits (max_connections capped at
    # 128), 1,000 connections sending nothing: every normal request is still served.
    gw = start_gateway(nofile=256, header_timeout_s=60)
    slow = [connect(gw) for _ in range(1000)]
    try:
        for _ in range(20):
            assert_served(gw)
    finally:
        for s in slow:
            s.close()
    assert gw.proc.poll() is None


# -- the upstream -------------------------------------------------------------------------------


def test_an_upstream_too_slow_gets_504(start_gateway: Callable[..., GatewayProcess]) -> None:
    gw = start_gateway(timeout_s=0.3)
    result: dict[str, Any] = {}

    def call() -> None:
        r = httpx.get(gw.url + "/slow?s=2", timeout=GUARD_S)
        result["status"], result["json"] = r.status_code, r.json()

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    assert_served(gw)
    caller.join(GUARD_S)
    assert result["status"] == 504 and result["json"]["error"] == "upstream timeout"
    assert_served(gw)
