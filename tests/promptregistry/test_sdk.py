"""The SDK: cached loads, alias moves seen in-process and in another process, outages."""

from __future__ import annotations

import logging
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import promptregistry
from promptregistry import (
    BackendUnavailable,
    Client,
    FileChangeSignal,
    FilePromptBackend,
    LoadedPrompt,
    MlflowPromptBackend,
    PromptRegistry,
    PromptRegistryError,
    PromptSpec,
    PromptVersion,
    RenderError,
)
from promptregistry import sdk as sdk_module

SpecMaker = Callable[..., PromptSpec]
HERE = Path(__file__).resolve().parent
DEADLINE_S = 10.0


class CountingBackend(FilePromptBackend):
    """The real file backend, counting the reads that reach it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: list[tuple[str, int | None, str | None]] = []
        self.lock = threading.Lock()

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> PromptVersion:
        with self.lock:
            self.gets.append((name, version, alias))
        return super().get(name, version=version, alias=alias)


class CountingSignal(FileChangeSignal):
    """The real file signal, counting token reads."""

    reads = 0

    def token(self) -> str:
        self.reads += 1
        return super().token()


def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {timeout} s: {what}")
        time.sleep(0.01)


@pytest.fixture
def registry_dir(tmp_path: Path, make_spec: SpecMaker) -> Path:
    """A file registry with 'greet' v1 and v2, production -> v1."""
    registry = PromptRegistry(FilePromptBackend(tmp_path / "reg"))
    registry.register(make_spec("greet", "Hello {{ who }}!", parameters={"temperature": 0.1}))
    registry.register(make_spec("greet", "Hi {{ who }}!"))
    registry.promote("greet", 1, "production", "launch", "tests")
    return tmp_path / "reg"


@pytest.fixture
def no_default_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests that configure the module-level client leave no trace behind."""
    monkeypatch.setattr(sdk_module, "_default", None)
    yield


def test_load_by_alias_version_and_latest(registry_dir: Path) -> None:
    client = Client(FilePromptBackend(registry_dir))
    by_alias = client.load("greet", alias="production")
    assert isinstance(by_alias, LoadedPrompt)
    assert (by_alias.name, by_alias.version, by_alias.alias) == ("greet", 1, "production")
    assert by_alias.render(who="Ann") == "Hello Ann!"
    assert by_alias.parameters == {"temperature": 0.1}
    assert by_alias.content_hash == by_alias.prompt.content_hash
    assert client.load("greet", version=2).render(who="Bo") == "Hi Bo!"
    assert client.load("greet").version == 2
    with pytest.raises(RenderError, match="missing variable"):
        by_alias.render()
    with pytest.raises(RenderError, match="unexpected variable"):
        by_alias.render(who="x", mood="y")
    with pytest.raises(AttributeError):
        by_alias.version = 3  # type: ignore[misc]


def test_cached_loads_touch_neither_backend_nor_signal(registry_dir: Path, tmp_path: Path) -> None:
    backend = CountingBackend(registry_dir)
    signal = CountingSignal(tmp_path / "signal")
    client = Client(backend, signal=signal, check_interval_ms=60_000, ttl_s=3600)
    first = client.load("greet", alias="production")
    pinned = client.load("greet", version=2)
    for _ in range(10_000):
        assert client.load("greet", alias="production") is first
        assert client.load("greet", version=2) is pinned
    assert backend.gets == [("greet", None, "production"), ("greet", 2, None)]
    assert signal.reads == 1


def test_alias_move_is_seen_after_the_signal_changes(registry_dir: Path, tmp_path: Path) -> None:
    backend = CountingBackend(registry_dir)
    signal = FileChangeSignal(tmp_path / "signal")
    client = Client(backend, signal=signal, check_interval_ms=20, ttl_s=3600)
    assert client.load("greet", alias="production").version == 1
    assert client.load("greet", version=1).version == 1
    registry = PromptRegistry(FilePromptBackend(registry_dir), signal=signal)
    registry.promote("greet", 2, "production", "v2 is better", "tests")
    eventually(lambda: client.load("greet", alias="production").version == 2, "v2 after promote")
    registry.rollback("greet", "production", "v2 is worse", "tests")
    eventually(lambda: client.load("greet", alias="production").version == 1, "v1 after rollback")
    # version entries are immutable: fetched once, whatever the signal says
    assert backend.gets.count(("greet", 1, None)) == 1
    assert client.cached()[("greet", "production", None)] == 1


def test_alias_moves_made_elsewhere_are_seen_after_the_ttl(registry_dir: Path) -> None:
    client = Client(FilePromptBackend(registry_dir), signal=None, ttl_s=0.1)
    assert client.load("greet", alias="production").version == 1
    FilePromptBackend(registry_dir).set_alias("greet", "production", 2)  # no signal bumped
    eventually(lambda: client.load("greet", alias="production").version == 2, "v2 after ttl")


def test_an_unreadable_signal_warns_once_and_falls_back_to_the_ttl(
    registry_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = FileChangeSignal(tmp_path)  # a directory: reading it fails every time
    client = Client(FilePromptBackend(registry_dir), signal=broken, check_interval_ms=1, ttl_s=0.1)
    with caplog.at_level(logging.WARNING, logger="promptregistry"):
        assert client.load("greet", alias="production").version == 1
        FilePromptBackend(registry_dir).set_alias("greet", "production", 2)
        eventually(lambda: client.load("greet", alias="production").version == 2, "v2 by ttl")
    messages = [r.getMessage() for r in caplog.records if r.name == "promptregistry"]
    assert len(messages) == 1 and "cannot read change signal" in messages[0]


def test_backend_down_serves_the_cached_prompt_and_warns_once(
    registry_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = CountingBackend(registry_dir)
    signal = FileChangeSignal(tmp_path / "signal")
    client = Client(backend, signal=signal, check_interval_ms=10, ttl_s=0.05)
    assert client.load("greet", alias="production").version == 1
    assert client.load("greet", version=2).version == 2
    registry_dir.rename(tmp_path / "unmounted")
    signal.bump()
    calls_before = len(backend.gets)
    with caplog.at_level(logging.WARNING, logger="promptregistry"):

        def failed_refreshes() -> bool:
            assert client.load("greet", alias="production").version == 1
            assert client.load("greet", version=2).version == 2
            return len(backend.gets) >= calls_before + 3

        eventually(failed_refreshes, "three failed refreshes")
    warnings = [r for r in caplog.records if r.name == "promptregistry"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "greet@production" in warnings[0].getMessage()
    assert "serving last known version 1" in warnings[0].getMessage()
    with pytest.raises(BackendUnavailable):
        client.load("greet", alias="staging")  # nothing cached to fall back on

    (tmp_path / "unmounted").rename(registry_dir)
    PromptRegistry(FilePromptBackend(registry_dir), signal=signal).promote(
        "greet", 2, "production", "back up", "tests"
    )
    eventually(lambda: client.load("greet", alias="production").version == 2, "recovery")


def test_many_threads_share_one_client(registry_dir: Path, tmp_path: Path) -> None:
    signal = FileChangeSignal(tmp_path / "signal")
    client = Client(FilePromptBackend(registry_dir), signal=signal, check_interval_ms=5)
    registry = PromptRegistry(FilePromptBackend(registry_dir), signal=signal)
    stop = threading.Event()
    last: dict[int, int] = {}  # reader index -> the version it loaded last
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        try:
            while not stop.is_set():
                loaded = client.load("greet", alias="production")
                loaded.render(who="x")
                last[index] = loaded.version
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        eventually(lambda: len(last) == 8 and set(last.values()) == {1}, "every reader on v1")
        for target in (2, 1, 2):
            registry.promote("greet", target, "production", "churn", "tests")
            time.sleep(0.05)
        eventually(lambda: set(last.values()) == {2}, "every reader on v2")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []


def test_module_level_configure_and_load(registry_dir: Path, no_default_client: None) -> None:
    with pytest.raises(PromptRegistryError, match="not configured") as info:
        promptregistry.load("greet", alias="production")
    assert "configure" in (info.value.hint or "")
    client = promptregistry.configure(backend=registry_dir.as_uri())
    assert isinstance(client, Client)
    assert isinstance(client.backend, FilePromptBackend)
    loaded = promptregistry.load("greet", alias="production")
    assert loaded.render(who="Cy") == "Hello Cy!"
    assert promptregistry.load("greet", alias="production") is loaded
    other = Client(FilePromptBackend(registry_dir))  # a second registry coexists
    assert other.load("greet", version=2).version == 2
    assert promptregistry.load("greet", version=2) is not other.load("greet", version=2)


class ChildLoader:
    """A running ``_child_loader.py`` and the versions it reported, read by a thread."""

    def __init__(self, uri: str, signal: Path, name: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_child_loader.py"), uri, str(signal), name, "production"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.versions: list[int] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def wait_for(self, version: int, timeout: float) -> None:
        """Wait until the child reports ``version`` (READY or a change line)."""
        deadline = time.monotonic() + timeout
        while not self.versions or self.versions[-1] != version:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""  # type: ignore[union-attr]
                pytest.fail(f"child saw {self.versions}, never {version}; stderr:\n{err}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            self.versions.append(int(line.split()[-1]))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=15)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "mlflow"])
def test_another_process_sees_promote_and_rollback(
    kind: str,
    tmp_path: Path,
    name: str,
    make_spec: SpecMaker,
    child_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    backend: Any
    if kind == "file":
        backend = FilePromptBackend(tmp_path / "reg")
        uri = (tmp_path / "reg").as_uri()
    else:
        backend = request.getfixturevalue("mlflow_sqlite_backend")
        uri = backend.registry_uri
    signal = FileChangeSignal(tmp_path / "signal")
    registry = PromptRegistry(backend, signal=signal)
    registry.register(make_spec(name, "one {{ who }}"))
    registry.register(make_spec(name, "two {{ who }}"))
    registry.promote(name, 1, "production", "launch", "tests")

    def mlflow_agrees(version: int) -> None:
        if isinstance(backend, MlflowPromptBackend):
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            uri_ref = f"prompts:/{name}@production"
            assert client.load_prompt(uri_ref, cache_ttl_seconds=0).version == version

    child = ChildLoader(uri, tmp_path / "signal", name, child_env)
    try:
        child.wait_for(1, timeout=60)  # start-up (MLflow's import alone takes seconds)
        mlflow_agrees(1)
        registry.promote(name, 2, "production", "v2", "tests")
        child.wait_for(2, timeout=DEADLINE_S)
        mlflow_agrees(2)
        registry.rollback(name, "production", "v2 misbehaves", "tests")
        child.wait_for(1, timeout=DEADLINE_S)
        mlflow_agrees(1)
    finally:
        child.stop()
    assert child.versions == [1, 2, 1]


@pytest.mark.slow
def test_dead_mlflow_server_serves_the_cached_prompt(
    mlflow_server_factory: Callable[[], Any],
    make_spec: SpecMaker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    server = mlflow_server_factory()
    backend = MlflowPromptBackend(server.url)
    signal = FileChangeSignal(tmp_path / "signal")
    registry = PromptRegistry(backend, signal=signal)
    registry.register(make_spec("greet"))
    registry.promote("greet", 1, "production", "launch", "tests")
    client = Client(backend, signal=signal, check_interval_ms=10, ttl_s=0.05)
    loaded = client.load("greet", alias="production")
    server.stop()
    signal.bump()
    with caplog.at_level(logging.WARNING, logger="promptregistry"):

        def refresh_failed() -> bool:
            assert client.load("greet", alias="production") is loaded
            return any(r.name == "promptregistry" for r in caplog.records)

        eventually(refresh_failed, "a refresh failure")
        for _ in range(100):
            assert client.load("greet", alias="production") is loaded
            time.sleep(0.005)
    messages = [r.getMessage() for r in caplog.records if r.name == "promptregistry"]
    assert len(messages) == 1
    assert "MLflow prompt registry" in messages[0] and "serving last known version 1" in messages[0]
    with pytest.raises(BackendUnavailable):
        Client(backend).load("greet", alias="production")
