"""Output for GitHub Actions: ``$GITHUB_OUTPUT`` values, ``$GITHUB_STEP_SUMMARY`` Markdown
and ``::error`` annotations for configuration problems.

Outside Actions (the variables unset) every function here does nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from releaser.errors import ConfigProblem

__all__ = ["append_step_summary", "error_annotations", "set_outputs"]


def set_outputs(values: Mapping[str, str]) -> None:
    """Append ``name=value`` pairs to ``$GITHUB_OUTPUT`` (multi-line values safely delimited)."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        for name, value in values.items():
            if "\n" in value:
                delim = f"releaser_{uuid.uuid4().hex}"
                fh.write(f"{name}<<{delim}\n{value}\n{delim}\n")
            else:
                fh.write(f"{name}={value}\n")


def append_step_summary(markdown: str) -> None:
    """Append Markdown to ``$GITHUB_STEP_SUMMARY``."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(markdown.rstrip() + "\n\n")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error_annotations(problems: Iterable[ConfigProblem]) -> list[str]:
    """``::error file=...,line=...::message`` lines for config problems; none outside Actions.

    Paths under ``$GITHUB_WORKSPACE`` are made relative to it, so the
    annotation lands on the file in the pull request's diff.
    """
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return []
    workspace = os.environ.get("GITHUB_WORKSPACE")
    lines = []
    for p in problems:
        file = p.file
        if workspace:
            try:
                file = Path(file).resolve().relative_to(Path(workspace).resolve()).as_posix()
            except ValueError:
                pass
        props = f"file={_escape_property(file)}"
        if p.line is not None:
            props += f",line={p.line}"
        props += f",title={_escape_property('releaser.yaml: ' + p.path if p.path else 'config')}"
        msg = p.message + (f" (hint: {p.hint})" if p.hint else "")
        lines.append(f"::error {props}::{_escape_data(msg)}")
    return lines
