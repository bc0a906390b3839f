"""Fixtures for the integration tests: real git, real DVC with a local remote, real MLflow.

``example_workspace`` builds the case-triage example once per session (once
per xdist worker): two registered model versions (``champion`` -> 1,
``challenger`` -> 2), the golden and training sets tracked by DVC and pushed.
Tests that only read use it directly; tests that change anything take
``workspace_copy``, a ``shutil.copytree`` of it in ``tmp_path``.

What a copy shares with the original: MLflow stores artifact locations as
absolute paths, so the copy's ``mlflow.db`` still points at the original's
``mlruns`` (reading model files works; anything logged in the copy is written
there too, so tests must not delete artifacts). Registry writes (tags,
aliases) go to the copy's own ``mlflow.db``. The DVC remote is configured by
a relative path, so each copy has its own ``.dvc-remote`` and cache.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from releaser.demo.workspace import ExampleWorkspace, build_example_workspace
from releaser.integrations.mlflow_models import local_mlflow_uris

MINIMAL_CONFIG = "# minimal releaser.yaml for the integration tests\nversion: 1\n"


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` and return its stripped stdout."""
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture(scope="session")
def example_workspace(tmp_path_factory: pytest.TempPathFactory) -> ExampleWorkspace:
    """The example workspace, built once; treat it as read-only."""
    dest = tmp_path_factory.mktemp("example") / "ws"
    return build_example_workspace(dest, config_text=MINIMAL_CONFIG, model_versions=2)


@pytest.fixture
def workspace_copy(example_workspace: ExampleWorkspace, tmp_path: Path) -> ExampleWorkspace:
    """A private copy of the example workspace that a test may change."""
    root = tmp_path / "ws"
    shutil.copytree(example_workspace.root, root, symlinks=True)
    tracking_uri, artifact_location = local_mlflow_uris(root)
    return dataclasses.replace(
        example_workspace,
        root=root,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        remote_dir=root / example_workspace.remote_dir.name,
    )


@pytest.fixture
def run_git() -> Callable[..., str]:
    """``run_git(root, *args)``: run git in ``root`` and return its stripped stdout."""
    return git


@pytest.fixture
def make_repo(tmp_path: Path) -> Callable[..., Path]:
    """A small git repo with one commit (``README.md``) on branch ``main``."""

    def make(name: str = "repo", *, commit: bool = True) -> Path:
        root = tmp_path / name
        root.mkdir()
        git(root, "init", "-q", "--initial-branch=main")
        git(root, "config", "user.name", "releaser tests")
        git(root, "config", "user.email", "tests@releaser.invalid")
        if commit:
            (root / "README.md").write_text("hello\n", encoding="utf-8")
            git(root, "add", "README.md")
            git(root, "commit", "-q", "-m", "first")
        return root

    return make
