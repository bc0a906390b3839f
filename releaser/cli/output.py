"""Rendering for people (rich on a TTY, plain text otherwise) and for machines (JSON)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["emit_json", "err", "is_tty", "say", "table", "warn"]


def is_tty(stream: TextIO | None = None) -> bool:
    """True when output goes to a terminal and colour is not switched off."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def say(text: str = "") -> None:
    """Print a line for people."""
    print(text, file=sys.stdout)


def warn(text: str) -> None:
    """Print a warning to stderr (a ``::warning::`` annotation in GitHub Actions)."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::warning::{_escape_annotation(text)}", file=sys.stderr)
    else:
        print(f"warning: {text}", file=sys.stderr)


def err(text: str) -> None:
    """Print an error line to stderr."""
    print(text, file=sys.stderr)


def error_annotation(text: str) -> None:
    """In GitHub Actions, an ``::error::`` annotation for ``text`` (escaped); else nothing."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::error::{_escape_annotation(text)}", file=sys.stderr)


def _escape_annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON (the stable ``--json`` shapes)."""
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """A table: rich on a TTY, aligned plain text otherwise (stable for scripts and logs)."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for col in columns:
            t.add_column(col)
        for row in cells:
            t.add_row(*row)
        Console().print(t)
        return
    if title:
        print(title)
    widths = [len(c) for c in columns]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    print("  ".join(c.ljust(widths[i]) for i, c in enumerate(columns)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
