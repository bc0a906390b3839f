"""CLI start-up: `releaser --help` wall time, with `dvc --version` and `mlflow --help` as peers.

Target: `releaser --help` median <= 0.25 s. Prints median and p90 of each over N runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
RUNS = 15
PEER_RUNS = 5


def wall(cmd: list[str], runs: int) -> list[float]:
    """Wall times of ``runs`` runs of ``cmd`` (one warm-up run first)."""
    subprocess.run(cmd, capture_output=True, check=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def report(name: str, times: list[float], target: float | None = None) -> None:
    """Print median and p90; PASS/FAIL against ``target`` when given."""
    med = statistics.median(times)
    p90 = sorted(times)[max(0, int(len(times) * 0.9) - 1)]
    verdict = ""
    if target is not None:
        verdict = f"  target median <= {target:.2f} s: {'PASS' if med <= target else 'FAIL'}"
    print(f"{name:<24} median {med:6.3f} s  p90 {p90:6.3f} s  (n={len(times)}){verdict}")


def main() -> None:
    """Run the comparison and print it."""
    print("CLI start-up (wall time, seconds)")
    report("releaser --help", wall([str(BIN / "releaser"), "--help"], RUNS), 0.25)
    report("releaser --version", wall([str(BIN / "releaser"), "--version"], RUNS))
    report("dvc --version", wall([str(BIN / "dvc"), "--version"], PEER_RUNS))
    report("mlflow --help", wall([str(BIN / "mlflow"), "--help"], PEER_RUNS))


if __name__ == "__main__":
    main()
