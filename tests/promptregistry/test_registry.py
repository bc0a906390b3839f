"""The registry facade over every backend: lint, idempotent register, promote, rollback, hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from promptregistry import (
    AliasChange,
    FileChangeSignal,
    InvalidPrompt,
    MlflowPromptBackend,
    PromptNotFound,
    PromptRegistry,
    PromptSpec,
    previous_target,
)
from promptregistry.backend import PromptBackend

SpecMaker = Callable[..., PromptSpec]


class AuditLog:
    """An application's own history store, as releaser's audit chain would be."""

    def __init__(self) -> None:
        self.events: list[AliasChange] = []

    def record(self, change: AliasChange) -> None:
        self.events.append(change)

    def history(self, name: str, alias: str) -> Sequence[AliasChange]:
        return [c for c in self.events if (c.name, c.alias) == (name, alias)]


def mlflow_view(backend: PromptBackend, name: str, alias: str) -> int | None:
    """What an MLflow user resolving ``prompts:/name@alias`` gets (None for non-MLflow backends)."""
    if not isinstance(backend, MlflowPromptBackend):
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=backend.tracking_uri, registry_uri=backend.registry_uri)
    return int(client.load_prompt(f"prompts:/{name}@{alias}", cache_ttl_seconds=0).version)


def three_versions(registry: PromptRegistry, name: str, make_spec: SpecMaker) -> None:
    for word in ("one", "two", "three"):
        registry.register(make_spec(name, f"{word} {{{{ who }}}}"))


def test_register_lints_first_and_writes_nothing_on_errors(
    backend: PromptBackend, name: str
) -> None:
    registry = PromptRegistry(backend)
    spec = PromptSpec(name=name, template="Hi {{ who }}\n{{ x.__class__ }}\n{% if %}")
    with pytest.raises(InvalidPrompt, match="lint error") as info:
        registry.register(spec)
    assert info.value.problems == [
        "line 3: error[syntax]: Expected an expression, got 'end of statement block'"
    ]
    with pytest.raises(InvalidPrompt) as info:
        registry.register(PromptSpec(name=name, template="Hi {{ who }}\n{{ x._y }}"))
    assert [p.split(":")[0] for p in info.value.problems] == ["line 1", "line 2", "line 2"]
    assert name not in backend.list_names()


def test_register_returns_the_existing_version_for_identical_content(
    backend: PromptBackend, name: str, make_spec: SpecMaker
) -> None:
    registry = PromptRegistry(backend)
    first = registry.register(make_spec(name, parameters={"temperature": 0.1}))
    assert first.created and first.version.version == 1
    assert first.message.startswith(f"registered {name} v1 (")
    again = registry.register(
        make_spec(
            name, parameters={"temperature": 0.1}, commit_message="no-op", metadata={"a": "b"}
        )
    )
    assert not again.created
    assert again.version.version == 1
    assert "already has this content" in again.message and "no new version" in again.message
    changed = registry.register(make_spec(name, parameters={"temperature": 0.2}))
    assert changed.created and changed.version.version == 2
    # identical to an older version but not the latest: a new version (a revert is a change)
    reverted = registry.register(make_spec(name, parameters={"temperature": 0.1}))
    assert reverted.created and reverted.version.version == 3
    assert backend.list_versions(name) == [1, 2, 3]


def test_register_reports_warnings(backend: PromptBackend, name: str) -> None:
    spec = PromptSpec(name=name, template="static text", variables={"unused": "str"})
    result = PromptRegistry(backend).register(spec)
    assert [w.code for w in result.warnings] == ["unused-variable"]


def test_promote_calls_the_hook_after_the_write_and_bumps_the_signal(
    backend: PromptBackend, name: str, make_spec: SpecMaker, tmp_path: Path
) -> None:
    signal = FileChangeSignal(tmp_path / "signal")
    seen: list[tuple[AliasChange, int]] = []

    def hook(change: AliasChange) -> None:
        # the backend already holds the new target when the hook runs
        seen.append((change, backend.aliases(name)[change.alias]))

    registry = PromptRegistry(backend, on_alias_change=hook, signal=signal)
    three_versions(registry, name, make_spec)
    token = signal.token()
    change = registry.promote(name, 2, "production", "launch", "alice")
    assert (change.from_version, change.to_version, change.reason, change.actor) == (
        None,
        2,
        "launch",
        "alice",
    )
    assert seen == [(change, 2)]
    assert signal.token() != token
    assert mlflow_view(backend, name, "production") in (None, 2)

    token = signal.token()
    same = registry.promote(name, 2, "production", "retry from CI", "ci")
    assert not same.changed
    assert len(seen) == 1 and signal.token() == token  # a no-op tells nobody


def test_promote_unknown_version_changes_nothing(
    backend: PromptBackend, name: str, make_spec: SpecMaker
) -> None:
    calls: list[AliasChange] = []
    registry = PromptRegistry(backend, on_alias_change=calls.append)
    registry.register(make_spec(name))
    registry.promote(name, 1, "production", "r", "a")
    with pytest.raises(PromptNotFound, match=r"no version 4; versions: 1"):
        registry.promote(name, 4, "production", "r", "a")
    with pytest.raises(PromptNotFound, match="not found"):
        registry.promote(name + "-nope", 1, "production", "r", "a")
    with pytest.raises(InvalidPrompt, match="reserved"):
        registry.promote(name, 1, "latest", "r", "a")
    assert backend.aliases(name) == {"production": 1}
    assert len(calls) == 1


def test_rollback_walks_back_through_promotions(
    backend: PromptBackend, name: str, make_spec: SpecMaker, tmp_path: Path
) -> None:
    signal = FileChangeSignal(tmp_path / "signal")
    calls: list[AliasChange] = []
    registry = PromptRegistry(backend, on_alias_change=calls.append, signal=signal)
    three_versions(registry, name, make_spec)
    for version in (1, 2, 3):
        registry.promote(name, version, "production", f"ship v{version}", "alice")
    token = signal.token()

    back = registry.rollback(name, "production", "v3 is rude", "bob")
    assert (back.from_version, back.to_version, back.action, back.actor) == (
        3,
        2,
        "rollback",
        "bob",
    )
    assert backend.get(name, alias="production").version == 2
    assert mlflow_view(backend, name, "production") in (None, 2)
    assert signal.token() != token

    assert registry.rollback(name, "production", "v2 too", "bob").to_version == 1
    assert mlflow_view(backend, name, "production") in (None, 1)
    with pytest.raises(PromptNotFound, match="no earlier version to roll back to") as info:
        registry.rollback(name, "production", "again", "bob")
    assert "1, 2, 3" in (info.value.hint or "")
    assert [c.action for c in calls] == ["promote"] * 3 + ["rollback"] * 2
    assert registry.history(name, "production") == backend.alias_history(name, "production")
    assert [(c.from_version, c.to_version) for c in registry.history(name, "production")] == [
        (None, 1),
        (1, 2),
        (2, 3),
        (3, 2),
        (2, 1),
    ]


def test_rollback_of_an_unknown_alias_lists_aliases(
    backend: PromptBackend, name: str, make_spec: SpecMaker
) -> None:
    registry = PromptRegistry(backend)
    registry.register(make_spec(name))
    registry.promote(name, 1, "staging", "r", "a")
    with pytest.raises(PromptNotFound, match=r"no alias 'production'; aliases: staging -> v1"):
        registry.rollback(name, "production", "r", "a")


def test_an_application_history_is_both_sink_and_source(
    tmp_path: Path, make_spec: SpecMaker
) -> None:
    from promptregistry import FilePromptBackend

    audit = AuditLog()
    backend = FilePromptBackend(tmp_path)
    registry = PromptRegistry(backend, on_alias_change=audit.record, history_source=audit.history)
    three_versions(registry, "greet", make_spec)
    registry.promote("greet", 1, "production", "r1", "a")
    registry.promote("greet", 3, "production", "r3", "a")
    assert audit.events == backend.alias_history("greet", "production")
    # the application's record is authoritative: pretend it knows v2 was live in between
    audit.events.insert(1, audit.events[1].model_copy(update={"to_version": 2}))
    audit.events[2] = audit.events[2].model_copy(update={"from_version": 2})
    assert registry.rollback("greet", "production", "bad", "b").to_version == 2
    assert audit.events[-1].action == "rollback"
    without_source = PromptRegistry(backend)
    assert previous_target(without_source.history("greet", "production"), 2) == 3


def test_a_failing_hook_still_bumps_the_signal(tmp_path: Path, make_spec: SpecMaker) -> None:
    from promptregistry import FilePromptBackend

    def broken(change: AliasChange) -> None:
        raise RuntimeError("audit store down")

    signal = FileChangeSignal(tmp_path / "signal")
    registry = PromptRegistry(FilePromptBackend(tmp_path), on_alias_change=broken, signal=signal)
    registry.register(make_spec("greet"))
    with pytest.raises(RuntimeError, match="audit store down"):
        registry.promote("greet", 1, "production", "r", "a")
    assert registry.aliases("greet") == {"production": 1}
    assert signal.token() != ""


def test_delete_alias_and_diff(backend: PromptBackend, name: str, make_spec: SpecMaker) -> None:
    registry = PromptRegistry(backend)
    registry.register(make_spec(name, "one {{ who }}", parameters={"t": 1}))
    registry.register(make_spec(name, "two {{ who }}", parameters={"t": 2}))
    registry.promote(name, 1, "production", "r", "a")
    d = registry.diff(name, "production", 2)
    assert (d.a, d.b) == (f"{name} v1", f"{name} v2")
    assert "-one {{ who }}\n+two {{ who }}\n" in d.template_diff
    assert registry.diff(name, "1", "2") == d
    removed = registry.delete_alias(name, "production", "retired", "a")
    assert removed.to_version is None
    assert registry.aliases(name) == {}


AT = datetime(2025, 1, 1, tzinfo=UTC)


def moves(*pairs: tuple[int | None, int | None, str]) -> list[AliasChange]:
    return [
        AliasChange(
            name="p", alias="a", from_version=f, to_version=t, reason="", actor="", at=AT, action=k
        )
        for f, t, k in pairs
    ]


@pytest.mark.parametrize(
    ("history", "current", "expected"),
    [
        (moves(), 1, None),
        (moves((None, 1, "promote")), 1, None),
        (moves((None, 1, "promote"), (1, 2, "promote")), 2, 1),
        (moves((None, 1, "promote"), (1, 2, "promote"), (2, 3, "promote")), 3, 2),
        # a rollback undoes: rolling back again goes further back, not forth
        (
            moves((None, 1, "promote"), (1, 2, "promote"), (2, 3, "promote"), (3, 2, "rollback")),
            2,
            1,
        ),
        # a manual promotion back to an old version is a promotion like any other
        (moves((None, 1, "promote"), (1, 2, "promote"), (2, 1, "promote")), 1, 2),
        # no-ops are ignored
        (
            moves((None, 1, "promote"), (1, 1, "promote"), (1, 2, "promote"), (2, 2, "promote")),
            2,
            1,
        ),
        # moved outside the recorded history (now 5): go back to the last recorded target
        (moves((None, 1, "promote"), (1, 2, "promote")), 5, 2),
        # a gap in the record (someone moved it 2 -> 4 elsewhere, then we promoted 4 -> 6)
        (moves((None, 1, "promote"), (1, 2, "promote"), (4, 6, "promote")), 6, 4),
        # never roll back past a deletion
        (moves((None, 1, "promote"), (1, None, "delete"), (None, 2, "promote")), 2, None),
    ],
)
def test_previous_target(history: list[AliasChange], current: int, expected: int | None) -> None:
    assert previous_target(history, current) == expected
