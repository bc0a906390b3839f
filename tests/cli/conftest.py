"""Fixtures for the CLI tests: a service with two released versions of the example model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_rollback_cmds import _two_releases


@pytest.fixture
def released(cli: Any) -> Callable[..., tuple[str, str]]:
    """For a workspace root: r1 (model v1) stable, r2 (model v2) gated and rolled out at
    its first step; returns (r1, r2)."""

    def make(root: Path, *, irreversible: bool = False) -> tuple[str, str]:
        return _two_releases(root, cli, irreversible=irreversible)

    return make
