"""Every reusable workflow and the composite action, run step by step by the runner harness.

Each run is real: bash steps, the pinned install step (pip, from a folder holding this
checkout's wheel), releaser against a demo workspace (git, MLflow sqlite, DVC, the state
store) and GitHub calls against the stand-in that answers from recorded traffic. A
sentinel value is passed as every secret; no step log, output or summary may hold it.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.demo.workspace import ExampleWorkspace

from .conftest import OWNER, REPO, TOKEN, GithubStandIn, assert_matches_recordings
from .runner import ROOT, Release, Runner
from .workflow_files import Run

pytestmark = pytest.mark.slow
SERVICE = "case-triage"
SENTINEL = "SENTINEL-secret-7f3a9c"


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Release, Path]]:
    """This checkout's wheel (built once) in a folder with the build backend's wheels, and
    a venv with it installed: the Python setup-python puts on PATH.

    The venv sees the test environment's packages through a .pth file, so the
    dependencies need no install; releaser-ml itself is the wheel, installed for real.
    """
    base = tmp_path_factory.mktemp("release")
    wheels = base / "wheels"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run(
        [str(uv), "build", "--wheel", "--quiet", "--out-dir", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("releaser_ml-*.whl")
    # The build backend, for the composite action's install from its checkout (the
    # runner's pip looks in this folder only).
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheels),
         "hatchling>=1.25"],
        check=True, capture_output=True,
    )  # fmt: skip
    version = wheel.name.split("-")[1]
    venv = base / "venv"
    # No pip of its own: the test environment's pip, seen through the .pth file below,
    # installs into whichever Python runs it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    here = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "deps.pth").write_text(f"{here}\n", encoding="utf-8")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
         "--ignore-installed", "--no-index", str(wheel)],
        check=True, env={"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    yield Release(version, digest, wheels), venv / "bin"


CALLERS = ROOT / "docs" / "github-callers.md"


def caller_examples() -> dict[str, str]:
    """The caller files in docs/github-callers.md, by the file name on their first line."""
    text = CALLERS.read_text(encoding="utf-8")
    found = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# .github/workflows/"):
            found[first.removeprefix("# .github/workflows/")] = block
    return found


def _head(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def runner_for(
    ws: ExampleWorkspace,
    github: GithubStandIn,
    release: tuple[Release, Path],
    tmp_path: Path,
    *,
    event_name: str = "workflow_dispatch",
    pr: int | None = None,
) -> Runner:
    """A runner whose checkout is ``ws`` and whose GitHub API is the stand-in."""
    sha = _head(ws.root)
    event: dict[str, Any] = {"repository": {"full_name": f"{OWNER}/{REPO}"}}
    ref = "refs/heads/main"
    if pr is not None:
        event["pull_request"] = {"number": pr, "head": {"sha": sha}}
        ref = f"refs/pull/{pr}/merge"
    count = len(list(tmp_path.glob("runner-*")))
    return Runner(
        checkout=ws.root,
        python_bin=release[1],
        work=tmp_path / f"runner-{count}",
        release=release[0],
        github={
            "event_name": event_name,
            "event": event,
            "repository": f"{OWNER}/{REPO}",
            "ref": ref,
            "sha": sha,
            "token": TOKEN,
            "api_url": github.base,
            "server_url": "https://github.invalid",
            "run_id": "4242",
            "actor": "octocat",
        },
        env={"NO_COLOR": "1", "COLUMNS": "200", "MPLBACKEND": "Agg"},
    )


def store_secrets(ws: ExampleWorkspace, **extra: str) -> dict[str, str]:
    """The store and registry of ``ws`` (so state outlives each job's copy), plus ``extra``."""
    return {
        "RELEASER_STORE": f"sqlite:///{ws.root / '.releaser' / 'state.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws.root / 'mlflow.db'}",
        **extra,
    }


# Every credential secret the reusable workflows take, each with its own sentinel.
CREDENTIALS = [
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
]


def credential_secrets() -> dict[str, str]:
    """A sentinel per credential secret, and a (sentinel) Google key file's content."""
    found = {name: f"{SENTINEL}-{name}" for name in CREDENTIALS}
    key = {"type": "service_account", "private_key": f"{SENTINEL}-GOOGLE"}
    found["GOOGLE_APPLICATION_CREDENTIALS_JSON"] = json.dumps(key)
    return found


def assert_no_secret_leaked(run: Run, secrets: dict[str, str]) -> None:
    """No secret value (nor the token) in any unmasked log, step output or summary."""
    values = [TOKEN, *(v for v in secrets.values() if v)]
    values += [SENTINEL] if any(SENTINEL in v for v in values) else []
    for value in values:
        for where, text in (
            ("log", run.raw_log),
            ("outputs", run.outputs_files),
            ("summary", run.raw_summary),
        ):
            assert value not in text, f"a secret ({value[:12]}...) is in the {where}"


def assert_credentials_only_where_needed(
    run: Run, releaser_steps: list[str], given: set[str] | None = None
) -> None:
    """The credential variables given (all by default) reach the steps that run releaser,
    and no other step; the Google key's content only the step writing it."""
    given = {*CREDENTIALS, "GOOGLE_APPLICATION_CREDENTIALS"} if given is None else given
    google = "GOOGLE_APPLICATION_CREDENTIALS" in given
    for job in run._all_jobs():
        for step in job.steps:
            if step.outcome == "skipped":
                continue
            if step.name in releaser_steps:
                assert step.env & {*CREDENTIALS, "GOOGLE_APPLICATION_CREDENTIALS"} == given
            else:
                assert step.env & set(CREDENTIALS) == set(), step.name
            writes_key = google and step.name.startswith("Google Cloud key")
            assert ("KEY_JSON" in step.env) == writes_key, step.name


def repository_secrets(ws: ExampleWorkspace) -> dict[str, str]:
    """The secrets of the caller's repository that the doc examples name (and one they don't)."""
    return {
        **store_secrets(ws),
        "MLFLOW_TRACKING_TOKEN": f"{SENTINEL}-mlflow",
        "DVC_AWS_ACCESS_KEY_ID": f"{SENTINEL}-aws-id",
        "DVC_AWS_SECRET_ACCESS_KEY": f"{SENTINEL}-aws-key",
        "DEPLOY_KEY": f"{SENTINEL}-not-passed",  # no example passes it: no step may see it
    }


def assert_not_passed_reached_no_step(run: Run) -> None:
    """A repository secret the caller does not name is in no step's environment or log."""
    assert f"{SENTINEL}-not-passed" not in run.raw_log
    for job in run._all_jobs():
        for step in job.steps:
            assert "DEPLOY_KEY" not in step.env


def test_gate_on_a_pull_request_reports_comments_and_summarises(
    github_ws: ExampleWorkspace, github: GithubStandIn, release: Any, tmp_path: Path
) -> None:
    """The docs' caller file, on a pull request: it calls release-gate.yml."""
    runner = runner_for(github_ws, github, release, tmp_path, event_name="pull_request", pr=7)
    secrets = repository_secrets(github_ws)
    caller = runner.run(caller_examples()["releaser-gate.yml"], secrets)
    assert caller.jobs["gate"].result == "success", caller.log[-4000:]
    run = caller.jobs["gate"].called
    assert run is not None
    gate = run.jobs["gate"]
    assert gate.result == "success", run.log[-4000:]
    assert run.concurrency == f"releaser-gate-{SERVICE}-refs/pull/7/merge"
    assert run.outputs["passed"] == "true"
    assert re.fullmatch(r"[0-9a-f]{16}", run.outputs["release_id"]), run.outputs
    assert "eval gate" in gate.summary.lower(), gate.summary
    [status] = github.commit_statuses
    assert status["context"] == f"releaser/gate/{SERVICE}" and status["state"] == "success"
    [comment] = github.comments[7]
    assert comment["body"].startswith(f"<!-- releaser:{SERVICE} -->")
    assert run.outputs["release_id"] in comment["body"]
    assert_matches_recordings(github.log)
    assert_no_secret_leaked(caller, secrets)
    given = {"MLFLOW_TRACKING_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert_credentials_only_where_needed(caller, GATE_STEPS, given)
    assert_not_passed_reached_no_step(caller)


GATE_STEPS = [
    "Build the release",
    "Run the eval gate",
    "Comment on the pull request (gate report and what changes)",
]


def test_a_failing_gate_fails_the_job_and_still_reports(
    github_ws: ExampleWorkspace, github: GithubStandIn, release: Any, tmp_path: Path
) -> None:
    root = github_ws.root
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace("accuracy: 0.8\n", "accuracy: 0.97\n", 1))
    subprocess.run(["git", "commit", "-qam", "stricter gate"], cwd=root, check=True)
    runner = runner_for(github_ws, github, release, tmp_path, event_name="pull_request", pr=9)
    secrets = {**store_secrets(github_ws), **credential_secrets()}
    run = runner.call(".github/workflows/release-gate.yml", {"service": SERVICE}, secrets)
    gate = run.jobs["gate"]
    assert gate.result == "failure"
    assert run.step("Run the eval gate").outcome == "failure"
    # The comment step runs after the failure (!cancelled()), so reviewers see why.
    assert run.step("Comment on the pull request (gate report and what changes)").outcome == (
        "success"
    )
    assert run.outputs["passed"] != "true" and run.outputs["release_id"]
    assert "::error::accuracy 0.9017 is below the minimum 0.9700" in gate.log
    [status] = github.commit_statuses
    assert status["state"] == "failure"
    [comment] = github.comments[9]
    assert "accuracy 0.9017 is below the minimum 0.9700" in comment["body"], comment["body"]
    assert_matches_recordings(github.log)
    assert_no_secret_leaked(run, secrets)
    assert_credentials_only_where_needed(run, GATE_STEPS)
    # The Google key: a file only the job's user may read, its path in later steps' env.
    (key,) = tmp_path.glob("runner-*/job*-gate/temp/google-application-credentials.json")
    assert key.read_text() == secrets["GOOGLE_APPLICATION_CREDENTIALS_JSON"]
    assert key.stat().st_mode & 0o077 == 0


# --- rollouts ---------------------------------------------------------------------------

HEALTHY = (5000, 50)
BROKEN = (5000, 2500)


def _open(root: Path) -> Any:
    from releaser.api.workspace import open_workspace

    return open_workspace(root)


def _release(root: Path) -> str:
    from releaser.api.releases import create_release

    ws = _open(root)
    try:
        return create_release(ws, SERVICE).release.id
    finally:
        ws.close()


def _metrics(root: Path, candidate: tuple[int, int] = HEALTHY) -> None:
    """One round of metrics for the live step: the baseline healthy, the candidate as given."""
    from releaser.api.rollouts import service_state
    from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
    from releaser.store.base import MetricDelta

    def stats(requests: int, errors: int) -> VariantStats:
        latency = LatencyHistogram.of([150.0] * requests)
        return VariantStats(requests=requests, errors=errors, latency=latency)

    ws = _open(root)
    try:
        record = ws.store.get("rollout", service_state(ws, SERVICE).active_rollout or "")
        assert record is not None
        step = record.value["step"]
        ws.store.add_metrics(
            [
                MetricDelta(record.key, step, "baseline", stats(*HEALTHY)),
                MetricDelta(record.key, step, "candidate", stats(*candidate)),
            ]
        )
    finally:
        ws.close()


def _state(root: Path) -> Any:
    from releaser.api.rollouts import service_state

    ws = _open(root)
    try:
        return service_state(ws, SERVICE)
    finally:
        ws.close()


def _serve_v2(root: Path, message: str, text: tuple[str, str]) -> str:
    cfg = root / "releaser.yaml"
    cfg.write_text(cfg.read_text().replace(*text, 1))
    subprocess.run(["git", "commit", "-qam", message], cwd=root, check=True)
    return _release(root)


def test_rollout_advance_idle_paused_advance_rollback_promote_and_one_click_rollback(
    github_ws: ExampleWorkspace, github: GithubStandIn, release: Any, tmp_path: Path
) -> None:
    from releaser.api import rollouts
    from releaser.api.freeze import freeze_service, unfreeze_service

    root = github_ws.root
    secrets = {**store_secrets(github_ws), **credential_secrets()}

    def advance(environment: str = "production") -> Run:
        runner = runner_for(github_ws, github, release, tmp_path, event_name="schedule")
        inputs = {"service": SERVICE, "environment": environment}
        run = runner.call(".github/workflows/rollout-advance.yml", inputs, secrets)
        assert run.jobs["advance"].result == "success", run.log[-3000:]
        assert run.jobs["advance"].environment == environment
        assert run.concurrency == f"releaser-{SERVICE}-{environment}"
        assert_no_secret_leaked(run, secrets)
        return run

    # The docs' caller file, on its schedule: nothing is live, so the run is idle and green.
    runner = runner_for(github_ws, github, release, tmp_path, event_name="schedule")
    idle_caller = runner.run(
        caller_examples()["releaser-advance.yml"], repository_secrets(github_ws)
    )
    assert idle_caller.jobs["advance"].result == "success", idle_caller.log[-3000:]
    idle = idle_caller.jobs["advance"].called
    assert idle is not None
    assert idle.outputs["decision"] == "idle" and idle.jobs["publish"].result == "skipped"
    assert idle_caller.jobs["advance"].outputs == {"decision": "idle", "freeze": ""}
    assert_not_passed_reached_no_step(idle_caller)

    # r1 serves (made stable at once); r2 (model v2) starts its rollout, in the past.
    r1 = _release(root)
    ws = _open(root)
    try:
        rollouts.start_rollout(
            ws, SERVICE, r1, initial=True, force=True, reason="first",
            now="2025-01-01T00:00:00.000000Z",
        )  # fmt: skip
    finally:
        ws.close()
    r2 = _serve_v2(root, "serve v2", ("alias: champion", "version: 2"))
    ws = _open(root)
    try:
        rollouts.start_rollout(
            ws, SERVICE, r2, force=True, reason="gate not under test",
            now="2025-01-01T01:00:00.000000Z",
        )  # fmt: skip
        rollouts.pause_rollout(ws, SERVICE, reason="drill", now="2025-01-01T01:10:00.000000Z")
    finally:
        ws.close()
    paused = advance("production-eu")  # the input names the GitHub environment too
    assert paused.outputs["decision"] == "paused"
    ws = _open(root)
    try:
        rollouts.resume_rollout(ws, SERVICE, now="2025-01-01T01:20:00.000000Z")
    finally:
        ws.close()

    _metrics(root)
    # A change freeze: the scheduled run holds, stays green and says which freeze held it.
    ws = _open(root)
    try:
        freeze_service(ws, SERVICE, until="2h", reason="release weekend")
    finally:
        ws.close()
    frozen = advance()
    assert frozen.outputs["decision"] == "hold", frozen.log[-3000:]
    assert "release weekend" in frozen.outputs["freeze"], frozen.outputs
    assert "Change freeze" in frozen.jobs["advance"].summary, frozen.jobs["advance"].summary
    ws = _open(root)
    try:
        unfreeze_service(ws, SERVICE, reason="weekend over")
    finally:
        ws.close()
    stepped = advance()
    assert stepped.outputs["freeze"] == ""
    assert stepped.outputs["decision"] == "advance", stepped.log[-3000:]
    assert stepped.jobs["publish"].result == "skipped"
    assert_credentials_only_where_needed(stepped, ["Advance the rollout"])
    [dep] = [d for d in github.deployments if d["payload"]["release_id"] == r2]
    assert github.deployment_statuses[dep["id"]][-1]["state"] == "in_progress"

    _metrics(root, BROKEN)
    rolled = advance()
    assert rolled.outputs["decision"] == "rollback", rolled.log[-3000:]
    assert _state(root).stable == r1 and _state(root).active_rollout is None
    assert github.deployment_statuses[dep["id"]][-1]["state"] == "failure"

    # r3 reaches the last step in the past; the scheduled run promotes it and publishes.
    r3 = _serve_v2(root, "serve v2 again", ("version: 2", "alias: challenger"))
    ws = _open(root)
    try:
        rollouts.start_rollout(
            ws, SERVICE, r3, force=True, reason="gate not under test",
            now="2025-02-01T00:00:00.000000Z",
        )  # fmt: skip
        for hour in range(1, 10):
            record = ws.store.get("rollout", rollouts.service_state(ws, SERVICE).active_rollout)
            if record.value["steps"][record.value["step"]]["name"] == "full":
                break
            ws.close()
            _metrics(root)
            ws = _open(root)
            rollouts.advance_rollout(ws, SERVICE, now=f"2025-02-01T{hour * 5:02d}:00:00.000000Z")
    finally:
        ws.close()
    _metrics(root)
    promoted = advance()
    assert promoted.outputs["decision"] == "promote", promoted.log[-3000:]
    publish = promoted.jobs["publish"]
    assert publish.result == "success", publish.log[-3000:]
    assert publish.environment == "production"
    assert _state(root).stable == r3
    [gh_release] = github.releases
    assert gh_release["tag_name"] == f"{SERVICE}-{r3}"
    assert [a["name"] for a in gh_release["assets"]] == [f"{SERVICE}-handover.zip"]

    # The one-click rollback, from the docs' caller file: back to the last known-good.
    runner = runner_for(github_ws, github, release, tmp_path)
    reason = "errors up; see incident 12"
    repo_secrets = repository_secrets(github_ws)
    caller = runner.run(
        caller_examples()["releaser-rollback.yml"], repo_secrets, {"reason": reason}
    )
    back = caller.jobs["rollback"].called
    assert back is not None
    job = back.jobs["rollback"]
    assert job.result == "success", job.log[-3000:]
    assert job.environment == "production"
    assert back.concurrency == f"releaser-rollback-{SERVICE}-production"
    assert _state(root).stable == r1
    assert_credentials_only_where_needed(back, ["Roll back"], {"MLFLOW_TRACKING_TOKEN"})
    assert_no_secret_leaked(caller, repo_secrets)
    assert_not_passed_reached_no_step(caller)
    assert_matches_recordings(github.log)


def test_prompt_promote_moves_the_alias_with_the_reason(
    github_ws: ExampleWorkspace, github: GithubStandIn, release: Any, tmp_path: Path
) -> None:
    from releaser.api.prompts import register_prompt

    root = github_ws.root
    spec = root / "prompts" / "case-triage-system.yaml"
    spec.write_text(spec.read_text().replace("temperature: 0.1", "temperature: 0.2"))
    ws = _open(root)
    try:
        v2 = register_prompt(ws, spec).version
    finally:
        ws.close()
    runner = runner_for(github_ws, github, release, tmp_path)
    secrets = repository_secrets(github_ws)
    inputs = {"version": str(v2.version), "reason": "hotfix: temperature"}
    caller = runner.run(caller_examples()["releaser-prompt-promote.yml"], secrets, inputs)
    run = caller.jobs["promote"].called
    assert run is not None
    job = run.jobs["promote"]
    assert job.result == "success", job.log[-3000:]
    assert job.environment == "production"
    assert run.concurrency == f"releaser-{SERVICE}-production"
    ws = _open(root)
    try:
        assert ws.prompts.aliases(v2.name)["production"] == v2.version
    finally:
        ws.close()
    assert_credentials_only_where_needed(run, ["Promote the prompt"], {"MLFLOW_TRACKING_TOKEN"})
    assert_no_secret_leaked(caller, secrets)
    assert_not_passed_reached_no_step(caller)
    # A missing required input never reaches a step.
    direct = {"service": SERVICE, "prompt": v2.name, "version": str(v2.version)}
    with pytest.raises(AssertionError, match="required input 'reason' not given"):
        runner.call(".github/workflows/prompt-promote.yml", direct, secrets)


def test_prompt_release_registers_gates_and_starts_the_canary(
    github_ws: ExampleWorkspace, github: GithubStandIn, release: Any, tmp_path: Path
) -> None:
    from releaser.api import rollouts

    root = github_ws.root
    r1 = _release(root)
    ws = _open(root)
    try:
        rollouts.start_rollout(ws, SERVICE, r1, initial=True, force=True, reason="first")
    finally:
        ws.close()
    spec = root / "prompts" / "case-triage-system.yaml"
    spec.write_text(spec.read_text().replace("max_tokens: 300", "max_tokens: 250"))
    subprocess.run(["git", "commit", "-qam", "shorter summaries"], cwd=root, check=True)
    runner = runner_for(github_ws, github, release, tmp_path, event_name="push")
    secrets = repository_secrets(github_ws)
    caller = runner.run(caller_examples()["releaser-prompt-release.yml"], secrets)
    run = caller.jobs["release"].called
    assert run is not None
    job = run.jobs["release"]
    assert job.result == "success", job.log[-3000:]
    assert job.environment == "production"
    assert run.outputs["gate"] == "passed"
    state = _state(root)
    assert run.outputs["rollout_id"] == state.active_rollout
    assert run.outputs["release_id"] not in ("", r1)
    given = {"MLFLOW_TRACKING_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert_credentials_only_where_needed(run, ["Register, gate and start the canary"], given)
    assert_no_secret_leaked(caller, secrets)
    assert_not_passed_reached_no_step(caller)


def test_the_composite_action_in_a_job_of_your_own(
    github_ws: ExampleWorkspace, github: GithubStandIn, release: Any, tmp_path: Path
) -> None:
    """The docs' OIDC example: the harness refuses the cloud login step (it has no cloud),
    naming it; the rest of the file runs, the action installing releaser from its own
    checkout (this repository) and the next step running releaser."""
    import yaml

    from .workflow_files import WorkflowError

    example = caller_examples()["releaser-status.yml"]
    runner = runner_for(github_ws, github, release, tmp_path)
    with pytest.raises(WorkflowError, match=r"step 'Cloud login \(OIDC\)': uses 'aws-actions/"):
        runner.run(example, repository_secrets(github_ws))
    doc = yaml.safe_load(example)
    steps = doc["jobs"]["status"]["steps"]
    doc["jobs"]["status"]["steps"] = [s for s in steps if s.get("name") != "Cloud login (OIDC)"]
    run = runner_for(github_ws, github, release, tmp_path).run(
        yaml.safe_dump(doc, sort_keys=False), repository_secrets(github_ws)
    )
    job = run.jobs["status"]
    assert job.result == "success", job.log[-4000:]
    assert job.environment == "production"
    action = run.step("OWNER/releaser@SHA")
    assert action.outputs == {"version": f"releaser {release[0].version}"}
    assert SERVICE in run.step("Rollout status").log
    assert_no_secret_leaked(run, repository_secrets(github_ws))
    assert_not_passed_reached_no_step(run)


def test_there_is_a_caller_example_per_workflow_and_each_is_valid_and_clean(
    tmp_path: Path,
) -> None:
    """One example per reusable workflow (and the action's); each passes the workflow schema
    and zizmor (with the placeholders replaced by a pinned SHA, as a team would)."""
    from .test_workflows import REUSABLE, _tool
    from .workflow_files import load

    examples = caller_examples()
    called = set()
    for text in examples.values():
        for job in load(text)["jobs"].values():
            if "uses" in job:
                called.add(job["uses"].split("/")[-1].split("@")[0])
    assert called == REUSABLE
    assert any("uses: OWNER/releaser@SHA" in text for text in examples.values())
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    for name, text in examples.items():
        pinned = text.replace("@SHA # vX.Y.Z: pin the release you reviewed", "@SHA # v4.3.1")
        pinned = pinned.replace("@SHA # vX.Y.Z", "@SHA # v1.0.0").replace("@SHA", "@" + "a" * 40)
        (folder / name).write_text(pinned, encoding="utf-8")
    files = [str(p) for p in sorted(folder.glob("*.yml"))]
    res = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", *files], capture_output=True, text=True
    )
    assert res.returncode == 0 and "No findings to report" in res.stdout + res.stderr, (
        res.stdout + res.stderr
    )


def test_the_install_step_fails_on_a_wrong_package_name(
    release: Any, tmp_path: Path, github: GithubStandIn
) -> None:
    """The runner stands in for the pinned commit with this checkout's wheel, found by its
    name: an install step asking for another name (PyPI's unrelated 'releaser') fails."""
    text = (ROOT / ".github" / "workflows" / "rollback.yml").read_text(encoding="utf-8")
    assert text.count('f"releaser-ml=={version}"') == 1
    wrong = tmp_path / "rollback.yml"
    wrong.write_text(text.replace('f"releaser-ml=={version}"', 'f"releaser=={version}"'))
    checkout = tmp_path / "repo"
    checkout.mkdir()
    runner = Runner(
        checkout=checkout,
        python_bin=release[1],
        work=tmp_path / "runner",
        release=release[0],
        github={"event_name": "workflow_dispatch", "repository": f"{OWNER}/{REPO}"},
    )
    run = runner.call(wrong, {"service": SERVICE, "reason": "r"}, {"RELEASER_STORE": "x"})
    assert run.jobs["rollback"].result == "failure"
    assert run.step("Install releaser, pinned").outcome == "failure"
    assert run.step("Roll back").outcome == "skipped"
    assert github.log == []


def test_the_mlflow_token_reaches_the_tracking_server_and_no_log(
    github_ws: ExampleWorkspace,
    github: GithubStandIn,
    release: Any,
    tmp_path: Path,
    mlflow_cli_server: str,
) -> None:
    """The named secret becomes the variable MLflow reads: a real MLflow server, behind a
    proxy that records each request's Authorization header, receives the sentinel token."""
    import threading
    import urllib.error
    import urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {"Content-Type": self.headers.get("Content-Type") or "application/json"}
            request = urllib.request.Request(
                mlflow_cli_server + self.path, data=body, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    status, data = answer.status, answer.read()
            except urllib.error.HTTPError as err:
                status, data = err.code, err.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    token = f"{SENTINEL}-mlflow-token"
    secrets = {
        "RELEASER_STORE": store_secrets(github_ws)["RELEASER_STORE"],
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{proxy.server_port}",
        "MLFLOW_TRACKING_TOKEN": token,
    }
    inputs = {"service": SERVICE, "prompt": "case-triage-system", "version": "1"}
    inputs["reason"] = "token check"
    try:
        runner = runner_for(github_ws, github, release, tmp_path)
        run = runner.call(".github/workflows/prompt-promote.yml", inputs, secrets)
    finally:
        proxy.shutdown()
        proxy.server_close()
    # That server holds no such prompt: the promotion fails, after asking it with the token.
    assert run.step("Promote the prompt").outcome == "failure"
    assert seen and set(seen) == {f"Bearer {token}"}, seen
    # releaser names the tracking server in its "no such prompt" message (GitHub masks it
    # there, as a secret): the URL is left out of the leak check, the token is not.
    assert_no_secret_leaked(run, {k: v for k, v in secrets.items() if k != "MLFLOW_TRACKING_URI"})
