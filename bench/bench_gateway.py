"""Added latency and throughput of the gateway over calling the upstream directly.

Processes on loopback: a trivial upstream (a raw ASGI app under uvicorn), gateways
(``releaser.serve.Gateway`` served as ``releaser serve`` serves it,
``releaser.serve.gateway_config``: uvicorn with the gateway's own protocol, whose fast path
proxies the common request without ASGI, no Server/Date headers; each with a real sqlite
store holding a route mid-rollout at 50%, both variants pointing at the upstream), nginx if
installed, and the load generator. The machine's cores are shared by all of them.

Latency: the generator sends 200 requests/s to each path on a fixed schedule, over one
keep-alive connection per path, in an order shuffled each tick so every path sees the same
machine load; a slow response delays the next send, so the achieved rate is printed. The
paths: the upstream directly; (a) a gateway with a percentage-only route; (b) a gateway
whose route's cohort also takes a group defined by a ``matches`` rule on a header
attribute (``X-Tier`` -> ``tier``, pattern ``^(a+)+$``), requests carrying an ordinary
value; (c) the same route in its own gateway, requests carrying ``'a' * 30 + '!'``, a value
on which a backtracking engine explores 2**30 paths (RE2 runs it in linear time); (d) a
gateway in a shadow step: every request served by the stable release, 10% also mirrored to
the candidate (the same upstream) after the response. Targets
for each gateway path, against the direct call of the same run: added p50 <= 1 ms, added
p99 <= 5 ms; and (c) within noise of (b), beside the rule's test timed alone on both values.

Throughput: ``wrk`` (Debian package) against the upstream directly, gateway (a), the same
gateway with every request through its ASGI app (uvicorn's protocol with the gateway's
limits: the design before the fast path, measured in the same run), and, if installed,
nginx as a reverse proxy to the same upstream (keep-alive to the upstream,
``worker_processes 1`` like the gateway's single process), all with the same threads,
connections and duration, in interleaved rounds (the median is compared). wrk runs one
thread: on 2 cores, two threads gave direct 19.0k then 32.6k requests/s in two runs, one
thread 18.1k and 17.7k. Target: the gateway at >= 50% of the direct call's requests/s.

Where the time goes: each wrk run also reads the machine's busy CPU time (/proc/stat, all
cores, the kernel's loopback work included) and divides it by the requests done, and the
exact CPU of the one process serving a path (the scheduler's count,
/proc/PID/task/*/schedstat; /proc/PID/stat's tick-sampled times miss half of it): the
upstream for the direct call, the gateway process for (a) and its ASGI-only twin. On a
shared machine the busy time and the requests/s move with the other work; the gateway's
own CPU a request, next to the upstream's in the same rounds, is the steadier figure.
py-spy (``pip install py-spy`` into the bench's environment; it needs ptrace) then samples
gateway (a), native frames included, during a further wrk run, not a measured one.

The fast path (``releaser.serve.protocol``): a proxied request with a body of at most
64 KiB is routed from httptools' callbacks, sent on a pooled upstream connection that is
itself an asyncio protocol (``releaser.serve.upstream_pool``), and answered in one write
with the upstream's head passed on as received plus the two marks. Per request: one read
and one write on each side (strace over a wrk run: 2.0 writes and 2.0 reads a request, no
``getpid``; the ASGI path: 1 write, 1 writev, 2 reads and 3 ``getpid``), and no task,
future, stream reader, ASGI scope or message, and no timer (the read timeout, the header
clock and the keep-alive are one timer per connection, pushed on rather than made anew).
The gateway process's own CPU a request, interleaved rounds on this 2-core machine while
other test suites ran (so every figure was inflated about 2.5 times over a quiet
machine, where the upstream costs 30 us and the ASGI gateway 86): fast path 142-183 us,
the ASGI path 227-282, the upstream 71-96 in the same rounds; the fast path costs 0.60-0.68
of the ASGI path, and 1.6-2.1 times the upstream (the ASGI path 2.4-2.9 times). What
remains, by tick-sampled user and system time: about two thirds in user space (the
interpreter running the protocol callbacks, routing, recording, prometheus counters;
uvloop; httptools), a third in the kernel (the two reads and two writes, loopback
delivery included). py-spy puts about half of its wall-clock samples in ``write``, but
much of that is the process preempted by the reader it woke, not CPU. Beyond this: one
Python process cannot use the second core without splitting the gateway's in-flight
limit, router and /metrics across processes; and every request still runs about forty
Python functions (uvicorn's httptools callbacks, the gateway's, the router's recording).
The request counter and latency histogram are plain counts read at scrape time
(``releaser.serve.metrics``): prometheus-client's locked Counter and Histogram cost 1.30 us
a request, timed alone, against 0.33 us now. On a quiet machine of the faster kind (the
same 2 cores; ``dvc --version`` 0.13 s), with that change: the gateway process 42 us a
request against the upstream's 25, throughput 55% of direct (18.7k-21.6k against
38.2k-42.2k), the ASGI path 30%, nginx 86%; two later runs, with the machine quieter
still, 55% and 55% (26.9k against 48.7k; the gateway process 33 us, the upstream 20, the
ASGI path 30%, nginx 88-93%); before it, in two runs the same day, 51% and 54% with the
gateway process at 44-45 us. Time in the gateway process by ``perf`` (user
and kernel): the interpreter 57%, the kernel 33% (loopback reads, writes and wake-ups),
libc 4%, uvloop 3%, httptools 2%.

    python bench/bench_gateway.py [--seconds 10] [--rate 200] [--wrk-seconds 5]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from collections import Counter
from pathlib import Path

PATTERN = "^(a+)+$"
SHADOW_PERCENT = 10.0
SHADOWING = f"(d) gateway, shadowing {SHADOW_PERCENT:g}%"
ASGI_ONLY = "(a) gateway, all through ASGI"
NORMAL_TIER = "gold"
ADVERSARIAL_TIER = "a" * 30 + "!"

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

# As releaser.serve.server.run_gateway configures uvicorn, with the route written first.
# An empty pattern argument: a percentage-only route; else a group with a matches rule. A
# sixth argument "asgi": every request through the ASGI app (uvicorn's protocol with the
# gateway's limits, as before the fast path), for the comparison.
GATEWAY = textwrap.dedent(
    """
    import sys, uvicorn
    from releaser.core.audit import EventDraft
    from releaser.core.routing import ROUTE_KIND, GroupDef, ServiceRoute
    from releaser.router import Router
    from releaser.serve import Gateway, GatewaySettings, StaticUpstreams, gateway_config
    from releaser.serve.limits import bounded_protocol
    from releaser.store import open_store
    from releaser.store.base import Write
    store_url, port, upstream, pattern = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    shadow = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    asgi_only = len(sys.argv) > 6 and sys.argv[6] == "asgi"
    groups = {"tier-a": GroupDef(rules=[("tier", "matches", pattern)])} if pattern else {}
    if shadow:  # a shadow step: everyone on the stable release, a share mirrored
        from releaser.core.shadow import ShadowPlan
        route = ServiceRoute(service="bench", stable="rel-base", candidate="rel-cand",
                             rollout_id="ro-bench", step=0, step_name="shadow", percent=0.0,
                             seed=7, shadow=ShadowPlan(percent=shadow))
    else:
        route = ServiceRoute(service="bench", stable="rel-base", candidate="rel-cand",
                             rollout_id="ro-bench", step=0, step_name="half", percent=50.0,
                             seed=7, groups=sorted(groups), group_defs=groups)
    with open_store(store_url) as store:
        store.commit([Write(ROUTE_KIND, "bench", route.to_value(), 0)],
                     EventDraft(actor="bench", action="route.set", subject="route/bench",
                                at="2025-01-01T00:00:00Z"))
    settings = GatewaySettings(attribute_headers={"tier": "X-Tier"} if pattern else {})
    with Router(store_url) as router:
        app = Gateway("bench", router, StaticUpstreams(upstream, upstream), settings)
        config = gateway_config(app, log_level="error", port=port)
        if asgi_only:
            config.http = bounded_protocol(settings.limits)
        uvicorn.Server(config).run()
    """
)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    upstream bench_upstream {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

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

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.buf = b""

    def get(self, unit: str) -> int:
        self.sock.sendall(
            f"GET /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-User-Id: {unit}\r\n"
            f"{self.extra}\r\n".encode()
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


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def latency(paths: dict[str, Conn], rate: float, seconds: float) -> dict[str, list[float]]:
    """Per-path response times in ms: every path once per tick, in a shuffled order."""
    conns = list(paths.items())
    for i in range(200):  # warm-up: connections, pools, snapshot
        for _, conn in conns:
            conn.get(f"warm-{i}")
    rng = random.Random(1)
    n = int(rate * seconds)
    times: dict[str, list[float]] = {name: [] for name in paths}
    interval = 1.0 / rate
    start = time.perf_counter()
    for i in range(n):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        unit = f"user-{rng.randrange(1_000_000)}"
        # A fresh order each tick: a rotation keeps the cyclic order, so each path would
        # always follow the same other path and inherit its effect on the machine.
        rng.shuffle(conns)
        for name, conn in conns:
            t0 = time.perf_counter()
            status = conn.get(unit)
            if status != 200:
                raise SystemExit(f"{name}: HTTP {status}")
            times[name].append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - start
    print(
        f"latency: {n} requests per path at {n / elapsed:.0f}/s each (target rate {rate:.0f}), "
        "loopback, keep-alive, order shuffled per tick"
    )
    print(f"  {'path':<38}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, values in times.items():
        print(
            f"  {name:<38}{pct(values, 0.5):>9.3f}{pct(values, 0.9):>9.3f}"
            f"{pct(values, 0.99):>9.3f}{max(values):>9.3f}"
        )
    direct = times["direct"]
    print("  added over direct (targets: p50 <= 1 ms, p99 <= 5 ms)")
    for name, values in times.items():
        if name == "direct":
            continue
        added50 = pct(values, 0.5) - pct(direct, 0.5)
        added99 = pct(values, 0.99) - pct(direct, 0.99)
        print(
            f"  {name:<38}p50 {added50:+.3f} ms  p99 {added99:+.3f} ms  "
            f"{verdict(added50 <= 1.0 and added99 <= 5.0)}"
        )
    return times


def rule_cost(times: dict[str, list[float]], normal: str, adversarial: str) -> None:
    """Adversarial against ordinary header value: end to end, and the rule test alone."""
    from releaser.core.bucketing import compile_pattern

    d50 = pct(times[adversarial], 0.5) - pct(times[normal], 0.5)
    d99 = pct(times[adversarial], 0.99) - pct(times[normal], 0.99)
    test = compile_pattern(PATTERN)
    runs = 200_000
    cost = {
        value: min(timeit.repeat(lambda v=value: test(v), number=runs, repeat=5)) / runs * 1e6
        for value in (NORMAL_TIER, ADVERSARIAL_TIER)
    }
    # Same cost: within the run's noise end to end (0.1 ms at p50, 1 ms at p99).
    same = d50 <= 0.1 and d99 <= 1.0
    print(
        f"  adversarial {ADVERSARIAL_TIER[:3]}..{ADVERSARIAL_TIER[-3:]} ({len(ADVERSARIAL_TIER)} "
        f"chars) vs ordinary {NORMAL_TIER!r}: p50 {d50:+.3f} ms, p99 {d99:+.3f} ms; "
        f"{PATTERN} test alone {cost[ADVERSARIAL_TIER]:.2f} vs {cost[NORMAL_TIER]:.2f} us "
        f"{verdict(same)}"
    )


def run_wrk(wrk: str, script: str, port: int, threads: int, conns: int, seconds: int) -> str:
    return subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{conns}",
            f"-d{seconds}s",
            "-s",
            script,
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def cpu_busy_s() -> float | None:
    """Seconds of CPU the whole machine has spent busy (all cores, /proc/stat), if known."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def start_nginx(tmp: Path, upstream_port: int) -> tuple[subprocess.Popen[bytes], int] | str:
    """nginx proxying to the upstream on a free port, or why not."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if nginx is None:
        return "nginx is not installed (apt-get install -y nginx)"
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, upstream_port=upstream_port, port=port))
    proc = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc, timeout_s=10)
    except SystemExit as exc:
        proc.kill()
        proc.wait()
        return f"nginx did not start ({exc})"
    return proc, port


def process_cpu_s(pid: int) -> float | None:
    """Seconds of CPU a process's threads have run (the scheduler's exact count), if known."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def throughput(
    wrk: str,
    script: str,
    targets: dict[str, int | str],
    args: argparse.Namespace,
    servers: dict[str, int] | None = None,
) -> None:
    """wrk against every target, in interleaved rounds; medians and ratios to direct.

    ``servers``: target -> the pid of the one process serving it, whose own CPU a request
    is printed too (exact, unlike the machine's busy time, which other work on a shared
    machine inflates).
    """
    threads, conns, seconds = args.wrk_threads, args.wrk_connections, args.wrk_seconds
    rounds = args.wrk_rounds
    print(
        f"throughput: wrk -t{threads} -c{conns} -d{seconds}s for every path, {rounds} rounds "
        "interleaved (median, range), a different unit id per request"
    )
    ports = {name: port for name, port in targets.items() if isinstance(port, int)}
    rps: dict[str, list[float]] = {name: [] for name in ports}
    latencies: dict[str, list[str]] = {name: [] for name in ports}
    errors: Counter[str] = Counter()
    busy_us: dict[str, list[float]] = {name: [] for name in ports}
    own_us: dict[str, list[float]] = {name: [] for name in ports}
    servers = servers or {}
    for _ in range(rounds):
        for name, port in ports.items():
            pid = servers.get(name)
            own_before = process_cpu_s(pid) if pid else None
            before = cpu_busy_s()
            out = run_wrk(wrk, script, port, threads, conns, seconds)
            after = cpu_busy_s()
            own_after = process_cpu_s(pid) if pid else None
            done = re.search(r"(\d+) requests in", out)
            if before is not None and after is not None and done and int(done.group(1)):
                busy_us[name].append((after - before) / int(done.group(1)) * 1e6)
            if own_before is not None and own_after is not None and done and int(done.group(1)):
                own_us[name].append((own_after - own_before) / int(done.group(1)) * 1e6)
            found = re.search(r"Requests/sec:\s*([\d.]+)", out)
            failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            lat = re.search(r"Latency\s+(\S+)", out)
            rps[name].append(float(found.group(1)) if found else 0.0)
            latencies[name].append(lat.group(1) if lat else "?")
            errors[name] += int(failed.group(1)) if failed else 0
    direct = statistics.median(rps["direct"])
    for name, port in targets.items():
        if isinstance(port, str):
            print(f"  {name:<38}skipped: {port}")
            continue
        median = statistics.median(rps[name])
        line = (
            f"  {name:<38}{median:>8.0f} requests/s ({min(rps[name]):.0f}-{max(rps[name]):.0f})"
            f"  mean latency {'/'.join(latencies[name])}  non-2xx {errors[name]}"
        )
        if busy_us[name]:
            line += f"  CPU {statistics.median(busy_us[name]):.0f} us/request"
        if own_us[name]:
            line += f" (its server process {statistics.median(own_us[name]):.0f})"
        if name != "direct" and direct:
            ratio = median / direct
            line += f"  {ratio:.0%} of direct"
            if name == "(a) gateway":
                line += f" (target >= 50%) {verdict(ratio >= 0.5)}"
        print(line)


def profile(wrk: str, script: str, pid: int, port: int, args: argparse.Namespace) -> None:
    """Sample the gateway with py-spy under a wrk run; print the top cost centres."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.access(spy, os.X_OK):
        print("profile: skipped (pip install py-spy into the bench environment)")
        return
    stacks = None
    for native in (["--native"], []):  # native frames show the system calls, where supported
        stacks = _sample(spy, native, wrk, script, pid, port, args)
        if stacks is not None:
            break
    if stacks is None:
        print("profile: skipped (py-spy could not sample the gateway; it needs ptrace)")
        return
    own: Counter[str] = Counter()
    parts: Counter[str] = Counter()
    in_syscalls: Counter[str] = Counter()
    total = 0
    for line in stacks:
        frames_text, _, count_text = line.rpartition(" ")
        count = int(count_text)
        raw_frames = frames_text.split(";")
        frames = [_frame(f) for f in raw_frames]
        if any(f in _IDLE for f in frames):
            continue
        total += count
        leaf = raw_frames[-1].split(" (")[0]
        own[leaf if not leaf.startswith("0x") else "(unnamed native)"] += count
        part = _part(frames)
        parts[part] += count
        if leaf in _SYSCALLS:
            in_syscalls[part] += count
            in_syscalls["all"] += count
    if not total:
        print("profile: no samples")
        return
    print(
        f"profile of the gateway (a) under the same wrk load: {total} samples by py-spy, "
        f"{in_syscalls['all'] / total:.0%} in socket system calls"
    )
    print(
        "  by part (of it in system calls): "
        + ", ".join(
            f"{n} {c / total:.0%} ({in_syscalls[n] / total:.0%})" for n, c in parts.most_common(6)
        )
    )
    print("  top self: " + ", ".join(f"{n} {c / total:.0%}" for n, c in own.most_common(6)))


def _sample(
    spy: str,
    native: list[str],
    wrk: str,
    script: str,
    pid: int,
    port: int,
    args: argparse.Namespace,
) -> list[str] | None:
    """py-spy's collapsed stacks of ``pid`` during one wrk run, or None if it failed."""
    seconds = args.wrk_seconds
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "gateway.txt"
        options = ["--duration", str(seconds), "--rate", "250", "--format", "raw"]
        spy_proc = subprocess.Popen(
            [spy, "record", "--pid", str(pid), *native, *options, "--output", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # attached before the load starts
        run_wrk(wrk, script, port, args.wrk_threads, args.wrk_connections, seconds)
        if spy_proc.wait(timeout=60) != 0 or not raw.exists():
            return None
        return raw.read_text().splitlines()


# A background thread waiting (the router's store follower): not work.
_IDLE = frozenset({"threading.Condition.wait", "threading.Event.wait"})
_SYSCALLS = frozenset(
    {"write", "writev", "send", "sendmsg", "read", "recv", "recvmsg", "epoll_wait", "epoll_pwait"}
)
# (module, function prefix) -> part of the request's path; the frame nearest the leaf wins.
_PARTS = (
    ("upstream_pool", "", "upstream client"),
    ("upstream_client", "", "upstream client"),
    ("protocol", "", "gateway fast path (parse, route, answer)"),
    ("httptools_impl", "RequestResponseCycle.send", "response to the client (uvicorn send)"),
    ("httptools_impl", "", "request parsing (uvicorn, httptools)"),
    ("limits", "", "request parsing (uvicorn, httptools)"),
    ("router", "", "routing and recording"),
    ("snapshot", "", "routing and recording"),
    ("bucketing", "", "routing and recording"),
    ("metrics_buffer", "", "routing and recording"),
    ("metrics", "", "prometheus metrics"),
    ("gateway", "", "gateway (headers, body, marks)"),
    ("runners", "", "event loop (uvloop)"),
)


def _part(frames: list[str]) -> str:
    for frame in reversed(frames):
        module, _, function = frame.partition(".")
        for name, prefix, part in _PARTS:
            if module == name and function.startswith(prefix):
                return part
    return "other"


def _frame(text: str) -> str:
    """'function (path/module.py:line)' -> 'module.function'."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", text)
    if not match:
        return text
    return f"{Path(match.group(2)).stem}.{match.group(1)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run per path")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s per path")
    parser.add_argument("--wrk-seconds", type=int, default=5)
    parser.add_argument("--wrk-rounds", type=int, default=3)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    up_port = free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)

        def start_gateway(
            name: str, pattern: str, shadow: float = 0.0, path: str = "fast"
        ) -> tuple[subprocess.Popen[bytes], int]:
            port = free_port()
            store_url = f"sqlite://{(tmp / f'{name}.db').as_posix()}"
            cmd = [sys.executable, "-c", GATEWAY, store_url, str(port), upstream_url, pattern]
            cmd += [str(shadow), path]
            procs.append(subprocess.Popen(cmd))
            return procs[-1], port

        try:
            upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
            procs.append(upstream)
            # One process per gateway path: a request never finds its gateway just woken
            # by another path's request, which made (c) look faster than (b).
            gateway, gw_port = start_gateway("plain", "")
            ruled, rule_port = start_gateway("rule", PATTERN)
            ruled_again, adversarial_port = start_gateway("rule-adversarial", PATTERN)
            shadowing, shadow_port = start_gateway("shadow", "", SHADOW_PERCENT)
            asgi, asgi_port = start_gateway("asgi", "", path="asgi")
            wait_listening(up_port, upstream)
            wait_listening(shadow_port, shadowing)
            for proc, port in ((gateway, gw_port), (ruled, rule_port)):
                wait_listening(port, proc)
            wait_listening(adversarial_port, ruled_again)
            wait_listening(asgi_port, asgi)
            print(f"gateway bench: {os.cpu_count()} cores, python {sys.version.split()[0]}")
            normal = f"(b) gateway, rule, X-Tier: {NORMAL_TIER}"
            adversarial = "(c) gateway, rule, adversarial X-Tier"
            paths = {
                "direct": Conn(up_port),
                "(a) gateway": Conn(gw_port),
                normal: Conn(rule_port, {"X-Tier": NORMAL_TIER}),
                adversarial: Conn(adversarial_port, {"X-Tier": ADVERSARIAL_TIER}),
                SHADOWING: Conn(shadow_port),
            }
            print(
                f"  (b), (c): the route's cohort adds group 'tier-a' = tier matches {PATTERN}, "
                "tier from X-Tier; each gateway path has its own process"
            )
            times = latency(paths, args.rate, args.seconds)
            rule_cost(times, normal, adversarial)
            for conn in paths.values():
                conn.sock.close()
            wrk = shutil.which("wrk")
            if wrk is None:
                print("throughput: skipped (install wrk: apt-get install -y wrk)")
                return
            script = tmp / "units.lua"
            script.write_text(WRK_SCRIPT)
            targets: dict[str, int | str] = {
                "direct": up_port,
                "(a) gateway": gw_port,
                ASGI_ONLY: asgi_port,
            }
            nginx = start_nginx(tmp, up_port)
            nginx_name = "nginx (worker_processes 1)"
            if isinstance(nginx, str):
                targets[nginx_name] = nginx
            else:
                procs.append(nginx[0])
                targets[nginx_name] = nginx[1]
            servers = {"direct": upstream.pid, "(a) gateway": gateway.pid, ASGI_ONLY: asgi.pid}
            throughput(wrk, str(script), targets, args, servers)
            print(
                "  one gateway process and one nginx worker, sharing the cores with wrk and "
                "the upstream; CPU: the whole machine's busy time (every process and the "
                "kernel's loopback work) over the requests done"
            )
            if not args.no_profile:
                profile(wrk, str(script), gateway.pid, gw_port, args)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


if __name__ == "__main__":
    main()
