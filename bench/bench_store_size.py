"""Store size after 1,000 releases, and what `store prune` gives back with the defaults.

A sqlite store gets RELEASES releases of one service, each gated (a gate report and
the stored predictions of a 600-row golden set, as the demo's gate writes them: the
answer, ok, latency per row) and every tenth rolled out (a rollout record and a
latency histogram per step and variant). Then ``store prune`` runs with the default
retention, a year later. Printed: the store's live size (pages in use) before and
after, per release, and the prune's own time. Target: after the prune, the store
grows by at most 10 kB per release that nobody can still need (its predictions go;
its release, gate report, rollouts and audit entries stay).
Run: .venv/bin/python bench/bench_store_size.py [--releases 1000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

GOLDEN_ROWS = 600
TARGET_KB_PER_RELEASE = 10.0


def live_bytes(db: Path) -> int:
    """Bytes of the sqlite file in use (page count less free pages, times page size)."""
    con = sqlite3.connect(db)
    try:
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    return int((pages - free) * size)


def fill(root: Path, releases: int) -> None:
    from releaser.api.workspace import open_workspace
    from releaser.core.audit import EventDraft
    from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
    from releaser.store.base import MetricDelta, Write

    ws = open_workspace(root)
    store = ws.store
    answers = ["needs-review", "routine", "urgent"]
    try:
        for i in range(releases):
            rid = f"{i:016x}"
            at = f"2026-{1 + i * 11 // releases:02d}-01T00:00:{i % 60:02d}.{i:06d}Z"
            release = {
                "id": rid,
                "created_at": at,
                "created_by": "bench",
                "content": {"service": "case-triage", "code": {"sha": f"{i:040x}"}},
            }
            gate = {"passed": True, "metrics": {"accuracy": 0.9}, "failures": [], "at": at}
            predictions = {
                "values": [answers[(i + r) % 3] for r in range(GOLDEN_ROWS)],
                "ok": [True] * GOLDEN_ROWS,
                "latency_ms": [round(0.03 + (r % 7) * 0.01, 3) for r in range(GOLDEN_ROWS)],
                "errors": [],
            }
            store.commit(
                [
                    Write("release", rid, release, 0),
                    Write("gate", f"case-triage/{rid}", gate, 0),
                    Write("gate_predictions", f"{rid}-md5-tag", predictions, 0),
                ],
                EventDraft(actor="bench", action="release.create", subject=f"release:{rid}", at=at),
            )
            if i % 10 == 0:
                ro = f"case-triage-{i}"
                store.commit(
                    [Write("rollout", ro, {"candidate": rid, "ended_at": at}, 0)],
                    EventDraft(actor="bench", action="rollout.start", subject=ro, at=at),
                )
                lat = LatencyHistogram.of(float(5 + r % 400) for r in range(2000))
                store.add_metrics(
                    [
                        MetricDelta(ro, step, variant, VariantStats(requests=2000, latency=lat))
                        for step in range(3)
                        for variant in ("baseline", "candidate")
                    ]
                )
        state = {"stable": f"{releases - 1:016x}", "known_good": [f"{releases - 2:016x}"]}
        store.commit(
            [Write("service", "case-triage", state, 0)],
            EventDraft(
                actor="bench", action="rollout.promote", subject="service:case-triage", at="x"
            ),
        )
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--releases", type=int, default=1000)
    args = parser.parse_args()
    from releaser.api.retention import prune_store
    from releaser.api.workspace import open_workspace
    from releaser.config.template import render_init_template

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        (root / ".releaser").mkdir(parents=True)
        config = render_init_template("council-casework", "case-triage")
        (root / "releaser.yaml").write_text(config, encoding="utf-8")
        db = root / ".releaser" / "state.db"
        start = time.perf_counter()
        fill(root, args.releases)
        print(f"filled {args.releases:,} releases in {time.perf_counter() - start:.1f} s")
        before = live_bytes(db)
        ws = open_workspace(root)
        try:
            start = time.perf_counter()
            done = prune_store(ws, now="2027-12-07T00:00:00.000000Z")
            took = time.perf_counter() - start
        finally:
            ws.close()
        after = live_bytes(db)
        n = args.releases
        print(f"store before prune: {before / 1e6:6.2f} MB ({before / n / 1e3:.1f} kB per release)")
        per = after / n / 1e3
        print(
            f"store after prune:  {after / 1e6:6.2f} MB ({per:.1f} kB per release; target <= "
            f"{TARGET_KB_PER_RELEASE:.0f} kB: {'PASS' if per <= TARGET_KB_PER_RELEASE else 'FAIL'})"
        )
        print(
            f"prune removed {len(done.predictions):,} prediction records and "
            f"{len(done.histograms)} rollouts' histograms in {took:.2f} s "
            f"(kept {done.kept_predictions} for the latest, stable and known-good releases)"
        )


if __name__ == "__main__":
    main()
