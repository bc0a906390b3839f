"""Building blocks shared by the config models: patterns, findings, the base model."""

from __future__ import annotations

import difflib
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
)
from pydantic_core import PydanticCustomError

from releaser.core.bucketing import compile_pattern
from releaser.errors import BadInput

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# Loose on purpose: enough to catch a name typed where an address belongs.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
FUNCTION_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
PREDICT_PATTERN = r"^(models:/\S+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"

# pydantic error types the loader knows how to read (see loader.py).
PROBLEM_ERROR = "releaser_problem"
ISSUES_ERROR = "releaser_issues"

# Bounds on numbers, so a typo such as 99999999999999999999 is an error here rather
# than a hang or an overflow later (a bootstrap array, a thread wait, a timedelta).
MAX_COUNT = 10**12
"""Largest count (samples, rows, errors, levels, versions, approvers) a config may give."""
MAX_TIMEOUT_S = 86_400.0
"""Longest timeout in seconds (one day); longer waits overflow thread and socket timeouts."""
MAX_BAKE_MINUTES = 525_600.0
"""Longest bake time of a rollout step (a year, in minutes)."""
MAX_DAYS = 3_650.0
"""Longest stay a phase may require in the phase before it (ten years, in days)."""

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Issue:
    """One finding of a cross-field rule, located relative to the model that found it."""

    loc: Loc
    message: str
    hint: str | None = None


def problem(message: str, hint: str | None = None) -> PydanticCustomError:
    """A validation error whose message and hint the loader shows as they are."""
    return PydanticCustomError(PROBLEM_ERROR, "{message}", {"message": message, "hint": hint})


def raise_issues(issues: list[Issue]) -> None:
    """Raise every finding at once as one pydantic error (the loader splits them again)."""
    if not issues:
        return
    summary = "; ".join(
        f"{'.'.join(str(p) for p in i.loc)}: {i.message}" if i.loc else i.message for i in issues
    )
    raise PydanticCustomError(ISSUES_ERROR, "{summary}", {"summary": summary, "issues": issues})


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for the closest choice, or None when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _repo_relative(path: str) -> str:
    """Normalise a repo-relative path; refuse absolute paths and escapes from the repo."""
    if not path.strip():
        raise problem("the path is empty")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        raise problem(
            f"{path!r} is absolute", hint="write the path relative to the folder of releaser.yaml"
        )
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm == ".." or norm.startswith("../"):
        raise problem(
            f"{path!r} points outside the repository",
            hint="releaser reads and writes only inside the folder of releaser.yaml: "
            "write a path below it, without '..' leading out",
        )
    return norm


RepoPath = Annotated[str, AfterValidator(_repo_relative)]
"""A path inside the repository: relative to releaser.yaml's folder, never leading out."""


def _compile(pattern: str) -> None:
    """Refuse a rule's pattern that the router's engine (RE2) would refuse, with its reason."""
    try:
        compile_pattern(pattern)
    except BadInput as exc:
        raise problem(exc.message, exc.hint) from None


class _Model(BaseModel):
    """Base of every config model: unknown keys are errors, values frozen, numbers finite.

    Subclasses that set their own ``model_config`` inherit these settings (pydantic
    merges them), so no float of the config accepts .inf or .nan.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True, allow_inf_nan=False)


def _duplicates(values: Iterable[str]) -> list[tuple[int, str]]:
    """(index, value) of every value already seen earlier in ``values``."""
    seen: set[str] = set()
    dups: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        if value in seen:
            dups.append((i, value))
        seen.add(value)
    return dups


# --- people -----------------------------------------------------------------------------


def unknown_group(name: str, groups: Iterable[str]) -> tuple[str, str]:
    """Message and hint for a step naming a group that is not defined."""
    names = sorted(groups)
    close = did_you_mean(name, names)
    known = ", ".join(names) if names else "none defined"
    return f"unknown group {name!r}", close or f"groups are defined under 'groups' ({known})"
