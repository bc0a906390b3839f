"""Fixtures for the integration tests: small git repos (example workspace: tests/conftest.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` and return its stripped stdout."""
    done = subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True)
    return done.stdout.strip()


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
