"""The model: name and alias rules, spec validation, content hash, spec files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from promptregistry import (
    AliasChange,
    InvalidPrompt,
    PromptSpec,
    content_hash,
    load_spec_file,
    validate_alias,
    validate_name,
)
from promptregistry.model import MAX_SPEC_BYTES, alias_problem, name_problem


@pytest.mark.parametrize(
    "good", ["a", "7", "summarise", "case-summariser", "team.prompt_v2", "A" * 128, "x.y-z_1"]
)
def test_good_names(good: str) -> None:
    assert name_problem(good) is None
    assert validate_name(good) == good


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("a/b", "prompt name 'a/b' contains a path separator"),
        ("a\\b", "contains a path separator"),
        ("..", "contains '..'"),
        ("x..y", "contains '..'"),
        ("two words", "contains a space"),
        ("line\nbreak", "contains a control character (U+000A)"),
        ("bell\x07", "contains a control character (U+0007)"),
        ("n" * 129, "prompt name is 129 characters long; the limit is 128"),
        ("", "prompt name is empty"),
        ("_private", "must start with a letter or a digit"),
        ("café", "contains 'é'; only letters, digits, '.', '_' and '-' are allowed"),
        ("a:b", "contains ':'"),
        ("../../etc/passwd", "contains a path separator"),
        ("..\\..\\x", "contains a path separator"),
        ("a\x00b", "contains a control character (U+0000)"),
        ("name\n", "contains a control character (U+000A)"),
        ("esc\x1b[31m", "contains a control character (U+001B)"),
    ],
)
def test_bad_names_say_what_is_wrong(bad: str, message: str) -> None:
    with pytest.raises(InvalidPrompt) as info:
        validate_name(bad)
    assert message in info.value.message
    assert info.value.hint
    with pytest.raises(ValidationError, match="name"):
        PromptSpec(name=bad, template="x")


def test_aliases() -> None:
    assert validate_alias("production") == "production"
    assert validate_alias("canary-2_b") == "canary-2_b"
    for bad in ["latest", "Latest", "v1", "V22", "2nd", "a b", "a.b", ""]:
        with pytest.raises(InvalidPrompt, match="alias"):
            validate_alias(bad)


@pytest.mark.parametrize(
    "bad", ["../x", "x/y", "x\\y", "..", "a\x00", "a\tb", "production\n", "canary\r\n"]
)
def test_aliases_are_identifiers_not_paths(bad: str) -> None:
    # 'production\n' used to pass: the pattern's '$' also matches before a final line feed.
    assert alias_problem(bad) is not None
    with pytest.raises(InvalidPrompt, match="alias") as info:
        validate_alias(bad)
    assert info.value.hint


def test_variables_must_have_known_types_and_plain_names() -> None:
    PromptSpec(name="p", template="{{ a }}", variables={"a": "str", "b": "dict"})
    with pytest.raises(ValidationError, match="variables.a"):
        PromptSpec(name="p", template="{{ a }}", variables={"a": "string"})
    with pytest.raises(ValidationError, match="variable name '_a' is not valid"):
        PromptSpec(name="p", template="{{ _a }}", variables={"_a": "str"})
    with pytest.raises(ValidationError, match="variable name 'a\\\\n' is not valid"):
        PromptSpec(name="p", template="{{ a }}", variables={"a\n": "str"})


def test_parameters_must_be_finite_json() -> None:
    with pytest.raises(ValidationError, match="finite"):
        PromptSpec(name="p", template="x", parameters={"t": float("nan")})
    with pytest.raises(ValidationError, match="parameters"):
        PromptSpec(name="p", template="x", parameters={"t": object()})


def test_specs_are_frozen_and_strict() -> None:
    spec = PromptSpec(name="p", template="x")
    with pytest.raises(ValidationError):
        spec.template = "y"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        PromptSpec(name="p", template="x", temperature=0.1)  # type: ignore[call-arg]


def test_content_hash_covers_template_variables_and_parameters_only() -> None:
    base = content_hash("t {{ a }}", {"a": "str"}, {"k": 1})
    assert base == content_hash("t {{ a }}", {"a": "str"}, {"k": 1})
    assert base != content_hash("t {{ a }} ", {"a": "str"}, {"k": 1})
    assert base != content_hash("t {{ a }}", {"a": "int"}, {"k": 1})
    assert base != content_hash("t {{ a }}", {"a": "str"}, {"k": 1.5})
    spec = PromptSpec(
        name="p",
        template="t {{ a }}",
        variables={"a": "str"},
        parameters={"k": 1},
        metadata={"anything": "else"},
        commit_message="words",
        author="me",
    )
    assert spec.compute_hash() == base


def test_alias_change_knows_whether_it_moved() -> None:
    at = "2025-01-02T03:04:05Z"
    moved = AliasChange(
        name="p", alias="production", from_version=1, to_version=2, reason="r", actor="a", at=at
    )
    same = moved.model_copy(update={"from_version": 2})
    assert moved.changed and not same.changed
    assert AliasChange.model_validate(moved.model_dump(mode="json")) == moved


def test_load_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(
        "name: greet\n"
        "template: |\n"
        "  Hello {{ who }},\n"
        "  welcome to {{ place }}.\n"
        "variables:\n"
        "  who: str\n"
        "  place: str\n"
        "parameters:\n"
        "  temperature: 0.2\n"
        "  stop: [END]\n"
        "metadata:\n"
        "  team: growth\n"
        "commit_message: first version\n",
        encoding="utf-8",
    )
    spec = load_spec_file(path)
    assert spec == PromptSpec(
        name="greet",
        template="Hello {{ who }},\nwelcome to {{ place }}.\n",
        variables={"who": "str", "place": "str"},
        parameters={"temperature": 0.2, "stop": ["END"]},
        metadata={"team": "growth"},
        commit_message="first version",
    )


def test_spec_file_problems_are_all_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad/name\ntemplate: hi\nvariables: {who: text}\nsurprise: 1\n", encoding="utf-8"
    )
    with pytest.raises(InvalidPrompt) as info:
        load_spec_file(path)
    assert str(path) in info.value.message
    problems = info.value.problems
    assert any(
        p.startswith("name: prompt name 'bad/name' contains a path separator") for p in problems
    )
    assert any(p.startswith("variables.who:") for p in problems)
    assert any(p.startswith("surprise:") for p in problems)
    assert len(problems) == 3


def test_spec_file_yaml_errors_have_a_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntemplate: 'unclosed\nvariables: {}\n", encoding="utf-8")
    with pytest.raises(InvalidPrompt, match=rf"{path.name}:\d+: not valid YAML"):
        load_spec_file(path)


def test_unquoted_template_braces_get_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "braces.yaml"
    path.write_text("name: x\ntemplate: {{ who }}\n", encoding="utf-8")
    with pytest.raises(InvalidPrompt) as info:
        load_spec_file(path)
    assert "block scalar" in (info.value.hint or "")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidPrompt, match="cannot read prompt spec"):
        load_spec_file(tmp_path / "nope.yaml")


def test_spec_files_that_are_not_small_utf8_text_are_refused_without_reading_them_whole(
    tmp_path: Path,
) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"name: x\ntemplate: |\n  hi\n\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InvalidPrompt, match=r"model\.bin:4: not UTF-8 text \(byte 0x89\)"):
        load_spec_file(binary)
    big = tmp_path / "big.yaml"
    big.write_text("name: x\ntemplate: " + "a" * MAX_SPEC_BYTES + "\n")
    with pytest.raises(InvalidPrompt, match="larger than 1024 KiB"):
        load_spec_file(big)
    # A device is refused before a byte is read (/dev/zero never ends).
    with pytest.raises(InvalidPrompt, match="not a regular file"):
        load_spec_file("/dev/zero")
    with pytest.raises(InvalidPrompt, match="not a regular file"):
        load_spec_file(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # no writer: a plain open would wait for one
    with pytest.raises(InvalidPrompt, match="not a regular file"):
        load_spec_file(fifo)
