"""A real workspace mid-rollout for the gateway acceptance tests (releases through the CLI).

Shared by tests/serve and the container tests: two releases of the example service, the
second rolled out and advanced (healthy metrics, simulated clock) to a step with a
percentage, and a ``deploy:`` section added to releaser.yaml.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from releaser.api.workspace import open_workspace
from releaser.demo.traffic import advance_to_step

SERVICE = "case-triage"


def add_deploy(root: Path, deploy_yaml: str) -> None:
    """Append a ``deploy:`` block (indented YAML text) to the service and commit it."""
    cfg = root / "releaser.yaml"
    text = cfg.read_text()
    marker = "    irreversible: false\n"
    assert marker in text
    block = "".join(f"    {line}\n" for line in deploy_yaml.strip("\n").splitlines())
    cfg.write_text(text.replace(marker, marker + block, 1))
    subprocess.run(["git", "commit", "-qam", "deploy settings"], cwd=root, check=True)


def two_releases(
    root: Path, cli: Any, before_start: Callable[[str], None] | None = None
) -> tuple[str, str]:
    """Release 1 (model v1) as the stable release, release 2 (model v2) rolled out.

    ``before_start(release_id)`` runs before each ``rollout start`` (e.g. start containers).
    """
    r1 = json.loads(cli("release", "create", SERVICE, "--json", cwd=root).out)["release"]["id"]
    if before_start is not None:
        before_start(r1)
    assert cli("gate", SERVICE, "--release", r1).code == 0
    res = cli("rollout", "start", SERVICE, "--release", r1, "--initial")
    assert res.code == 0, res.out + res.err
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("alias: champion", "version: 2", 1))
    subprocess.run(["git", "commit", "-qam", "serve v2"], cwd=root, check=True)
    r2 = json.loads(cli("release", "create", SERVICE, "--json").out)["release"]["id"]
    if before_start is not None:
        before_start(r2)
    assert cli("gate", SERVICE, "--release", r2).code == 0
    res = cli("rollout", "start", SERVICE, "--release", r2)
    assert res.code == 0, res.err
    return r1, r2


def to_step(root: Path, step_name: str) -> None:
    """Feed healthy metrics and advance (simulated clock) until the rollout is at ``step_name``."""
    ws = open_workspace(root)
    try:
        advance_to_step(ws, SERVICE, step_name)
    finally:
        ws.close()
