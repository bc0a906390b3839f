"""Functions run in separate (spawned) processes by the race and migration tests.

They live in their own small module so a spawned child imports only this,
not the test module and its fixtures.
"""

from __future__ import annotations

import multiprocessing
import queue
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from releaser.core.audit import EventDraft
from releaser.errors import StateConflict
from releaser.store import open_store
from releaser.store.base import Write

RACE_KIND = "rollout"
RACE_KEY = "svc"


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


def run_processes(target: Callable[..., None], url: str, count: int) -> list[tuple[int, str, str]]:
    """Start ``count`` spawned processes on ``target`` and collect one result from each."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(count)
    results: Any = ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, i, barrier, results)) for i in range(count)]
    # A spawned child unpickles ``target`` by module name, so the directory that
    # makes this module importable must be on the sys.path the children inherit.
    root = str(Path(__file__).resolve().parents[__name__.count(".")])
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        for p in procs:
            p.start()
    finally:
        if added:
            sys.path.remove(root)
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
