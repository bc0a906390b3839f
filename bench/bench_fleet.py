"""A fleet of router processes on one PostgreSQL store: rollback reach, flush load, connections.

N router processes (default 50; N=1 in the same run as the baseline) follow one store
(a scratch schema, dropped at the end), each assigning and recording a steady few hundred
requests a second (``_fleet_worker.py``). A small workspace (one prompt on the file
backend, no model) starts a rollout through the library API; each worker picks a probe
unit in the candidate. Then, per cycle (rollout start -> all live -> measuring window ->
rollback), it measures:

- rollback reach: from the rollback's store commit (the moment its ``commit`` call
  returned in this process) and from the ``rollback()`` call's start, to the moment each
  router first serves its probe something other than the candidate (``time.time()`` in
  every process); p50/p99/max over routers and cycles. Target: p99 <= 1 s;
- flush write load over the window, from PostgreSQL's statistics: metric batches
  (``metric_batches`` inserts: one per flush transaction) and rows inserted or updated in
  the metric tables, per second; plus ``pg_stat_database.xact_commit`` of the whole
  database (every transaction, reads included, of anyone on the server);
- connections held (``pg_stat_activity``, by each worker's ``application_name``), and
  how many of the routers' backends wait on a lock (sampled every 50 ms over the window:
  flushes of many routers update the same few aggregate rows).

Run: .venv/bin/python bench/bench_fleet.py [N] [CYCLES]
Store: $RELEASER_BENCH_POSTGRES_DSN or $RELEASER_TEST_POSTGRES_DSN, else the local server.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _rollback_setup as setup  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 50
CYCLES = int(sys.argv[2]) if len(sys.argv) > 2 else 5
RATE = 300  # assigns (and records) per second per router
WINDOW_S = 10.0
SLOW_FLUSH_MS = 5000  # a third run: the same fleet flushing ten times less often
SETTLE_S = 2.0
TIMEOUT_S = 60.0
APP = "releaser_fleet"
METRIC_TABLES = ("rollout_metrics", "rollout_latency_bins", "rollout_token_bins", "metric_batches")
WORKER = Path(__file__).parent / "_fleet_worker.py"


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def with_params(dsn: str, **params: str) -> str:
    """``dsn`` (a URL) with query parameters added."""
    from urllib.parse import quote

    sep = "&" if "?" in dsn else "?"
    return dsn + sep + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def build(root: Path) -> str:
    """Two releases of the bench service on the store in $RELEASER_STORE; r1 stable.

    Returns r2, the release each cycle rolls out (and back).
    """
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace

    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.email", "bench@example.org"], check=True)
    subprocess.run([*git, "config", "user.name", "bench"], check=True)
    (root / "releaser.yaml").write_text(setup.CONFIG.format(alias="production"))
    for i, text in enumerate(["Summarise:", "Summarise briefly:"], start=1):
        (root / f"v{i}.yaml").write_text(setup.PROMPT.format(text=text))
        setup.releaser(root, "prompt", "register", f"v{i}.yaml")
    setup.releaser(
        root, "prompt", "promote", "assist-system", "1", "--to", "production", "--reason", "b"
    )
    setup.releaser(
        root, "prompt", "promote", "assist-system", "2", "--to", "staging", "--reason", "b"
    )
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "v1"], check=True)
    created = setup.releaser(root, "release", "create", setup.SERVICE, "--json")
    r1 = json.loads(created.stdout)["release"]["id"]
    (root / "releaser.yaml").write_text(setup.CONFIG.format(alias="staging"))
    subprocess.run([*git, "commit", "-qam", "v2"], check=True)
    created = setup.releaser(root, "release", "create", setup.SERVICE, "--json")
    r2 = str(json.loads(created.stdout)["release"]["id"])
    ws = open_workspace(root)
    try:
        start_rollout(ws, setup.SERVICE, r1, initial=True)
    finally:
        ws.close()
    return r2


class CommitClock:
    """Wraps a store's ``commit`` to note when each call returned (the COMMIT acknowledged).

    Instrumentation of the real store, in this process only: the rollback's switch is the
    first commit after the call starts.
    """

    def __init__(self, store: Any) -> None:
        self.returned: list[float] = []
        inner = store.commit

        def commit(*args: Any, **kwargs: Any) -> Any:
            event = inner(*args, **kwargs)
            self.returned.append(time.time())
            return event

        store.commit = commit

    def first_after(self, t: float) -> float:
        """When the first commit after ``t`` returned."""
        later = [r for r in self.returned if r >= t]
        if not later:
            sys.exit("the rollback committed nothing")
        return later[0]


class Fleet:
    """N worker processes and the lines each printed (one reader thread per worker)."""

    def __init__(self, url: str, n: int, flush_ms: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.lines: dict[int, list[list[str]]] = {i: [] for i in range(n)}
        self.lock = threading.Lock()
        env = setup.child_env()
        for i in range(n):
            p = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    with_params(url, application_name=f"{APP}_{i}"),
                    setup.SERVICE,
                    str(i),
                    str(RATE),
                    str(flush_ms),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            self.procs.append(p)
            threading.Thread(target=self._read, args=(i, p), daemon=True).start()

    def _read(self, i: int, p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            with self.lock:
                self.lines[i].append(line.split())

    def wait_all(self, kind: str, count: int) -> list[float]:
        """Block until every worker printed ``count`` lines of ``kind``; the count-th values."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            with self.lock:
                got = [[ln for ln in self.lines[i] if ln[0] == kind] for i in self.lines]
            if all(len(g) >= count for g in got):
                return [float(g[count - 1][1]) for g in got]
            dead = [i for i, p in enumerate(self.procs) if p.poll() not in (None, 0)]
            if dead:
                sys.exit(f"workers {dead} failed")
            if time.monotonic() > deadline:
                short = sum(len(g) < count for g in got)
                sys.exit(f"{short} workers never printed {kind!r} #{count}")
            time.sleep(0.02)

    def finish(self) -> list[list[str]]:
        """Stop every worker; each one's ``done`` line."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.close()
        self.wait_all("done", 1)
        with self.lock:
            return [[ln for ln in self.lines[i] if ln[0] == "done"][0] for i in self.lines]


def table_counts(conn: Any, schema: str) -> tuple[int, int, int]:
    """(metric batches inserted, metric rows inserted+updated, database commits) so far."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    rows = conn.execute(
        "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables "
        "WHERE schemaname = %s AND relname = ANY(%s)",
        (schema, list(METRIC_TABLES)),
    ).fetchall()
    batches = sum(int(r[1]) for r in rows if r[0] == "metric_batches")
    written = sum(int(r[1]) + int(r[2]) for r in rows)
    xacts = conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()[0]
    return batches, written, int(xacts)


def connections(conn: Any, n: int) -> list[int]:
    """Connections each worker holds, by its application_name."""
    rows = dict(
        conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE %s GROUP BY 1",
            (APP + "_%",),
        ).fetchall()
    )
    return [int(rows.get(f"{APP}_{i}", 0)) for i in range(n)]


def lock_waiters(conn: Any) -> int:
    """The routers' backends waiting on a lock right now."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name LIKE %s AND wait_event_type = 'Lock'",
        (APP + "_%",),
    ).fetchone()
    return int(row[0])


@dataclass
class Run:
    """What one fleet size measured."""

    n: int
    flush_ms: int
    from_commit: list[float] = field(default_factory=list)
    from_start: list[float] = field(default_factory=list)
    api_wall: list[float] = field(default_factory=list)
    batches_s: list[float] = field(default_factory=list)
    rows_s: list[float] = field(default_factory=list)
    xacts_s: list[float] = field(default_factory=list)
    conns: list[int] = field(default_factory=list)
    lock_waits: list[int] = field(default_factory=list)
    flushed: int = 0
    dropped: int = 0
    error: str | None = None


def run_fleet(root: Path, url: str, schema: str, r2: str, n: int, flush_ms: int, admin: Any) -> Run:
    """Start ``n`` routers flushing every ``flush_ms``, then CYCLES of rollout start ->
    window -> rollback."""
    from releaser.api.rollback import rollback
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace

    run = Run(n, flush_ms)
    fleet = Fleet(url, n, flush_ms)
    ws = open_workspace(root)
    clock = CommitClock(ws.store)
    try:
        fleet.wait_all("ready", 1)
        for cycle in range(1, CYCLES + 1):
            start_rollout(ws, setup.SERVICE, r2)
            fleet.wait_all("live", cycle)
            time.sleep(SETTLE_S)
            before = table_counts(admin, schema)
            t0 = time.monotonic()
            while time.monotonic() - t0 < WINDOW_S:
                run.lock_waits.append(lock_waiters(admin))
                time.sleep(0.05)
            run.conns = connections(admin, n)
            after = table_counts(admin, schema)
            span = time.monotonic() - t0
            run.batches_s.append((after[0] - before[0]) / span)
            run.rows_s.append((after[1] - before[1]) / span)
            run.xacts_s.append((after[2] - before[2]) / span)
            start = time.time()
            rollback(ws, setup.SERVICE, reason="bench")
            run.api_wall.append(time.time() - start)
            committed = clock.first_after(start)
            seen = fleet.wait_all("reverted", cycle)
            run.from_commit += [s - committed for s in seen]
            run.from_start += [s - start for s in seen]
        for done in fleet.finish():
            run.flushed += int(done[1])
            run.dropped += int(done[3])
    finally:
        ws.close()
        for p in fleet.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return run


def show(runs: list[Run], load: str) -> None:
    """The table: the fleet's figure, the target, the N=1 baseline, and the fleet again
    flushing every SLOW_FLUSH_MS."""
    base, fleet, slow_flush = runs

    def line(what: str, f: str, target: str, b: str, s: str) -> None:
        print(f"{what:<42} {f:>20} {target:>13} {b:>18} {s:>20}")

    def lat(values: list[float]) -> str:
        ms = [v * 1000 for v in values]
        return f"{pct(ms, 50):.0f}/{pct(ms, 99):.0f}/{max(ms):.0f} ms"

    def each(fn: Any) -> tuple[str, str, str]:
        return fn(fleet), fn(base), fn(slow_flush)

    def waits(r: Run) -> str:
        busy = sum(w > 0 for w in r.lock_waits) / len(r.lock_waits)
        return f"{statistics.mean(r.lock_waits):.2f} ({busy:.0%})"

    print(f"\nload average before the run: {load}")
    print(
        f"N={fleet.n} routers (baseline N={base.n}), {RATE} assigns+records/s each, "
        f"{CYCLES} rollout+rollback cycles, {WINDOW_S:.0f} s window per cycle"
    )
    line(
        "figure",
        f"N={fleet.n}",
        "target",
        f"baseline N={base.n}",
        f"N={slow_flush.n} flush {slow_flush.flush_ms / 1000:.0f} s",
    )
    f, b, s = each(lambda r: lat(r.from_commit))
    line("rollback commit -> router serves baseline", f, "p99<=1000 ms", b, s)
    line("  (p50/p99/max over routers x cycles)", "", "", "", "")
    f, b, s = each(lambda r: lat(r.from_start))
    line("rollback call -> router serves baseline", f, "p99<=1000 ms", b, s)
    f, b, s = each(lambda r: f"{sum(v > 0.25 for v in r.from_commit)} of {len(r.from_commit)}")
    line("  reaches over 250 ms after the commit", f, "-", b, s)
    f, b, s = each(lambda r: f"{statistics.median(r.api_wall) * 1000:.0f} ms")
    line("rollback() wall, median", f, "-", b, s)
    for label, attr in (
        ("metric flush transactions/s", "batches_s"),
        ("metric rows inserted+updated/s", "rows_s"),
        ("database commits/s (all users, reads too)", "xacts_s"),
    ):
        f, b, s = each(lambda r, a=attr: f"{statistics.mean(getattr(r, a)):.1f}")
        line(label, f, "-", b, s)
        f, b, s = each(lambda r, a=attr: f"{statistics.mean(getattr(r, a)) / r.n:.2f}")
        line("  per router", f, "-", b, s)
    f, b, s = each(lambda r: str(sum(r.conns)))
    line("connections held, total", f, f"<= {fleet.n}", b, s)
    f, b, s = each(lambda r: f"{min(r.conns)}-{max(r.conns)}")
    line("connections held, per router (min-max)", f, "1", b, s)
    f, b, s = each(waits)
    line("backends waiting on a lock (mean, % busy)", f, "-", b, s)
    f, b, s = each(lambda r: f"{r.flushed} / {r.dropped}")
    line("requests flushed / dropped", f, "0 dropped", b, s)


def main() -> None:
    import psycopg

    dsn = (
        os.environ.get("RELEASER_BENCH_POSTGRES_DSN")
        or os.environ.get("RELEASER_TEST_POSTGRES_DSN")
        or "postgresql://postgres@127.0.0.1:5432/test"
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    schema = f"releaser_fleet_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(dsn, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    url = with_params(dsn, options=f"-csearch_path={schema}")
    os.environ["RELEASER_STORE"] = url
    os.environ["RELEASER_ACTOR"] = "bench"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            r2 = build(root)
            os.chdir(root)  # the prompt file backend and config are found from here
            runs = [
                run_fleet(root, url, schema, r2, n, flush_ms, admin)
                for n, flush_ms in ((1, 500), (N, 500), (N, SLOW_FLUSH_MS))
            ]
        show(runs, load)
    finally:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()


if __name__ == "__main__":
    main()
