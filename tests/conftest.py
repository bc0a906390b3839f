"""Shared fixtures: a CLI runner over the real entry point, git identity, env hygiene."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from releaser.config.template import render_init_template
from releaser.demo.workspace import ExampleWorkspace, build_example_workspace, copy_workspace

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace


@dataclass
class CliResult:
    """What a user sees: the exit code and both streams."""

    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test inherits the developer's store, MLflow server or CI variables."""
    for var in list(os.environ):
        if var.startswith(("GITHUB_", "RELEASER_", "MLFLOW_")) and var not in (
            "RELEASER_TEST_POSTGRES_DSN",
            "RELEASER_TEST_DOCKER_HOST",
        ):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "releaser tests")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "tests@releaser.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "releaser tests")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "tests@releaser.invalid")
    monkeypatch.setenv("RELEASER_ACTOR", "tester")
    yield


@pytest.fixture(scope="session", autouse=True)
def _dvc_logs_outside_test_capture() -> None:
    """Import DVC before any test captures output.

    DVC binds its log handlers to ``sys.stdout`` when first imported. Imported
    inside a test using ``capsys`` (the ``cli`` fixture), they would keep that
    test's capture stream, closed when the test ends, and a later test's DVC
    log line would fail.
    """
    import dvc  # noqa: F401


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., CliResult]:
    """Run ``releaser ARGS`` in-process through the real entry point, from ``cwd``."""
    from releaser.cli import run

    def invoke(*args: str, cwd: Path | None = None) -> CliResult:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        code = run(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture(scope="session")
def example_workspace(tmp_path_factory: pytest.TempPathFactory) -> ExampleWorkspace:
    """The example workspace, built once per test process; treat it as read-only.

    Two registered model versions (``champion`` -> 1, ``challenger`` -> 2), the
    golden and training sets tracked by DVC and pushed to the local remote, and
    the ``releaser init`` template as its releaser.yaml. MLflow stores artifact
    locations as absolute paths, so a copy's ``mlflow.db`` still points at this
    workspace's ``mlruns``: reading model files works, registry writes (tags,
    aliases) go to the copy's own ``mlflow.db``, and tests must not delete
    artifacts. The DVC remote is relative, so each copy has its own.
    """
    dest = tmp_path_factory.mktemp("example") / "ws"
    return build_example_workspace(
        dest, config_text=render_init_template("council-casework", "case-triage"), model_versions=2
    )


@pytest.fixture
def workspace_copy(example_workspace: ExampleWorkspace, tmp_path: Path) -> ExampleWorkspace:
    """A private copy of the example workspace that a test may change."""
    return copy_workspace(example_workspace, tmp_path / "ws")


@pytest.fixture(scope="session")
def prompted_workspace(
    example_workspace: ExampleWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> ExampleWorkspace:
    """The example workspace with its prompt registered and promoted to ``production``.

    Read-only like ``example_workspace``; its store holds the audited alias move.
    """
    from releaser.api.prompts import promote_prompt, register_prompt
    from releaser.api.workspace import open_workspace
    from releaser.demo.workspace import PROMPT_PATH

    example = copy_workspace(example_workspace, tmp_path_factory.mktemp("prompted") / "ws")
    ws = open_workspace(example.root)
    try:
        pv = register_prompt(ws, example.root / PROMPT_PATH).version
        promote_prompt(ws, pv.name, pv.version, "production", "first version")
    finally:
        ws.close()
    return example


OWNER_EMAILS = {
    "priya": "priya.shah@example.org",
    "tom": "tom.okafor@example.org",
    "sam": "sam.reid@example.org",
    "alex": "dpo@example.org",
}
"""The owners of the ``releaser init`` template, by first name."""


@dataclass(frozen=True)
class OwnerKeys:
    """Real ed25519 keys made by ssh-keygen: one per template owner, and mallory's."""

    folder: Path

    def key(self, who: str) -> Path:
        """The private key file of ``who`` (priya, tom, sam, alex or mallory)."""
        return self.folder / who

    def public(self, who: str) -> str:
        """The public key line of ``who``."""
        return (self.folder / f"{who}.pub").read_text(encoding="utf-8").strip()

    def enrol(self, root: Path, who: list[str], *, commit: bool = True) -> None:
        """List each person's public key under their owners entry in ``root/releaser.yaml``."""
        import subprocess

        config = root / "releaser.yaml"
        text = config.read_text(encoding="utf-8")
        for name in who:
            line = f"    email: {OWNER_EMAILS[name]}\n"
            assert line in text, f"no owner {name} in {config}"
            text = text.replace(line, f'{line}    ssh_keys: ["{self.public(name)}"]\n', 1)
        config.write_text(text, encoding="utf-8")
        if commit:
            subprocess.run(["git", "add", "releaser.yaml"], cwd=root, check=True)
            subprocess.run(
                ["git", "commit", "-q", "--no-verify", "-m", "Owners' signing keys"],
                cwd=root,
                check=True,
            )


@pytest.fixture(scope="session")
def owner_keys(tmp_path_factory: pytest.TempPathFactory) -> OwnerKeys:
    """Signing keys for the template's owners (and mallory, whom no owner entry lists)."""
    import subprocess

    folder = tmp_path_factory.mktemp("owner-keys")
    for who in (*OWNER_EMAILS, "mallory"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f", str(folder / who)],
            check=True,
        )
    return OwnerKeys(folder)


@pytest.fixture
def release_ws(prompted_workspace: ExampleWorkspace, tmp_path: Path) -> ExampleWorkspace:
    """A private copy of ``prompted_workspace`` that a test may change (releases, data)."""
    return copy_workspace(prompted_workspace, tmp_path / "ws")


def serve_model_version(root: Path, version: int = 2) -> None:
    """Make the example service's model a pinned ``version`` (not the ``champion`` alias) in
    releaser.yaml and commit it, so the next release is a candidate with another model."""
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8").replace("alias: champion", f"version: {version}", 1)
    cfg.write_text(text, encoding="utf-8")
    subprocess.run(["git", "commit", "-qam", f"serve model v{version}"], cwd=root, check=True)


def gated_release(ws: Workspace, service: str) -> str:
    """A new release of ``service`` from the checkout as it is, through a passing gate."""
    from releaser.api.gates import run_gate
    from releaser.api.releases import create_release

    rid = create_release(ws, service).release.id
    assert run_gate(ws, service, rid).passed
    return rid


def stable_and_candidate(root: Path, service: str, now: str) -> tuple[Workspace, str, str]:
    """r1 gated and made stable at ``now``, then r2 (model v2) gated and not started: an
    open workspace (the caller closes it), r1 and r2."""
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace

    ws = open_workspace(root)
    try:
        r1 = gated_release(ws, service)
        start_rollout(ws, service, r1, initial=True, now=now)
    finally:
        ws.close()
    serve_model_version(root)
    ws = open_workspace(root)
    return ws, r1, gated_release(ws, service)


def free_port() -> int:
    """A local TCP port nothing listens on (at the time of asking)."""
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (one worker, no job runner) on a sqlite store; its URL."""
    directory = tmp_path_factory.mktemp("mlflow-cli-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = directory / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{(directory / 'server.db').as_posix()}",
                "--default-artifact-root",
                (directory / "artifacts").as_uri(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=directory,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
