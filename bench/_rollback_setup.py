"""A throw-away workspace with a rollout live at 25%, for the rollback benchmarks.

The service has one prompt on the file backend and no model, so a rollback
needs no MLflow side effect: what is timed is releaser's own path (CLI start,
config, store write, the prompt alias check). ``snapshot``/``restore`` copy
the sqlite store so every run starts from the same mid-rollout state.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "releaser"
SERVICE = "assist"
CONFIG = """\
version: 1
project: bench
owners:
  - name: Operations
    email: ops@example.org
    role: service-owner
prompts:
  backend: file
services:
  assist:
    prompts:
      - name: assist-system
        alias: {alias}
    slos:
      error_rate: 0.02
"""
PROMPT = """\
name: assist-system
variables: {{case_text: str}}
template: |
  {text} {{{{ case_text }}}}
"""

# A router in another process: prints "ready <candidates>", then the monotonic time at
# which none of 10k ids gets the candidate any more.
ROUTER_CHILD = textwrap.dedent(
    """
    import sys, time
    from releaser.router import Router
    r = Router(sys.argv[1], refresh_interval_ms=20)
    ids = [f"user-{i}" for i in range(10_000)]
    n = sum(r.assign("assist", u).variant == "candidate" for u in ids)
    print("ready", n, flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not any(r.assign("assist", u).variant == "candidate" for u in ids):
            print("reverted", time.monotonic(), flush=True)
            break
        time.sleep(0.002)
    else:
        print("timeout", flush=True)
    r.close()
    """
)


def releaser(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``root``; fail loudly on a non-zero exit."""
    done = subprocess.run([str(BIN), *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"releaser {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def build(root: Path) -> tuple[str, str]:
    """Two releases; r1 stable, r2 rolled out to the 25% step. Returns (r1, r2)."""
    import json

    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.demo.traffic import advance_to_step

    _git(root, "init", "-q", "-b", "main")
    _git(root, "config", "user.email", "bench@example.org")
    _git(root, "config", "user.name", "bench")
    (root / "releaser.yaml").write_text(CONFIG.format(alias="production"))
    for i, text in enumerate(["Summarise:", "Summarise briefly:"], start=1):
        (root / f"v{i}.yaml").write_text(PROMPT.format(text=text))
        releaser(root, "prompt", "register", f"v{i}.yaml")
    releaser(root, "prompt", "promote", "assist-system", "1", "--to", "production", "--reason", "b")
    releaser(root, "prompt", "promote", "assist-system", "2", "--to", "staging", "--reason", "b")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "v1")
    r1 = json.loads(releaser(root, "release", "create", SERVICE, "--json").stdout)["release"]["id"]
    (root / "releaser.yaml").write_text(CONFIG.format(alias="staging"))
    _git(root, "commit", "-qam", "v2")
    r2 = json.loads(releaser(root, "release", "create", SERVICE, "--json").stdout)["release"]["id"]
    ws = open_workspace(root)
    try:
        start_rollout(ws, SERVICE, r1, initial=True, now="2030-01-01T00:00:00.000000Z")
        start_rollout(ws, SERVICE, r2, now="2030-01-01T00:00:00.000000Z")
        advance_to_step(ws, SERVICE, "canary-25")
    finally:
        ws.close()
    return r1, r2


def store_file(root: Path) -> Path:
    """The workspace's sqlite store."""
    return root / ".releaser" / "state.db"


def sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a sqlite database (sqlite's backup API, WAL included)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dest)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def sqlite_restore(src: Path, dest: Path) -> None:
    """Put a copy back over a sqlite database, dropping any WAL of the previous run."""
    for suffix in ("-wal", "-shm"):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(src, dest)


def snapshot(root: Path, dest: Path) -> None:
    """A consistent copy of the store."""
    sqlite_copy(store_file(root), dest)


def restore(root: Path, snap: Path) -> None:
    """Put the snapshot back as the store."""
    sqlite_restore(snap, store_file(root))


def store_url(root: Path) -> str:
    """The sqlite URL of the workspace's store."""
    return f"sqlite:///{store_file(root).as_posix()}"


def child_env() -> dict[str, str]:
    """Environment for child processes (no colour, a fixed actor)."""
    return {**os.environ, "NO_COLOR": "1", "RELEASER_ACTOR": "bench"}


def timed_rollbacks(root: Path, snap: Path, runs: int) -> tuple[list[float], list[float], str]:
    """``runs`` rollbacks from the snapshot, each with a router process watching: (command
    start -> that router serves the baseline to every id, CLI wall) in seconds per run,
    and the last run's stderr."""
    env = child_env()
    to_router: list[float] = []
    walls: list[float] = []
    err = ""
    for _ in range(runs):
        restore(root, snap)
        child = subprocess.Popen(
            [sys.executable, "-c", ROUTER_CHILD, store_url(root)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        ready = child.stdout.readline().split()
        assert ready[0] == "ready" and int(ready[1]) > 2000, ready
        t0 = time.monotonic()
        cli = subprocess.run(
            [str(BIN), "rollback", SERVICE, "--reason", "bench", "--yes"],
            cwd=root,
            capture_output=True,
            text=True,
            env=env,
        )
        walls.append(time.monotonic() - t0)
        if cli.returncode != 0:
            sys.exit(f"rollback failed ({cli.returncode}): {cli.stderr}")
        err = cli.stderr
        seen = child.stdout.readline().split()
        child.wait()
        child.stdout.close()
        if seen[0] != "reverted":
            sys.exit("the router never served the baseline to every id")
        to_router.append(float(seen[1]) - t0)
    return to_router, walls, err
