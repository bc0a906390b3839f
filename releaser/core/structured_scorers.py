"""Scorers for structured answers: does an LLM's text parse as JSON, and fit a JSON Schema.

Like every scorer, ``(prediction, label) -> score`` with 1.0 for right and 0.0 for
wrong; the label is unused. A prediction that is already a dict or a list (a model
returning objects) counts as parsed. Pure functions: the schema is passed in, already
read and checked (:func:`check_schema`).
"""

from __future__ import annotations

import json
from typing import Any

from releaser.core.scorers import ScoreFn
from releaser.errors import BadInput

__all__ = ["check_schema", "json_schema", "json_valid", "parse_json"]

_NOT_JSON = object()


def parse_json(prediction: Any) -> Any:
    """The JSON value an answer holds: parsed text, or a dict or list as it is.

    A fenced block (```json ... ```), as chat models often wrap JSON, is unwrapped
    first. Returns a private sentinel when the answer is not JSON.
    """
    if isinstance(prediction, dict | list):
        return prediction
    if not isinstance(prediction, str):
        return _NOT_JSON
    text = prediction.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        if text[:4].lower() == "json":
            text = text[4:]
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def json_valid(prediction: Any, label: Any) -> float:
    """1.0 when the answer is JSON (an object, array or any JSON value)."""
    return 0.0 if parse_json(prediction) is _NOT_JSON else 1.0


def check_schema(schema: Any, source: str) -> None:
    """BadInput naming ``source`` unless ``schema`` is a valid JSON Schema (its $schema
    dialect, else 2020-12)."""
    from jsonschema import validators
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise BadInput(f"{source} is not a JSON Schema (an object)", hint="see json-schema.org")
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise BadInput(
            f"{source} is not a valid JSON Schema at {where}: {exc.message}",
            hint="check it with a JSON Schema validator (e.g. check-jsonschema --check-metaschema)",
        ) from None


def json_schema(schema: Any) -> ScoreFn:
    """A scorer giving 1.0 when the answer is JSON valid against ``schema`` (checked first)."""
    from jsonschema import validators

    validator = validators.validator_for(schema)(schema)

    def score(prediction: Any, label: Any) -> float:
        value = parse_json(prediction)
        if value is _NOT_JSON:
            return 0.0
        return 1.0 if validator.is_valid(value) else 0.0

    return score
