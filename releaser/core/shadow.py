"""Shadow steps: what a step that mirrors traffic to the candidate does, and how answers agree.

In a shadow step no user is served by the candidate. The gateway sends a share of the
requests it serves from the stable release to the candidate's endpoint as well, after the
stable answer has been returned, and discards the candidate's answer. It counts the
candidate's errors and latency as the candidate's metrics of that step, and scores each
pair of answers for agreement (1 agree, 0 disagree, or a similarity in [0, 1] from a
comparison function) as the candidate's quality scores of that step. The analysis reads
those scores as *agreement*, never as the candidate's quality (see
:func:`releaser.api.rollout_status.variant_totals`).

This module is pure: the plan frozen into a rollout, and the comparison of two answers.
Loading a ``module:function`` comparison is the gateway's business.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BUILTIN_COMPARISONS",
    "Compare",
    "ShadowPlan",
    "agreement",
    "extract",
    "normalise_text",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")

BUILTIN_COMPARISONS = ("json", "text")
"""``json``: equal JSON documents (equal bytes when either answer is not JSON);
``text``: equal after case folding and collapsing white space."""

Compare = Callable[[Any, Any], Any]
"""A comparison function: ``compare(stable, candidate)`` -> bool or a score in [0, 1].
Its arguments are the compared values: the parsed JSON at ``path``, or the answers' text."""

_MISSING = object()
_SPACE = re.compile(r"\s+")


class ShadowPlan(BaseModel):
    """How a shadow step mirrors requests and judges the candidate's answers."""

    model_config = _FROZEN

    percent: float = Field(gt=0, le=100, description="Share of requests mirrored, in percent.")
    compare: str = Field(default="json", description="json, text or module:function.")
    path: str | None = Field(
        default=None, description="Dotted path into JSON answers; only that value is compared."
    )
    min_agreement: float = Field(default=0.95, gt=0, le=1)
    max_in_flight: int = Field(default=16, ge=1)
    timeout_ms: float = Field(default=10_000, gt=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])


def normalise_text(value: str) -> str:
    """Text as ``compare: text`` sees it: case folded, runs of white space as one space."""
    return _SPACE.sub(" ", value).strip().casefold()


def extract(document: Any, path: str | None) -> Any:
    """The value at a dotted ``path`` (list indices as numbers), or a private sentinel.

    ``choices.0.message.content`` reads an OpenAI-style chat answer's text.
    """
    if not path:
        return document
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        return _MISSING


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def agreement(
    plan: ShadowPlan,
    stable: bytes,
    candidate: bytes,
    function: Compare | None = None,
) -> float | None:
    """How far the candidate's answer agrees with the stable one: a score in [0, 1].

    None means "not comparable" (not counted either way): the stable answer lacks the
    ``path``, or a comparison function failed or returned something that is not a score.
    A candidate answer that lacks the ``path``, or is not JSON where the stable one is,
    disagrees.
    """
    if plan.path is None and plan.compare in BUILTIN_COMPARISONS and function is None:
        if stable == candidate:
            return 1.0  # the common case costs no parsing
    if plan.path is not None or plan.compare == "json" or function is not None:
        left, right = _parse(stable), _parse(candidate)
        if plan.path is not None:
            if left is _MISSING:
                return None
            left = extract(left, plan.path)
            if left is _MISSING:
                return None
            right = _MISSING if right is _MISSING else extract(right, plan.path)
            if right is _MISSING:
                return 0.0
        elif left is _MISSING or right is _MISSING:
            if function is None:
                return 1.0 if stable == candidate else 0.0
            left = stable.decode("utf-8", "replace")
            right = candidate.decode("utf-8", "replace")
    else:
        left = stable.decode("utf-8", "replace")
        right = candidate.decode("utf-8", "replace")
    if function is not None:
        return _score(function, left, right)
    if plan.compare == "text":
        return 1.0 if normalise_text(_as_text(left)) == normalise_text(_as_text(right)) else 0.0
    return 1.0 if left == right else 0.0


def _score(function: Compare, left: Any, right: Any) -> float | None:
    try:
        result = function(left, right)
    except Exception:
        return None
    if isinstance(result, bool):
        return 1.0 if result else 0.0
    if isinstance(result, int | float) and 0.0 <= result <= 1.0:
        return float(result)
    return None
