"""Reliability: kill -9 `releaser rollback` at random points; state must be old or new.

Each run restores the same mid-rollout store, starts `releaser rollback ... --yes`
and sends SIGKILL after a random delay. Half of the delays are uniform over the
whole command; the other half cluster (normal, sd 15 ms) around the moment the
switch is committed, found beforehand by watching the store's change token
during calibration runs. After each kill:

- the store is exactly the old state (rollout live at 25%, the route with the
  candidate) or exactly the new one (rollout rolled back, no candidate in the
  route, service record without an active rollout), never a mixture;
- `releaser audit verify` passes;
- a re-run of the same command exits 0 and leaves the new state.

Exits non-zero on the first violation. Run:
.venv/bin/python bench/bench_rollback_kill.py [RUNS] (default 200).
"""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _rollback_setup as setup  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SEED = 20261125
COMMAND = ["rollback", setup.SERVICE, "--reason", "kill test", "--yes"]


def calibrate(root: Path, snap: Path) -> tuple[float, float]:
    """(median time to the switch commit, median wall time) of uninterrupted runs."""
    from releaser.store import open_store

    switches, walls = [], []
    for _ in range(5):
        setup.restore(root, snap)
        store = open_store(setup.store_url(root))
        token = store.change_token()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [str(setup.BIN), *COMMAND],
            cwd=root,
            env=setup.child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        switched = None
        while proc.poll() is None:
            if switched is None and store.change_token() != token:
                switched = time.monotonic() - t0
            time.sleep(0.0005)
        walls.append(time.monotonic() - t0)
        if switched is None and store.change_token() != token:
            switched = walls[-1]
        store.close()
        assert proc.returncode == 0 and switched is not None
        switches.append(switched)
    return statistics.median(switches), statistics.median(walls)


def classify(root: Path, r1: str, r2: str) -> str:
    """'old' or 'new'; raise SystemExit if the store holds anything else."""
    from releaser.store import open_store

    store = open_store(setup.store_url(root))
    try:
        svc = store.get("service", setup.SERVICE)
        route = store.get("route", setup.SERVICE)
        assert svc is not None and route is not None
        rid = svc.value["active_rollout"] or f"{setup.SERVICE}-1"
        rollout = store.get("rollout", rid)
        assert rollout is not None
        candidate_in_route = route.value.get("candidate") == r2
        old = (
            svc.value["active_rollout"] is not None
            and rollout.value["status"] == "running"
            and candidate_in_route
            and svc.value["stable"] == r1
        )
        new = (
            svc.value["active_rollout"] is None
            and rollout.value["status"] == "rolled_back"
            and not candidate_in_route
            and svc.value["stable"] == r1
            and (svc.value.get("last_rollback") or {}).get("from") == r2
        )
    finally:
        store.close()
    if old == new:
        sys.exit(f"mixed state after a kill: service={svc.value} route={route.value}")
    return "old" if old else "new"


def main() -> None:
    """Kill at RUNS random points and check every invariant after each."""
    rng = random.Random(SEED)
    outcomes = {"old": 0, "new": 0}
    finished = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        r1, r2 = setup.build(root)
        snap = Path(tmp) / "snapshot.db"
        setup.snapshot(root, snap)
        t_switch, wall = calibrate(root, snap)
        print(
            f"calibration: switch committed {t_switch * 1000:.0f} ms after start, "
            f"command done at {wall * 1000:.0f} ms"
        )
        delays = []
        for i in range(RUNS):
            if i % 2:
                delays.append(rng.uniform(0, wall))
            else:
                delays.append(max(0.0, rng.gauss(t_switch, 0.015)))
        for delay in delays:
            setup.restore(root, snap)
            proc = subprocess.Popen(
                [str(setup.BIN), *COMMAND],
                cwd=root,
                env=setup.child_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            else:
                finished += 1
            proc.wait()
            outcomes[classify(root, r1, r2)] += 1
            verify = subprocess.run(
                [str(setup.BIN), "audit", "verify"], cwd=root, capture_output=True, text=True
            )
            if verify.returncode != 0:
                sys.exit(
                    f"audit verify failed after a kill at {delay * 1000:.1f} ms: {verify.stderr}"
                )
            again = subprocess.run(
                [str(setup.BIN), *COMMAND],
                cwd=root,
                capture_output=True,
                text=True,
                env=setup.child_env(),
            )
            if again.returncode != 0:
                sys.exit(f"re-run failed after a kill at {delay * 1000:.1f} ms: {again.stderr}")
            if classify(root, r1, r2) != "new":
                sys.exit(f"re-run after a kill at {delay * 1000:.1f} ms did not roll back")
    print(
        f"kill -9 at {RUNS} random points (seed {SEED}): state old {outcomes['old']}, "
        f"new {outcomes['new']}, mixed 0 (runs that finished before the kill: {finished}); "
        f"audit verify passed and the re-run completed the rollback every time: PASS"
    )


if __name__ == "__main__":
    main()
