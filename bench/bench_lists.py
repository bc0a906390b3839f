"""Lists that scale: `release list` at 100, 1,000 and 10,000 releases, with and without --json.

The workspace is the example service (a real MLflow model, prompt and DVC data)
with one real release; the store then gets N releases of the same content with
different commits (each a valid release with its own id, written with its audit
event as ``release create`` writes it), and a gate record for every other one.
Each size is timed as ``releaser release list`` and ``releaser release list
--json`` run as a user runs them (a fresh process, output to a pipe), median of
RUNS runs. Targets: under 1 s at 10,000 releases, and linear: the time per
release at 10,000 at most 1.5x the time per release at 1,000 (net of start-up,
the 100-release run).
Run: .venv/bin/python bench/bench_lists.py [--sizes 100,1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "releaser"
RUNS = 5
TARGET_S = 1.0


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], cwd=root, capture_output=True, text=True, check=False)


def fill(root: Path, n: int) -> None:
    """Grow the store to ``n`` releases cloned from the one real release."""
    from releaser.api.workspace import open_workspace
    from releaser.core.audit import EventDraft
    from releaser.core.release import GATE_RECORD, RELEASE_RECORD, Release, gate_key
    from releaser.store.base import Write

    ws = open_workspace(root)
    try:
        records = ws.store.list(RELEASE_RECORD)
        have = len(records)
        base = Release.model_validate(records[0].value)
        gate = ws.store.get(GATE_RECORD, gate_key(base.service, base.id))
        for i in range(have, n):
            code = base.content.code.model_copy(update={"sha": f"{i:040x}"})
            content = base.content.model_copy(update={"code": code})
            rel = Release.build(
                content,
                created_at=f"2026-12-{1 + i // 100_000:02d}T00:00:{i % 60:02d}.{i:06d}Z",
                created_by="bench",
            )
            writes = [Write(RELEASE_RECORD, rel.id, rel.model_dump(mode="json"), 0)]
            if gate is not None and i % 2 == 0:
                value = {**gate.value, "release_id": rel.id}
                writes.append(Write(GATE_RECORD, gate_key(rel.service, rel.id), value, 0))
            ws.store.commit(
                writes,
                EventDraft(
                    actor="bench",
                    action="release.create",
                    subject=f"release/{rel.id}",
                    at=rel.created_at,
                    after={"id": rel.id},
                ),
            )
    finally:
        ws.close()


def timed(root: Path, args: list[str]) -> tuple[float, int]:
    times = []
    size = 0
    _run(root, *args)  # warm-up
    for _ in range(RUNS):
        start = time.perf_counter()
        done = _run(root, *args)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            sys.exit(f"releaser {' '.join(args)} failed: {done.stderr}")
        size = len(done.stdout)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    from releaser.config.template import render_init_template
    from releaser.demo.workspace import build_example_workspace

    with tempfile.TemporaryDirectory() as tmp:
        config = render_init_template("council-casework", "case-triage")
        ws = build_example_workspace(Path(tmp) / "ws", config_text=config)
        root = ws.root
        from releaser.api.prompts import promote_prompt, register_prompt
        from releaser.api.workspace import open_workspace
        from releaser.demo.workspace import PROMPT_PATH

        opened = open_workspace(root)
        pv = register_prompt(opened, root / PROMPT_PATH).version
        promote_prompt(opened, pv.name, pv.version, "production", "bench")
        opened.close()
        env_ok = _run(root, "release", "create", "case-triage", "--json")
        if env_ok.returncode != 0:
            sys.exit(env_ok.stderr)
        rid = json.loads(env_ok.stdout)["release"]["id"]
        if _run(root, "gate", "case-triage", "--release", rid).returncode != 0:
            sys.exit("gate failed")
        results: dict[tuple[int, str], float] = {}
        for n in sizes:
            fill(root, n)
            for label, cmd in (
                ("table", ["release", "list"]),
                ("json", ["release", "list", "--json"]),
            ):
                med, size = timed(root, cmd)
                results[(n, label)] = med
                print(
                    f"release list {label:<5} {n:>6} releases: median {med:6.3f} s "
                    f"({size / 1e6:.1f} MB of output)",
                    flush=True,
                )
        if os.environ.get("BENCH_KEEP"):  # the filled workspace, for profiling
            shutil.copytree(root, os.environ["BENCH_KEEP"], symlinks=True)
        top = max(sizes)
        verdicts = []
        for label in ("table", "json"):
            worst = results[(top, label)]
            verdicts.append(
                f"{label} {worst:.2f} s at {top:,} (target < {TARGET_S:.0f} s: "
                f"{'PASS' if worst < TARGET_S else 'FAIL'})"
            )
            if len(sizes) >= 3:
                small, mid = sizes[0], sizes[-2]
                start = results[(small, label)]
                per_mid = (results[(mid, label)] - start) / (mid - small)
                per_top = (worst - start) / (top - small)
                ratio = per_top / per_mid if per_mid > 0 else float("inf")
                verdicts.append(
                    f"{label} per release {per_top * 1e6:.0f} us at {top:,} vs "
                    f"{per_mid * 1e6:.0f} us at {mid:,} (x{ratio:.2f}, linear if <= 1.5: "
                    f"{'PASS' if ratio <= 1.5 else 'FAIL'})"
                )
        for line in verdicts:
            print(line)


if __name__ == "__main__":
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    main()
