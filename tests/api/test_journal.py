"""The intent journal: what a committed switch owes, finished by whatever runs next.

Real store, real MLflow registry, real prompt registry; a process killed after
its commit is stood in for by ``rollback(..., side_effects=False)``, which
commits the switch with its intents and applies none of them.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from itertools import pairwise
from pathlib import Path

import pytest

from releaser.api import journal
from releaser.api.rollback import rollback
from releaser.api.rollouts import service_state
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace
from tests.cli.test_prompt_cmds import RELEASER, _file_backend, _production
from tests.cli.test_rollback_cmds import (
    PROMPT,
    SERVICE,
    _audit,
    _new_prompt_version,
    _override,
    _promoted,
)

pytestmark = pytest.mark.slow
MODEL_KEY = journal.model_key(SERVICE, "production")
PROMPT_KEY = journal.prompt_key(PROMPT, "production")


def _events(cli, action: str, subject: str) -> list[dict]:
    return [e for e in _audit(cli) if e["action"] == action and e["subject"] == subject]


def _chained(moves: list[dict]) -> bool:
    """Each alias move starts where the one before it ended."""
    return all(a["after"]["version"] == b["before"]["version"] for a, b in pairwise(moves))


def test_a_switch_that_died_before_its_effects_owes_them_and_a_rerun_finishes_them(
    release_ws: ExampleWorkspace, cli, tmp_path: Path
) -> None:
    root = release_ws.root
    r1, _r2 = _promoted(root, cli)
    v2 = _new_prompt_version(root, cli, tmp_path)
    _override(cli, v2)  # the prompt alias is away from r1's pin too, so both aliases move
    ws = open_workspace(root)
    try:
        assert journal.owed(ws, service=SERVICE) == []
        result = rollback(ws, SERVICE, reason="killed after the switch", side_effects=False)
        assert result.switched and result.side_effects == []
        assert service_state(ws, SERVICE).stable == r1  # traffic is back: the switch committed
        owed = {r.key: r.value for r in journal.owed(ws, service=SERVICE)}
        assert set(owed) == {MODEL_KEY, PROMPT_KEY}
        assert (owed[MODEL_KEY]["from"], owed[MODEL_KEY]["version"]) == (2, 1)
        assert (owed[PROMPT_KEY]["from"], owed[PROMPT_KEY]["version"]) == (v2, 1)
        assert {v["status"] for v in owed.values()} == {"pending"}
        assert {v["cause"] for v in owed.values()} == {"rollback"}
        # Nothing outside the store has moved yet.
        assert ws.models.get_alias(SERVICE, "production") == 2
        assert ws.prompts.aliases(PROMPT)["production"] == v2
    finally:
        ws.close()
    # Both moves are in the audit log already, with the switch that owes them.
    assert _events(cli, "model.alias", f"model:{SERVICE}")[-1]["after"]["version"] == 1
    assert _events(cli, "prompt.alias", f"prompt:{PROMPT}")[-1]["after"]["version"] == 1

    status = json.loads(cli("rollout", "status", SERVICE, "--json").out)
    assert {e["name"]: e["status"] for e in status["owed_effects"]} == {
        f"MLflow alias {SERVICE}@production": "planned",
        f"prompt alias {PROMPT}@production": "planned",
    }
    res = cli("rollout", "status", SERVICE)
    assert res.code == 0 and f"owed: MLflow alias {SERVICE}@production" in res.err
    res = cli("reconcile", SERVICE, "--check")
    assert res.code == 1
    assert f"owed: MLflow alias {SERVICE}@production" in res.err
    assert f"owed: prompt alias {PROMPT}@production" in res.err
    ws = open_workspace(root)
    try:
        assert len(journal.owed(ws, service=SERVICE)) == 2  # --check applied nothing
        assert ws.models.get_alias(SERVICE, "production") == 2
    finally:
        ws.close()

    res = cli("rollback", SERVICE, "--reason", "again", "--yes")
    assert res.code == 0, res.err
    assert "already rolled back" in res.out
    ws = open_workspace(root)
    try:
        assert ws.models.get_alias(SERVICE, "production") == 1
        assert ws.prompts.aliases(PROMPT)["production"] == 1
        assert journal.owed(ws, service=SERVICE) == []
        assert service_state(ws, SERVICE).stable == r1
    finally:
        ws.close()
    assert cli("audit", "verify").code == 0
    models = _events(cli, "model.alias", f"model:{SERVICE}")
    assert [m["after"]["version"] for m in models][-2:] == [2, 1]
    assert _chained(models), [(m["before"], m["after"]) for m in models]
    prompts = _events(cli, "prompt.alias", f"prompt:{PROMPT}")
    assert _chained(prompts), [(m["before"], m["after"]) for m in prompts]
    # The re-run finished the recorded moves; it did not record them again.
    assert [p["after"]["version"] for p in prompts][-2:] == [v2, 1]
    applied = _events(cli, "effects.applied", f"service:{SERVICE}")[-1]
    done = {e["key"]: e["status"] for e in applied["after"]["effects"]}
    assert done == {MODEL_KEY: "done", PROMPT_KEY: "done"}
    assert cli("reconcile", SERVICE, "--check").code == 0


def _file_prompts(root: Path, cli) -> None:
    """Keep the service's prompt in YAML files (committed), version 1 at production."""
    _file_backend(root)
    subprocess.run(["git", "commit", "-qam", "prompts in files"], cwd=root, check=True)
    res = cli("prompt", "register", str(root / "prompts" / f"{PROMPT}.yaml"), cwd=root)
    assert res.code == 0, res.err
    res = cli("prompt", "promote", PROMPT, "1", "--to", "production", "--reason", "files")
    assert res.code == 0, res.err
    # The registered version lives in prompts/<name>/: ignored, so releases see a clean tree.
    with (root / ".gitignore").open("a", encoding="utf-8") as fh:
        fh.write(f"/prompts/{PROMPT}/\n")
    subprocess.run(["git", "commit", "-qam", "ignore registered prompts"], cwd=root, check=True)


def test_a_slow_settle_does_not_undo_a_move_recorded_after_it(
    release_ws: ExampleWorkspace, cli, tmp_path: Path
) -> None:
    root = release_ws.root
    _file_prompts(root, cli)
    r1, _r2 = _promoted(root, cli)
    _override(cli, _new_prompt_version(root, cli, tmp_path))
    v3 = _new_prompt_version(root, cli, tmp_path)
    # Hold MLflow's write lock: the rollback's settle lists what it owes (model alias,
    # then prompt alias), then waits on the model alias; the prompt files stay free.
    lock = sqlite3.connect(root / "mlflow.db", isolation_level=None, timeout=5)
    lock.execute("BEGIN IMMEDIATE")
    child = subprocess.Popen(
        [str(RELEASER), "rollback", SERVICE, "--reason", "complaints", "--yes"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ws = open_workspace(root, settings_only=True)
            try:
                if service_state(ws, SERVICE).stable == r1:
                    break
            finally:
                ws.close()
            time.sleep(0.02)
        else:
            raise AssertionError("the rollback never committed its switch")
        time.sleep(0.5)  # its settle has listed the owed moves and is waiting on MLflow
        # Meanwhile an operator moves the prompt: the rollback's move lands first (settled
        # here), then this one is recorded, applied and marked done.
        res = cli(
            "prompt",
            "promote",
            PROMPT,
            str(v3),
            "--to",
            "production",
            "--reason",
            "hotfix over r1",
            "--override",
        )
        assert res.code == 0 and f"v1 -> v{v3}" in res.out, res.err
        assert _production(cli, PROMPT) == v3
    finally:
        lock.execute("ROLLBACK")
        lock.close()
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    ws = open_workspace(root, settings_only=True)
    try:
        rec = ws.store.get(journal.EFFECT_KIND, PROMPT_KEY)
        assert rec is not None and (rec.value["version"], rec.value["status"]) == (v3, "done")
        assert journal.owed(ws, keys=[PROMPT_KEY]) == []
    finally:
        ws.close()
    # (From the move into the file backend on: the demo's first move was in MLflow.)
    moves = _events(cli, "prompt.alias", f"prompt:{PROMPT}")[1:]
    assert moves[-1]["after"]["version"] == v3 and _chained(moves)
    # The alias is where the last recorded (and done) move sent it.
    assert _production(cli, PROMPT) == v3, out
