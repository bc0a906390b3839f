"""Added latency and throughput of the gateway over calling the upstream directly.

Three processes on loopback: a trivial upstream (a raw ASGI app under uvicorn), the
gateway (``releaser.serve.Gateway`` under uvicorn, with a real sqlite store holding a
route mid-rollout at 50%, both variants pointing at the upstream) and the load generator.

Latency: the generator sends 200 requests/s to each path on a fixed schedule, interleaved
(the order alternating) so both see the same machine load, over one keep-alive connection
per path; a slow response delays the next send, so the achieved rate is printed. Targets:
added p50 <= 1 ms, added p99 <= 5 ms.

Throughput: ``wrk`` (Debian package) with 2 threads and 32 connections for 5 s against
each path, unit ids varying per request; target >= 1,000 requests/s through
the gateway.

    python bench/bench_gateway.py [--seconds 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

UPSTREAM = textwrap.dedent(
    """
    import sys, uvicorn
    BODY = b'{"prediction": "ok"}'
    HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"20")]
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error",
                access_log=False, lifespan="off")
    """
)

GATEWAY = textwrap.dedent(
    """
    import sys, uvicorn
    from releaser.core.audit import EventDraft
    from releaser.core.routing import ROUTE_KIND, ServiceRoute
    from releaser.router import Router
    from releaser.serve import Gateway, StaticUpstreams
    from releaser.store import open_store
    from releaser.store.base import Write
    store_url, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    route = ServiceRoute(service="bench", stable="rel-base", candidate="rel-cand",
                         rollout_id="ro-bench", step=0, step_name="half", percent=50.0, seed=7)
    with open_store(store_url) as store:
        store.commit([Write(ROUTE_KIND, "bench", route.to_value(), 0)],
                     EventDraft(actor="bench", action="route.set", subject="route/bench",
                                at="2025-01-01T00:00:00Z"))
    with Router(store_url) as router:
        app = Gateway("bench", router, StaticUpstreams(upstream, upstream))
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False,
                    lifespan="on")
    """
)

WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/predict", {["X-User-Id"] = "user-" .. counter})
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {timeout_s}s")


class Conn:
    """One keep-alive HTTP/1.1 connection with a minimal response reader."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, unit: str) -> int:
        self.sock.sendall(
            f"GET /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-User-Id: {unit}\r\n\r\n".encode()
        )
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"(?i)content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return status


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(direct_port: int, gateway_port: int, rate: float, seconds: float) -> None:
    direct, gateway = Conn(direct_port), Conn(gateway_port)
    for i in range(200):  # warm-up: connections, pools, snapshot
        direct.get(f"warm-{i}")
        gateway.get(f"warm-{i}")
    rng = random.Random(1)
    n = int(rate * seconds)
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(n):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        unit = f"user-{rng.randrange(1_000_000)}"
        order = (("direct", direct), ("gateway", gateway))
        for name, conn in order if i % 2 else order[::-1]:
            t0 = time.perf_counter()
            status = conn.get(unit)
            if status != 200:
                raise SystemExit(f"{name}: HTTP {status}")
            times[name].append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - start
    print(f"latency: {n} requests per path at {n / elapsed:.0f}/s each, loopback, keep-alive")
    print(f"  {'path':<10}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, values in times.items():
        print(
            f"  {name:<10}{pct(values, 0.5):>10.3f}{pct(values, 0.9):>10.3f}"
            f"{pct(values, 0.99):>10.3f}{max(values):>10.3f}"
        )
    added50 = pct(times["gateway"], 0.5) - pct(times["direct"], 0.5)
    added99 = pct(times["gateway"], 0.99) - pct(times["direct"], 0.99)
    print(
        f"  added by the gateway: p50 {added50:.3f} ms (target <= 1), "
        f"p99 {added99:.3f} ms (target <= 5)"
    )


def throughput(direct_port: int, gateway_port: int, seconds: int) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("throughput: skipped (install wrk: apt-get install -y wrk)")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
        script = f.name
    print(f"throughput: wrk -t2 -c32 -d{seconds}s, a different unit id per request")
    try:
        for name, port in (("direct", direct_port), ("gateway", gateway_port)):
            out = subprocess.run(
                [wrk, "-t2", "-c32", f"-d{seconds}s", "-s", script, f"http://127.0.0.1:{port}/"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            lat = re.search(r"Latency\s+(\S+)", out)
            print(
                f"  {name:<10}{float(rps.group(1)) if rps else 0:>10.0f} requests/s"
                f"  mean latency {lat.group(1) if lat else '?'}"
                f"  non-2xx {errors.group(1) if errors else 0}"
                + ("  (target >= 1000)" if name == "gateway" else "")
            )
    finally:
        os.unlink(script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run per path")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s per path")
    parser.add_argument("--wrk-seconds", type=int, default=5)
    args = parser.parse_args()
    up_port, gw_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        store_url = f"sqlite://{(Path(tmp) / 'state.db').as_posix()}"
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
        gateway = subprocess.Popen(
            [sys.executable, "-c", GATEWAY, store_url, str(gw_port), f"http://127.0.0.1:{up_port}"]
        )
        try:
            wait_listening(up_port, upstream)
            wait_listening(gw_port, gateway)
            print(f"gateway bench: {os.cpu_count()} cores, python {sys.version.split()[0]}")
            latency(up_port, gw_port, args.rate, args.seconds)
            throughput(up_port, gw_port, args.wrk_seconds)
        finally:
            for proc in (gateway, upstream):
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
