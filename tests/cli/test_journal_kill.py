"""kill -9 during every command that moves traffic or an alias: a plain re-run converges.

The full run (200 kill points per store backend) is ``bench/bench_journal_kill.py``;
this runs the same script at one point per scenario (rollback mid-rollout and after
promotion, rollout promote, advance into promotion, prompt promote), three scenarios on
the sqlite store and three on PostgreSQL when the test server is set, so the suite guards the
invariant: after the kill the MLflow and prompt aliases, the journal and the audit
log agree with the store once the command is run again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_journal_kill.py"


# Each backend runs three of the five scenarios, rollback after promotion (both aliases
# and the promoting rollout move back) on both, so every scenario runs on some backend
# in each suite run at about 60% of the cost; the bench runs all five on each.
SCENARIOS = {
    "sqlite": ("rollback-mid", "rollback-promoted", "prompt-promote"),
    "postgresql": ("rollback-promoted", "promote", "advance"),
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_commands_killed_at_random_points_converge_on_a_rerun(
    backend: str, example_workspace: ExampleWorkspace
) -> None:
    if backend == "postgresql" and not os.environ.get("RELEASER_TEST_POSTGRES_DSN"):
        pytest.skip("set RELEASER_TEST_POSTGRES_DSN to run the PostgreSQL store tests")
    scenarios = SCENARIOS[backend]
    args = ["--backend", backend, "--runs", "3", "--calibrate", "1"]
    args += ["--only", ",".join(scenarios)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--example", str(example_workspace.root)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{backend}: kill -9 at 3 random points" in done.stdout and "PASS" in done.stdout
    for scenario in scenarios:
        assert f"{backend} {scenario}: 1 kill points" in done.stdout, done.stdout
