"""Rendering for people (rich on a TTY, plain text otherwise) and for machines (JSON).

Everything a person reads passes through here, and much of it is user text: reasons,
actors, prompt templates, release notes, error messages naming what was asked for.
A reason given to a CI workflow can hold an escape sequence that retitles, recolours
or rewrites the operator's terminal when ``releaser audit log`` prints it later. So
every line printed for people is made :func:`safe` first: C0 and C1 control
characters, DEL and the Unicode bidirectional overrides are shown as visible escapes
(``\\x1b``, ``\\u202e``, ``\\n``); ``say``, ``warn`` and ``err`` keep newlines and tabs (their
text may be meant to span lines), table cells keep neither (a newline in a reason
must not forge a row). Rich tables get :class:`rich.text.Text` cells, so ``[red]`` or
``[link=...]`` in user data prints literally instead of as markup. JSON output keeps
every string exact; :func:`emit_json` only writes the invisible ones as ``\\u`` escapes.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

__all__ = [
    "emit_json",
    "emit_json_list",
    "err",
    "is_tty",
    "safe",
    "safe_cell",
    "say",
    "table",
    "warn",
]

# DEL, C1 and the bidi embeddings, overrides and isolates: the characters that JSON
# leaves raw (with ensure_ascii=False) but a terminal may act on or reorder text by;
# and lone surrogates, which stand for bytes that were not UTF-8 (a damaged store).
_INVISIBLE = r"\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
# Lines: every C0 control except tab and newline (CR is escaped; CRLF was made LF first).
_LINE_UNSAFE = re.compile(rf"[\x00-\x08\x0b-\x1f{_INVISIBLE}]")
# Cells: every C0 control, newline and tab included.
_CELL_UNSAFE = re.compile(rf"[\x00-\x1f{_INVISIBLE}]")
_JSON_UNSAFE = re.compile(rf"[{_INVISIBLE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), newlines and tabs kept."""
    return _LINE_UNSAFE.sub(_visible, text.replace("\r\n", "\n"))


def safe_cell(value: object) -> str:
    """One table cell as text on one line: every control character shown as an escape."""
    return "" if value is None else _CELL_UNSAFE.sub(_visible, str(value))


def is_tty(stream: TextIO | None = None) -> bool:
    """True when output goes to a terminal and colour is not switched off."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def say(text: str = "") -> None:
    """Print a line for people (control characters escaped, see :func:`safe`)."""
    print(safe(text), file=sys.stdout)


def warn(text: str) -> None:
    """Print a warning to stderr (a ``::warning::`` annotation in GitHub Actions)."""
    text = safe(text)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::warning::{_escape_annotation(text)}", file=sys.stderr)
    else:
        print(f"warning: {text}", file=sys.stderr)


def err(text: str) -> None:
    """Print an error line to stderr (control characters escaped, see :func:`safe`)."""
    print(safe(text), file=sys.stderr)


def error_annotation(text: str) -> None:
    """In GitHub Actions, an ``::error::`` annotation for ``text`` (escaped); else nothing."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::error::{_escape_annotation(safe(text))}", file=sys.stderr)


def _escape_annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def emit_json(value: Any) -> None:
    """Print ``value`` as JSON (the stable ``--json`` shapes), keys sorted.

    Indented on a terminal, for people; one line otherwise, for programs (as ``gh``
    does): Python's C encoder writes only unindented JSON, about ten times faster,
    which a list of 10,000 releases needs. Strings stay exact: JSON escapes C0
    controls itself, and the characters it would leave raw (DEL, C1, bidi
    overrides) are written as ``\\u`` escapes, which decode the same.
    """
    indent = 2 if sys.stdout.isatty() else None
    text = json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False, default=str)
    # Outside strings JSON is ASCII, so every match is inside a string literal.
    print(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def emit_json_list(items: Iterable[str]) -> None:
    """Print a JSON array of values already encoded as compact JSON text (as
    :func:`emit_json` would print the decoded list: indented on a terminal, one line
    otherwise, with the same characters escaped)."""
    if sys.stdout.isatty():
        emit_json([json.loads(item) for item in items])
        return
    text = "[" + ",".join(items) + "]"
    print(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


_SEP = "\ue000"  # a private-use character: never escaped, joins cells for one pass


def _safe_cells(rows: Sequence[Sequence[Any]], width: int) -> list[list[str]]:
    """Every cell as :func:`safe_cell` makes it, escaped in one regex pass over all of
    them (a table of 100,000 rows would otherwise make 600,000 calls)."""
    if not rows:
        return []
    flat = _SEP.join("" if v is None else str(v) for row in rows for v in row)
    if _SEP in flat.replace(_SEP, "", len(rows) * width - 1):
        return [[safe_cell(v) for v in row] for row in rows]  # a cell holds the separator
    parts = _CELL_UNSAFE.sub(_visible, flat).split(_SEP)
    return [parts[i : i + width] for i in range(0, len(parts), width)]


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
) -> None:
    """A table: rich on a TTY, aligned plain text otherwise (stable for scripts and logs).

    Cells are user data: each is one line with control characters escaped
    (:func:`safe_cell`), and rich is given them as plain ``Text``, never as markup.
    """
    cells = _safe_cells(rows, len(columns))
    title = None if title is None else safe_cell(title)
    if is_tty():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        t = Table(title=None if title is None else Text(title))
        for col in columns:
            t.add_column(Text(safe_cell(col)))
        for row in cells:
            t.add_row(*(Text(v) for v in row))
        Console().print(t)
        return
    if title:
        print(title)
    widths = [
        max(len(c), max((len(row[i]) for row in cells), default=0)) for i, c in enumerate(columns)
    ]
    line = "  ".join(f"{{:<{w}}}" for w in widths).format
    out = [line(*columns).rstrip()]
    out.extend(line(*row).rstrip() for row in cells)
    sys.stdout.write("\n".join(out) + "\n")
