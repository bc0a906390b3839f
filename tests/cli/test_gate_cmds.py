"""gate, approve and phase commands as an engineer or a GitHub Actions workflow runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from releaser.demo.workspace import ExampleWorkspace

if TYPE_CHECKING:
    from conftest import OwnerKeys

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


def _release(cli, root: Path) -> str:
    res = cli("release", "create", SERVICE, "--json", cwd=root)
    assert res.code == 0, res.err
    return str(json.loads(res.out)["release"]["id"])


def test_gate_passes_writes_reports_and_github_outputs(
    release_ws: ExampleWorkspace, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = release_ws.root
    rid = _release(cli, root)
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    report = tmp_path / "out" / "gate.md"
    res = cli("gate", SERVICE, "--release", rid[:8], "-o", str(report))
    assert res.code == 0, res.err
    assert f"eval gate PASSED: {SERVICE} release {rid}" in res.out
    assert "accuracy threshold  0.9017  0.8" in res.out
    assert "user_group=pilot-councils" in res.out
    assert "Eval gate passed" in report.read_text() and "Eval gate passed" in summary.read_text()
    assert json.loads(report.with_suffix(".json").read_text())["passed"] is True
    assert "passed=true" in outputs.read_text() and f"release_id={rid}" in outputs.read_text()

    assert "predicting:" not in res.err  # quicker than a progress line's interval

    res = cli("gate", "run", SERVICE, "--release", rid, "--json")
    data = json.loads(res.out)
    assert res.code == 0 and data["cached"] is True and data["release_id"] == rid
    assert {"checks", "slices", "metrics", "failures", "dataset_md5"} <= set(data)

    # --no-cache predicts again: a new evaluation, logged as a new MLflow run.
    res = cli("gate", SERVICE, "--release", rid, "--no-cache", "--json")
    fresh = json.loads(res.out)
    assert res.code == 0 and fresh["cached"] is False
    assert fresh["mlflow_run_id"] != data["mlflow_run_id"]
    assert fresh["metrics"] == data["metrics"]


def test_without_a_terminal_progress_is_logged_in_lines(
    release_ws: ExampleWorkspace, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releaser.cli import gate_cmds

    monkeypatch.setattr(gate_cmds, "PROGRESS_EVERY", 0.0)  # a line at every step
    rid = _release(cli, release_ws.root)
    res = cli("gate", SERVICE, "--release", rid)
    assert res.code == 0, res.err
    lines = [line for line in res.err.splitlines() if line.startswith("predicting: ")]
    assert lines and lines[0].startswith("predicting: 8 of 600 rows (1%), ")
    done = [int(line.split()[1]) for line in lines]
    assert done == sorted(done) and all(d < 600 for d in done)


def test_a_failing_gate_exits_1_naming_the_failure(
    release_ws: ExampleWorkspace, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = release_ws.root
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("accuracy: 0.8\n", "accuracy: 0.97\n", 1))
    subprocess.run(["git", "commit", "-qam", "stricter gate"], cwd=root, check=True)
    rid = _release(cli, root)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    res = cli("gate", SERVICE, "--release", rid)
    assert res.code == 1
    assert "eval gate FAILED" in res.out
    assert "FAIL: accuracy 0.9017 is below the minimum 0.9700" in res.out
    assert "::error::accuracy 0.9017 is below the minimum 0.9700" in res.err
    assert "failed the eval gate: 1 failure" in res.err

    res = cli("rollout", "start", SERVICE, "--release", rid, "--initial")
    assert res.code == 1 and "failed its eval gate" in res.err and "--force" in res.err
    res = cli("rollout", "start", SERVICE, "--release", rid, "--initial", "--force")
    assert res.code == 2 and "needs a reason" in res.err
    res = cli(
        "rollout", "start", SERVICE, "--release", rid, "--initial", "--force", "--reason", "drill"
    )
    assert res.code == 0, res.err


def test_bad_input_exits_2(release_ws: ExampleWorkspace, cli) -> None:
    res = cli("gate", SERVICE, "--release", "ffffffff", cwd=release_ws.root)
    assert res.code == 2 and "no release with id 'ffffffff'" in res.err
    res = cli("gate", "check", SERVICE, "--phase", "prod")
    assert res.code == 2 and "no phase 'prod'" in res.err and "production" in res.err


def test_check_approve_and_advance(
    release_ws: ExampleWorkspace, cli, owner_keys: OwnerKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = release_ws.root
    owner_keys.enrol(root, ["tom"])
    rid = _release(cli, root)
    res = cli("gate", "check", SERVICE, "--phase", "pilot")
    assert res.code == 1
    assert "case-triage: NOT ready to enter pilot (now in poc" in res.out
    assert "MISSING  eval_gate  eval" in res.out and "has not been through the eval gate" in res.out
    assert "MISSING  approval   ml-lead  0 of 1 approval" in res.out
    assert "missing eval_gate:eval, approval:ml-lead" in res.err

    tom = ("--key", str(owner_keys.key("tom")))
    res = cli("approve", SERVICE, "--release", rid, "--role", "ml-lead", "--note", "ok", *tom)
    assert res.code == 2 and "may not approve it" in res.err  # 'tester' created it
    monkeypatch.setenv("RELEASER_ACTOR", "tom")
    res = cli("approve", SERVICE, "--release", rid, "--role", "ml-lead", "--note", "ok")
    assert res.code == 2 and "approvals are signed" in res.err and "--key" in res.err
    mallory = ("--key", str(owner_keys.key("mallory")))
    res = cli("approve", SERVICE, "--release", rid, "--role", "ml-lead", *mallory)
    assert res.code == 2 and "no owner lists it" in res.err
    # The key may also come from the environment, as a workflow secret's file would.
    monkeypatch.setenv("RELEASER_SIGNING_KEY", str(owner_keys.key("tom")))
    res = cli("approve", SERVICE, "--release", rid, "--role", "ml-lead", "--note", "ok")
    assert res.code == 0, res.err
    assert (
        f"approved {rid} as ml-lead for entering pilot: Tom Okafor <tom.okafor@example.org>, "
        "signed, at" in res.out
    )
    res = cli("phase", "advance", SERVICE)
    assert res.code == 1 and "cannot enter pilot: eval_gate eval" in res.err

    assert cli("gate", SERVICE, "--release", rid).code == 0
    res = cli("gate", "check", SERVICE, "--phase", "pilot", "--json")
    assert res.code == 0 and json.loads(res.out)["ready"] is True
    res = cli("phase", "advance", SERVICE)
    assert res.code == 0 and f"{SERVICE} entered pilot" in res.out
    res = cli("phase", "status", SERVICE, "--json")
    status = json.loads(res.out)
    assert status["phase"] == "pilot" and status["history"][-1]["by"] == "tom"
    res = cli("phase", "evidence", SERVICE, "dpia", "https://docs.example.org/dpia")
    assert res.code == 0
    res = cli("gate", "check", SERVICE, "--phase", "production")
    assert "met      checklist  dpia" in res.out and "MISSING  checklist  runbook" in res.out


def test_the_gate_judges_by_the_thresholds_its_release_pinned_and_warns_of_an_edit(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    rid = _release(cli, root)
    cfg = root / "releaser.yaml"
    # Tightened after the release, not committed: the release is judged by its own bar.
    cfg.write_text(cfg.read_text().replace("accuracy: 0.8\n", "accuracy: 0.97\n", 1))
    res = cli("gate", SERVICE, "--release", rid)
    assert res.code == 0, res.out + res.err
    assert (
        f"releaser.yaml's eval suite differs from the one release {rid} pinned" in res.err
        and "eval.thresholds.accuracy: 0.8 pinned, 0.97 in the file" in res.err
    )


# ``releaser gate`` in its own process, killed inside the store commit of the audit action
# given ("before": ahead of writing it; "after": once it is in).
KILL_GATE = """
import os, sys
from releaser.store.sqlite import SqliteStore

action, when = sys.argv[1:3]
real = SqliteStore.commit

def commit(self, writes, event, *args, **kwargs):
    if event.action == action and when == "before":
        os._exit(9)
    out = real(self, writes, event, *args, **kwargs)
    if event.action == action and when == "after":
        os._exit(9)
    return out

SqliteStore.commit = commit
from releaser.cli import main
sys.argv = ["releaser", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize(
    ("action", "when", "logged"),
    [
        ("gate.mlflow", "before", 1),  # the MLflow run is logged; its id is not recorded
        ("gate.run", "after", 0),  # the evidence is stored; nothing is logged yet
    ],
)
def test_a_gate_killed_around_its_mlflow_run_logs_one_run_and_a_rerun_converges(
    release_ws: ExampleWorkspace, cli, action: str, when: str, logged: int
) -> None:
    import sys

    from releaser.api.gates import ATTEMPT_TAG, EXPERIMENT, last_gate
    from releaser.api.workspace import open_workspace

    root = release_ws.root
    rid = _release(cli, root)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_GATE, action, when, "gate", SERVICE, "--release", rid],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == 9, killed.stderr

    def runs() -> list:
        ws = open_workspace(root)
        try:
            client = ws.models.client
            experiment = client.get_experiment_by_name(EXPERIMENT)
            if experiment is None:  # nothing logged in it yet
                return []
            return client.search_runs(
                [experiment.experiment_id], filter_string=f"tags.`releaser.release_id` = '{rid}'"
            )
        finally:
            ws.close()

    def stored() -> dict:
        ws = open_workspace(root)
        try:
            report = last_gate(ws, SERVICE, rid)
            assert report is not None
            return report.to_dict()
        finally:
            ws.close()

    assert len(runs()) == logged
    owed = stored()
    assert owed["mlflow_run_id"] is None and owed["mlflow_attempt"]  # owed, and said so

    res = cli("gate", SERVICE, "--release", rid, "--json", cwd=root)
    assert res.code == 0, res.err
    again = json.loads(res.out)
    (run,) = runs()  # one run in all: found by its attempt tag, or logged now
    assert again["mlflow_run_id"] == run.info.run_id and again["mlflow_attempt"] is None
    assert run.data.tags[ATTEMPT_TAG] == owed["mlflow_attempt"]
    assert stored()["mlflow_run_id"] == run.info.run_id and stored()["mlflow_attempt"] is None

    # A third run judges the same on the same predictions: nothing more is logged.
    assert (
        json.loads(cli("gate", SERVICE, "--release", rid, "--json", cwd=root).out)["mlflow_run_id"]
        == run.info.run_id
    )
    assert len(runs()) == 1
    verify = cli("audit", "verify", cwd=root)
    assert verify.code == 0, verify.out + verify.err
    log = json.loads(
        cli("audit", "log", "--limit", "0", "--subject", f"release:{rid}", "--json").out
    )
    actions = [e["action"] for e in (log["events"] if isinstance(log, dict) else log)]
    assert actions.count("gate.run") == 3 and actions.count("gate.mlflow") == 1, actions


def test_a_gate_that_could_not_reach_mlflow_owes_its_run_and_a_rerun_logs_it_once(
    release_ws: ExampleWorkspace, cli
) -> None:
    """A real outage of MLflow's writes: another connection holds the registry database's
    write lock while the gate logs. The evidence is stored with the run owed and a warning;
    the re-run, with MLflow writable again, logs the run once, under the owed attempt."""
    import sqlite3

    from releaser.api.gates import ATTEMPT_TAG, EXPERIMENT, last_gate
    from releaser.api.workspace import open_workspace

    root = release_ws.root
    rid = _release(cli, root)
    lock = sqlite3.connect(root / "mlflow.db", timeout=30)
    lock.execute("BEGIN IMMEDIATE")  # readers go on (WAL); every writer waits, then fails
    try:
        down = json.loads(cli("gate", SERVICE, "--release", rid, "--json", cwd=root).out)
    finally:
        lock.rollback()
        lock.close()
    assert down["passed"] and down["mlflow_run_id"] is None and down["mlflow_attempt"]
    assert any(w.startswith("could not log the gate to MLflow") for w in down["warnings"])

    ws = open_workspace(root)
    try:
        stored = last_gate(ws, SERVICE, rid)
        assert stored is not None and stored.mlflow_attempt == down["mlflow_attempt"]
    finally:
        ws.close()

    back = json.loads(cli("gate", SERVICE, "--release", rid, "--json", cwd=root).out)
    assert back["mlflow_run_id"] and back["mlflow_attempt"] is None
    assert not any("MLflow" in w for w in back["warnings"])
    ws = open_workspace(root)
    try:
        client = ws.models.client
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`releaser.release_id` = '{rid}'"
        )
    finally:
        ws.close()
    assert [r.info.run_id for r in runs] == [back["mlflow_run_id"]]
    assert runs[0].data.tags[ATTEMPT_TAG] == down["mlflow_attempt"]
