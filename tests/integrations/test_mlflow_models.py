"""MlflowModelRegistry against a real MLflow sqlite registry, and a dead or failing server."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import ArtifactNotFound, BadInput, ExternalUnavailable
from releaser.integrations.mlflow_models import (
    MlflowModelRegistry,
    ModelRegistry,
    resolve_tracking_uri,
)
from tests.conftest import free_port


def _registry(ws: ExampleWorkspace) -> MlflowModelRegistry:
    return MlflowModelRegistry(ws.tracking_uri)


def _client(ws: ExampleWorkspace):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.tracking_uri)


@pytest.mark.slow
class TestResolve:
    def test_by_alias(self, example_workspace: ExampleWorkspace) -> None:
        ref = _registry(example_workspace).resolve("case-triage", alias="champion")
        mv = _client(example_workspace).get_model_version("case-triage", "1")
        assert (ref.name, ref.version, ref.alias) == ("case-triage", 1, "champion")
        assert ref.model_uri == "models:/case-triage/1"
        assert ref.run_id == mv.run_id
        assert ref.source == mv.source

    def test_signature_is_json_ready(self, example_workspace: ExampleWorkspace) -> None:
        ref = _registry(example_workspace).resolve("case-triage", alias="champion")
        assert ref.signature is not None
        assert ref.signature["inputs"] == [{"type": "string", "name": "text", "required": True}]
        assert ref.signature["outputs"][0]["type"] == "string"
        assert ref.model_dump(mode="json")["signature"] == ref.signature

    def test_by_version_has_no_alias(self, example_workspace: ExampleWorkspace) -> None:
        ref = _registry(example_workspace).resolve("case-triage", version=2)
        assert (ref.version, ref.alias) == (2, None)
        assert ref.model_uri == "models:/case-triage/2"
        assert ref.run_id != _registry(example_workspace).resolve("case-triage", version=1).run_id

    def test_neither_gives_the_highest_version(self, example_workspace: ExampleWorkspace) -> None:
        assert _registry(example_workspace).resolve("case-triage").version == 2

    def test_alias_and_matching_version(self, example_workspace: ExampleWorkspace) -> None:
        ref = _registry(example_workspace).resolve("case-triage", alias="challenger", version=2)
        assert (ref.version, ref.alias) == (2, "challenger")

    def test_alias_and_other_version_is_refused(self, example_workspace: ExampleWorkspace) -> None:
        with pytest.raises(BadInput, match="points at version 1, not 2"):
            _registry(example_workspace).resolve("case-triage", alias="champion", version=2)

    def test_unknown_alias_lists_aliases_and_versions(
        self, example_workspace: ExampleWorkspace
    ) -> None:
        with pytest.raises(ArtifactNotFound) as info:
            _registry(example_workspace).resolve("case-triage", alias="production")
        message = str(info.value)
        assert "no alias 'production'" in message
        assert "challenger -> 2" in message and "champion -> 1" in message
        assert "versions: 1, 2" in message
        assert info.value.hint

    def test_unknown_version_lists_versions(self, example_workspace: ExampleWorkspace) -> None:
        with pytest.raises(ArtifactNotFound, match=r"no version 9; versions: 1, 2"):
            _registry(example_workspace).resolve("case-triage", version=9)

    def test_unknown_model_suggests_names(self, example_workspace: ExampleWorkspace) -> None:
        with pytest.raises(ArtifactNotFound) as info:
            _registry(example_workspace).resolve("case-triag", alias="champion")
        message = str(info.value)
        assert "no registered model named 'case-triag'" in message
        assert "did you mean 'case-triage'?" in message

    def test_no_mlflow_settings_leak_into_the_environment(
        self, example_workspace: ExampleWorkspace
    ) -> None:
        _registry(example_workspace).resolve("case-triage", alias="champion")
        assert not [k for k in os.environ if k.startswith("MLFLOW_")]

    def test_resolves_from_a_copy_of_the_workspace(self, workspace_copy: ExampleWorkspace) -> None:
        # The copy's registry still names the original's artifact folder (absolute paths).
        ref = _registry(workspace_copy).resolve("case-triage", alias="champion")
        assert ref.signature is not None


@pytest.mark.slow
class TestWrites:
    def test_tag_version_is_visible_to_mlflow(self, workspace_copy: ExampleWorkspace) -> None:
        registry = _registry(workspace_copy)
        ref = registry.resolve("case-triage", alias="champion")
        registry.tag_version(ref, "releaser.release_id", "abc123")
        mv = _client(workspace_copy).get_model_version("case-triage", "1")
        assert mv.tags["releaser.release_id"] == "abc123"

    def test_set_and_get_alias(self, workspace_copy: ExampleWorkspace) -> None:
        registry = _registry(workspace_copy)
        assert registry.get_alias("case-triage", "champion") == 1
        assert registry.get_alias("case-triage", "production") is None
        registry.set_alias("case-triage", "champion", 2)
        registry.set_alias("case-triage", "champion", 2)  # idempotent
        assert registry.get_alias("case-triage", "champion") == 2
        assert _client(workspace_copy).get_registered_model("case-triage").aliases == {
            "champion": 2,
            "challenger": 2,
        }

    def test_alias_to_a_missing_version_is_refused(self, workspace_copy: ExampleWorkspace) -> None:
        with pytest.raises(ArtifactNotFound, match="no version 5"):
            _registry(workspace_copy).set_alias("case-triage", "champion", 5)

    def test_alias_of_an_unknown_model(self, workspace_copy: ExampleWorkspace) -> None:
        with pytest.raises(ArtifactNotFound, match="no registered model named 'nope'"):
            _registry(workspace_copy).get_alias("nope", "champion")


@pytest.mark.slow
class TestLogRun:
    @staticmethod
    def _log(registry: MlflowModelRegistry, artifacts: str, **kw: object) -> str:
        args: dict[str, object] = {
            "artifact_location": artifacts,
            "run_name": "gate-r1",
            "tags": {"releaser.gate": "passed"},
            "metrics": {"accuracy": 0.9, "errors": 0.0},
            "params": {"dataset": "data/golden.csv"},
            "files": {"gate_report.md": "# Gate\n", "gate_report.json": "{}"},
        }
        return registry.log_run("gates", **(args | kw))  # type: ignore[arg-type]

    def test_a_finished_run_with_everything(
        self, workspace_copy: ExampleWorkspace, tmp_path: Path
    ) -> None:
        registry = _registry(workspace_copy)
        first = self._log(registry, (tmp_path / "runs").as_uri())
        second = self._log(registry, (tmp_path / "runs").as_uri(), run_name="gate-r2")
        client = _client(workspace_copy)
        run = client.get_run(first)
        assert run.info.status == "FINISHED" and run.info.end_time is not None
        assert run.info.run_name == "gate-r1"
        assert run.data.tags["releaser.gate"] == "passed"
        assert run.data.metrics == {"accuracy": 0.9, "errors": 0.0}
        assert run.data.params == {"dataset": "data/golden.csv"}
        assert {a.path for a in client.list_artifacts(first)} == {
            "gate_report.md",
            "gate_report.json",
        }
        local = Path(run.info.artifact_uri.removeprefix("file://"))
        assert (local / "gate_report.md").read_text() == "# Gate\n"
        assert local.is_relative_to(tmp_path / "runs")
        # The second run lands in the same experiment, created once.
        assert client.get_run(second).info.experiment_id == run.info.experiment_id
        assert len([e for e in client.search_experiments() if e.name == "gates"]) == 1

    def test_a_run_that_loses_the_race_to_create_the_experiment_uses_the_winners(
        self, workspace_copy: ExampleWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The interleaving two processes can produce, replayed in order with two real
        # registries: the loser looks the experiment up and finds none, the winner then
        # creates it (and logs its run), and the loser's create is refused as a duplicate.
        artifacts = (tmp_path / "runs").as_uri()
        winner, loser = _registry(workspace_copy), _registry(workspace_copy)
        won: list[str] = []
        real_lookup = loser.client.get_experiment_by_name

        def lookup_then_lose(name: str) -> object:
            found = real_lookup(name)
            if found is None and not won:
                won.append(self._log(winner, artifacts))
            return found

        monkeypatch.setattr(loser.client, "get_experiment_by_name", lookup_then_lose)
        lost = self._log(loser, artifacts)
        client = _client(workspace_copy)
        assert client.get_run(lost).info.experiment_id == client.get_run(won[0]).info.experiment_id

    def test_an_experiment_deleted_meanwhile_is_named_with_a_hint(
        self, workspace_copy: ExampleWorkspace, tmp_path: Path
    ) -> None:
        registry = _registry(workspace_copy)
        run_id = self._log(registry, (tmp_path / "runs").as_uri())
        client = _client(workspace_copy)
        client.delete_experiment(client.get_run(run_id).info.experiment_id)
        with pytest.raises(ExternalUnavailable, match="'gates' is deleted") as caught:
            self._log(registry, (tmp_path / "runs").as_uri())
        assert "mlflow experiments restore" in (caught.value.hint or "")

    def test_artifacts_that_cannot_be_written_leave_a_failed_run(
        self, workspace_copy: ExampleWorkspace, tmp_path: Path
    ) -> None:
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("a file where the artifact folder should go")
        registry = _registry(workspace_copy)
        with pytest.raises(ExternalUnavailable, match="Not a directory"):
            self._log(registry, blocker.as_uri())
        client = _client(workspace_copy)
        experiment = client.get_experiment_by_name("gates")
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "FAILED"


@pytest.mark.slow
def test_a_sqlite_registry_in_journal_mode_is_switched_to_wal_on_first_use(
    workspace_copy: ExampleWorkspace,
) -> None:
    import sqlite3
    from contextlib import closing

    db = workspace_copy.root / "mlflow.db"

    def mode(*pragma: str) -> str:
        with closing(sqlite3.connect(db, isolation_level=None)) as conn:
            for statement in pragma:
                conn.execute(statement)
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # As MLflow itself leaves a registry it created (the example's is WAL from the start).
    assert mode("PRAGMA journal_mode = DELETE") == "delete"
    registry = _registry(workspace_copy)
    assert registry.get_alias("case-triage", "champion") == 1  # the data survives the switch
    assert mode() == "wal"
    registry.set_alias("case-triage", "champion", 2)
    assert _registry(workspace_copy).get_alias("case-triage", "champion") == 2


def test_registry_satisfies_the_protocol() -> None:
    registry: ModelRegistry = MlflowModelRegistry("sqlite:///unused.db")
    assert registry is not None


def test_dead_server_is_unavailable_not_a_hang() -> None:
    registry = MlflowModelRegistry("http://127.0.0.1:1")
    with pytest.raises(ExternalUnavailable) as info:
        registry.resolve("case-triage", alias="champion")
    assert "127.0.0.1:1" in str(info.value)
    assert info.value.hint is not None and "tracking server" in info.value.hint


def test_password_in_the_uri_is_not_shown() -> None:
    registry = MlflowModelRegistry("http://ops:hunter2@127.0.0.1:1")
    with pytest.raises(ExternalUnavailable) as info:
        registry.get_alias("case-triage", "champion")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(registry)


class _Always503(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self.send_response(503)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    """An HTTP server that accepts connections and answers 503 to everything."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.slow
def test_server_that_keeps_failing_is_unavailable_after_bounded_retries(
    failing_server: str,
) -> None:
    uri = failing_server.replace("http://", "http://ops:hunter2@")
    with pytest.raises(ExternalUnavailable, match="failed while resolving") as info:
        MlflowModelRegistry(uri).resolve("case-triage", alias="champion")
    assert "hunter2" not in str(info.value)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ


class TestResolveTrackingUri:
    def test_default_is_sqlite_in_the_workspace(self, tmp_path: Path) -> None:
        uri, artifacts = resolve_tracking_uri(tmp_path, None)
        assert uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
        assert artifacts == (tmp_path.resolve() / "mlruns").as_uri()

    def test_relative_sqlite_is_taken_from_the_workspace(self, tmp_path: Path) -> None:
        uri, artifacts = resolve_tracking_uri(tmp_path, "sqlite:///state/models.db")
        assert uri == f"sqlite:///{tmp_path.resolve().as_posix()}/state/models.db"
        assert artifacts == (tmp_path.resolve() / "state" / "mlruns").as_uri()

    def test_absolute_sqlite_is_kept(self, tmp_path: Path) -> None:
        db = tmp_path.resolve() / "elsewhere" / "m.db"
        uri, _ = resolve_tracking_uri(Path("/nowhere"), f"sqlite:///{db.as_posix()}")
        assert uri == f"sqlite:///{db.as_posix()}"

    def test_environment_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
        assert resolve_tracking_uri(tmp_path, "sqlite:///mlflow.db") == (
            "http://mlflow.internal:5000",
            "",
        )

    def test_server_chooses_artifact_location(self, tmp_path: Path) -> None:
        assert resolve_tracking_uri(tmp_path, "https://mlflow.example.com") == (
            "https://mlflow.example.com",
            "",
        )

    def test_bare_relative_path_is_a_file_store_in_the_workspace(self, tmp_path: Path) -> None:
        uri, artifacts = resolve_tracking_uri(tmp_path, "mlruns")
        assert uri == artifacts == (tmp_path.resolve() / "mlruns").as_uri()


@pytest.mark.slow
def test_alias_mlflow_rejects_is_bad_input(workspace_copy: ExampleWorkspace) -> None:
    # MLflow reserves "latest" and "v<number>" as alias names
    with pytest.raises(BadInput, match="MLflow rejected"):
        _registry(workspace_copy).set_alias("case-triage", "latest", 1)


@pytest.mark.slow
@pytest.mark.parametrize("keep", [0, 100], ids=["garbage", "header-only"])
def test_a_corrupt_sqlite_registry_is_unavailable_with_its_error_not_a_crash(
    workspace_copy: ExampleWorkspace, keep: int
) -> None:
    db = workspace_copy.root / "mlflow.db"
    data = db.read_bytes()
    db.write_bytes(data[:keep] + b"\x5a" * (len(data) - keep))
    for wal in db.parent.glob("mlflow.db-*"):
        wal.unlink()
    with pytest.raises(ExternalUnavailable, match="cannot be read") as err:
        _registry(workspace_copy).get_alias("case-triage", "champion")
    assert err.value.hint is not None and "backup" in err.value.hint


@pytest.mark.slow
class TestAliasesOverARealServer:
    """Alias reads and moves go through the light client; errors read as MlflowClient's."""

    @staticmethod
    def _model(url: str) -> str:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=url, registry_uri=url)
        name = f"svc-{uuid.uuid4().hex[:8]}"
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source="s3://example-bucket/model")
        return name

    def test_set_and_get_agree_with_mlflow(self, mlflow_cli_server: str) -> None:
        from mlflow import MlflowClient

        name = self._model(mlflow_cli_server)
        registry = MlflowModelRegistry(mlflow_cli_server)
        assert registry.get_alias(name, "production") is None
        registry.set_alias(name, "production", 2)
        client = MlflowClient(tracking_uri=mlflow_cli_server, registry_uri=mlflow_cli_server)
        assert int(client.get_registered_model(name).aliases["production"]) == 2
        client.set_registered_model_alias(name, "production", "1")
        assert registry.get_alias(name, "production") == 1

    def test_a_missing_version_lists_the_versions(self, mlflow_cli_server: str) -> None:
        name = self._model(mlflow_cli_server)
        with pytest.raises(ArtifactNotFound, match=r"no version 9; versions: 1, 2") as info:
            MlflowModelRegistry(mlflow_cli_server).set_alias(name, "production", 9)
        assert info.value.exit_code == 2 and info.value.hint

    def test_an_unknown_model_suggests_names(self, mlflow_cli_server: str) -> None:
        name = self._model(mlflow_cli_server)
        with pytest.raises(ArtifactNotFound, match=f"did you mean '{name}'"):
            MlflowModelRegistry(mlflow_cli_server).get_alias(name + "x", "production")


class _HangUp(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self.close_connection = True  # accepted, then closed without an answer

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_a_server_that_hangs_up_is_unavailable_exit_3() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HangUp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://ops:hunter2@127.0.0.1:{server.server_address[1]}"
        with pytest.raises(ExternalUnavailable, match="failed while setting alias") as info:
            MlflowModelRegistry(uri).set_alias("case-triage", "production", 1)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert info.value.exit_code == 3 and "hunter2" not in str(info.value)
    assert info.value.hint is not None and "reachable" in info.value.hint


def test_a_dead_server_is_exit_3() -> None:
    with pytest.raises(ExternalUnavailable, match="cannot reach the MLflow server") as info:
        MlflowModelRegistry(f"http://127.0.0.1:{free_port()}").set_alias("m", "production", 1)
    assert info.value.exit_code == 3


@pytest.mark.slow
def test_a_prompt_is_not_a_model(release_ws: ExampleWorkspace) -> None:
    # MLflow keeps prompts as registered models; its model calls do not see them, nor do ours.
    registry = _registry(release_ws)
    with pytest.raises(ArtifactNotFound, match="no registered model named 'case-triage-system'"):
        registry.get_alias("case-triage-system", "production")
    with pytest.raises(ArtifactNotFound, match="no registered model named 'case-triage-system'"):
        registry.set_alias("case-triage-system", "production", 1)
    assert registry.get_alias("case-triage", "champion") == 1
