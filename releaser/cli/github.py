"""Output for GitHub Actions: ``$GITHUB_OUTPUT`` values and ``$GITHUB_STEP_SUMMARY`` Markdown.

Outside Actions (the variables unset) every function here does nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

__all__ = ["append_step_summary", "set_outputs"]


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
