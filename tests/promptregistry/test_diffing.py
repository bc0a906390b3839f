"""Diff: a unified template diff plus variable, parameter and metadata changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from promptregistry import PromptVersion, content_hash, diff


def version(n: int, template: str, **fields: Any) -> PromptVersion:
    spec: dict[str, Any] = {"variables": {}, "parameters": {}, "metadata": {}, **fields}
    return PromptVersion(
        name="greet",
        template=template,
        version=n,
        content_hash=content_hash(template, spec["variables"], spec["parameters"]),
        created_at=datetime(2025, 1, n, tzinfo=UTC),
        **spec,
    )


A = version(
    1,
    "Hello {{ who }}.\nBe brief.\n",
    variables={"who": "str", "tone": "str"},
    parameters={"temperature": 0.2, "max_tokens": 100},
    metadata={"team": "growth"},
)
B = version(
    2,
    "Hello {{ who }}!\nBe brief.\nAnswer in {{ lang }}.\n",
    variables={"who": "str", "lang": "str"},
    parameters={"temperature": 0.7, "stop": ["END"], "max_tokens": 100},
    metadata={"team": "growth"},
)


def test_template_diff_is_unified() -> None:
    d = diff(A, B)
    assert d.template_diff == (
        "--- greet v1\n"
        "+++ greet v2\n"
        "@@ -1,2 +1,3 @@\n"
        "-Hello {{ who }}.\n"
        "+Hello {{ who }}!\n"
        " Be brief.\n"
        "+Answer in {{ lang }}.\n"
    )


def test_variable_and_parameter_changes() -> None:
    d = diff(A, B)
    assert d.variables.added == {"lang": "str"}
    assert d.variables.removed == {"tone": "str"}
    assert d.variables.changed == {}
    assert d.parameters.added == {"stop": ["END"]}
    assert d.parameters.removed == {}
    assert {k: (c.old, c.new) for k, c in d.parameters.changed.items()} == {
        "temperature": (0.2, 0.7)
    }
    assert d.metadata.empty
    assert not d.same_content


def test_render_text() -> None:
    text = diff(A, B).render_text()
    assert text.startswith(f"--- greet v1 ({A.content_hash[:12]})\n+++ greet v2 (")
    assert "  -Hello {{ who }}.\n  +Hello {{ who }}!\n" in text
    assert "variables:\n  + lang: str\n  - tone: str\n" in text
    assert 'parameters:\n  + stop: ["END"]\n  ~ temperature: 0.2 -> 0.7\n' in text
    assert "metadata: unchanged\n" in text


def test_identical_content() -> None:
    again = version(3, A.template, variables=A.variables, parameters=A.parameters)
    d = diff(A, again)
    assert d.same_content
    assert d.template_diff == ""
    assert d.variables.empty and d.parameters.empty
    assert d.metadata.removed == {"team": "growth"}
    text = d.render_text()
    assert "same content" in text and "template: unchanged" in text


def test_template_without_trailing_newline() -> None:
    d = diff(version(1, "a"), version(2, "b"))
    assert d.template_diff.endswith("-a\n+b\n")


def test_diff_serialises() -> None:
    dumped = diff(A, B).model_dump(mode="json")
    assert dumped["parameters"]["changed"]["temperature"] == {"old": 0.2, "new": 0.7}
