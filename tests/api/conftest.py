"""Fixtures for the phase and approval tests: one gated release whose owners sign."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from releaser.api.gates import run_gate
from releaser.api.releases import create_release
from releaser.api.workspace import Workspace, open_workspace
from releaser.demo.workspace import ExampleWorkspace

if TYPE_CHECKING:
    from conftest import OwnerKeys

SERVICE = "case-triage"


@pytest.fixture(scope="session")
def keyed_release(
    prompted_workspace: ExampleWorkspace,
    tmp_path_factory: pytest.TempPathFactory,
    owner_keys: OwnerKeys,
) -> tuple[Path, str]:
    """A workspace with one release (created by 'tester') that passed its eval gate, at a
    commit whose releaser.yaml lists the signing keys of priya, tom, sam and alex (not
    mallory's). Read-only: tests work on copies (``keyed_ws``)."""
    root = tmp_path_factory.mktemp("keyed") / "ws"
    shutil.copytree(prompted_workspace.root, root, symlinks=True)
    owner_keys.enrol(root, ["priya", "tom", "sam", "alex"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELEASER_ACTOR", "tester")
        ws = open_workspace(root)
        try:
            rid = create_release(ws, SERVICE).release.id
            assert run_gate(ws, SERVICE, rid).passed
        finally:
            ws.close()
    return root, rid


@pytest.fixture
def keyed_ws(keyed_release: tuple[Path, str], tmp_path: Path) -> Iterator[Workspace]:
    """A private copy of ``keyed_release``'s workspace, open."""
    dest = tmp_path / "ws"
    shutil.copytree(keyed_release[0], dest, symlinks=True)
    workspace = open_workspace(dest)
    yield workspace
    workspace.close()
