"""Lists that scale: `audit log --limit 0` at 1,000, 10,000 and 100,000 events, with and
without --json.

The workspace is a `releaser init` configuration with its sqlite store; the store
gets N audit events as rollouts write them (a subject, a reason on two in three, a
before and an after, the run's context), committed a thousand to a transaction.
Each size is timed as ``releaser audit log --limit 0 [--json]`` run as a user runs
it (a fresh process, output to a pipe), median of RUNS runs, with ``releaser
--help`` from the same run as the start-up baseline. Targets: under 1 s at 100,000
events, and linear: the time per event at 100,000 at most 1.5x the time per event
at 10,000 (net of the 1,000-event run).
Run: .venv/bin/python bench/bench_audit_log.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "releaser"
RUNS = 5
TARGET_S = 1.0
BATCH = 1000


def fill(root: Path, n: int) -> None:
    """Grow the store's audit log to ``n`` events."""
    from releaser.api.workspace import open_workspace
    from releaser.core.audit import EventDraft

    ws = open_workspace(root)
    try:
        have = ws.store.audit_head()[0]
        for start in range(have, n, BATCH):
            drafts = [
                EventDraft(
                    actor="github:octocat",
                    action="rollout.advance",
                    subject=f"rollout:case-triage-{i % 50}",
                    at=f"2026-12-07T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000000:06d}Z",
                    before={"step": 1, "state": "baking"},
                    after={"step": 2, "decision": "hold", "detail": "bake 12 of 60 min"},
                    reason="scheduled advance" if i % 3 else None,
                    context={"run_url": f"https://github.com/council/casework/actions/runs/{i}"},
                )
                for i in range(start, min(n, start + BATCH))
            ]
            ws.store.commit([], drafts[0], also=drafts[1:])
    finally:
        ws.close()


def timed(root: Path, args: list[str]) -> tuple[float, int]:
    """Median wall time of RUNS runs (one warm-up first), and the output's size."""
    cmd = [str(BIN), *args]
    subprocess.run(cmd, cwd=root, capture_output=True, check=False)
    times = []
    size = 0
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=root, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"releaser {' '.join(args)} failed: {done.stderr.decode()}")
        size = len(done.stdout)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from releaser.config.template import render_init_template

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        (root / ".releaser").mkdir(parents=True)
        config = render_init_template("council-casework", "case-triage")
        (root / "releaser.yaml").write_text(config, encoding="utf-8")
        start_up, _ = timed(root, ["--help"])
        print(f"releaser --help (start-up baseline): median {start_up:6.3f} s")
        results: dict[tuple[int, str], float] = {}
        for n in sizes:
            fill(root, n)
            for label, cmd in (
                ("table", ["audit", "log", "--limit", "0"]),
                ("json", ["audit", "log", "--limit", "0", "--json"]),
            ):
                med, size = timed(root, cmd)
                results[(n, label)] = med
                print(
                    f"audit log {label:<5} {n:>7,} events: median {med:6.3f} s "
                    f"({size / 1e6:.1f} MB of output)",
                    flush=True,
                )
        top = max(sizes)
        for label in ("table", "json"):
            worst = results[(top, label)]
            print(
                f"{label} {worst:.2f} s at {top:,} events (target < {TARGET_S:.0f} s: "
                f"{'PASS' if worst < TARGET_S else 'FAIL'})"
            )
            if len(sizes) >= 3:
                small, mid = sizes[0], sizes[-2]
                base = results[(small, label)]
                per_mid = (results[(mid, label)] - base) / (mid - small)
                per_top = (worst - base) / (top - small)
                ratio = per_top / per_mid if per_mid > 0 else float("inf")
                print(
                    f"{label} per event {per_top * 1e6:.1f} us at {top:,} vs "
                    f"{per_mid * 1e6:.1f} us at {mid:,} (x{ratio:.2f}, linear if <= 1.5: "
                    f"{'PASS' if ratio <= 1.5 else 'FAIL'})"
                )


if __name__ == "__main__":
    main()
