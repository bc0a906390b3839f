"""One-command rollback as operations run it: mid-rollout, after promotion, MLflow down."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from releaser.api import journal
from releaser.api.rollouts import promote_rollout, service_state
from releaser.api.workspace import open_workspace
from releaser.demo.traffic import advance_to_step
from releaser.demo.workspace import PROMPT_PATH, ExampleWorkspace
from tests.cli.test_prompt_cmds import _production

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
PROMPT = "case-triage-system"

ROUTER_CHILD = textwrap.dedent(
    """
    import sys, time
    from releaser.router import Router
    r = Router(sys.argv[1], refresh_interval_ms=20)
    ids = [f"user-{i}" for i in range(10_000)]
    while True:
        n = sum(r.assign("case-triage", u, {}).variant == "candidate" for u in ids)
        print(n, flush=True)
        time.sleep(0.01)
    """
)


def _two_releases(root: Path, cli, *, irreversible: bool = False) -> tuple[str, str]:
    r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r1).code == 0
    res = cli("rollout", "start", SERVICE, "--release", r1, "--initial")
    assert res.code == 0
    # The first move of the production alias reads as such, never 'vNone -> v1'.
    assert "(unset) -> v1" in res.out and "None" not in res.out
    cfg = root / "releaser.yaml"
    text = cfg.read_text().replace("alias: champion", "version: 2", 1)
    if irreversible:
        text = text.replace("irreversible: false", "irreversible: true", 1)
    cfg.write_text(text)
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r2).code == 0
    assert cli("rollout", "start", SERVICE, "--release", r2).code == 0
    return r1, r2


def _to_step(root: Path, step_name: str) -> None:
    """Feed healthy metrics and advance (simulated clock) until the rollout is at ``step_name``."""
    ws = open_workspace(root)
    try:
        advance_to_step(ws, SERVICE, step_name)
    finally:
        ws.close()


def test_mid_rollout_rollback_reaches_a_router_in_another_process(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    r1, r2 = _two_releases(root, cli)
    _to_step(root, "canary-25")
    store_url = open_workspace(root).store_url
    child = subprocess.Popen(
        [sys.executable, "-c", ROUTER_CHILD, store_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        first = int(child.stdout.readline())
        assert 2000 < first < 3000, first  # about 25% of 10k ids get the candidate
        res = cli("rollback", SERVICE, "--reason", "drill", "--yes")
        assert res.code == 0, res.err
        assert "traffic switched" in res.out and r1 in res.out
        deadline = time.monotonic() + 10
        seen = first
        while seen and time.monotonic() < deadline:
            seen = int(child.stdout.readline())
        assert seen == 0, "the router still gave the candidate to some ids"
    finally:
        child.kill()
        child.wait()
        if child.stdout:
            child.stdout.close()
    ws = open_workspace(root)
    try:
        assert ws.models.get_alias("case-triage", "production") == 1
        st = service_state(ws, SERVICE)
        assert st.stable == r1 and st.active_rollout is None
    finally:
        ws.close()
    events = json.loads(cli("audit", "log", "--json").out)
    rb = [e for e in events if e["action"] == "rollback"]
    assert len(rb) == 1 and rb[0]["reason"] == "drill" and rb[0]["after"]["from"] == r2
    res = cli("rollback", SERVICE, "--reason", "drill", "--yes")
    assert res.code == 0 and "already rolled back" in res.out
    assert cli("audit", "verify").code == 0


def test_after_promotion_rollback_returns_to_a_and_moves_aliases(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    r1, r2 = _two_releases(root, cli)
    ws = open_workspace(root)
    promote_rollout(ws, SERVICE, reason="looks good")
    assert ws.models.get_alias("case-triage", "production") == 2
    ws.close()
    res = cli("rollback", SERVICE, "--reason", "complaints", "--dry-run")
    assert res.code == 0 and "dry run" in res.out
    assert service_state(open_workspace(root), SERVICE).stable == r2
    res = cli("rollback", SERVICE, "--reason", "complaints", "--json", "--yes")
    assert res.code == 0, res.err
    out = json.loads(res.out)
    assert out["kind"] == "after-promotion" and out["from"] == r2 and out["to"] == r1
    ws = open_workspace(root)
    try:
        assert ws.models.get_alias("case-triage", "production") == 1
        assert service_state(ws, SERVICE).known_good == [r1]
    finally:
        ws.close()
    res = cli("rollback", SERVICE, "--reason", "again")
    assert res.code == 0 and "already rolled back" in res.out


def test_mlflow_down_still_switches_traffic_and_leaves_the_alias_pending(
    release_ws: ExampleWorkspace, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = release_ws.root
    r1, _r2 = _two_releases(root, cli)
    ws = open_workspace(root)
    promote_rollout(ws, SERVICE, reason="ship")
    ws.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    res = cli("rollback", SERVICE, "--reason", "mlflow outage drill", "--yes")
    assert res.code == 0, res.err
    assert "traffic switched" in res.out
    assert "PENDING" in res.err and f"releaser reconcile {SERVICE}" in res.err
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    ws = open_workspace(root)
    try:
        st = service_state(ws, SERVICE)
        owed = journal.owed(ws, service=SERVICE)
        assert st.stable == r1 and [r.key for r in owed] == ["model:case-triage@production"]
        assert "Connection refused" in owed[0].value["error"]
        assert ws.models.get_alias("case-triage", "production") == 2  # not moved yet
    finally:
        ws.close()
    res = cli("reconcile", SERVICE, "--check")
    assert res.code == 1 and "drift" in res.err and "owed: MLflow alias" in res.err
    res = cli("rollback", SERVICE, "--resume")
    assert res.code == 0, res.err
    ws = open_workspace(root)
    try:
        assert ws.models.get_alias("case-triage", "production") == 1
        assert journal.owed(ws, service=SERVICE) == []
    finally:
        ws.close()
    assert cli("reconcile", SERVICE, "--check").code == 0


def test_irreversible_release_refuses_without_force_and_ci_needs_yes(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    # Nothing released yet (or, at 3 a.m., the wrong store): the message names the store.
    res = cli("rollback", SERVICE, "--reason", "x", "--yes", cwd=root)
    store = open_workspace(root).store_url
    assert res.code == 2 and "nothing to roll back" in res.err and store in res.err
    assert "RELEASER_STORE" in res.err
    r1, _r2 = _two_releases(root, cli, irreversible=True)
    res = cli("rollback", SERVICE, "--reason", "x")
    assert res.code == 2 and "--yes" in res.err  # no terminal in tests
    res = cli("rollback", SERVICE, "--reason", "x", "--yes")
    assert res.code == 2 and "irreversible" in res.err and "pause" in res.err
    res = cli("rollback", SERVICE, "--reason", "x", "--yes", "--force")
    assert res.code == 0 and r1 in res.out


def test_drill_rehearses_on_a_copy_times_the_revert_and_leaves_the_service_alone(
    release_ws: ExampleWorkspace, cli
) -> None:
    from releaser.api.drills import last_drill

    root = release_ws.root
    r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r1).code == 0
    assert cli("rollout", "start", SERVICE, "--release", r1, "--initial").code == 0
    res = cli("drill", SERVICE)
    assert res.code == 2 and "nothing to rehearse" in res.err  # one release, no rollout
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    assert cli("gate", SERVICE, "--release", r2).code == 0
    assert cli("rollout", "start", SERVICE, "--release", r2).code == 0
    # The first step reaches named groups only (0% of everyone else): still rehearsable.
    rec = json.loads(cli("drill", SERVICE, "--json").out)
    assert rec["ok"] and rec["kind"] == "mid-rollout", rec
    _to_step(root, "canary-25")
    ws = open_workspace(root)
    before = (service_state(ws, SERVICE), ws.store.get("route", SERVICE))
    ws.close()

    res = cli("drill", SERVICE, "--json")
    assert res.code == 0, res.err
    rec = json.loads(res.out)
    assert rec["ok"] and rec["kind"] == "mid-rollout"
    assert (rec["from_release"], rec["to_release"]) == (r2, r1)
    assert 0 < rec["time_to_revert_ms"] < 10_000 and rec["switch_ms"] > 0
    assert rec["audit_verified"] and any("MLflow alias" in n for n in rec["not_rehearsed"])

    ws = open_workspace(root)
    try:
        # The live service is untouched: same rollout, same route, aliases where they were.
        assert (service_state(ws, SERVICE), ws.store.get("route", SERVICE)) == before
        assert ws.models.get_alias("case-triage", "production") == 1
        last = last_drill(ws, SERVICE)
        assert last is not None and last.time_to_revert_ms == rec["time_to_revert_ms"]
    finally:
        ws.close()
    events = json.loads(cli("audit", "log", "--json").out)
    assert [e["action"] for e in events].count("drill") == 2
    assert cli("audit", "verify").code == 0
    res = cli("drill", SERVICE)
    assert res.code == 0 and "time-to-revert" in res.out and "not rehearsed" in res.out


def test_a_broken_releaser_yaml_does_not_block_the_rollback(
    release_ws: ExampleWorkspace, cli
) -> None:
    root = release_ws.root
    r1, r2 = _two_releases(root, cli)
    ws = open_workspace(root)
    promote_rollout(ws, SERVICE, reason="ship")
    ws.close()
    cfg = root / "releaser.yaml"
    good = cfg.read_text()
    cfg.write_text(good + "servces: {}\n")  # a bad merge at 3 a.m.
    assert cli("validate").code == 2
    res = cli("rollback", "no-such-service", "--reason", "x", "--yes")
    assert res.code == 2 and "servces" in res.err  # the store does not know it: the file speaks

    # The state still shows, without what needs the file (the decision preview).
    res = cli("rollout", "status", SERVICE, "--json")
    assert res.code == 0, res.err
    shown = json.loads(res.out)
    assert shown["stable"] == r2
    # Under the post-promotion guard, whose evidence needs the file: said, not fatal.
    assert any("guard is not shown" in p and "servces" in p for p in shown["problems"])
    res = cli("rollback", SERVICE, "--reason", "bad release", "--yes")
    assert res.code == 0, res.err
    assert "traffic switched" in res.out and r1 in res.out
    assert "deploy targets: PENDING" in res.err and "releaser.yaml is invalid" in res.err
    ws = open_workspace(root, settings_only=True)
    try:
        st = service_state(ws, SERVICE)
        owed = [r.key for r in journal.owed(ws, service=SERVICE)]
        assert st.stable == r1 and owed == [f"targets:{SERVICE}"]
        assert ws.models.get_alias("case-triage", "production") == 1  # needs no config
    finally:
        ws.close()

    cfg.write_text(good)
    res = cli("rollback", SERVICE, "--resume", "--yes")
    assert res.code == 0 and "PENDING" not in res.err, res.err
    ws = open_workspace(root)
    try:
        assert journal.owed(ws, service=SERVICE) == []
    finally:
        ws.close()
    assert cli("audit", "verify").code == 0


def _promoted(root: Path, cli) -> tuple[str, str]:
    """r1 then r2 (model v2) through the CLI, r2 promoted: stable r2, both pinning prompt v1."""
    r1, r2 = _two_releases(root, cli)
    ws = open_workspace(root)
    try:
        promote_rollout(ws, SERVICE, reason="ship r2")
    finally:
        ws.close()
    return r1, r2


def _new_prompt_version(root: Path, cli, folder: Path) -> int:
    """Register one more version of the service's prompt from a spec outside the git tree."""
    n = len(list(folder.glob("prompt-*.yaml")))
    spec = folder / f"prompt-{n}.yaml"
    text = (root / PROMPT_PATH).read_text(encoding="utf-8")
    spec.write_text(
        text.replace("Rules: use plain English;", f"Rules ({n}): use plain English;", 1),
        encoding="utf-8",
    )
    res = cli("prompt", "register", str(spec), "--json")
    assert res.code == 0 and json.loads(res.out)["created"], res.err
    return int(json.loads(res.out)["version"]["version"])


def _audit(cli) -> list[dict]:
    res = cli("audit", "log", "--limit", "0", "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)


def _override(cli, version: int, reason: str = "wording fix for a complaint") -> None:
    res = cli(
        "prompt",
        "promote",
        PROMPT,
        str(version),
        "--to",
        "production",
        "--reason",
        reason,
        "--override",
    )
    assert res.code == 0, res.err


def test_a_release_pinned_prompt_moves_by_hand_only_as_an_override_until_a_rollback(
    release_ws: ExampleWorkspace, cli, tmp_path: Path
) -> None:
    root = release_ws.root
    r1, r2 = _promoted(root, cli)
    v2 = _new_prompt_version(root, cli, tmp_path)
    assert _production(cli, PROMPT) == 1
    promote = ["prompt", "promote", PROMPT, str(v2), "--to", "production"]
    res = cli(*promote, "--reason", "wording fix for a complaint")
    assert res.code == 2, res.err
    assert r2 in res.err and "pins v1" in res.err
    assert f"releaser release create {SERVICE}" in res.err
    assert f"releaser rollout start {SERVICE}" in res.err and "--override" in res.err
    assert _production(cli, PROMPT) == 1
    assert [e for e in _audit(cli) if e["action"] == "prompt.alias"][-1]["after"]["version"] == 1

    _override(cli, v2)
    assert _production(cli, PROMPT) == v2
    ws = open_workspace(root)
    try:
        rec = ws.store.get(journal.EFFECT_KIND, journal.prompt_key(PROMPT, "production"))
        assert rec is not None and rec.value["status"] == "done"
        override = rec.value["override"]
        assert (override["service"], override["release"], override["pinned"]) == (SERVICE, r2, 1)
        assert override["by"] == "tester" and override["reason"] == "wording fix for a complaint"
        assert override["at"]
    finally:
        ws.close()
    res = cli("reconcile", SERVICE, "--check")
    assert res.code == 0 and "override" in res.out and "drift" not in res.err, res.out + res.err
    res = cli("reconcile", SERVICE)
    assert res.code == 0 and "override" in res.out, res.err
    assert _production(cli, PROMPT) == v2  # reconcile leaves a recorded override where it is

    seq = _audit(cli)[-1]["seq"]
    res = cli("rollback", SERVICE, "--reason", "complaints about r2", "--yes")
    assert res.code == 0, res.err
    assert _production(cli, PROMPT) == 1  # r1's pin: the rollback takes the alias back
    moves = [e for e in _audit(cli) if e["seq"] > seq and e["subject"] == f"prompt:{PROMPT}"]
    assert [(e["action"], e["before"], e["after"]) for e in moves] == [
        (
            "prompt.alias",
            {"alias": "production", "version": v2},
            {"alias": "production", "version": 1},
        )
    ]
    assert moves[0]["context"]["cause"] == "rollback"
    res = cli("reconcile", SERVICE, "--check")
    assert res.code == 0 and "override" not in res.out, res.out + res.err
    assert cli("audit", "verify").code == 0


def test_dry_run_lists_the_side_effects_the_real_rollback_applies_and_writes_nothing(
    release_ws: ExampleWorkspace, cli, tmp_path: Path
) -> None:
    root = release_ws.root
    r1, r2 = _promoted(root, cli)
    _override(cli, _new_prompt_version(root, cli, tmp_path))  # so a prompt alias moves back too
    head = json.loads(cli("audit", "verify", "--json").out)
    res = cli("rollback", SERVICE, "--reason", "complaints", "--dry-run", "--json")
    assert res.code == 0, res.err
    dry = json.loads(res.out)
    assert dry["dry_run"] and not dry["switched"] and (dry["from"], dry["to"]) == (r2, r1)
    planned = {e["name"]: e["status"] for e in dry["side_effects"]}
    assert planned == {
        f"MLflow alias {SERVICE}@production": "planned",
        f"prompt alias {PROMPT}@production": "planned",
    }
    assert json.loads(cli("audit", "verify", "--json").out) == head
    ws = open_workspace(root)
    try:
        assert service_state(ws, SERVICE).stable == r2
        assert journal.owed(ws, service=SERVICE) == []
        assert ws.models.get_alias(SERVICE, "production") == 2
    finally:
        ws.close()

    res = cli("rollback", SERVICE, "--reason", "complaints", "--json", "--yes")
    assert res.code == 0, res.err
    real = json.loads(res.out)
    assert real["switched"] and (real["from"], real["to"]) == (r2, r1)
    assert {e["name"] for e in real["side_effects"]} == set(planned)
    assert {e["status"] for e in real["side_effects"]} == {"done"}


def test_a_rollback_after_promotion_is_recorded_on_the_rollout_that_promoted(
    release_ws: ExampleWorkspace, cli
) -> None:
    from releaser.docs.evidence import rollout_history

    root = release_ws.root
    r1, r2 = _two_releases(root, cli)
    rollout_id = json.loads(cli("rollout", "status", SERVICE, "--json").out)["rollout"]["id"]
    ws = open_workspace(root)
    try:
        promote_rollout(ws, SERVICE, reason="ship r2")
    finally:
        ws.close()
    res = cli("rollback", SERVICE, "--reason", "complaints about r2", "--yes")
    assert res.code == 0, res.err

    res = cli("rollout", "status", SERVICE)
    assert res.code == 0, res.err
    assert f"last rollout {rollout_id}: rolled_back" in res.out
    assert f"last rollback (after-promotion): {r2} -> {r1}" in res.out
    assert "complaints about r2" in res.out
    status = json.loads(cli("rollout", "status", SERVICE, "--json").out)
    assert status["rollout"]["id"] == rollout_id and status["rollout"]["status"] == "rolled_back"
    last = status["last_rollback"]
    assert (last["from"], last["to"], last["reason"]) == (r2, r1, "complaints about r2")
    assert status["owed_effects"] == []

    ws = open_workspace(root)
    try:
        history = {r["id"]: r for r in rollout_history(ws, SERVICE)}
    finally:
        ws.close()
    promoted = history[rollout_id]
    assert promoted["candidate"] == r2 and promoted["status"] == "rolled_back"
    actions = [d["action"] for d in promoted["decisions"]]
    assert actions[-2:] == ["promote-forced", "rollback"], actions
    assert "complaints about r2" in promoted["decisions"][-1]["reasons"][0]

    res = cli("handover", SERVICE, "-o", "dist")
    assert res.code == 0, res.err
    md = (root / "dist" / f"{SERVICE}-handover" / "rollouts.md").read_text(encoding="utf-8")
    section = md.split(f"## {rollout_id}: ", 1)[1].split("\n## ", 1)[0]
    assert section.startswith("rolled_back")
    row = next(line for line in section.splitlines() if "| rollback |" in line)
    assert "rollback after promotion: complaints about r2" in row
