"""Rough edges a new team met: each is what a person or a script reads, fixed and kept so."""

from __future__ import annotations

import json
import subprocess

import pytest

from releaser.demo.workspace import PROMPT_PATH, ExampleWorkspace

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


def test_mistakes_get_a_clear_answer_in_the_form_asked_for(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    r1, r2 = released(root)  # r1 stable, r2 live at its first step

    # A mistyped service is named with a suggestion, as every other command does.
    res = cli("rollout", "start", "case-triag", "--release", r2)
    assert res.code == 2 and "no service 'case-triag'" in res.err
    assert "did you mean 'case-triage'" in res.err

    # A program that asked for JSON gets JSON for a failure too.
    res = cli("rollout", "start", SERVICE, "--release", "zzzz", "--json")
    assert res.code == 2
    error = json.loads(res.out)["error"]
    assert error["kind"] == "NotFound" and error["exit_code"] == 2
    assert error["message"] == "no release with id 'zzzz'" and error["hint"]
    assert "error: no release with id 'zzzz'" in res.err  # people still read stderr

    # advance --json is the decision, not the tests' internal log-likelihood grids.
    res = cli("rollout", "advance", SERVICE, "--json")
    assert res.code == 0, res.err
    decision = json.loads(res.out)["decision"]
    assert "state" not in decision and decision["action"] == "hold"
    assert len(res.out) < 20_000

    # A missing prompt version: the hint is something to do, not a Python function.
    res = cli("prompt", "show", "case-triage-system/9")
    assert res.code == 2 and "has no version 9; versions: 1" in res.err
    assert "()" not in res.err

    # A dry run says what it would do, in words.
    res = cli("rollback", SERVICE, "--reason", "check", "--dry-run")
    assert res.code == 0, res.err
    assert res.out.startswith(f"dry run: abort rollout {SERVICE}-")

    # The same data at another commit is not a change of data.
    res = cli("release", "diff", r1, r2, "--json")
    paths = [c["path"] for c in json.loads(res.out)["changes"]]
    assert "code.sha" in paths and "model.version" in paths
    assert not [p for p in paths if p.startswith("datasets")]


def test_slice_changes_read_alike_in_the_cli_and_the_report(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r1).code == 0
    assert cli("rollout", "start", SERVICE, "--release", r1, "--initial").code == 0
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    res = cli("gate", SERVICE, "--release", r2)
    report = json.loads(cli("gate", SERVICE, "--release", r2, "--json").out)
    for s in report["slices"]:
        if s["delta"] is not None:
            row = next(
                ln
                for ln in res.out.splitlines()
                if ln.startswith(s["column"] + "=" + s["value"] + " ")
            )
            assert f"{s['delta']:+.4f}" in row.split(), row


def test_prompt_registrations_are_audited_once_per_version(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    spec = root / PROMPT_PATH
    spec.write_text(spec.read_text().replace("template: |", "template: |\n  Be brief.", 1))
    res = cli("prompt", "register", str(spec), cwd=root)
    assert res.code == 0, res.err
    events = json.loads(cli("audit", "log", "--json").out)
    registered = [e for e in events if e["action"] == "prompt.register"]
    # The workspace's version 1 (registered when it was set up), then the new version 2.
    assert [e["after"]["version"] for e in registered] == [1, 2]
    assert {e["subject"] for e in registered} == {"prompt/case-triage-system"}
    assert registered[1]["after"]["content_hash"] != registered[0]["after"]["content_hash"]
    # The same content again is the same version: nothing more is written.
    head = cli("audit", "verify", "--json").out
    assert cli("prompt", "register", str(spec)).code == 0
    assert cli("audit", "verify", "--json").out == head


def test_starting_a_release_that_was_rolled_back_warns_with_when_and_why(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    _r1, r2 = released(root)
    res = cli("rollback", SERVICE, "--reason", "wrong queue for housing cases", "--yes")
    assert res.code == 0, res.err
    res = cli("rollout", "start", SERVICE, "--release", r2, "--json")
    assert res.code == 0, res.err
    (warning,) = json.loads(res.out)["warnings"]
    assert f"release {r2} was rolled back before (rollout {SERVICE}-" in warning
    assert "wrong queue for housing cases" in warning
    assert warning in res.err
