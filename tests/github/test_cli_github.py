"""``releaser github sync|comment`` against the stand-in, and ``::error`` annotations."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from releaser.api.releases import create_release
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace

from .conftest import TOKEN, Failure, GithubStandIn, actions_env, assert_matches_recordings

SERVICE = "case-triage"


@pytest.mark.slow
def test_sync_finishes_what_a_github_outage_left(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    actions_env(monkeypatch, github.base)
    root = github_ws.root
    ws = open_workspace(root)
    try:
        rid = create_release(ws, SERVICE).release.id
    finally:
        ws.close()
    github.failure = Failure(502, "Server Error")
    started = cli(
        "rollout", "start", SERVICE, "--release", rid, "--initial",
        "--force", "--reason", "gate not under test", cwd=root,
    )  # fmt: skip
    assert started.code == 0 and "GitHub answered 502" in started.err, started.err
    assert github.deployments == []

    res = cli("github", "sync", SERVICE, cwd=root)
    assert res.code == 3 and f"releaser github sync {SERVICE}" in res.err, res.err
    assert TOKEN not in res.out + res.err

    github.failure = None
    res = cli("github", "sync", SERVICE, cwd=root)
    assert res.code == 0, res.err
    [dep] = github.deployments
    assert dep["payload"] == {"service": SERVICE, "release_id": rid}
    assert [s["state"] for s in github.deployment_statuses[dep["id"]]] == ["success"]
    again = cli("github", "sync", SERVICE, cwd=root)
    assert again.code == 0 and "unchanged" in again.out, again.out
    assert len(github.deployment_statuses[dep["id"]]) == 1
    assert_matches_recordings(github.log)


@pytest.mark.slow
def test_comment_from_a_file_is_edited_in_place(
    github_ws: ExampleWorkspace,
    github: GithubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    cli,
    tmp_path: Path,
) -> None:
    # GitHub Enterprise style: the API lives under /api/v3 of the server.
    github.api_prefix = "/api/v3"
    actions_env(monkeypatch, github.base + "/api/v3", GITHUB_REF="refs/pull/12/merge")
    report = tmp_path / "report.md"
    report.write_text("## Gate\npassed\n")
    assert cli("github", "comment", SERVICE, "--file", str(report), cwd=github_ws.root).code == 0
    report.write_text("## Gate\nfailed\n")
    res = cli("github", "comment", SERVICE, "--file", str(report), cwd=github_ws.root)
    assert res.code == 0 and "edited comment" in res.out, res.out
    [comment] = github.comments[12]
    assert github.enterprise_requests == len(github.log) > 0
    assert comment["body"] == "<!-- releaser:case-triage -->\n## Gate\nfailed\n"
    github.failure = Failure(403, "Resource not accessible by integration")
    forked = cli("github", "comment", SERVICE, "--file", str(report), cwd=github_ws.root)
    assert forked.code == 0 and "refused the call (403" in forked.err, forked.err
    assert f"releaser github comment {SERVICE} --pr 12" in forked.err
    github.failure = None
    missing = cli(
        "github", "comment", SERVICE, "--file", str(tmp_path / "no.md"), cwd=github_ws.root
    )
    assert missing.code == 2 and "no.md" in missing.err


def test_config_errors_become_annotations_inside_actions(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "svc"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert cli("init", cwd=repo).code == 0
    cfg = repo / "releaser.yaml"
    lines = cfg.read_text().splitlines()
    idx = next(i for i, line in enumerate(lines) if line.strip() == "slos:")
    lines[idx] = lines[idx].replace("slos:", "slo:")
    cfg.write_text("\n".join(lines) + "\n")

    outside = cli("validate", cwd=repo)
    assert outside.code == 2 and "::error" not in outside.err

    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(repo))
    res = cli("validate", cwd=repo)
    assert res.code == 2
    [annotation] = [line for line in res.err.splitlines() if line.startswith("::error ")]
    assert annotation.startswith(f"::error file=releaser.yaml,line={idx + 1},title=")
    assert "did you mean 'slos'" in annotation.split("::", 2)[2]


@pytest.mark.slow
def test_one_click_rollback_succeeds_while_github_is_down_and_resumes(
    github_ws: ExampleWorkspace, github: GithubStandIn, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    actions_env(monkeypatch, github.base)
    root = github_ws.root
    ws = open_workspace(root)
    try:
        r1 = create_release(ws, SERVICE).release.id
    finally:
        ws.close()
    force = ("--force", "--reason", "gate not under test")
    assert (
        cli("rollout", "start", SERVICE, "--release", r1, "--initial", *force, cwd=root).code == 0
    )
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "model v2"], cwd=root, check=True)
    ws = open_workspace(root)
    try:
        r2 = create_release(ws, SERVICE).release.id
    finally:
        ws.close()
    assert cli("rollout", "start", SERVICE, "--release", r2, *force, cwd=root).code == 0

    # The PR comment can carry what the candidate changes against production.
    report = root.parent / "gate.md"
    report.write_text("## Gate\npassed\n")
    res = cli(
        "github", "comment", SERVICE, "--file", str(report), "--release", r2, "--pr", "4", cwd=root
    )
    assert res.code == 0, res.err
    [comment] = github.comments[4]
    assert f"What release `{r2}` changes against production" in comment["body"]
    assert f"Compared with `{r1}` (stable)." in comment["body"]
    assert "| `model.version` | `1` | `2` |" in comment["body"], comment["body"]

    github.failure = Failure(401, "Bad credentials")
    res = cli("rollback", SERVICE, "--reason", "errors up", "--yes", cwd=root)
    assert res.code == 0, res.err
    assert "rejected the token" in res.err and f"releaser reconcile {SERVICE}" in res.err
    assert TOKEN not in res.out + res.err

    github.failure = None
    res = cli("rollback", SERVICE, "--resume", "--yes", cwd=root)
    assert res.code == 0, res.err
    by_release = {d["payload"]["release_id"]: d["id"] for d in github.deployments}
    r2_states = [s["state"] for s in github.deployment_statuses[by_release[r2]]]
    r1_states = [s["state"] for s in github.deployment_statuses[by_release[r1]]]
    assert r2_states == ["in_progress", "failure"] and r1_states[-1] == "success"


def test_a_wrong_github_section_is_a_located_config_error(tmp_path: Path, cli) -> None:
    repo = tmp_path / "svc"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert cli("init", cwd=repo).code == 0
    cfg = repo / "releaser.yaml"
    text = cfg.read_text()
    cfg.write_text(text + "github:\n  gate_status: checks\n")
    res = cli("validate", cwd=repo)
    assert res.code == 2
    line = len(text.splitlines()) + 2
    assert f"releaser.yaml:{line}" in res.err and "gate_status" in res.err, res.err


@pytest.mark.slow
def test_gate_command_posts_its_status_and_one_pr_comment(
    github_ws: ExampleWorkspace,
    github: GithubStandIn,
    monkeypatch: pytest.MonkeyPatch,
    cli,
    tmp_path: Path,
) -> None:
    import json

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 9, "pull_request": {"number": 9}}))
    actions_env(
        monkeypatch,
        github.base,
        GITHUB_SHA="f" * 40,
        GITHUB_REF="refs/pull/9/merge",
        GITHUB_EVENT_PATH=str(event),
        GITHUB_ACTIONS="true",
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
        GITHUB_OUTPUT=str(tmp_path / "output.txt"),
    )
    root = github_ws.root
    ws = open_workspace(root)
    try:
        rid = create_release(ws, SERVICE).release.id
    finally:
        ws.close()
    for _ in range(2):
        res = cli("gate", SERVICE, "--release", rid, cwd=root)
        assert res.code in (0, 1), res.err
        assert TOKEN not in res.out + res.err
    states = [s["state"] for s in github.commit_statuses]
    assert states and set(states) == {"success" if res.code == 0 else "failure"}
    assert github.commit_statuses[-1]["context"] == f"releaser/gate/{SERVICE}"
    [comment] = github.comments[9]  # the second run edited it
    assert f"<!-- releaser:{SERVICE} -->" in comment["body"] and rid in comment["body"]
    assert "passed=" in (tmp_path / "output.txt").read_text()
    # The status and the comment share one session: one repository look-up per run.
    lookups = [r for r in github.log if r.method == "GET" and r.template == "/repos/{o}/{r}"]
    assert len(lookups) == 2
    assert_matches_recordings(github.log)
