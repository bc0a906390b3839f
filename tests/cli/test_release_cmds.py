"""release and audit commands as an operator or a CI job runs them."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow


def test_create_show_list_diff_verify(
    release_ws: ExampleWorkspace, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_file = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(out_file))
    res = cli("release", "create", "case-triage", "--json", cwd=release_ws.root)
    assert res.code == 0, res.err
    created = json.loads(res.out)
    rid = created["release"]["id"]
    assert created["created"] is True
    assert f"release_id={rid}" in out_file.read_text()

    res = cli("release", "create", "case-triage")
    assert res.code == 0 and "existing release" in res.out and rid in res.out

    res = cli("release", "show", rid[:6])
    assert res.code == 0 and "case-triage v1" in res.out and "data/golden.csv" in res.out
    res = cli("release", "list", "--json")
    assert [r["id"] for r in json.loads(res.out)] == [rid]
    res = cli("release", "diff", rid, rid)
    assert res.code == 0 and "same content" in res.out

    res = cli("audit", "log", "--json")
    actions = [e["action"] for e in json.loads(res.out)]
    # The demo's prompt registered, its promotion recorded, then marked applied.
    assert actions == ["prompt.register", "prompt.alias", "effects.applied", "release.create"]
    assert json.loads(res.out)[-1]["actor"] == "tester"
    res = cli("audit", "verify")
    assert res.code == 0 and "ok" in res.out


def test_tampered_store_fails_verify_naming_the_entry(release_ws: ExampleWorkspace, cli) -> None:
    assert cli("release", "create", "case-triage", cwd=release_ws.root).code == 0
    db = release_ws.root / ".releaser" / "state.db"
    con = sqlite3.connect(db)
    with con:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute("DELETE FROM audit_events")
        con.execute("DROP TRIGGER audit_events_no_update")  # as an attacker with the file can
        [(seq,)] = con.execute(
            "SELECT seq FROM audit_events WHERE payload LIKE '%release.create%'"
        ).fetchall()
        con.execute(
            "UPDATE audit_events SET payload = "
            "replace(payload, 'release.create', 'release.crea7e') WHERE seq = ?",
            (seq,),
        )
    con.close()
    res = cli("audit", "verify")
    assert res.code == 1
    assert f"entry {seq}" in res.err
    res = cli("audit", "verify", "--json")
    assert res.code == 1 and json.loads(res.out)["bad_seq"] == seq


def test_bad_inputs_exit_2_without_traceback(release_ws: ExampleWorkspace, cli) -> None:
    res = cli("release", "create", "no-such-service", cwd=release_ws.root)
    assert res.code == 2 and "no service" in res.err and "Traceback" not in res.err
    res = cli("release", "show", "0000000000")
    assert res.code == 2 and "hint:" in res.err
    (release_ws.root / "data.py").write_text("# dirty\n")
    res = cli("release", "create", "case-triage")
    assert res.code == 2 and "--allow-dirty" in res.err
    res = cli("--verbose", "release", "create", "case-triage")
    assert res.code == 2 and "Traceback" in res.err


def test_not_a_git_repo(tmp_path: Path, cli) -> None:
    assert cli("init", cwd=tmp_path).code == 0
    res = cli("release", "create", "case-triage")
    assert res.code == 2
    assert "git" in res.err and "Traceback" not in res.err


def test_unreachable_store_exit_3_and_password_hidden(
    release_ws: ExampleWorkspace, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELEASER_STORE", "postgresql://ops:s3cr3t-pw@127.0.0.1:1/releaser")
    res = cli("release", "list", cwd=release_ws.root)
    assert res.code == 3
    assert "s3cr3t-pw" not in res.err + res.out
    assert "hint:" in res.err


def test_dead_mlflow_server_exit_3(
    release_ws: ExampleWorkspace, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    res = cli("release", "create", "case-triage", cwd=release_ws.root)
    assert res.code == 3, res.err
    assert "Traceback" not in res.err
    res = cli("release", "list")
    assert res.code == 0 and "no releases yet" in res.out


def test_github_actions_config_error_annotation(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert cli("init", cwd=tmp_path).code == 0
    cfg = tmp_path / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("slos:", "slo:", 1))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    res = cli("validate")
    assert res.code == 2
    assert "::error file=" in res.err and ",line=" in res.err
