"""Change signals: a cheap token that changes whenever an alias moves.

Readers (the SDK) poll ``token()`` at most every few hundred milliseconds and
re-resolve aliases only when it changed; writers (the registry facade) call
``bump()`` after every alias move. ``FileChangeSignal`` is the default; an
application with a shared store (releaser) can plug in its own.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol, runtime_checkable

from promptregistry.errors import BackendUnavailable

__all__ = ["ChangeSignal", "FileChangeSignal"]


@runtime_checkable
class ChangeSignal(Protocol):
    """A token that changes on every ``bump()``; ``token()`` must be cheap."""

    def token(self) -> int | str:
        """The current token; compare with the last one seen to learn of a change."""
        ...

    def bump(self) -> None:
        """Change the token, telling every reader that something moved."""
        ...


class FileChangeSignal:
    """A small file whose content is replaced atomically on every bump.

    The token is the file's content (a fresh random id per bump), so two bumps
    in the same clock tick are still told apart; a missing file reads as ``""``.
    Reading it is one open and one small read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileChangeSignal({str(self.path)!r})"

    def token(self) -> str:
        """The file's content, or ``""`` when it does not exist yet."""
        try:
            with open(self.path, "rb") as fh:
                return fh.read().decode("ascii", "replace")
        except FileNotFoundError:
            return ""

    def bump(self) -> None:
        """Replace the file's content with a new random id (write a temp file, then rename)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
            try:
                with open(tmp, "x", encoding="ascii") as fh:
                    fh.write(uuid.uuid4().hex)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot update change signal {self.path}: {exc.strerror or exc}"
            ) from None
