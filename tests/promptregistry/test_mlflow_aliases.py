"""The light alias client against the real MLflow: a sqlite registry and a real `mlflow server`.

Every move made by the light client is read back with ``MlflowClient`` and the
other way round, so both sides agree on the tables and the REST calls. The
answers the light client must not give (unknown model or version, an
unverified schema, a locked database) are checked to hand the call back
(NeedsMlflow) without writing anything.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from promptregistry.mlflow_aliases import (
    VERIFIED_REVISIONS,
    AliasClient,
    HttpAliasClient,
    NeedsMlflow,
    RegistryUnreachable,
    SqliteAliasClient,
    alias_client,
)
from promptregistry.mlflow_light_http import _header_plugins
from tests.conftest import free_port
from tests.promptregistry.conftest import sqlite_uri

pytestmark = pytest.mark.slow


@dataclass
class Registry:
    """An MLflow registry both clients talk to: its URI and the light client for it."""

    uri: str
    light: AliasClient

    def mlflow(self) -> Any:
        """A fresh MlflowClient on the same registry."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def aliases(self, name: str) -> dict[str, int]:
        """The model's aliases as MlflowClient reads them (over REST versions are strings)."""
        model = self.mlflow().get_registered_model(name)
        return {alias: int(v) for alias, v in model.aliases.items()}

    def model(self, versions: int = 2) -> str:
        """A new registered model with ``versions`` versions; its (unique) name."""
        name = f"m-{uuid.uuid4().hex[:8]}"
        client = self.mlflow()
        client.create_registered_model(name)
        for _ in range(versions):
            client.create_model_version(name, source="s3://example-bucket/model", run_id=None)
        return name


@pytest.fixture(scope="module")
def sqlite_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A real MLflow sqlite registry, its tables created by MLflow itself."""
    db = tmp_path_factory.mktemp("light-sqlite") / "mlflow.db"
    uri = sqlite_uri(db)
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return Registry(uri, SqliteAliasClient(db))


@pytest.fixture(scope="module")
def server_registry(mlflow_cli_server: str) -> Registry:
    """The session's real `mlflow server`."""
    return Registry(mlflow_cli_server, HttpAliasClient(mlflow_cli_server))


@pytest.fixture(params=["sqlite", "server"])
def registry(request: pytest.FixtureRequest) -> Registry:
    """Each registry in turn."""
    found: Registry = request.getfixturevalue(f"{request.param}_registry")
    return found


class TestAgreesWithMlflow:
    def test_light_set_is_what_mlflow_reads(self, registry: Registry) -> None:
        name = registry.model()
        registry.light.set_alias(name, "production", 2)
        assert registry.aliases(name) == {"production": 2}
        assert int(registry.mlflow().get_model_version_by_alias(name, "production").version) == 2
        registry.light.set_alias(name, "production", 1)  # moves, not adds
        assert registry.aliases(name) == {"production": 1}

    def test_mlflow_set_is_what_light_reads(self, registry: Registry) -> None:
        name = registry.model()
        assert registry.light.model(name).aliases == {}
        registry.mlflow().set_registered_model_alias(name, "champion", "2")
        assert registry.light.model(name).aliases == {"champion": 2}
        registry.mlflow().set_registered_model_alias(name, "champion", "1")
        assert registry.light.model(name).aliases == {"champion": 1}

    def test_delete_alias(self, registry: Registry) -> None:
        name = registry.model()
        registry.mlflow().set_registered_model_alias(name, "staging", "1")
        registry.light.delete_alias(name, "staging")
        assert registry.aliases(name) == {}
        registry.light.delete_alias(name, "staging")  # already gone: nothing to do

    def test_tags_both_ways(self, registry: Registry) -> None:
        name = registry.model(versions=1)
        registry.light.set_tag(name, "team.owner", "ops")
        assert registry.mlflow().get_registered_model(name).tags == {"team.owner": "ops"}
        registry.mlflow().set_registered_model_tag(name, "other", "x")
        assert registry.light.model(name).tags == {"team.owner": "ops", "other": "x"}
        registry.light.delete_tag(name, "team.owner")
        registry.light.delete_tag(name, "team.owner")  # already gone: nothing to do
        assert registry.mlflow().get_registered_model(name).tags == {"other": "x"}

    def test_unknown_model_or_version_is_left_to_mlflow(self, registry: Registry) -> None:
        name = registry.model()
        with pytest.raises(NeedsMlflow):
            registry.light.model(f"{name}-nope")
        with pytest.raises(NeedsMlflow):
            registry.light.set_alias(name, "production", 9)
        with pytest.raises(NeedsMlflow):
            registry.light.set_alias(f"{name}-nope", "production", 1)
        with pytest.raises(NeedsMlflow):
            registry.light.delete_alias(f"{name}-nope", "production")
        assert registry.aliases(name) == {}

    @pytest.mark.parametrize("alias", ["latest", "v3", "bad alias", ""])
    def test_aliases_mlflow_refuses_are_left_to_mlflow(
        self, registry: Registry, alias: str
    ) -> None:
        with pytest.raises(NeedsMlflow):
            registry.light.set_alias("any-model", alias, 1)

    def test_a_deleted_version_cannot_be_aliased(self, registry: Registry) -> None:
        name = registry.model()
        registry.mlflow().delete_model_version(name, "2")
        with pytest.raises(NeedsMlflow):
            registry.light.set_alias(name, "production", 2)
        assert registry.aliases(name) == {}


class TestSqliteRefuses:
    def test_the_schema_is_checked_first(self, sqlite_registry: Registry, tmp_path: Path) -> None:
        name = sqlite_registry.model()
        assert isinstance(sqlite_registry.light, SqliteAliasClient)
        copy = tmp_path / "copy.db"
        with closing(sqlite3.connect(sqlite_registry.light.path)) as a:
            with closing(sqlite3.connect(copy)) as b:
                a.backup(b)
        with closing(sqlite3.connect(copy)) as conn, conn:
            assert {r for (r,) in conn.execute("SELECT version_num FROM alembic_version")} <= (
                VERIFIED_REVISIONS
            )
            conn.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
        with pytest.raises(NeedsMlflow, match="not a verified revision"):
            SqliteAliasClient(copy).set_alias(name, "production", 1)

    def test_a_missing_file_is_not_created(self, tmp_path: Path) -> None:
        with pytest.raises(NeedsMlflow):
            SqliteAliasClient(tmp_path / "nope.db").model("m")
        assert not (tmp_path / "nope.db").exists()

    def test_not_a_database(self, tmp_path: Path) -> None:
        (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(NeedsMlflow):
            SqliteAliasClient(tmp_path / "junk.db").model("m")

    def test_a_writer_holding_the_lock_is_waited_for_then_left_to_mlflow(
        self, sqlite_registry: Registry
    ) -> None:
        name = sqlite_registry.model()
        assert isinstance(sqlite_registry.light, SqliteAliasClient)
        path = sqlite_registry.light.path
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(NeedsMlflow, match="locked"):
                SqliteAliasClient(path, busy_timeout_s=0.2).set_alias(name, "production", 1)
            other.execute("ROLLBACK")
        assert sqlite_registry.aliases(name) == {}


class TestChoice:
    def test_by_scheme(self, tmp_path: Path) -> None:
        assert isinstance(alias_client("http://mlflow:5000"), HttpAliasClient)
        assert isinstance(alias_client("https://mlflow.example.org/"), HttpAliasClient)
        assert isinstance(alias_client(sqlite_uri(tmp_path / "m.db")), SqliteAliasClient)
        for other in ("databricks", "postgresql://u@h/db", "file:///tmp/mlruns", "sqlite://"):
            assert alias_client(other) is None, other

    @pytest.mark.parametrize(
        "var", ["MLFLOW_TRACKING_AUTH", "MLFLOW_ENABLE_WORKSPACES", "MLFLOW_WORKSPACE"]
    )
    def test_settings_only_mlflow_handles(self, monkeypatch: pytest.MonkeyPatch, var: str) -> None:
        monkeypatch.setenv(var, "true")
        assert alias_client("http://mlflow:5000") is None


class _Recorder(BaseHTTPRequestHandler):
    """Answers registered-models/get for model ``m`` and records each Authorization header."""

    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen.append(self.headers.get("Authorization"))
        if "name=moved" in self.path:  # a redirect, to this same server
            self.send_response(302)
            self.send_header("Location", self.path.replace("moved", "m"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if "name=cut" in self.path:  # an answer cut short
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"registered')
            self.close_connection = True
            return
        aliases = [{"alias": "production", "version": "3"}]
        body = json.dumps({"registered_model": {"name": "m", "aliases": aliases}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    """A local HTTP server that records what the light client sends; its base URL."""
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class TestHttpAuth:
    def test_bearer_token(self, recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
        monkeypatch.setenv("HOME", "/nonexistent")
        assert HttpAliasClient(recorder).model("m").aliases == {"production": 3}
        assert _Recorder.seen == ["Bearer tok-123"]

    def test_basic_from_the_environment_wins_over_a_token(
        self, recorder: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret")
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
        monkeypatch.setenv("HOME", "/nonexistent")
        HttpAliasClient(recorder).model("m")
        assert _Recorder.seen == ["Basic " + base64.b64encode(b"ana:s3cret").decode()]

    def test_credentials_file(
        self, recorder: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / ".mlflow").mkdir()
        (tmp_path / ".mlflow" / "credentials").write_text(
            "[mlflow]\nmlflow_tracking_username = bo\nmlflow_tracking_password = pw\n"
        )
        monkeypatch.setenv("HOME", str(tmp_path))
        HttpAliasClient(recorder).model("m")
        assert _Recorder.seen == ["Basic " + base64.b64encode(b"bo:pw").decode()]

    def test_user_and_password_in_the_uri(
        self, recorder: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HOME", "/nonexistent")
        HttpAliasClient(recorder.replace("http://", "http://cy:p%40ss@")).model("m")
        assert _Recorder.seen == ["Basic " + base64.b64encode(b"cy:p@ss").decode()]

    def test_no_credentials(self, recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HOME", "/nonexistent")
        HttpAliasClient(recorder).model("m")
        assert _Recorder.seen == [None]


def test_a_request_header_plugin_leaves_the_call_to_mlflow(
    recorder: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An installed distribution whose entry point adds headers (say, single sign-on).
    dist = tmp_path / "sso_headers-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sso-headers\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[mlflow.request_header_provider]\nsso = sso_headers:Provider\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _header_plugins.cache_clear()
    try:
        with pytest.raises(NeedsMlflow, match="plugin"):
            HttpAliasClient(recorder).model("m")
        assert _Recorder.seen == []
    finally:
        _header_plugins.cache_clear()


def test_a_redirect_is_left_to_mlflow_and_the_credentials_are_not_followed(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(NeedsMlflow, match="HTTP 302"):
        HttpAliasClient(recorder).model("moved")
    assert _Recorder.seen == ["Bearer tok-123"]  # one request: the redirect was not followed


def test_an_answer_cut_short_is_unreachable(recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(RegistryUnreachable):
        HttpAliasClient(recorder).model("cut")


def test_a_dead_server_is_unreachable_without_the_token_in_the_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-secret-123")
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnreachable) as info:
        HttpAliasClient(f"http://127.0.0.1:{port}", timeout_s=2).set_alias("m", "production", 1)
    assert "refused" in info.value.detail.lower()
    assert "tok-secret-123" not in info.value.detail


PROMPT_CHILD = textwrap.dedent(
    """
    import json, sys
    from promptregistry.errors import PromptNotFound
    from promptregistry.mlflow_backend import MlflowPromptBackend
    uri, name = sys.argv[1], sys.argv[2]
    backend = MlflowPromptBackend(uri)
    before = backend.aliases(name)
    backend.set_alias(name, "production", 1, reason="first", actor="ops")
    backend.set_alias(name, "production", 2, reason="better", actor="ops")
    backend.set_alias(name, "staging", 2, reason="try", actor="ops")
    backend.delete_alias(name, "staging", reason="done", actor="ops")
    after = backend.aliases(name)
    read = backend.get(name, version=2).model_dump(mode="json")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "mlflow")
    try:
        backend.set_alias(name, "production", 9, reason="typo", actor="ops")
        error = None
    except PromptNotFound as exc:
        error = exc.message
    out = {"before": before, "after": after, "mlflow": loaded, "error": error, "read": read}
    print(json.dumps(out))
    """
)


def test_prompt_reads_and_alias_moves_need_no_mlflow_and_mlflow_sees_them(
    registry: Registry, make_spec: Any, child_env: dict[str, str]
) -> None:
    from promptregistry import MlflowPromptBackend

    name = f"p-{uuid.uuid4().hex[:8]}"
    backend = MlflowPromptBackend(registry.uri)
    backend.register(make_spec(name, "Hi {{ who }}"))
    backend.register(make_spec(name, "Hello {{ who }}"))
    done = subprocess.run(
        [sys.executable, "-c", PROMPT_CHILD, registry.uri, name],
        capture_output=True,
        text=True,
        env=child_env,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["before"] == {} and out["after"] == {"production": 2}
    assert out["mlflow"] == [], "the alias moves imported mlflow"
    # The version read without MLflow is the one MLflow's own conversion gives.
    through_mlflow = backend._convert(registry.mlflow().get_prompt_version(name, 2))
    assert out["read"] == through_mlflow.model_dump(mode="json")
    # A missing version is refused in MlflowClient's words (the light client hands it back).
    assert out["error"] and "no version 9" in out["error"] and "1, 2" in out["error"]
    # MLflow reads what the light client wrote: the alias and the history tags.
    assert int(registry.mlflow().get_prompt_version_by_alias(name, "production").version) == 2
    moves = backend.alias_history(name, "production")
    assert [(m.from_version, m.to_version, m.reason) for m in moves] == [
        (None, 1, "first"),
        (1, 2, "better"),
    ]
    staging = backend.alias_history(name, "staging")
    assert [(m.to_version, m.action) for m in staging] == [(2, "promote"), (None, "delete")]


def test_a_prompt_version_reads_the_same_with_or_without_mlflow(
    registry: Registry, make_spec: Any
) -> None:
    from promptregistry import MlflowPromptBackend

    name = f"p-{uuid.uuid4().hex[:8]}"
    backend = MlflowPromptBackend(registry.uri)
    spec = make_spec(name, "Hi {{ who }}", parameters={"temperature": 0.2}, metadata={"t": "x"})
    backend.register(spec)
    backend.set_alias(name, "production", 1, reason="r", actor="a")
    light = backend._light_version(name, 1)
    assert light is not None, "the light client did not read the version"
    assert backend._convert(light) == backend._convert(
        registry.mlflow().get_prompt_version(name, 1)
    )
    assert backend._light_version(name, 2) is None  # missing: MlflowClient says so
    # A version registered with MLflow alone has none of our tags: MLflow converts it.
    registry.mlflow().register_prompt(name=name, template="Hey {{who}}")
    assert backend._light_version(name, 2) is None
    assert backend.get(name, version=2).variables == {"who": "str"}
