"""The documented walk-through of a rollout judged on Prometheus runs as written.

``docs/concepts/metrics.md`` and the README tell a user to run
``examples/prometheus_rollout.py``; this runs it, with a real ``prometheus``, so the
walk-through cannot rot unseen.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.prometheus]


def test_the_prometheus_walkthrough_promotes_a_healthy_candidate(tmp_path: Path) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("no prometheus binary on PATH (apt-get install prometheus)")
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "prometheus_rollout.py"), str(tmp_path / "ws")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    looks = [line for line in run.stdout.splitlines() if line.startswith("look ")]
    assert looks and all("from Prometheus" in line for line in looks), run.stdout
    assert "-> promote:" in looks[-1], run.stdout
    assert run.stdout.rstrip().endswith("promoted"), run.stdout
