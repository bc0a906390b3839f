"""Store benchmarks: transitions with the audit append, chain verification, metric flushes
and how fast a waiter in another process sees a commit.

Run: ``python bench/bench_store.py``. Set RELEASER_TEST_POSTGRES_DSN to include
PostgreSQL (a scratch schema is created and dropped). Prints figures and
PASS/FAIL against the targets; exits 1 if a target is missed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from releaser.core.audit import GENESIS_HASH, EventDraft, chain_hash, verify_chain
from releaser.core.stats_aggregates import VariantStats
from releaser.store import open_store as open_url
from releaser.store.base import MetricDelta, Store, Write

TRANSITIONS = 2_000
CHAIN_EVENTS = 100_000
TARGET_P95_MS = 5.0
TARGET_VERIFY_S = 1.0
FLUSHES = 200
FLUSH_BATCH = 100
# A router flushes from a background thread every few seconds: 100 ms keeps a flush under
# a tenth of a 1 s interval, and the sqlite write lock short enough for CI transitions.
TARGET_FLUSH_P95_MS = 100.0
CHANGES = 50
# Rollback must reach routers "within a second"; a wake-up an order of magnitude faster
# leaves the rest for the router's own refresh.
TARGET_WAKE_P99_MS = 100.0
AT = "2025-01-01T00:00:00Z"


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def bench_transitions(store: Store) -> tuple[float, float]:
    """p50 and p95 (ms) of a one-record CAS transition with its audit event."""
    store.commit([Write("rollout", "bench", {"step": 0}, 0)], EventDraft("bench", "start", "b", AT))
    samples = []
    for version in range(1, TRANSITIONS + 1):
        write = Write("rollout", "bench", {"step": version, "percent": version % 100}, version)
        event = EventDraft(
            "ci",
            "advance",
            "rollout/bench",
            AT,
            before={"step": version - 1},
            after={"step": version},
        )
        start = time.perf_counter()
        store.commit([write], event)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), percentile(samples, 95)


def bench_change_token(store: Store) -> float:
    """Median change_token() latency in microseconds."""
    samples = []
    for _ in range(2_000):
        start = time.perf_counter()
        store.change_token()
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples)


def metric_batches(count: int, seed: int = 7) -> list[list[MetricDelta]]:
    """``count`` router flushes of FLUSH_BATCH deltas: 25 rollouts x 2 steps x 2 variants,
    each delta 20-80 requests with log-normal latencies, errors and quality scores."""
    rng = random.Random(seed)
    keys = [
        (f"svc-{r}", s, v) for r in range(25) for s in (0, 1) for v in ("baseline", "candidate")
    ]
    batches = []
    for _ in range(count):
        batch = []
        for rollout_id, step, variant in keys:
            n = rng.randint(20, 80)
            stats = VariantStats.of(
                errors=[rng.random() < 0.02 for _ in range(n)],
                latencies_ms=[rng.lognormvariate(4.5, 0.6) for _ in range(n)],
                scores=[rng.random() for _ in range(n // 4)],
                slow_threshold_ms=300.0,
            )
            batch.append(MetricDelta(rollout_id, step, variant, stats))
        batches.append(batch)
    return batches


def bench_metrics_flush(store: Store) -> tuple[float, float, int]:
    """p50 and p95 (ms) of add_metrics() over FLUSHES batches, and the bins written per batch."""
    batches = metric_batches(FLUSHES)
    bins = sum(sum(1 for n in d.stats.latency.counts if n) for d in batches[0])
    samples = []
    for batch in batches:
        start = time.perf_counter()
        store.add_metrics(batch)
        samples.append((time.perf_counter() - start) * 1000)
    expected = sum(d.stats.requests for b in batches for d in b if d.rollout_id == "svc-0")
    got = sum(s.requests for s in store.read_metrics("svc-0").values())
    assert got == expected, (got, expected)
    return statistics.median(samples), percentile(samples, 95), bins


def follow_changes(url: str, count: int, results: Any) -> None:
    """In a child process: wait for ``count`` changes, reporting each token and wake time."""
    store = open_url(url)
    try:
        token = store.change_token()
        results.put((token, time.monotonic()))
        for _ in range(count):
            token = store.wait_for_change(token, 10.0)
            results.put((token, time.monotonic()))
    finally:
        store.close()


def bench_wait_for_change(store: Store, url: str) -> tuple[float, float, float, float]:
    """Commit here, wait in another process: p50/p99 (ms) from commit() returning to the
    waiter waking, and p50/p99 from commit() starting."""
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    child = ctx.Process(target=follow_changes, args=(url, CHANGES, results))
    child.start()
    after_return, after_start = [], []
    rng = random.Random(3)
    try:
        results.get(timeout=120)  # the child has read its first token
        for i in range(CHANGES):
            # The child is back in wait_for_change; a random phase keeps the commits from
            # locking onto the sqlite poll period.
            time.sleep(0.02 + rng.random() * 0.01)
            started = time.monotonic()
            event = store.commit([], EventDraft("ci", "advance", f"rollout/wait-{i}", AT))
            returned = time.monotonic()
            token, woke = results.get(timeout=30)
            if token != event.seq:
                raise RuntimeError(f"the waiter saw token {token}, expected {event.seq}")
            after_return.append((woke - returned) * 1000)
            after_start.append((woke - started) * 1000)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
    return (
        statistics.median(after_return),
        percentile(after_return, 99),
        statistics.median(after_start),
        percentile(after_start, 99),
    )


def chain_rows(count: int) -> Iterator[tuple[int, str, str, str, str]]:
    """``count`` chained audit rows (seq, prev_hash, hash, payload, subject) from genesis."""
    prev = GENESIS_HASH
    for seq in range(1, count + 1):
        subject = f"rollout/svc-{seq % 50}"
        payload = EventDraft(
            "ci",
            "advance",
            subject,
            AT,
            before={"step": seq - 1},
            after={"step": seq},
            reason="bake time elapsed",
            context={"run": f"https://ci.example/runs/{seq}"},
        ).payload()
        digest = chain_hash(seq, prev, payload)
        yield seq, prev, digest, payload, subject
        prev = digest


def bench_verify(store: Store) -> tuple[float, int, bool]:
    """Seconds to verify the whole chain read through raw_events(), the count, and ok."""
    start = time.perf_counter()
    result = verify_chain(store.raw_events(), head=store.audit_head())
    return time.perf_counter() - start, result.count, result.ok


def report(
    name: str, url: str, open_store: Callable[[], Store], bulk_load: Callable[[], None]
) -> bool:
    """Run every benchmark on one backend, print the figures, and say whether all passed."""
    store = open_store()
    try:
        p50, p95 = bench_transitions(store)
        token_us = bench_change_token(store)
        flush_p50, flush_p95, flush_bins = bench_metrics_flush(store)
        wake = bench_wait_for_change(store, url)
    finally:
        store.close()
    bulk_load()
    store = open_store()
    try:
        seconds, count, ok = bench_verify(store)
    finally:
        store.close()
    transition_ok = p95 <= TARGET_P95_MS
    verify_ok = ok and count == CHAIN_EVENTS and seconds <= TARGET_VERIFY_S
    flush_ok = flush_p95 <= TARGET_FLUSH_P95_MS
    wake_ok = wake[1] <= TARGET_WAKE_P99_MS
    print(
        f"[{name}] transition + audit append over {TRANSITIONS}: p50 {p50:.3f} ms, "
        f"p95 {p95:.3f} ms (target p95 <= {TARGET_P95_MS} ms) {verdict(transition_ok)}"
    )
    print(f"[{name}] change_token median {token_us:.1f} us")
    print(
        f"[{name}] verify_chain over {count} events via raw_events(): {seconds:.3f} s, "
        f"ok={ok} (target <= {TARGET_VERIFY_S} s) {verdict(verify_ok)}"
    )
    print(
        f"[{name}] metrics flush of a {FLUSH_BATCH}-delta batch (~{flush_bins} latency bins) "
        f"over {FLUSHES}: p50 {flush_p50:.3f} ms, p95 {flush_p95:.3f} ms "
        f"(target p95 <= {TARGET_FLUSH_P95_MS} ms) {verdict(flush_ok)}"
    )
    print(
        f"[{name}] wait_for_change in another process over {CHANGES} commits: "
        f"after commit() returned p50 {wake[0]:.3f} ms, p99 {wake[1]:.3f} ms "
        f"(target p99 <= {TARGET_WAKE_P99_MS} ms) {verdict(wake_ok)}; "
        f"from commit() start p50 {wake[2]:.3f} ms, p99 {wake[3]:.3f} ms"
    )
    return transition_ok and verify_ok and flush_ok and wake_ok


def run_sqlite(tmp: Path) -> bool:
    """The sqlite figures, on two files in ``tmp``."""
    from releaser.store.sqlite import SqliteStore

    chain_db = tmp / "chain.db"
    state = {"path": tmp / "state.db"}

    def bulk_load() -> None:
        # One big transaction straight into the tables; verification reads it back via the store.
        state["path"] = chain_db
        SqliteStore(chain_db).close()
        conn = sqlite3.connect(chain_db, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            last: tuple[int, str, str, str, str] | None = None

            def rows() -> Iterator[tuple[int, str, str, str, str]]:
                nonlocal last
                for row in chain_rows(CHAIN_EVENTS):
                    last = row
                    yield row

            conn.executemany("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?)", rows())
            assert last is not None
            conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (last[0], last[2]))
            conn.execute("COMMIT")
        finally:
            conn.close()

    url = f"sqlite://{state['path'].as_posix()}"
    return report("sqlite", url, lambda: SqliteStore(state["path"]), bulk_load)


@contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    """A scratch schema; yields a URL whose search_path points at it."""
    import psycopg

    schema = f"releaser_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in dsn else "?"
        yield f"{dsn}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_postgres(dsn: str) -> bool:
    """The PostgreSQL figures, in two scratch schemas."""
    import psycopg

    from releaser.store.postgres import PostgresStore

    with postgres_schema(dsn) as state_url, postgres_schema(dsn) as chain_url:
        state = {"url": state_url}

        def bulk_load() -> None:
            state["url"] = chain_url
            PostgresStore(chain_url).close()
            with psycopg.connect(chain_url) as conn:
                last = None
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY audit_events (seq, prev_hash, hash, payload, subject) FROM STDIN"
                    ) as copy,
                ):
                    for row in chain_rows(CHAIN_EVENTS):
                        copy.write_row(row)
                        last = row
                assert last is not None
                conn.execute(
                    "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (last[0], last[2])
                )

        return report("postgres", state_url, lambda: PostgresStore(state["url"]), bulk_load)


def main() -> int:
    """Run the benchmarks; 0 if every target is met."""
    with tempfile.TemporaryDirectory() as tmp:
        ok = run_sqlite(Path(tmp))
    dsn = os.environ.get("RELEASER_TEST_POSTGRES_DSN")
    if dsn:
        ok = run_postgres(dsn) and ok
    else:
        print("[postgres] skipped: set RELEASER_TEST_POSTGRES_DSN to include it")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
