"""JSON answers: parsed (fenced or not), and checked against a JSON Schema."""

from __future__ import annotations

import pytest

from releaser.core.structured_scorers import check_schema, json_schema, json_valid
from releaser.errors import BadInput

SCHEMA = {
    "type": "object",
    "required": ["reply", "next_step"],
    "properties": {
        "reply": {"type": "string", "minLength": 1},
        "next_step": {"enum": ["none", "callback", "visit"]},
    },
    "additionalProperties": False,
}


def test_json_valid_accepts_json_text_fenced_json_and_objects() -> None:
    assert json_valid('{"reply": "hi"}', None) == 1.0
    assert json_valid('```json\n{"reply": "hi"}\n```', None) == 1.0
    assert json_valid("[1, 2]", None) == 1.0 and json_valid({"a": 1}, None) == 1.0
    assert json_valid("Dear resident, thank you", None) == 0.0
    assert json_valid('{"reply": "hi"', None) == 0.0
    assert json_valid(None, None) == 0.0 and json_valid(3.5, None) == 0.0


def test_json_schema_scores_valid_answers_only() -> None:
    check_schema(SCHEMA, "schemas/reply.json")
    score = json_schema(SCHEMA)
    assert score('{"reply": "We will call you", "next_step": "callback"}', None) == 1.0
    assert score('{"reply": "We will call you", "next_step": "email"}', None) == 0.0
    assert score('{"reply": "", "next_step": "none"}', None) == 0.0
    assert score('{"reply": "x", "next_step": "none", "extra": 1}', None) == 0.0
    assert score("not json", None) == 0.0


def test_a_broken_schema_is_refused_naming_the_file_and_place() -> None:
    with pytest.raises(
        BadInput, match=r"schemas/reply.json is not a valid JSON Schema at properties/reply/type"
    ):
        check_schema({"properties": {"reply": {"type": "text"}}}, "schemas/reply.json")
    with pytest.raises(BadInput, match="is not a JSON Schema"):
        check_schema(["type"], "schemas/reply.json")
