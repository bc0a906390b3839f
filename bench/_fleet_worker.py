"""One router process of the fleet benchmark (run by ``bench_fleet.py``, not by hand).

Usage: ``python _fleet_worker.py STORE_URL SERVICE INDEX RATE FLUSH_MS``. It builds a
:class:`~releaser.router.Router` with its default refresh interval and a flush interval of
``FLUSH_MS`` (the default is 500) and, every tick of ``1 / TICKS_PER_S`` seconds:

- assigns and records ``RATE / TICKS_PER_S`` requests of random unit ids (outcomes with
  a latency and a 1% error rate, so the metric flushes carry real counts);
- while a rollout is live, checks whether its probe unit (the first of 2,000 ids that
  got the candidate) still gets the candidate.

It prints lines to the parent, wall times from ``time.time()`` (one system clock for
every process on the machine):

- ``ready PID`` once the router is built;
- ``live T`` when it first sees a rollout (and has picked its probe);
- ``reverted T`` when the probe first gets something other than the candidate;
- ``done FLUSHED PENDING DROPPED`` after the parent closes its stdin and the router closed.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time

from releaser.router import Router

TICKS_PER_S = 200
PROBE_IDS = [f"probe-{i}" for i in range(2000)]


def main() -> None:
    """Route at a steady rate until stdin closes, reporting what the probe sees."""
    url, service, index, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    flush_ms = int(sys.argv[5])
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes the pipe
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    rng = random.Random(index)
    per_tick = max(1, rate // TICKS_PER_S)
    tick = 1.0 / TICKS_PER_S
    router = Router(url, flush_interval_ms=flush_ms)
    print("ready", os.getpid(), flush=True)
    probe: str | None = None
    next_tick = time.monotonic()
    while not stop.is_set():
        for _ in range(per_tick):
            a = router.assign(service, f"user-{rng.randrange(1_000_000)}")
            router.record(a, latency_ms=50.0 + rng.random() * 200.0, error=rng.random() < 0.01)
        seen = time.time()
        if probe is None:
            route = router.routes().get(service)
            if route is not None and route.candidate is not None:
                probe = next(
                    (u for u in PROBE_IDS if router.assign(service, u).variant == "candidate"),
                    None,
                )
                if probe is not None:
                    print("live", seen, flush=True)
        elif router.assign(service, probe).variant != "candidate":
            print("reverted", seen, flush=True)
            probe = None
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()  # behind (CPU starved): do not burst to catch up
    router.close()
    counts = router.metrics_counts()
    print(
        "done",
        counts.flushed_requests,
        counts.pending_requests,
        counts.dropped_requests,
        flush=True,
    )


if __name__ == "__main__":
    main()
