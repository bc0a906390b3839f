"""The PromptBackend conformance suite: every backend must pass every test here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import pytest

from promptregistry import (
    InvalidPrompt,
    PromptNotFound,
    PromptRegistryError,
    PromptSpec,
    PromptVersion,
    content_hash,
)
from promptregistry.backend import PromptBackend, redact_uri

SpecMaker = Callable[..., PromptSpec]

TRICKY_TEMPLATE = (
    "  leading spaces\n"
    "trailing spaces   \n"
    "\ttab, unicode: café ✓ 名前, quotes ' \" and a colon: here\n"
    "{% for item in items %}- {{ item }}\n{% endfor %}"
    "{{ who }} / {{ n }} / {{ ratio }} / {{ flag }} / {{ extra }}\n"
    "\n"
    "# not a comment, --- not a document marker\n"
)
TRICKY_VARIABLES = {
    "who": "str",
    "n": "int",
    "ratio": "float",
    "flag": "bool",
    "items": "list",
    "extra": "dict",
}
TRICKY_PARAMETERS = {
    "temperature": 0.7,
    "max_tokens": 512,
    "top_p": 1,
    "stop": ["\n\n", "END"],
    "nested": {"a": [1, 2.5, None, True], "b": {"c": "ü"}},
    "penalty": -1.5,
}


class TestRegister:
    def test_implements_protocol(self, backend: PromptBackend) -> None:
        assert isinstance(backend, PromptBackend)
        assert backend.url

    def test_versions_count_up_from_one(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        v1 = backend.register(make_spec(name, "one {{ who }}"))
        v2 = backend.register(make_spec(name, "two {{ who }}"))
        assert (v1.version, v2.version) == (1, 2)
        assert isinstance(v1, PromptVersion)
        assert v1.name == v2.name == name
        assert v1.created_at.tzinfo is not None
        assert isinstance(v2.created_at, datetime) and v2.created_at >= v1.created_at
        assert v1.aliases == []
        assert backend.list_versions(name) == [1, 2]
        assert name in backend.list_names()

    def test_every_field_round_trips(self, backend: PromptBackend, name: str) -> None:
        spec = PromptSpec(
            name=name,
            template=TRICKY_TEMPLATE,
            variables=TRICKY_VARIABLES,
            parameters=TRICKY_PARAMETERS,
            metadata={"team": "search", "ticket": "ML-42", "note": "spaces and: colons"},
            commit_message="first cut: tone down",
            author="alice",
        )
        registered = backend.register(spec)
        fetched = backend.get(name, version=1)
        assert fetched == registered
        assert fetched.spec() == spec
        assert fetched.parameters["top_p"] == 1 and isinstance(fetched.parameters["top_p"], int)
        assert fetched.content_hash == spec.compute_hash()

    def test_optional_fields_stay_empty(self, backend: PromptBackend, name: str) -> None:
        spec = PromptSpec(name=name, template="no variables at all")
        got = backend.get(backend.register(spec).name)
        assert got.spec() == spec
        assert (got.commit_message, got.author, got.metadata, got.parameters) == (
            None,
            None,
            {},
            {},
        )

    def test_content_hash_is_stable_and_ignores_descriptive_fields(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        a = backend.register(
            make_spec(name, parameters={"temperature": 0.2, "max_tokens": 10}, author="a")
        )
        b = backend.register(
            make_spec(
                name,
                parameters={"max_tokens": 10, "temperature": 0.2},
                metadata={"why": "same content, other words"},
                commit_message="again",
                author="b",
            )
        )
        assert a.version != b.version
        assert a.content_hash == b.content_hash
        assert a.content_hash == content_hash(
            "Hello {{ who }}!", {"who": "str"}, {"temperature": 0.2, "max_tokens": 10}
        )
        # a pinned value: the hash must never change between releases of this library
        assert content_hash("Hello {{ who }}!", {"who": "str"}, {}) == (
            "13f00984d2cc2b7f26d97765383d1d6ffa709f5de3925b2d697425d7b00020f2"
        )
        c = backend.register(make_spec(name, parameters={"temperature": 0.3, "max_tokens": 10}))
        assert c.content_hash != a.content_hash

    def test_versions_are_immutable(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        v1 = backend.register(make_spec(name, "first {{ who }}", parameters={"t": 1}))
        backend.register(make_spec(name, "second {{ who }}", parameters={"t": 2}))
        backend.set_alias(name, "production", 2)
        again = backend.get(name, version=1)
        assert again.model_dump(exclude={"aliases"}) == v1.model_dump(exclude={"aliases"})
        assert backend.get(name).version == 2  # latest

    def test_latest_is_the_highest_version(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        for i in range(3):
            backend.register(make_spec(name, f"v{i} {{{{ who }}}}"))
        latest = backend.get(name)
        assert latest.version == 3
        assert latest.template == "v2 {{ who }}"


class TestNotFound:
    def test_unknown_name_lists_existing_prompts(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name))
        missing = name + "-missing"
        for call in (
            lambda: backend.get(missing),
            lambda: backend.get(missing, version=1),
            lambda: backend.get(missing, alias="production"),
            lambda: backend.list_versions(missing),
            lambda: backend.aliases(missing),
            lambda: backend.set_alias(missing, "production", 1),
        ):
            with pytest.raises(PromptNotFound) as info:
                call()
            assert repr(missing) in info.value.message
            assert name in info.value.available
            assert name in info.value.message

    def test_unknown_version_lists_versions(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name, "a {{ who }}"))
        backend.register(make_spec(name, "b {{ who }}"))
        with pytest.raises(PromptNotFound, match=r"has no version 7; versions: 1, 2") as info:
            backend.get(name, version=7)
        assert info.value.available == ["1", "2"]
        assert info.value.hint

    def test_unknown_alias_lists_aliases(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name))
        with pytest.raises(PromptNotFound, match="aliases: none"):
            backend.get(name, alias="production")
        backend.set_alias(name, "staging", 1)
        with pytest.raises(PromptNotFound, match=r"no alias 'production'; aliases: staging -> v1"):
            backend.get(name, alias="production")

    def test_alias_to_unknown_version_is_refused(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name))
        backend.set_alias(name, "production", 1)
        with pytest.raises(PromptNotFound, match=r"no version 5; versions: 1"):
            backend.set_alias(name, "production", 5)
        assert backend.aliases(name) == {"production": 1}
        assert len(backend.alias_history(name, "production")) == 1

    def test_version_and_alias_together_are_refused(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name))
        with pytest.raises(PromptRegistryError, match="version 1 and alias .production. at once"):
            backend.get(name, version=1, alias="production")


BAD_NAMES = [
    ("a/b", "path separator"),
    ("..\\evil", "path separator"),
    ("..", "'..'"),
    ("a..b", "'..'"),
    ("has space", "space"),
    ("tab\there", "control character"),
    ("nul\x00", "control character"),
    ("x" * 129, "129 characters"),
    ("", "empty"),
    ("-leading-dash", "must start with a letter or a digit"),
    (".hidden", "must start with a letter or a digit"),
    ("semi;colon", "';'"),
]


class TestBadNames:
    @pytest.mark.parametrize(("bad", "problem"), BAD_NAMES)
    def test_bad_name_is_refused_and_nothing_is_written(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker, bad: str, problem: str
    ) -> None:
        backend.register(make_spec(name))
        before = backend.list_names()
        # model_construct skips validation, as a careless caller might: the backend still refuses
        spec = PromptSpec.model_construct(name=bad, template="Hello")
        with pytest.raises(InvalidPrompt, match=problem):
            backend.register(spec)
        with pytest.raises(InvalidPrompt, match=problem):
            backend.get(bad)
        assert backend.list_names() == before

    def test_bad_alias_is_refused(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name))
        for alias in ["latest", "LATEST", "v2", "V10", "has space", "a/b", "", "-x", "x" * 65]:
            with pytest.raises(InvalidPrompt, match="alias"):
                backend.set_alias(name, alias, 1)
        assert backend.aliases(name) == {}


class TestAliases:
    def test_set_and_resolve(self, backend: PromptBackend, name: str, make_spec: SpecMaker) -> None:
        backend.register(make_spec(name, "one {{ who }}"))
        backend.register(make_spec(name, "two {{ who }}"))
        change = backend.set_alias(name, "production", 1, reason="launch", actor="alice")
        assert (change.name, change.alias, change.from_version, change.to_version) == (
            name,
            "production",
            None,
            1,
        )
        assert (change.reason, change.actor, change.action, change.changed) == (
            "launch",
            "alice",
            "promote",
            True,
        )
        backend.set_alias(name, "staging", 2)
        assert backend.aliases(name) == {"production": 1, "staging": 2}
        got = backend.get(name, alias="production")
        assert got.version == 1 and got.template == "one {{ who }}"
        assert got.aliases == ["production"]
        assert backend.get(name, version=2).aliases == ["staging"]

    def test_moves_are_recorded_in_order(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        for i in range(3):
            backend.register(make_spec(name, f"{i} {{{{ who }}}}"))
        backend.set_alias(name, "production", 1, reason="r1", actor="a")
        backend.set_alias(name, "production", 3, reason="r2", actor="b")
        backend.set_alias(name, "production", 2, reason="r3", actor="c", action="rollback")
        backend.set_alias(name, "staging", 3, reason="other alias", actor="d")
        history = backend.alias_history(name, "production")
        assert [(c.from_version, c.to_version, c.reason, c.actor, c.action) for c in history] == [
            (None, 1, "r1", "a", "promote"),
            (1, 3, "r2", "b", "promote"),
            (3, 2, "r3", "c", "rollback"),
        ]
        assert all(c.name == name and c.alias == "production" for c in history)
        assert history[0].at <= history[1].at <= history[2].at
        assert [c.to_version for c in backend.alias_history(name, "staging")] == [3]
        assert backend.alias_history(name, "canary") == []

    def test_concurrent_alias_moves_all_reach_the_history(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        threads, moves = 4, 3
        for i in range(threads * moves):
            backend.register(make_spec(name, f"{i} {{{{ who }}}}"))
        errors: list[BaseException] = []

        def mover(t: int) -> None:
            try:
                for i in range(moves):
                    # every move targets a version nobody else targets: each one is a change
                    version = 1 + t * moves + i
                    backend.set_alias(name, "production", version, reason=f"t{t}-{i}")
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=mover, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        assert not errors, errors
        history = backend.alias_history(name, "production")
        reasons = sorted(c.reason for c in history)
        assert reasons == sorted(f"t{t}-{i}" for t in range(threads) for i in range(moves))
        assert backend.aliases(name)["production"] in {c.to_version for c in history}

    def test_setting_the_same_target_is_a_no_op(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        backend.register(make_spec(name))
        backend.set_alias(name, "production", 1)
        again = backend.set_alias(name, "production", 1, reason="retry", actor="ci")
        assert not again.changed
        assert (again.from_version, again.to_version) == (1, 1)
        assert len(backend.alias_history(name, "production")) == 1

    def test_delete_alias(self, backend: PromptBackend, name: str, make_spec: SpecMaker) -> None:
        backend.register(make_spec(name))
        backend.set_alias(name, "production", 1)
        backend.set_alias(name, "staging", 1)
        change = backend.delete_alias(name, "staging", reason="unused", actor="bob")
        assert (change.from_version, change.to_version, change.action) == (1, None, "delete")
        assert backend.aliases(name) == {"production": 1}
        assert backend.get(name, version=1).aliases == ["production"]
        with pytest.raises(PromptNotFound, match="aliases: production -> v1"):
            backend.get(name, alias="staging")
        with pytest.raises(PromptNotFound, match="no alias 'staging'"):
            backend.delete_alias(name, "staging")
        assert [c.action for c in backend.alias_history(name, "staging")] == ["promote", "delete"]

    def test_aliases_belong_to_one_prompt(
        self, backend: PromptBackend, name: str, make_spec: SpecMaker
    ) -> None:
        other = name + "-other"
        backend.register(make_spec(name))
        backend.register(make_spec(other))
        backend.register(make_spec(other, "again {{ who }}"))
        backend.set_alias(other, "production", 2)
        assert backend.aliases(name) == {}
        assert backend.aliases(other) == {"production": 2}


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://reader:s3cret@127.0.0.1:5000", "http://reader:***@127.0.0.1:5000"),
        ("https://s3cret@mlflow.example", "https://***@mlflow.example"),
        (
            "https://mlflow.example/?access_token=s3cret&x=1",
            "https://mlflow.example/?access_token=***&x=1",
        ),
        ("https://mlflow.example/api?api_key=s3cret", "https://mlflow.example/api?api_key=***"),
        ("databricks://profile", "databricks://profile"),
        ("sqlite:///srv/mlflow.db", "sqlite:///srv/mlflow.db"),
    ],
)
def test_redact_uri_hides_passwords_tokens_and_secret_query_values(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
