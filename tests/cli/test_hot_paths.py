"""The commands operations run under pressure load no heavy library, even when MLflow moves.

``rollback``, ``rollout status``, ``rollout pause``, ``audit verify`` and
``prompt promote`` each run in a fresh interpreter on the example workspace (a
real MLflow sqlite registry holding the model and, in MLflow's prompt registry,
the prompt), and report the modules they loaded at exit. Asserted absent:
``mlflow``, ``sqlalchemy`` and ``alembic`` (MLflow's store), ``pandas``,
``dvc``, ``git`` (GitPython), ``docker``, ``github3``, ``jinja2``,
``matplotlib``, ``requests``, ``httpx``. Not asserted: ``pydantic`` and
``yaml``, which load the workspace's settings and the store's records on every
command; ``numpy`` and ``scipy`` for ``rollout status``, whose decision preview
runs the sequential tests (the other commands must not load them either).

The rollback after promotion really moves the MLflow alias, and prompt promote
the prompt's (both read back with MlflowClient), so the light alias client is
what is tested, not a path that happens to skip MLflow.

A rollback of a service without deploy targets or a GitHub mirror also does not
validate the whole ``releaser.yaml`` (which builds most of the config's models).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from releaser.api.rollouts import promote_rollout, start_rollout
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace
from tests.cli.test_rollback_cmds import SERVICE, _two_releases

pytestmark = pytest.mark.slow

HEAVY = {
    "mlflow",
    "sqlalchemy",
    "alembic",
    "pandas",
    "dvc",
    "git",
    "docker",
    "github3",
    "jinja2",
    "matplotlib",
    "requests",
    "httpx",
}
ANALYSIS = {"numpy", "scipy"}
"""What the decision preview of ``rollout status`` needs; no other hot command loads them."""

CHILD = textwrap.dedent(
    """
    import atexit, json, sys
    def report():
        top = sorted({m.split(".")[0] for m in sys.modules})
        print("MODULES " + json.dumps(top), file=sys.stderr)
    atexit.register(report)
    from releaser.cli import main
    sys.argv = ["releaser", *sys.argv[1:]]
    main()
    """
)


def _run(root: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``releaser ARGS`` in a fresh interpreter in ``root``; (result, top-level modules)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], cwd=root, capture_output=True, text=True, env=env
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("MODULES ")]
    assert lines, done.stderr
    return done, set(json.loads(lines[-1].removeprefix("MODULES ")))


def _mlflow_alias(ws: ExampleWorkspace, name: str, alias: str) -> int | None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.tracking_uri)
    value = client.get_registered_model(name).aliases.get(alias)
    return None if value is None else int(value)


def test_hot_commands_load_no_heavy_library(release_ws: ExampleWorkspace, cli) -> None:
    root = release_ws.root
    r1, r2 = _two_releases(root, cli)

    done, loaded = _run(root, "rollout", "status", SERVICE)
    assert done.returncode == 0, done.stderr
    assert not loaded & HEAVY, f"rollout status loaded {sorted(loaded & HEAVY)}"

    for args in (
        ["rollout", "pause", SERVICE, "--reason", "look closer"],
        ["rollback", SERVICE, "--reason", "mid-rollout drill", "--yes"],
        ["audit", "verify"],
    ):
        done, loaded = _run(root, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert not loaded & (HEAVY | ANALYSIS), f"{args} loaded {sorted(loaded & HEAVY)}"
    assert "traffic switched" in done.stdout or "audit chain ok" in done.stdout

    # After promotion the rollback moves the model's production alias back: 2 -> 1.
    ws = open_workspace(root)
    try:
        start_rollout(ws, SERVICE, r2, force=True)
        promote_rollout(ws, SERVICE, reason="ship it")
    finally:
        ws.close()
    assert _mlflow_alias(release_ws, "case-triage", "production") == 2
    done, loaded = _run(root, "rollback", SERVICE, "--reason", "complaints", "--yes")
    assert done.returncode == 0, done.stderr
    assert "case-triage@production: done (v2 -> v1)" in done.stdout + done.stderr
    assert not loaded & (HEAVY | ANALYSIS), f"rollback loaded {sorted(loaded & HEAVY)}"
    assert _mlflow_alias(release_ws, "case-triage", "production") == 1
    assert r1 in done.stdout


def test_prompt_promote_on_the_mlflow_backend_loads_no_heavy_library(
    release_ws: ExampleWorkspace,
) -> None:
    # The prompt lives in MLflow's prompt registry: the version is read, the alias moved
    # and its history tag written without MLflow.
    args = ["prompt", "promote", "case-triage-system", "1", "--to", "staging", "--reason", "try"]
    done, loaded = _run(release_ws.root, *args)
    assert done.returncode == 0, done.stderr
    assert "case-triage-system@staging: (unset) -> v1" in done.stdout
    assert not loaded & (HEAVY | ANALYSIS), f"prompt promote loaded {sorted(loaded & HEAVY)}"
    from mlflow import MlflowClient

    uri = release_ws.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert int(client.get_prompt_version_by_alias("case-triage-system", "staging").version) == 1


def test_rollback_validates_no_more_of_releaser_yaml_than_it_reads(
    release_ws: ExampleWorkspace, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service without deploy targets or a GitHub mirror: its rollback reads the
    # workspace settings, and of the rest only which sections are written. Building and
    # running the whole file's validation (about 20 ms) is left to the commands that
    # need it, mid-rollout as after a promotion.
    import releaser.api.workspace

    root = release_ws.root
    _r1, r2 = _two_releases(root, cli)

    def whole_file(*args: object, **kwargs: object) -> None:
        raise AssertionError("the rollback validated the whole releaser.yaml")

    load_config = releaser.api.workspace.load_config
    monkeypatch.setattr(releaser.api.workspace, "load_config", whole_file)
    res = cli("rollback", SERVICE, "--reason", "mid-rollout drill", "--yes")
    assert res.code == 0 and "traffic switched" in res.out, res.err
    monkeypatch.setattr(releaser.api.workspace, "load_config", load_config)
    ws = open_workspace(root)
    try:
        start_rollout(ws, SERVICE, r2, force=True)
        promote_rollout(ws, SERVICE, reason="ship it")
    finally:
        ws.close()
    monkeypatch.setattr(releaser.api.workspace, "load_config", whole_file)
    res = cli("rollback", SERVICE, "--reason", "complaints", "--yes")
    assert res.code == 0, res.err
    assert "case-triage@production: done (v2 -> v1)" in res.out + res.err
