"""Store benchmarks: transition latency with the audit append, and chain verification.

Run: ``python bench/bench_store.py``. Set RELEASER_TEST_POSTGRES_DSN to include
PostgreSQL (a scratch schema is created and dropped). Prints figures and
PASS/FAIL against the targets; exits 1 if a target is missed.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from releaser.core.audit import GENESIS_HASH, EventDraft, chain_hash, verify_chain
from releaser.store.base import Store, Write

TRANSITIONS = 2_000
CHAIN_EVENTS = 100_000
TARGET_P95_MS = 5.0
TARGET_VERIFY_S = 1.0
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


def report(name: str, open_store: Callable[[], Store], bulk_load: Callable[[], None]) -> bool:
    """Run every benchmark on one backend, print the figures, and say whether all passed."""
    store = open_store()
    try:
        p50, p95 = bench_transitions(store)
        token_us = bench_change_token(store)
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
    print(
        f"[{name}] transition + audit append over {TRANSITIONS}: p50 {p50:.3f} ms, "
        f"p95 {p95:.3f} ms (target p95 <= {TARGET_P95_MS} ms) {verdict(transition_ok)}"
    )
    print(f"[{name}] change_token median {token_us:.1f} us")
    print(
        f"[{name}] verify_chain over {count} events via raw_events(): {seconds:.3f} s, "
        f"ok={ok} (target <= {TARGET_VERIFY_S} s) {verdict(verify_ok)}"
    )
    return transition_ok and verify_ok


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

    return report("sqlite", lambda: SqliteStore(state["path"]), bulk_load)


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

        return report("postgres", lambda: PostgresStore(state["url"]), bulk_load)


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
