"""The MLflow backend specifically: what MLflow users see, foreign prompts, caches, outages."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from promptregistry import (
    BackendUnavailable,
    InvalidPrompt,
    MlflowPromptBackend,
    PromptSpec,
    open_backend,
)

SpecMaker = Callable[..., PromptSpec]


@pytest.fixture
def mlflow_env(
    mlflow_sqlite_backend: MlflowPromptBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Point MLflow's own process-wide defaults at the session registry, as an MLflow user would."""
    uri = mlflow_sqlite_backend.registry_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)
    monkeypatch.chdir(tmp_path)  # anything MLflow writes by default lands here, not in the repo
    return uri


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_mlflow_users_see_the_same_prompt(
    mlflow_sqlite_backend: MlflowPromptBackend, mlflow_env: str, name: str, make_spec: SpecMaker
) -> None:
    import mlflow

    backend = mlflow_sqlite_backend
    backend.register(
        make_spec(name, "Hi {{ who }}", parameters={"temperature": 0.3, "model_name": "m"})
    )
    backend.register(make_spec(name, "Hello {{ who }}", commit_message="warmer"))
    theirs = mlflow.genai.load_prompt(f"prompts:/{name}/1")
    assert theirs.template == "Hi {{ who }}"
    assert theirs.model_config == {"temperature": 0.3, "model_name": "m"}
    assert theirs.format(who="Bo") == "Hi Bo"
    assert mlflow.genai.load_prompt(f"prompts:/{name}/2").commit_message == "warmer"
    for target in (1, 2, 1):
        backend.set_alias(name, "production", target)
        ours = backend.get(name, alias="production").version
        assert ours == target
        uri = f"prompts:/{name}@production"
        assert mlflow.genai.load_prompt(uri).version == ours  # MLflow's cache, invalidated
        assert mlflow.genai.load_prompt(uri, cache_ttl_seconds=0).version == ours


def test_parameters_mlflow_cannot_hold_still_round_trip(
    mlflow_sqlite_backend: MlflowPromptBackend, name: str, make_spec: SpecMaker
) -> None:
    from mlflow import MlflowClient

    spec = make_spec(name, parameters={"temperature": -1, "top_p": 7, "custom": {"x": [1]}})
    assert mlflow_sqlite_backend.register(spec).parameters == spec.parameters
    assert mlflow_sqlite_backend.get(name).parameters == spec.parameters
    client = MlflowClient(
        tracking_uri=mlflow_sqlite_backend.registry_uri,
        registry_uri=mlflow_sqlite_backend.registry_uri,
    )
    assert client.get_prompt_version(name, 1).model_config is None  # MLflow's schema refused it


MOVE_ALIAS = """
import sys
from mlflow import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])
client.set_prompt_alias(sys.argv[2], "production", 2)
"""


@pytest.mark.slow
def test_reads_bypass_mlflows_alias_cache(
    mlflow_sqlite_backend: MlflowPromptBackend,
    mlflow_env: str,
    name: str,
    make_spec: SpecMaker,
    child_env: dict[str, str],
) -> None:
    import mlflow

    backend = mlflow_sqlite_backend
    backend.register(make_spec(name, "one {{ who }}"))
    backend.register(make_spec(name, "two {{ who }}"))
    backend.set_alias(name, "production", 1)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@production").version == 1  # now cached
    # another process moves the alias: this process's MLflow cache is not told
    subprocess.run([sys.executable, "-c", MOVE_ALIAS, mlflow_env, name], check=True, env=child_env)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@production").version == 1  # stale
    assert backend.get(name, alias="production").version == 2  # ours is fresh
    assert mlflow.genai.load_prompt(f"prompts:/{name}@production", cache_ttl_seconds=0).version == 2


def test_prompts_registered_outside_are_readable(
    mlflow_sqlite_backend: MlflowPromptBackend, name: str
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=mlflow_sqlite_backend.tracking_uri,
        registry_uri=mlflow_sqlite_backend.registry_uri,
    )
    client.create_prompt(name)
    client.create_prompt_version(
        name,
        "Summarise {{ text }} for {{ audience }}",
        description="made in MLflow",
        tags={"team": "ops"},
        model_config={"temperature": 0.1},
    )
    got = mlflow_sqlite_backend.get(name)
    assert got.variables == {"audience": "str", "text": "str"}
    assert got.parameters == {"temperature": 0.1}
    assert got.metadata == {"team": "ops"}
    assert got.commit_message == "made in MLflow"
    assert got.content_hash == got.compute_hash()


def test_edited_tags_are_detected(
    mlflow_sqlite_backend: MlflowPromptBackend, name: str, make_spec: SpecMaker
) -> None:
    from mlflow import MlflowClient

    mlflow_sqlite_backend.register(make_spec(name))
    client = MlflowClient(
        tracking_uri=mlflow_sqlite_backend.registry_uri,
        registry_uri=mlflow_sqlite_backend.registry_uri,
    )
    client.set_prompt_version_tag(name, 1, "promptregistry.variables", '{"who": "int"}')
    with pytest.raises(InvalidPrompt, match="changed after it was registered"):
        mlflow_sqlite_backend.get(name, version=1)


def test_history_is_one_tag_per_move_and_keeps_the_newest(
    mlflow_sqlite_backend: MlflowPromptBackend,
    name: str,
    make_spec: SpecMaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow import MlflowClient

    from promptregistry import mlflow_backend

    monkeypatch.setattr(mlflow_backend, "HISTORY_KEEP", 2)
    for i in range(4):
        mlflow_sqlite_backend.register(make_spec(name, f"{i} {{{{ who }}}}"))
    for version in (1, 2, 3, 4):
        mlflow_sqlite_backend.set_alias(name, "production", version, reason=f"to {version}")
    mlflow_sqlite_backend.set_alias(name, "prod", 1)  # a prefix of the other alias's name
    history = mlflow_sqlite_backend.alias_history(name, "production")
    assert [(c.from_version, c.to_version) for c in history] == [(2, 3), (3, 4)]
    assert [c.to_version for c in mlflow_sqlite_backend.alias_history(name, "prod")] == [1]
    client = MlflowClient(
        tracking_uri=mlflow_sqlite_backend.registry_uri,
        registry_uri=mlflow_sqlite_backend.registry_uri,
    )
    tags = client.get_prompt(name).tags
    kept = [k for k in tags if k.startswith("promptregistry.alias_history.production.")]
    assert len(kept) == 2
    client.set_prompt_tag(name, kept[0], "{not json")
    with pytest.raises(InvalidPrompt, match="unreadable"):
        mlflow_sqlite_backend.alias_history(name, "production")


def test_name_taken_by_a_model_is_refused(
    mlflow_sqlite_backend: MlflowPromptBackend, name: str, make_spec: SpecMaker
) -> None:
    from mlflow import MlflowClient

    MlflowClient(
        tracking_uri=mlflow_sqlite_backend.registry_uri,
        registry_uri=mlflow_sqlite_backend.registry_uri,
    ).create_registered_model(name)
    with pytest.raises(InvalidPrompt, match="already an MLflow registered model"):
        mlflow_sqlite_backend.register(make_spec(name))
    assert name not in mlflow_sqlite_backend.list_names()


def test_unreachable_server_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = closed_port()
    backend = MlflowPromptBackend(f"http://reader:s3cret@127.0.0.1:{port}")
    assert backend.url == f"http://reader:***@127.0.0.1:{port}"
    for call in (lambda: backend.get("greet"), backend.list_names):
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert "s3cret" not in info.value.message
        assert "reader:***@" in info.value.message
        assert info.value.hint


def test_open_backend_from_uri(mlflow_sqlite_backend: MlflowPromptBackend) -> None:
    backend = open_backend(mlflow_sqlite_backend.registry_uri)
    assert isinstance(backend, MlflowPromptBackend)
    assert backend.tracking_uri == backend.registry_uri == mlflow_sqlite_backend.registry_uri
    separate = MlflowPromptBackend("http://tracking:5000", registry_uri="sqlite:///r.db")
    assert (separate.tracking_uri, separate.url) == ("http://tracking:5000", "sqlite:///r.db")
