"""kill -9 during `releaser rollback`: old or new state, a verified chain, a re-run completes.

The full 200-point run is ``bench/bench_rollback_kill.py``; this runs the same
script at a handful of points so the suite guards the invariant.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_rollback_kill.py"


def test_rollback_killed_at_random_points_leaves_old_or_new_state() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "6"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "mixed 0" in done.stdout and "PASS" in done.stdout
