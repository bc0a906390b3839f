"""Store export and import: a store with 1,000 releases, backed up and moved both ways.

Each release has a record of a release's size (refs, pinned config with a rollout
plan), a gate report, and every tenth one a rollout with three steps of metrics
and batch ids. Times ``export_store`` (snapshot, write, read back, verify) and
``import_store`` (check, verify, write in one transaction, verify the target):
sqlite -> PostgreSQL -> sqlite when RELEASER_TEST_POSTGRES_DSN is set, else
sqlite -> sqlite.

Run: ``python bench/bench_store_io.py``. Exits 1 if a target is missed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from releaser.api.store_io import export_store, import_store
from releaser.core.audit import EventDraft
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.store import Store, open_store
from releaser.store.base import MetricDelta, Write

RELEASES = 1_000
# A backup or a move is a rare, deliberate step: seconds are fine, minutes are not.
TARGET_S = 10.0
AT = "2026-01-01T00:00:00.000000Z"


def release_value(i: int) -> dict[str, object]:
    """A release record of a realistic size: refs, and the config it pins."""
    rid = f"{i:064x}"
    steps = [
        {"name": n, "percent": p, "bake_minutes": 60, "min_samples": 500}
        for n, p in (("internal", 0), ("canary-5", 5), ("canary-25", 25), ("full", 100))
    ]
    return {
        "id": rid,
        "bucketing_seed": rid[:16],
        "created_at": AT,
        "created_by": "ci",
        "content": {
            "service": "case-triage",
            "model": {"name": "case-triage", "version": str(i), "run_id": "a" * 32},
            "prompts": [{"name": "case-triage-system", "version": i, "hash": "b" * 64}],
            "datasets": [{"path": "data/golden.csv", "rev": "c" * 40, "md5": "d" * 32}],
            "code": {"sha": "e" * 40, "branch": "main", "dirty": False},
            "config": {"rollout": {"steps": steps}, "slos": {"error_rate": 0.02}},
            "config_hash": "f" * 64,
        },
    }


def fill(store: Store) -> None:
    """1,000 releases with gate reports; a rollout with metrics every tenth."""
    stats = VariantStats(requests=5000, errors=50, latency=LatencyHistogram.of([150.0] * 5000))
    for i in range(RELEASES):
        value = release_value(i)
        rid = str(value["id"])
        store.commit(
            [Write("release", rid, value, 0)],
            EventDraft("ci", "release.create", f"release:{rid}", AT, after={"id": rid}),
        )
        store.commit(
            [Write("gate", rid, {"passed": True, "metrics": {"accuracy": 0.93}}, 0)],
            EventDraft("ci", "gate.run", f"release:{rid}", AT),
        )
        if i % 10 == 0:
            for step in range(3):
                batch = [MetricDelta(f"ro-{i}", step, v, stats) for v in ("baseline", "candidate")]
                store.add_metrics(batch, batch_id=f"b-{i}-{step}")


def scratch_url(dsn: str) -> tuple[str, str]:
    """A new schema in ``dsn``'s database, and the URL whose search_path is it."""
    import psycopg

    schema = f"bench_io_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema, f"{dsn}{'&' if '?' in dsn else '?'}options=-csearch_path%3D{schema}"


def timed(label: str, fn: Callable[..., object], *args: object) -> float:
    """Run ``fn(*args)`` once; print and return its wall time."""
    start = time.perf_counter()
    fn(*args)
    elapsed = time.perf_counter() - start
    ok = elapsed < TARGET_S
    print(f"{label:<34} {elapsed:6.2f} s  {'PASS' if ok else 'FAIL'} (target < {TARGET_S} s)")
    return elapsed


def main() -> int:
    dsn = os.environ.get("RELEASER_TEST_POSTGRES_DSN")
    folder = Path(tempfile.mkdtemp(prefix="bench-store-io-"))
    source = open_store(str(folder / "source.db"))
    fill(source)
    print(f"{RELEASES} releases: {source.audit_head()[0]} audit entries")
    schema = None
    middle_url = str(folder / "middle.db")
    if dsn:
        schema, middle_url = scratch_url(dsn)
    middle = open_store(middle_url)
    target = open_store(str(folder / "target.db"))
    times = []
    try:
        times.append(timed("export sqlite", export_store, source, folder / "a.zip"))
        kind = "PostgreSQL" if dsn else "sqlite"
        times.append(timed(f"import into {kind}", import_store, middle, folder / "a.zip"))
        times.append(timed(f"export {kind}", export_store, middle, folder / "b.zip"))
        times.append(timed("import into sqlite", import_store, target, folder / "b.zip"))
        print(f"archive: {(folder / 'a.zip').stat().st_size / 1e6:.1f} MB")
    finally:
        for store in (source, middle, target):
            store.close()
        if schema is not None and dsn:
            import psycopg

            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return 0 if all(t < TARGET_S for t in times) else 1


if __name__ == "__main__":
    sys.exit(main())
