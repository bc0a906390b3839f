"""`releaser demo` end to end: the story the README promises, on real git, DVC and MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from releaser.demo.story import run_demo

pytestmark = pytest.mark.slow


def test_demo_tells_the_whole_story_and_the_audit_chain_holds(tmp_path: Path, cli) -> None:
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", report=lines.append)
    text = "\n".join(lines)
    assert summary.audit_ok and summary.audit_events > 20
    assert len(summary.release_ids) == 2 and "the same id" in text
    # Section 4: promoted step by step; section 5: the regression rolled back by itself.
    assert "promote -> promoted" in text
    assert "rollback -> rolled_back" in text
    # Section 6: a timed drill, then a real rollback whose re-run is a no-op.
    assert "releaser drill case-triage" in text and "ms after the command" in text
    assert "traffic switched" in text and "already rolled back" in text
    assert "MLflow alias case-triage@production: done (v2 -> v1)" in text
    assert "webhook received: rollout.rolled-back: case-triage: rolled back" in text
    # Section 7: the gate passes an as-good candidate and names the regressed slice.
    assert "PASSED" in text and "FAIL slice user_group=pilot-councils" in text
    assert "rollout start refused" in text
    # Section 8: the gateway splits by the plan, sticky, and follows the rollback.
    assert "sticky: yes" in text and "after the rollback the candidate got no requests" in text
    # Section 9: a shadow step catches a disagreeing endpoint before any user is served.
    assert "1000 user requests: 0 answered by the candidate" in text
    assert "rollout advance: rollback" in text
    assert "guardrail: agreement with the stable answers" in text
    # Section 10: prompt v2 refused at the gate naming the slice, v3 canaried to 25%.
    assert "FAIL slice topic=council-tax regressed: judge" in text
    assert "advanced to 'canary-25'" in text
    # Section 11: promoted, then degraded at full traffic: the guard rolls it back.
    assert "prompt v3 promoted to everyone" in text
    assert "rollout advance --if-live: rollback" in text and "guard breach: error rate" in text
    assert "prompt alias reply-draft@production: done (v3 -> v1)" in text
    # ... and the ops channel's local receiver got the guard's notification.
    assert (
        "the ops channel's webhook received: guard.breach: reply-drafter: "
        "post-promotion guard breached" in text
    )
    breach = text.split("webhook received: guard.breach", 1)[1].splitlines()[1]
    assert "rolled back to" in breach and "guard breach: error rate" in breach
    # Section 12: runbook and handover pack on disk; the shadow step is in the pack.
    assert (summary.root / "runbooks" / "case-triage.md").is_file()
    assert (summary.root / "dist" / "case-triage-handover.html").is_file()
    rollouts = next((summary.root / "dist").glob("**/rollouts.md")).read_text()
    assert "Shadow step `shadow`: 50% of requests were also sent to the candidate" in rollouts
    # The workspace it leaves is usable from the CLI.
    res = cli("audit", "verify", cwd=summary.root)
    assert res.code == 0, res.err
