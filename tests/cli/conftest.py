"""Fixtures for the CLI tests: a service with two released versions of the example model."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SERVICE = "case-triage"


@pytest.fixture
def released(cli: Any) -> Callable[..., tuple[str, str]]:
    """For a workspace root: r1 (model v1) stable, r2 (model v2) gated and rolled out at
    its first step; returns (r1, r2)."""

    def make(root: Path, *, irreversible: bool = False) -> tuple[str, str]:
        r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
        assert cli("gate", SERVICE, "--release", r1).code == 0
        assert cli("rollout", "start", SERVICE, "--release", r1, "--initial").code == 0
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

    return make
