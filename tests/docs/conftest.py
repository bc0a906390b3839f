"""A workspace mid-rollout (stable v1, candidate v2 at its first step), built once per session."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from releaser.api.releases import create_release
from releaser.api.rollouts import start_rollout
from releaser.api.workspace import open_workspace
from releaser.demo.workspace import ExampleWorkspace, copy_workspace

SERVICE = "case-triage"
T0 = "2026-03-02T09:00:00.000000Z"


@dataclasses.dataclass(frozen=True)
class RolloutWorkspace:
    """A workspace whose service has a stable release and a live rollout of a candidate."""

    root: Path
    stable: str
    candidate: str


@pytest.fixture(scope="session")
def mid_rollout(
    prompted_workspace: ExampleWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> RolloutWorkspace:
    """Read-only: release 1 stable (initial), release 2 (model v2) rolling out at 'internal'."""
    example = copy_workspace(prompted_workspace, tmp_path_factory.mktemp("docs") / "ws")
    root = example.root
    previous_actor = os.environ.get("RELEASER_ACTOR")
    os.environ["RELEASER_ACTOR"] = "tester"
    try:
        ws = open_workspace(root)
        r1 = create_release(ws, SERVICE).release.id
        # Real gate evidence for both releases, so the eval report has something to show.
        from releaser.api.gates import run_gate

        first_passed = run_gate(ws, SERVICE, r1).passed
        start_rollout(
            ws, SERVICE, r1, initial=True, now=T0, force=not first_passed, reason="docs tests"
        )
        ws.close()
        cfg = root / "releaser.yaml"
        cfg.write_text(
            cfg.read_text(encoding="utf-8").replace("alias: champion", "version: 2", 1),
            encoding="utf-8",
        )
        subprocess.run(["git", "commit", "-qam", "serve model v2"], cwd=root, check=True)
        ws = open_workspace(root)
        r2 = create_release(ws, SERVICE).release.id
        passed = run_gate(ws, SERVICE, r2).passed
        start_rollout(ws, SERVICE, r2, now=T0, force=not passed, reason="docs tests")
        ws.close()
    finally:
        if previous_actor is None:
            os.environ.pop("RELEASER_ACTOR", None)
        else:
            os.environ["RELEASER_ACTOR"] = previous_actor
    return RolloutWorkspace(root, r1, r2)


@pytest.fixture
def rollout_copy(mid_rollout: RolloutWorkspace, tmp_path: Path) -> RolloutWorkspace:
    """A private copy of ``mid_rollout`` that a test may change."""
    dest = tmp_path / "ws"
    shutil.copytree(mid_rollout.root, dest, symlinks=True)
    return dataclasses.replace(mid_rollout, root=dest)


@pytest.fixture
def read_tree() -> Callable[[Path], dict[str, bytes]]:
    """Every file under a folder, by relative path."""

    def read(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    return read
