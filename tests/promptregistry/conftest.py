"""Fixtures for the promptregistry suites: real backends, unique names, a real MLflow server.

``backend`` is parametrised over every PromptBackend: the file backend (a fresh
directory per test), MLflow on a sqlite registry, and MLflow over HTTP against a
real MLflow tracking server app in a subprocess. MLflow set-up costs seconds, so
the MLflow backends are shared per session and each test uses unique prompt names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promptregistry import FilePromptBackend, MlflowPromptBackend, PromptSpec
from promptregistry.backend import PromptBackend

HERE = Path(__file__).resolve().parent


def sqlite_uri(path: Path) -> str:
    """An MLflow sqlite URI for an absolute file path."""
    return f"sqlite:///{path.resolve().as_posix()}"


def child_env() -> dict[str, str]:
    """The environment for subprocesses: no inherited MLflow settings, quick HTTP failures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parents[1]), env.get("PYTHONPATH", "")])
    return env


@dataclass
class MlflowServer:
    """A running MLflow tracking server app on 127.0.0.1."""

    url: str
    proc: subprocess.Popen[str]
    log: Path

    def stop(self) -> None:
        """Terminate the server and wait for it to exit."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_mlflow_server(directory: Path) -> MlflowServer:
    """Start MLflow's server app on a sqlite store in ``directory``; returns once it listens."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "server.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "_mlflow_server.py"),
                sqlite_uri(directory / "server.db"),
                str(directory / "artifacts"),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=child_env(),
            cwd=directory,
        )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    if not port.isdigit():
        proc.kill()
        proc.wait()
        raise RuntimeError(f"MLflow server did not start:\n{log.read_text()[-3000:]}")
    return MlflowServer(f"http://127.0.0.1:{port}", proc, log)


@pytest.fixture(scope="session")
def mlflow_sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> MlflowPromptBackend:
    """One MLflow sqlite prompt registry for the whole session (tests use unique names)."""
    directory = tmp_path_factory.mktemp("mlflow")
    return MlflowPromptBackend(sqlite_uri(directory / "mlflow.db"))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One real MLflow tracking server for the whole session."""
    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_http_backend(mlflow_server: MlflowServer) -> MlflowPromptBackend:
    """The MLflow backend talking REST to the session's server."""
    return MlflowPromptBackend(mlflow_server.url)


BACKENDS = ["file", "mlflow", pytest.param("mlflow-http", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> PromptBackend:
    """Every PromptBackend in turn: a fresh file backend, or a shared MLflow one."""
    kind = request.param
    if kind == "file":
        return FilePromptBackend(tmp_path / "registry")
    if kind == "mlflow":
        backend: PromptBackend = request.getfixturevalue("mlflow_sqlite_backend")
        return backend
    backend = request.getfixturevalue("mlflow_http_backend")
    return backend


@pytest.fixture
def name() -> str:
    """A prompt name no other test uses (the MLflow registries are shared)."""
    return f"t-{uuid.uuid4().hex[:12]}"


def _make_spec(name: str, template: str = "Hello {{ who }}!", **fields: Any) -> PromptSpec:
    fields.setdefault("variables", {"who": "str"})
    return PromptSpec(name=name, template=template, **fields)


SpecMaker = Callable[..., PromptSpec]


@pytest.fixture
def make_spec() -> SpecMaker:
    """``make_spec(name, template="Hello {{ who }}!", **fields)``: a valid spec (``who: str``)."""
    return _make_spec


@pytest.fixture
def mlflow_server_factory(tmp_path: Path) -> Iterator[Callable[[], MlflowServer]]:
    """Start private MLflow servers (stopped at the end of the test), e.g. to kill one."""
    started: list[MlflowServer] = []

    def start() -> MlflowServer:
        server = start_mlflow_server(tmp_path / f"server-{len(started)}")
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(name="child_env")
def child_env_fixture() -> dict[str, str]:
    """The environment for subprocesses started by a test."""
    return child_env()
