"""Rollback speed: command start -> a router in another process serving the baseline.

Targets (issue: one-command rollback), sqlite store:
- command start to every one of 10k ids getting the baseline in another process's
  router: p99 <= 1 s;
- the store write of the switch: p95 <= 50 ms (sqlite, and PostgreSQL when
  RELEASER_BENCH_POSTGRES_DSN or RELEASER_TEST_POSTGRES_DSN is set);
- the CLI's wall time when no MLflow side effect is needed: <= 0.5 s, with
  MLflow never imported on that path.

For comparison (documented defaults, not measured here): the MLflow prompt
alias cache keeps an alias for 60 s; Unleash SDKs poll for flag changes every 15 s.

Run: .venv/bin/python bench/bench_rollback.py [RUNS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _rollback_setup as setup  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
SWITCHES = 200


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def end_to_end(root: Path, snap: Path) -> tuple[list[float], list[float]]:
    """(command start -> router serves baseline, CLI wall) in seconds, per run."""
    to_router, walls, _err = setup.timed_rollbacks(root, snap, RUNS)
    return to_router, walls


def mlflow_imported(root: Path, snap: Path) -> bool:
    """Whether the rollback command, run in full, imports mlflow."""
    setup.restore(root, snap)
    code = (
        "import sys; from releaser.cli import run; "
        f"c = run(['rollback', '{setup.SERVICE}', '--reason', 'bench', '--yes']); "
        "print(c, 'mlflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[-2] == "0", out
    return out[-1] == "True"


def switch_writes(store_url: str, root: Path, r2: str) -> list[float]:
    """Time the switch's store write alone: start a rollout, then time the atomic commit."""
    from releaser.api.rollback import _switch, plan_rollback
    from releaser.api.rollback_plan import switch_of
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace

    ws = open_workspace(root, store_url=store_url)
    times: list[float] = []
    try:
        for i in range(SWITCHES):
            start_rollout(ws, setup.SERVICE, r2, now=f"2031-01-01T00:00:{i % 60:02d}.000000Z")
            plan = plan_rollback(ws, setup.SERVICE)
            t = time.perf_counter()
            _switch(ws, switch_of(ws, plan, "bench", "2031-01-02T00:00:00.000000Z"))
            times.append(time.perf_counter() - t)
    finally:
        ws.close()
    return times


def postgres_copy(root: Path) -> tuple[str, object] | None:
    """The workspace's state copied into a fresh PostgreSQL schema, or None without a DSN."""
    dsn = os.environ.get("RELEASER_BENCH_POSTGRES_DSN") or os.environ.get(
        "RELEASER_TEST_POSTGRES_DSN"
    )
    if not dsn:
        return None
    import psycopg

    from releaser.core.audit import EventDraft
    from releaser.store import open_store
    from releaser.store.base import Write

    schema = f"releaser_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    url = f"{dsn}{sep}options=-csearch_path%3D{schema}"
    src = open_store(setup.store_url(root))
    dst = open_store(url)
    try:
        records = [r for kind in ("release", "service", "route") for r in src.list(kind)]
        dst.commit(
            [Write(r.kind, r.key, r.value, 0) for r in records],
            EventDraft(actor="bench", action="bench.seed", subject="bench", at="2031"),
        )
    finally:
        src.close()
        dst.close()
    return url, (dsn, schema)


def drop_schema(handle: object) -> None:
    """Remove the bench schema."""
    import psycopg

    dsn, schema = handle  # type: ignore[misc]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    """Build the workspace, run every measurement, print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        _r1, r2 = setup.build(root)
        snap = Path(tmp) / "snapshot.db"
        setup.snapshot(root, snap)

        to_router, walls = end_to_end(root, snap)
        imported = mlflow_imported(root, snap)
        p99 = pct(to_router, 99)
        print(
            f"rollback command start -> router in another process serves the baseline to "
            f"10k ids (sqlite, n={RUNS}): p50 {statistics.median(to_router) * 1000:.0f} ms  "
            f"p95 {pct(to_router, 95) * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  "
            f"target p99 <= 1000 ms: {'PASS' if p99 <= 1 else 'FAIL'}"
        )
        med = statistics.median(walls)
        print(
            f"rollback CLI wall, no MLflow side effect (n={RUNS}): median {med * 1000:.0f} ms  "
            f"p95 {pct(walls, 95) * 1000:.0f} ms  target <= 500 ms: "
            f"{'PASS' if med <= 0.5 else 'FAIL'} (median); mlflow imported: {imported}"
        )

        setup.restore(root, snap)
        # The snapshot is mid-rollout; roll it back once so each timed round starts clean.
        setup.releaser(root, "rollback", setup.SERVICE, "--reason", "bench", "--yes")
        backends = [("sqlite", setup.store_url(root), None)]
        pg = postgres_copy(root)
        if pg is not None:
            backends.append(("postgresql", pg[0], pg[1]))
        try:
            for name, url, _ in backends:
                ms = [t * 1000 for t in switch_writes(url, root, r2)]
                p95 = pct(ms, 95)
                print(
                    f"switch store write ({name}, n={SWITCHES}): p50 {statistics.median(ms):.1f} ms"
                    f"  p95 {p95:.1f} ms  p99 {pct(ms, 99):.1f} ms  target p95 <= 50 ms: "
                    f"{'PASS' if p95 <= 50 else 'FAIL'}"
                )
        finally:
            if pg is not None:
                drop_schema(pg[1])
        if pg is None:
            print("switch store write (postgresql): skipped, set RELEASER_BENCH_POSTGRES_DSN")
        print(
            "for comparison (documented defaults, not measured here): MLflow prompt alias "
            "cache 60 s; Unleash SDK polling 15 s"
        )


if __name__ == "__main__":
    main()
