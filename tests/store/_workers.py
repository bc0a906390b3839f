"""Functions run in separate (spawned) processes by the race and migration tests.

They live in their own small module so a spawned child imports only this,
not the test module and its fixtures.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from releaser.core.audit import EventDraft
from releaser.core.stats_aggregates import VariantStats
from releaser.errors import StateConflict
from releaser.store import open_store
from releaser.store.base import MetricDelta, Write

RACE_KIND = "rollout"
RACE_KEY = "svc"
FLUSHES = 500
METRICS_ROLLOUT = "rollout-m"
SIDE_KEYS = ((0, "candidate"), (1, "baseline"), (1, "candidate"))
SLOW_MS = 50.0


def one_request(index: int, i: int) -> VariantStats:
    """The delta of one request, varied by worker and iteration (latency, error, score)."""
    return VariantStats.of(
        errors=[(index + i) % 10 == 0],
        latencies_ms=[float(1 + (index * 7 + i) % 13 * 9)],
        scores=[0.5 if i % 2 else 1.0],
        slow_threshold_ms=SLOW_MS,
    )


def flush_metrics(url: str, index: int, barrier: Any, results: Any) -> None:
    """Wait for everyone, then flush FLUSHES batches of one request to step 0 baseline and
    one to each side key, in a shuffled order (so batches would deadlock if unsorted)."""
    try:
        store = open_store(url)
        try:
            rng = random.Random(index)
            barrier.wait(timeout=120)
            for i in range(FLUSHES):
                delta = one_request(index, i)
                keys = [(0, "baseline"), *SIDE_KEYS]
                rng.shuffle(keys)
                store.add_metrics([MetricDelta(METRICS_ROLLOUT, s, v, delta) for s, v in keys])
            results.put((index, "ok", ""))
        finally:
            store.close()
    except BaseException as exc:  # report, so the parent fails with the cause
        results.put((index, "error", repr(exc)))


def wait_then_report(url: str, timeout_s: float, results: Any) -> None:
    """Read the token, say so, wait for it to change, and report what the wait returned."""
    try:
        store = open_store(url)
        try:
            token = store.change_token()
            results.put(("ready", token))
            results.put(("woke", store.wait_for_change(token, timeout_s)))
        finally:
            store.close()
    except BaseException as exc:  # report, so the parent fails with the cause
        results.put(("error", repr(exc)))


def race_commit(url: str, index: int, barrier: Any, results: Any) -> None:
    """Open the store, read the record, wait for everyone, then try to advance it."""
    try:
        store = open_store(url)
        try:
            record = store.get(RACE_KIND, RACE_KEY)
            assert record is not None
            barrier.wait(timeout=120)
            try:
                store.commit(
                    [Write(RACE_KIND, RACE_KEY, {"winner": index}, record.version)],
                    EventDraft(
                        actor=f"worker-{index}",
                        action="advance",
                        subject=f"{RACE_KIND}/{RACE_KEY}",
                        at="2025-01-01T00:00:00Z",
                    ),
                )
                results.put((index, "ok", ""))
            except StateConflict as exc:
                results.put((index, "conflict", str(exc)))
        finally:
            store.close()
    except BaseException as exc:  # report, so the parent fails with the cause
        results.put((index, "error", repr(exc)))


def open_at_once(url: str, index: int, barrier: Any, results: Any) -> None:
    """Wait for everyone, then open (and so migrate) the same fresh store."""
    try:
        barrier.wait(timeout=120)
        store = open_store(url)
        try:
            results.put((index, "ok", str(store.audit_head()[0])))
        finally:
            store.close()
    except BaseException as exc:  # report, so the parent fails with the cause
        results.put((index, "error", repr(exc)))


FRESH_ROUNDS = 20


def open_fresh_stores(directory: str, index: int, barrier: Any, results: Any) -> None:
    """Round after round, open a new sqlite store together with the other workers."""
    try:
        for round_ in range(FRESH_ROUNDS):
            barrier.wait(timeout=120)
            open_store(f"sqlite:///{directory}/round-{round_}.db").close()
        results.put((index, "ok", str(FRESH_ROUNDS)))
    except BaseException as exc:  # report, so the parent fails with the cause
        barrier.abort()  # the others stop waiting for this worker
        results.put((index, "error", repr(exc)))


@contextmanager
def importable_here() -> Iterator[None]:
    """Put the directory that makes this module importable on ``sys.path`` meanwhile.

    A spawned child unpickles its target by module name, so that directory must be
    on the sys.path the children inherit when they start.
    """
    root = str(Path(__file__).resolve().parents[__name__.count(".")])
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        yield
    finally:
        if added:
            sys.path.remove(root)


def run_processes(target: Callable[..., None], url: str, count: int) -> list[tuple[int, str, str]]:
    """Start ``count`` spawned processes on ``target`` and collect one result from each."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    results: Any = ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, i, barrier, results)) for i in range(count)]
    with importable_here():
        for p in procs:
            p.start()
    outcomes: list[tuple[int, str, str]] = []
    try:
        deadline = time.monotonic() + 180
        while len(outcomes) < count:
            try:
                outcomes.append(results.get(timeout=1))
            except queue.Empty:
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if crashed or time.monotonic() > deadline:
                    raise AssertionError(
                        f"workers crashed (exit codes {crashed}) or hung; got {outcomes}"
                    ) from None
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    assert all(p.exitcode == 0 for p in procs)
    return sorted(outcomes)
