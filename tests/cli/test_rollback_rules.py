"""Rollback rules with no back doors, and a rollback that needs nothing but the store."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from releaser.api import journal
from releaser.api.rollouts import promote_rollout, service_state
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
CONFLICT = """\
<<<<<<< HEAD
    description: Routes council casework to the team that handles it
=======
    description: Routes casework
>>>>>>> feature
"""


def _promote(root: Path) -> None:
    ws = open_workspace(root)
    try:
        promote_rollout(ws, SERVICE, reason="ship")
    finally:
        ws.close()


def test_rollback_to_a_release_that_failed_its_gate_needs_force(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    r1, r2 = released(root)
    _promote(root)
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("accuracy: 0.8", "accuracy: 0.999", 1))
    subprocess.run(["git", "commit", "-qam", "a bar no model meets"], cwd=root, check=True)
    r3 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r3).code == 1  # failed, never deployed
    head = cli("audit", "log", "--json")

    res = cli("rollback", SERVICE, "--to", r3, "--reason", "wrong id pasted", "--yes")
    assert res.code == 2 and "failed its eval gate" in res.err and "--force" in res.err
    assert cli("audit", "log", "--json").out == head.out  # nothing written
    # A known-good release is fine without --force; then r3 again, forced and audited.
    res = cli("rollback", SERVICE, "--to", r1, "--reason", "errors", "--yes")
    assert res.code == 0, res.err
    res = cli("rollback", SERVICE, "--to", r3, "--reason", "hotfix", "--force", "--yes")
    assert res.code == 0, res.err
    ws = open_workspace(root)
    try:
        state = service_state(ws, SERVICE)
        # Rolled back from, r1 and r2 are no longer known-good; r3 serves, so it is.
        assert state.stable == r3 and state.known_good == [r3] and r2 not in state.known_good
    finally:
        ws.close()
    res = cli("rollback", SERVICE, "--reason", "back", "--yes")
    assert res.code == 0 and "already rolled back" in res.out  # never further than asked
    assert cli("rollback", SERVICE, "--to", r1, "--reason", "back", "--yes").code == 0
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).stable == r1
    finally:
        ws.close()


def test_abort_obeys_irreversible_as_rollback_does(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    r1, _r2 = released(root, irreversible=True)
    for command in (["rollback", SERVICE, "--yes"], ["rollout", "abort", SERVICE]):
        res = cli(*command, "--reason", "errors")
        assert res.code == 2 and "irreversible" in res.err and "pause" in res.err, res.err
    res = cli("rollout", "abort", SERVICE, "--reason", "errors", "--force")
    assert res.code == 0, res.err
    ws = open_workspace(root)
    try:
        state = service_state(ws, SERVICE)
        assert state.active_rollout is None and state.stable == r1
    finally:
        ws.close()


def test_conflict_markers_in_releaser_yaml_do_not_block_rollback_pause_or_status(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    r1, r2 = released(root)
    cfg = root / "releaser.yaml"
    good = cfg.read_text()
    line = "    description: Routes council casework"
    start = good.index(line)
    end = good.index("\n", start) + 1
    cfg.write_text(good[:start] + CONFLICT + good[end:])  # a bad merge at 3 a.m.
    assert cli("validate").code == 2

    res = cli("rollout", "pause", SERVICE, "--reason", "looking")
    assert res.code == 0 and "working from the store alone" in res.err, res.err
    res = cli("rollout", "status", SERVICE, "--json")
    assert res.code == 0 and json.loads(res.out)["rollout"]["status"] == "paused"
    res = cli("rollout", "resume", SERVICE)
    assert res.code == 0, res.err
    res = cli("rollback", SERVICE, "--reason", "bad release", "--yes")
    assert res.code == 0 and "traffic switched" in res.out, res.err
    res = cli("rollback", "case-triag", "--reason", "typo", "--yes")
    assert res.code == 2 and "did you mean 'case-triage'" in res.err

    # What needed the file (the deploy targets, unknowable without it) waited for it.
    cfg.write_text(good)
    res = cli("reconcile", SERVICE, "--check")
    assert res.code == 1 and "owed: deploy targets" in res.err
    assert cli("reconcile", SERVICE).code == 0
    assert cli("reconcile", SERVICE, "--check").code == 0
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).stable == r1 and r2
    finally:
        ws.close()


def test_rollback_after_promotion_from_another_folder_given_the_store(
    release_ws: ExampleWorkspace, cli, released, tmp_path: Path
) -> None:
    root = release_ws.root
    r1, _r2 = released(root)
    _promote(root)
    url = open_workspace(root).store_url
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = cli("--store", url, "rollback", SERVICE, "--reason", "paged", "--yes", cwd=elsewhere)
    assert res.code == 0 and "traffic switched" in res.out, res.err
    # The aliases need the workspace's MLflow: owed, not moved to a registry guessed here.
    assert "PENDING" in res.err and not (elsewhere / "mlflow.db").exists()
    res = cli("--store", url, "rollout", "status", SERVICE, cwd=elsewhere)
    assert res.code == 0 and "owed: MLflow alias" in res.err, res.err
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).stable == r1
        assert [r.key for r in journal.owed(ws, service=SERVICE)]
        assert ws.models.get_alias("case-triage", "production") == 2
    finally:
        ws.close()
    assert cli("reconcile", SERVICE, cwd=root).code == 0  # from the workspace, it lands
    ws = open_workspace(root)
    try:
        assert ws.models.get_alias("case-triage", "production") == 1
        assert journal.owed(ws, service=SERVICE) == []
    finally:
        ws.close()


@pytest.mark.postgres
def test_a_team_on_postgresql_drills_on_a_scratch_schema_of_its_own_server(
    release_ws: ExampleWorkspace, cli, released, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = os.environ.get("RELEASER_TEST_POSTGRES_DSN")
    if not dsn:
        pytest.skip("PostgreSQL tests need RELEASER_TEST_POSTGRES_DSN")
    import psycopg

    schema = f"drilltest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in dsn else "?"
        monkeypatch.setenv("RELEASER_STORE", f"{dsn}{sep}options=-csearch_path%3D{schema}")
        released(release_ws.root)
        res = cli("drill", SERVICE, "--json")
        assert res.code == 0, res.err
        record = json.loads(res.out)
        assert record["store"] == "postgresql" and record["ok"], record
        assert record["time_to_revert_ms"] is not None
        with psycopg.connect(dsn, autocommit=True) as conn:
            left = conn.execute(
                "SELECT schema_name FROM information_schema.schemata "
                "WHERE schema_name LIKE 'releaser_drill_%'"
            ).fetchall()
        assert left == []  # the scratch schema is dropped
        res = cli("runbook", SERVICE)
        assert res.code == 0, res.err
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _garbage(data: bytes) -> bytes:
    return b"this is not an sqlite database" * 200


def _pages_zeroed(data: bytes) -> bytes:
    # The header stays; the pages of the schema and the tables after it are gone.
    return data[:100] + bytes(len(data) - 100)


@pytest.mark.parametrize("corrupt", [_garbage, _pages_zeroed])
def test_a_corrupt_mlflow_registry_is_an_unavailable_dependency_not_a_crash(
    release_ws: ExampleWorkspace, cli, released, corrupt
) -> None:
    root = release_ws.root
    released(root)
    _promote(root)
    db = next(p for p in root.rglob("mlflow.db"))
    db.write_bytes(corrupt(db.read_bytes()))
    res = cli("reconcile", SERVICE, "--check")
    assert res.code == 3, res.err
    # sqlite's own words: "malformed", or "not a database" when even the header is gone
    # (which one MLflow's pooled connections report depends on what they cached).
    assert "malformed" in res.err or "not a database" in res.err
    assert "cannot be read" in res.err and "Traceback" not in res.err


def test_a_broken_value_elsewhere_in_releaser_yaml_leaves_no_target_waiting(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    # The service has no deploy section and the file no github one: whatever else is
    # broken, no deploy target or GitHub mirror follows this service, so nothing is owed.
    root = release_ws.root
    r1, _r2 = released(root)
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("accuracy: 0.8", "accuracy: lots", 1))
    assert cli("validate").code == 2
    res = cli("rollback", SERVICE, "--reason", "bad release", "--yes")
    assert res.code == 0 and "traffic switched" in res.out, res.err
    assert "PENDING" not in res.err and "invalid" not in res.err, res.err
    ws = open_workspace(root, settings_only=True)
    try:
        assert service_state(ws, SERVICE).stable == r1
        assert journal.owed(ws, service=SERVICE) == []
    finally:
        ws.close()


def test_a_broken_deploy_section_is_named_and_its_targets_wait_for_the_fix(
    release_ws: ExampleWorkspace, cli, released
) -> None:
    root = release_ws.root
    r1, _r2 = released(root)
    cfg = root / "releaser.yaml"
    good = cfg.read_text()
    cfg.write_text(good.replace("    # deploy:\n", "    deploy:\n      target: dockr\n", 1))
    assert cli("validate").code == 2
    res = cli("rollback", SERVICE, "--reason", "bad release", "--yes")
    assert res.code == 0 and "traffic switched" in res.out and r1 in res.out, res.err
    assert "deploy targets: PENDING" in res.err and "releaser.yaml is invalid" in res.err
    assert "services.case-triage.deploy.target" in res.err, res.err
    ws = open_workspace(root, settings_only=True)
    try:
        assert [r.key for r in journal.owed(ws, service=SERVICE)] == [f"targets:{SERVICE}"]
    finally:
        ws.close()
    cfg.write_text(good)
    assert cli("reconcile", SERVICE).code == 0
    assert cli("reconcile", SERVICE, "--check").code == 0
