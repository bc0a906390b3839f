"""rollout commands as an engineer or a CI cron runs them."""

from __future__ import annotations

import json
import subprocess

import pytest

from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow


def test_rollout_lifecycle_through_the_cli(release_ws: ExampleWorkspace, cli, tmp_path) -> None:
    root = release_ws.root
    r1 = json.loads(cli("release", "create", "case-triage", "--json", cwd=root).out)
    r1_id = r1["release"]["id"]
    res = cli("rollout", "start", "case-triage", "--release", r1_id)
    assert res.code == 2 and "--initial" in res.err
    res = cli("rollout", "start", "case-triage", "--release", r1_id, "--initial")
    assert res.code == 1 and "has not been through the eval gate" in res.err
    assert cli("gate", "case-triage", "--release", r1_id).code == 0
    assert cli("rollout", "start", "case-triage", "--release", r1_id, "--initial").code == 0

    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2_id = json.loads(cli("release", "create", "case-triage", "--json").out)["release"]["id"]

    assert cli("gate", "case-triage", "--release", r2_id).code == 0
    res = cli("rollout", "start", "case-triage", "--release", r2_id[:8])
    assert res.code == 0 and "step 1/4 'internal'" in res.out, res.err
    res = cli("rollout", "start", "case-triage", "--release", r2_id)
    assert res.code == 2 and "already has rollout" in res.err

    out = tmp_path / "gh_output"
    summary = tmp_path / "gh_summary"
    res = subprocess.run(
        [str(_releaser()), "rollout", "advance", "case-triage"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**_env(), "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert res.returncode == 0, res.stderr
    assert "hold" in res.stdout and "waiting for samples" in res.stdout
    assert "decision=hold" in out.read_text()
    assert "rollout advance" in summary.read_text()

    res = cli("rollout", "status", "case-triage", "--json")
    status = json.loads(res.out)
    assert status["rollout"]["candidate"] == r2_id
    assert status["variants"]["candidate"]["requests"] == 0
    assert status["decision_preview"]["action"] == "hold" and status["problems"] == []
    good = cfg.read_text()
    cfg.write_text(good + "servces: {}\n")  # broken mid-rollout: the stored figures still show
    res = cli("rollout", "status", "case-triage", "--json")
    broken = json.loads(res.out)
    assert res.code == 0 and broken["decision_preview"] is None
    assert broken["variants"]["candidate"]["requests"] == 0
    assert (
        "releaser.yaml is invalid" in broken["problems"][0] and "servces" in broken["problems"][0]
    )
    res = cli("rollout", "status", "case-triage")
    assert res.code == 0 and "releaser.yaml is invalid" in res.err
    # Pause and resume keep the step: they need only the stored state (and the group
    # definitions the live route holds), so they work while the file is broken.
    route_before = _route(root)
    assert route_before["group_defs"]  # the first step reaches the 'staff' group
    res = cli("rollout", "pause", "case-triage", "--reason", "config broken, holding")
    assert res.code == 0, res.err
    assert _route(root)["paused"] and _route(root)["group_defs"] == route_before["group_defs"]
    assert cli("rollout", "resume", "case-triage").code == 0
    assert _route(root)["group_defs"] == route_before["group_defs"]
    cfg.write_text(good)

    assert cli("rollout", "pause", "case-triage", "--reason", "investigating").code == 0
    res = cli("rollout", "advance", "case-triage")
    assert res.code == 2 and "paused" in res.err
    assert cli("rollout", "resume", "case-triage").code == 0
    res = cli("rollout", "promote", "case-triage", "--reason", "x")
    assert res.code == 2 and "--force" in res.err
    res = cli("rollout", "abort", "case-triage", "--reason", "wrong candidate")
    assert res.code == 0 and "aborted" in res.out
    res = cli("rollout", "advance", "case-triage")
    assert res.code == 2 and "no rollout in progress" in res.err
    # What the scheduled workflow runs: nothing live is not a failure, and nothing moves.
    before = cli("audit", "log", "--json").out
    res = subprocess.run(
        [str(_releaser()), "rollout", "advance", "case-triage", "--if-live"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**_env(), "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert res.returncode == 0 and "idle: case-triage has no rollout in progress" in res.stdout
    assert out.read_text().splitlines()[-4:] == [
        "decision=idle",
        "rollout_id=",
        "status=idle",
        "freeze=",  # no change freeze in force
    ]
    res = cli("rollout", "advance", "case-triage", "--if-live", "--json")
    assert res.code == 0 and json.loads(res.out)["decision"]["action"] == "idle"
    assert cli("audit", "log", "--json").out == before
    res = cli("rollout", "advance", "case-triag", "--if-live")
    assert res.code == 2 and "did you mean" in res.err
    res = cli("rollout", "status", "case-triage", "--json")
    assert json.loads(res.out)["stable"] == r1_id
    assert cli("audit", "verify").code == 0


def test_advance_if_live_on_a_paused_rollout_reports_paused_and_writes_nothing(
    release_ws: ExampleWorkspace, cli, released, tmp_path
) -> None:
    root = release_ws.root
    _r1, r2 = released(root)
    res = cli("rollout", "pause", "case-triage", "--reason", "investigating complaints")
    assert res.code == 0, res.err
    head = json.loads(cli("audit", "verify", "--json").out)
    out = tmp_path / "gh_output"
    summary = tmp_path / "gh_summary"
    res = subprocess.run(
        [str(_releaser()), "rollout", "advance", "case-triage", "--if-live"],
        cwd=root,
        capture_output=True,
        text=True,
        env={**_env(), "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("paused: ") and "rollout resume case-triage" in res.stdout
    assert "decision=paused" in out.read_text().splitlines()
    assert "**paused**" in summary.read_text()
    res = cli("rollout", "advance", "case-triage", "--if-live", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["decision"]["action"] == "paused"
    assert json.loads(cli("audit", "verify", "--json").out) == head  # nothing written
    status = json.loads(cli("rollout", "status", "case-triage", "--json").out)
    assert status["rollout"]["status"] == "paused" and status["rollout"]["candidate"] == r2
    # Without --if-live a paused rollout is still an error: a person asked for a step.
    res = cli("rollout", "advance", "case-triage")
    assert res.code == 2 and "paused" in res.err


def _route(root):
    from releaser.api.workspace import open_workspace

    ws = open_workspace(root, settings_only=True)
    try:
        rec = ws.store.get("route", "case-triage")
        assert rec is not None
        return rec.value
    finally:
        ws.close()


def _releaser():
    import sys
    from pathlib import Path

    return Path(sys.executable).parent / "releaser"


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_a_rollout_runs_on_the_plan_its_release_pinned_and_warns_of_an_edited_file(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    r1 = json.loads(cli("release", "create", "case-triage", "--json", cwd=root).out)
    assert cli("gate", "case-triage", "--release", r1["release"]["id"]).code == 0
    res = cli("rollout", "start", "case-triage", "--release", r1["release"]["id"], "--initial")
    assert res.code == 0 and not res.err, res.err  # the file and the release agree
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", "case-triage", "--json").out)["release"]["id"]
    assert cli("gate", "case-triage", "--release", r2).code == 0
    # An edit after the release, not committed: one-minute bakes and a looser guardrail.
    text = cfg.read_text()
    cfg.write_text(
        text.replace("bake_minutes: 60", "bake_minutes: 1", 1).replace(
            "error_rate: 0.02", "error_rate: 0.5", 1
        )
    )

    res = cli("rollout", "start", "case-triage", "--release", r2, "--json")
    assert res.code == 0, res.err
    warnings = json.loads(res.out)["warnings"]
    assert len(warnings) == 1 and f"release {r2} pinned" in warnings[0]
    assert "rollout.steps[internal].bake_minutes: 60 pinned, 1 in the file" in warnings[0]
    assert "rollout.guardrails.error_rate: 0.02 pinned, 0.5 in the file" in warnings[0]
    assert warnings[0] in res.err  # people see it too
    rollout = json.loads(res.out)["rollout"]
    assert rollout["steps"][0]["bake_s"] == 3600.0  # the pinned plan, not the file's
    assert rollout["guardrails"]["error_rate"] == 0.02
    event = json.loads(cli("audit", "log", "--json").out)[-1]
    assert event["action"] == "rollout.start"
    assert event["after"]["plan_drift"] == [
        "rollout.guardrails.error_rate",
        "rollout.steps[internal].bake_minutes",
    ]


def test_release_list_shows_each_release_gate_and_standing(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    r1, r2 = released(root)  # r1 stable, r2 gated and live at its first step
    listed = json.loads(cli("release", "list", "case-triage", "--json").out)
    assert [r["id"] for r in listed] == [r1, r2]
    first, second = listed
    assert (first["gate"], first["stable"], first["known_good"]) == ("passed", True, True)
    assert (second["gate"], second["stable"], second["known_good"]) == ("passed", False, False)
    assert first["model"] == {"name": "case-triage", "version": 1, "alias": "champion"}
    assert second["model"]["version"] == 2
    assert first["prompts"] == [{"name": "case-triage-system", "version": 1, "alias": "production"}]
    assert "config" not in json.dumps(first)  # release show has the whole bundle
    res = cli("release", "list")
    assert res.code == 0
    header, row1, row2 = res.out.splitlines()[:3]
    for column in ("model", "prompts", "gate", "stable"):
        assert column in header
    assert "stable" in row1 and "passed" in row1 and "case-triage-system v1" in row1
    assert "case-triage v2" in row2 and "stable" not in row2


@pytest.mark.parametrize("with_tokens", [True, False])
def test_status_shows_a_tokens_column_once_tokens_were_recorded(
    cli, tmp_path, monkeypatch: pytest.MonkeyPatch, with_tokens: bool
) -> None:
    from releaser.api import rollout_status as status_module
    from releaser.api.rollout_status import StatusReport
    from releaser.api.state import ServiceState
    from releaser.core import rollout as ro
    from releaser.core.stats_aggregates import VariantStats

    rollout = ro.start(
        rollout_id="svc-2",
        service="svc",
        baseline="r1",
        candidate="r2",
        seed=1,
        steps=[ro.StepPlan(name="internal", percent=5, bake_s=0, min_samples=100)],
        now="2026-03-02T09:00:00Z",
        guardrails={"tokens_mean": 600, "price_input_per_1k": 0.5, "price_output_per_1k": 1.5},
    )
    usage = [(300, 100), (2_000, 40_000)] if with_tokens else []
    candidate = VariantStats.of(errors=[False] * 2, tokens=usage)
    report = StatusReport(
        ServiceState(service="svc", stable="r1", active_rollout="svc-2", rollouts=2),
        rollout,
        VariantStats.of(errors=[False] * 3),
        candidate,
        None,
        60.0,
    )
    monkeypatch.setattr(status_module, "rollout_status", lambda ws, service: report)
    assert cli("init", cwd=tmp_path).code == 0  # a releaser.yaml to find the store by
    res = cli("rollout", "status", "svc", cwd=tmp_path)
    assert res.code == 0, res.err
    if with_tokens:
        assert "tokens mean / p95 (cost per 1k)" in res.out
        # Mean 21,200 tokens, p95 in the 42k bin, cost (2300 * 0.5 + 40100 * 1.5) / 2.
        assert "21.2k / 4" in res.out and "(3.06e+04)" in res.out
        figures = json.loads(cli("rollout", "status", "svc", "--json", cwd=tmp_path).out)
        tokens = figures["variants"]["candidate"]["tokens"]
        assert tokens["requests"] == 2 and tokens["mean"] == 21_200
        assert tokens["cost_per_1k_requests"] == (2_300 * 0.5 + 40_100 * 1.5) / 2
        assert figures["variants"]["baseline"]["tokens"] is None
    else:
        assert "tokens" not in res.out
