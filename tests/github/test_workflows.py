"""The Actions workflows and the composite action: schema-valid, zizmor-clean, hardened."""

from __future__ import annotations

import os
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
REUSABLE = {
    "release-gate.yml",
    "rollout-advance.yml",
    "prompt-promote.yml",
    "prompt-release.yml",
    "rollback.yml",
}
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")

# Least privilege, reviewed: the only permissions each job may have. id-token: write lets
# the install step learn which commit of this repository the workflow runs from (the OIDC
# token's job_workflow_sha); it grants no access to anything.
ALLOWED_PERMISSIONS: dict[str, dict[str, dict[str, str]]] = {
    "ci.yml": {"test": {"contents": "read"}},
    "release-gate.yml": {
        "gate": {
            "contents": "read",
            "id-token": "write",
            "statuses": "write",
            "checks": "write",
            "pull-requests": "write",
        }
    },
    "rollout-advance.yml": {
        "advance": {"contents": "read", "id-token": "write", "deployments": "write"},
        "publish": {"contents": "write", "id-token": "write"},
    },
    "prompt-promote.yml": {"promote": {"contents": "read", "id-token": "write"}},
    "prompt-release.yml": {
        "release": {"contents": "read", "id-token": "write", "deployments": "write"}
    },
    "rollback.yml": {"rollback": {"contents": "read", "id-token": "write", "deployments": "write"}},
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


SETUP_INPUTS = {"working-directory", "python-version", "releaser-version", "releaser-sha256"}
# A pip install of something on this machine: the action's checkout, the repository
# itself, a wheel or source tree the step fetched and checked (Python's str(...)).
_LOCAL = re.compile(
    r'^(?:-e\s+)?(?:"?\$GITHUB_ACTION_PATH"?|"?\.(?:\[[\w,]+\])?"?|str\(\w+(?:\[0\])?\)\)?)$'
)
_INSTALL = re.compile(r'(?:\bpip3?|\buv\s+pip|"pip",)\s*,?\s*"?install"?,?\s*(?P<rest>[^\n]*)')


def unpinned_installs(text: str) -> list[str]:
    """Every install in ``text`` (shell, or the Python an install step runs) of something
    other than a local path: a name from an index, unpinned, is never allowed."""
    found = []
    for match in _INSTALL.finditer(text):
        rest = match.group("rest").strip()
        words = [w for w in re.split(r"\s+", rest) if w and not w.startswith("--")]
        target = " ".join(words)
        if not _LOCAL.match(target):
            found.append(match.group(0).strip())
    return found


@pytest.mark.parametrize("path", [*WORKFLOWS, ACTION], ids=lambda p: p.name)
def test_no_step_installs_an_unpinned_package(path: Path) -> None:
    runs = [s["run"] for s in _steps(_load(path)) if "run" in s]
    assert [bad for run in runs for bad in unpinned_installs(run)] == []


def test_the_install_check_catches_unpinned_names() -> None:
    for bad in (
        "python -m pip install releaser",
        'python -m pip install "$RELEASER_PACKAGE"',
        "pip install releaser-ml==0.1.0",
        "uv pip install git+https://github.com/o/releaser",
        'run(sys.executable, "-m", "pip", "install", "releaser")',
    ):
        assert unpinned_installs(bad), bad
    for good in (
        'python -m pip install "$GITHUB_ACTION_PATH"',
        'python -m pip install -e ".[dev]"',
        'run(sys.executable, "-m", "pip", "install", str(source))',
        'run(sys.executable, "-m", "pip", "install", str(wheels[0]))',
    ):
        assert unpinned_installs(good) == [], good


def _install_steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _steps(doc) if s.get("name") == "Install releaser, pinned"]


def test_every_reusable_workflow_takes_the_same_setup_and_installs_the_same_way() -> None:
    canonical = None
    for name in sorted(REUSABLE):
        doc = _load(ROOT / ".github" / "workflows" / name)
        inputs = doc["on"]["workflow_call"]["inputs"]
        assert SETUP_INPUTS <= set(inputs), name
        assert "releaser-package" not in inputs, name
        for job in doc["jobs"].values():
            steps = job.get("steps", [])
            installs = _install_steps({"jobs": {"j": job}})
            assert len(installs) == 1, name  # every job running releaser installs it pinned
            assert job["defaults"]["run"]["working-directory"] == "${{ inputs.working-directory }}"
            canonical = canonical or installs[0]
            assert installs[0] == canonical, name
            assert steps[steps.index(installs[0]) - 1]["with"]["python-version"] == (
                "${{ inputs.python-version }}"
            )


def test_rollback_takes_only_service_reason_and_setup_and_runs_releaser_rollback() -> None:
    doc = _load(ROOT / ".github" / "workflows" / "rollback.yml")
    assert set(doc["on"]) == {"workflow_call"}
    inputs = doc["on"]["workflow_call"]["inputs"]
    # environment: the GitHub environment whose protection rules gate the job, default production
    assert set(inputs) == {"service", "reason", "environment", *SETUP_INPUTS}
    assert inputs["environment"]["default"] == "production"
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


def _install_script(name: str = "rollback.yml") -> str:
    (step,) = _install_steps(_load(ROOT / ".github" / "workflows" / name))
    return str(step["run"])


def _run_install(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "install.sh"
    script.write_text(_install_script(), encoding="utf-8")
    base = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    return subprocess.run(
        ["bash", "-e", str(script)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_install_step_refuses_to_guess(tmp_path: Path) -> None:
    done = _run_install(tmp_path, {})
    assert done.returncode == 1
    assert "::error::cannot tell which releaser commit" in done.stdout
    assert "id-token: write" in done.stdout
    done = _run_install(tmp_path, {"RELEASER_VERSION": "0.1.0"})
    assert done.returncode == 1 and "releaser-version needs releaser-sha256" in done.stdout
    done = _run_install(tmp_path, {"RELEASER_VERSION": "latest", "RELEASER_SHA256": "0" * 64})
    assert done.returncode == 1 and "is not a version number" in done.stdout


@pytest.mark.slow
def test_the_install_step_installs_the_commit_the_oidc_token_names(tmp_path: Path) -> None:
    """The step as a runner runs it: an OIDC token endpoint answering with the claims
    GitHub puts in it, the repository served from a local git server path, pip for real."""
    import base64
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    server_root = tmp_path / "server"
    source = server_root / "acme" / "releaser"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(source)], check=True)
    sha = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    claims = {
        "job_workflow_ref": "acme/releaser/.github/workflows/rollback.yml@refs/tags/v1",
        "job_workflow_sha": sha,
    }
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    seen: list[str] = []

    class Token(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            payload = json.dumps({"value": f"header.{body}.signature"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    venv = tmp_path / "venv"  # the runner's Python: pip installs into it
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The dependencies this machine already has (MLflow, DVC, ...) are visible to it, so
    # pip finds them satisfied; releaser-ml itself is built and installed for real.
    here = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (new_site,) = venv.glob("lib/python*/site-packages")
    (new_site / "deps.pth").write_text(f"{here}\n", encoding="utf-8")
    try:
        done = _run_install(
            tmp_path,
            {
                "ACTIONS_ID_TOKEN_REQUEST_URL": f"http://127.0.0.1:{http.server_port}/t?api=1",
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "request-token",
                "GITHUB_SERVER_URL": f"file://{server_root}",
                "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
            },
        )
    finally:
        http.shutdown()
        http.server_close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"installing releaser from acme/releaser@{sha}" in done.stdout
    assert seen == ["/t?api=1&audience=releaser-install bearer request-token"]
    (site,) = venv.glob("lib/python*/site-packages")
    dists = sorted(p.name for p in site.glob("releaser*"))
    assert any(d.startswith("releaser_ml-") for d in dists), (dists, done.stdout[-2000:])
    assert (site / "releaser" / "cli" / "__init__.py").exists()
    assert (venv / "bin" / "releaser").exists()
    assert not list(site.glob("releaser-[0-9]*.dist-info"))  # never the other project
