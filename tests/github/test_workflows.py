"""The Actions workflows and the composite action: schema-valid, zizmor-clean, hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = ROOT / "action.yml"
REUSABLE = {"release-gate.yml", "rollout-advance.yml", "prompt-promote.yml", "rollback.yml"}
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")

# Least privilege, reviewed: the only permissions each job may have.
ALLOWED_PERMISSIONS: dict[str, dict[str, dict[str, str]]] = {
    "ci.yml": {"test": {"contents": "read"}},
    "release-gate.yml": {
        "gate": {
            "contents": "read",
            "statuses": "write",
            "checks": "write",
            "pull-requests": "write",
        }
    },
    "rollout-advance.yml": {
        "advance": {"contents": "read", "deployments": "write"},
        "publish": {"contents": "write"},
    },
    "prompt-promote.yml": {"promote": {"contents": "read"}},
    "rollback.yml": {"rollback": {"contents": "read", "deployments": "write"}},
}


def _tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]' provides it)")
    return found


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), path
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in doc:
        return list(doc["runs"].get("steps", []))
    return [s for job in doc.get("jobs", {}).values() for s in job.get("steps", [])]


def hardening_problems(path: Path) -> list[str]:
    """Every breach of the hardening rules in one workflow or action file."""
    doc, text, problems = _load(path), path.read_text(encoding="utf-8"), []
    is_action = "runs" in doc
    if not is_action:
        triggers = doc.get("on")
        names = set(triggers) if isinstance(triggers, dict | list) else {triggers}
        if "pull_request_target" in names:
            problems.append("pull_request_target trigger")
        if doc.get("permissions") != {}:
            problems.append("top-level permissions is not {}")
        for job_id, job in doc.get("jobs", {}).items():
            perms = job.get("permissions")
            if not isinstance(perms, dict):
                problems.append(f"job {job_id}: no explicit permissions map")
                continue
            allowed = ALLOWED_PERMISSIONS.get(path.name, {}).get(job_id, {})
            if perms != allowed:
                problems.append(f"job {job_id}: permissions {perms} != reviewed {allowed}")
        if path.name in REUSABLE:
            if not isinstance(triggers, dict) or "workflow_call" not in triggers:
                problems.append("reusable workflow without workflow_call")
            group = str((doc.get("concurrency") or {}).get("group", ""))
            if "inputs.service" not in group:
                problems.append("no concurrency group per service")
    for step in _steps(doc):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            if not PINNED.match(uses):
                problems.append(f"{uses}: not pinned to a full commit SHA")
            elif not re.search(re.escape(uses) + r" # v\d", text):
                problems.append(f"{uses}: no '# vX.Y.Z' comment naming the version")
            if uses.startswith("actions/checkout@"):
                if (step.get("with") or {}).get("persist-credentials") is not False:
                    problems.append("checkout keeps the token in .git (persist-credentials)")
        run = step.get("run")
        if run and "${{" in run:
            problems.append(f"expression inside run: {run.strip().splitlines()[0]}")
    return problems


def test_the_expected_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} == REUSABLE | {"ci.yml"}
    assert ACTION.exists()


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_hardening_rules(path: Path) -> None:
    assert hardening_problems(path) == []


def test_the_hardening_check_catches_each_breach(tmp_path: Path) -> None:
    bad = tmp_path / "rollback.yml"
    bad.write_text(
        """
name: bad
on:
  pull_request_target:
permissions: write-all
jobs:
  rollback:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
      - run: releaser rollback "${{ github.event.pull_request.title }}"
""",
        encoding="utf-8",
    )
    problems = hardening_problems(bad)
    assert problems == [
        "pull_request_target trigger",
        "top-level permissions is not {}",
        "job rollback: no explicit permissions map",
        "reusable workflow without workflow_call",
        "no concurrency group per service",
        "actions/checkout@v4: not pinned to a full commit SHA",
        "checkout keeps the token in .git (persist-credentials)",
        'expression inside run: releaser rollback "${{ github.event.pull_request.title }}"',
    ]


def test_rollback_takes_only_service_and_reason_and_runs_releaser_rollback() -> None:
    doc = _load(ROOT / ".github" / "workflows" / "rollback.yml")
    assert set(doc["on"]) == {"workflow_call"}
    assert set(doc["on"]["workflow_call"]["inputs"]) == {"service", "reason"}
    runs = [s["run"] for s in _steps(doc) if "run" in s]
    assert runs[-1].strip() == 'releaser rollback "$SERVICE" --reason "$REASON" --yes'
    env = doc["jobs"]["rollback"]["steps"][-1]["env"]
    assert env["SERVICE"] == "${{ inputs.service }}" and env["REASON"] == "${{ inputs.reason }}"


def test_schema_validation() -> None:
    exe = _tool("check-jsonschema")
    for schema, files in [
        ("vendor.github-workflows", WORKFLOWS),
        ("vendor.github-actions", [ACTION]),
    ]:
        res = subprocess.run(
            [exe, "--builtin-schema", schema, *map(str, files)], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_zizmor_finds_nothing() -> None:
    exe = _tool("zizmor")
    res = subprocess.run(
        [exe, "--offline", "--no-progress", *map(str, WORKFLOWS), str(ACTION)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No findings to report" in res.stdout + res.stderr


def test_zizmor_would_flag_an_injection(tmp_path: Path) -> None:
    exe = _tool("zizmor")
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        """
on:
  workflow_dispatch:
    inputs:
      reason: {type: string}
permissions: {}
jobs:
  x:
    name: x
    runs-on: ubuntu-24.04
    permissions: {}
    steps:
      - run: echo "${{ inputs.reason }}"
""",
        encoding="utf-8",
    )
    res = subprocess.run(
        [exe, "--offline", "--no-progress", str(bad)], capture_output=True, text=True
    )
    assert res.returncode != 0 and "template-injection" in res.stdout + res.stderr
