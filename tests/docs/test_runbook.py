"""The runbook: what it says, byte-identical output, a rollback command that works as written."""

from __future__ import annotations

import re
import shlex

import pytest

from releaser.api.releases import get_release
from releaser.api.rollout_status import rollout_status
from releaser.api.rollouts import service_state
from releaser.api.workspace import open_workspace
from releaser.docs.runbook import render_runbook, write_runbook
from releaser.errors import BadInput

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


def _rollback_commands(text: str) -> list[str]:
    return re.findall(r"^\s*(releaser rollback .+)$", text, flags=re.MULTILINE)


def test_runbook_says_what_is_deployed_and_is_byte_identical(mid_rollout, tmp_path) -> None:
    ws = open_workspace(mid_rollout.root)
    try:
        first = write_runbook(ws, SERVICE, tmp_path / "a.md")
        second = write_runbook(ws, SERVICE, tmp_path / "b.md")
        release = get_release(ws, mid_rollout.stable)
    finally:
        ws.close()
    assert first.path.read_bytes() == second.path.read_bytes()
    text = first.text
    model = release.content.model
    assert model is not None and model.run_id
    for expected in (
        mid_rollout.stable,
        mid_rollout.candidate,
        model.run_id,
        f"`{model.name}` version {model.version}",
        release.content.code.sha,
        release.content.prompts[0].content_hash,
        release.content.datasets[0].md5,
        "Priya Shah",
        "#case-triage-oncall",
        "at most 800 ms",
        "at least 99.5% of requests served",
        "### Refresh a dataset with DVC",
        "### Re-run the eval gate",
        "### Promote a prompt",
        "### Restart the gateway or containers",
        "## Investigating a quality complaint",
        "No drill recorded",
        "## Known limitations",
    ):
        assert expected in text, expected
    for alert in ("slo-error-rate", "slo-availability", "slo-latency-p95", "rollout-guardrail"):
        assert f"(`{alert}`)" in text
    assert "generated at" not in text.lower()
    # one exact rollback command per SLO alert, plus the one at the top
    assert len(_rollback_commands(text)) == 4


def test_the_runbooks_rollback_command_run_as_written_rolls_back(rollout_copy, cli) -> None:
    root = rollout_copy.root
    result = cli("runbook", SERVICE, cwd=root)
    assert result.code == 0, result.err
    assert "wrote " in result.out and "gap: drill" in result.err
    text = (root / "runbooks" / f"{SERVICE}.md").read_text(encoding="utf-8")
    command = _rollback_commands(text)[0]
    words = shlex.split(command)
    assert words[0] == "releaser"
    ran = cli(*words[1:], cwd=root)
    assert ran.code == 0, ran.err
    assert "traffic switched" in ran.out
    ws = open_workspace(root)
    try:
        state = service_state(ws, SERVICE)
        assert state.stable == rollout_copy.stable and state.active_rollout is None
        report = rollout_status(ws, SERVICE)
        assert report.rollout is not None and report.rollout.status in ("aborted", "rolled_back")
        # The runbook follows the state: no rollout live any more, last rollback recorded.
        after = render_runbook(ws, SERVICE)
    finally:
        ws.close()
    assert after != text
    assert "Last rollback:" in after and "A rollout is live" not in after


def test_last_drill_time_to_revert_is_shown(rollout_copy) -> None:
    from releaser.api.drills import run_drill

    ws = open_workspace(rollout_copy.root)
    try:
        drill = run_drill(ws, SERVICE)
        text = render_runbook(ws, SERVICE)
    finally:
        ws.close()
    assert drill.time_to_revert_ms is not None
    assert f"in **{drill.time_to_revert_ms:.4g} ms**" in text
    assert "No drill recorded" not in text


def test_a_workspace_template_overrides_the_shipped_one_in_a_sandbox(rollout_copy) -> None:
    folder = rollout_copy.root / "runbooks"
    folder.mkdir()
    (folder / "runbook.md.j2").write_text(
        "# Ours: {{ service }} on {{ deployed.id }}\n", encoding="utf-8"
    )
    ws = open_workspace(rollout_copy.root)
    try:
        assert render_runbook(ws, SERVICE) == f"# Ours: {SERVICE} on {rollout_copy.stable}\n"
        (folder / "runbook.md.j2").write_text(
            "{{ ''.__class__.__mro__[1].__subclasses__() }}\n", encoding="utf-8"
        )
        with pytest.raises(BadInput, match="sandbox forbids"):
            render_runbook(ws, SERVICE)
        (folder / "runbook.md.j2").write_text("{{ no_such_fact }}\n", encoding="utf-8")
        with pytest.raises(BadInput, match=r"runbook.md.j2:1: template error: .*no_such_fact"):
            render_runbook(ws, SERVICE)
    finally:
        ws.close()


def test_after_a_promotion_the_command_returns_to_the_previous_release(rollout_copy, cli) -> None:
    from releaser.api.rollouts import promote_rollout

    root = rollout_copy.root
    ws = open_workspace(root)
    try:
        promote_rollout(ws, SERVICE, reason="bake complete elsewhere")
        text = render_runbook(ws, SERVICE)
    finally:
        ws.close()
    assert f"returns the service from release `{rollout_copy.candidate}`" in text
    words = shlex.split(_rollback_commands(text)[1])  # the error-rate alert's command
    assert "slo-error-rate" in words[words.index("--reason") + 1]
    ran = cli(*words[1:], cwd=root)
    assert ran.code == 0, ran.err
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).stable == rollout_copy.stable
    finally:
        ws.close()


def test_owed_side_effects_are_named_with_the_command_that_finishes_them(rollout_copy, cli) -> None:
    from releaser.api.rollback import rollback
    from releaser.api.rollouts import promote_rollout

    root = rollout_copy.root
    ws = open_workspace(root)
    try:
        promote_rollout(ws, SERVICE, reason="bake complete elsewhere")
        # Killed between its commit and its side effects: the switch is in, the aliases owed.
        rollback(ws, SERVICE, reason="errors up", side_effects=False)
        text = render_runbook(ws, SERVICE)
    finally:
        ws.close()
    assert "still owed (MLflow alias case-triage@production (v2 -> v1))" in text, text
    assert f"finish them with 'releaser reconcile {SERVICE}'" in text
    assert cli("reconcile", SERVICE, cwd=root).code == 0
    ws = open_workspace(root)
    try:
        assert "still owed" not in render_runbook(ws, SERVICE)
    finally:
        ws.close()


def test_an_unknown_service_is_one_clear_error(mid_rollout, cli) -> None:
    result = cli("runbook", "case-triag", cwd=mid_rollout.root)
    assert result.code == 2
    assert "no service 'case-triag'" in result.err and "hint:" in result.err
    assert "Traceback" not in result.err
