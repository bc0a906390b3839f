"""``releaser runbook``: the operations runbook of a service, as Markdown.

The runbook is rendered from :func:`~releaser.docs.facts.collect_facts` with
the ``runbook.md.j2`` template (a team's own ``runbooks/runbook.md.j2`` wins).
It carries no clock, so the same state always gives byte-identical output and
the file can be committed and reviewed in pull requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from releaser.api.workspace import Workspace
from releaser.docs.facts import collect_facts
from releaser.docs.secrets import Redactor
from releaser.docs.templates import TEMPLATE_DIR, render, template_env
from releaser.errors import BadInput

__all__ = [
    "RUNBOOK_TEMPLATE",
    "RunbookResult",
    "default_runbook_path",
    "render_runbook",
    "write_runbook",
]

RUNBOOK_TEMPLATE = "runbook.md.j2"


@dataclass(frozen=True)
class RunbookResult:
    """The runbook written, and what it could not say."""

    path: Path
    text: str
    gaps: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``runbook --json`` shape."""
        return {"path": str(self.path), "bytes": len(self.text.encode()), "gaps": self.gaps}


def default_runbook_path(ws: Workspace, service: str) -> Path:
    """``runbooks/SERVICE.md`` beside ``releaser.yaml``."""
    return ws.root / TEMPLATE_DIR / f"{service}.md"


def render_runbook(
    ws: Workspace,
    service: str,
    *,
    facts: dict[str, Any] | None = None,
    redactor: Redactor | None = None,
) -> str:
    """The runbook's Markdown text (no files written)."""
    redactor = redactor or Redactor.from_environment(ws.store_url)
    facts = facts if facts is not None else collect_facts(ws, service, redactor=redactor)
    return redactor.text(render(template_env(ws.root), RUNBOOK_TEMPLATE, facts))


def write_runbook(ws: Workspace, service: str, out: Path | None = None) -> RunbookResult:
    """Render the runbook of ``service`` and write it (default ``runbooks/SERVICE.md``).

    The file is only rewritten when its content changes, so its timestamp
    says when the runbook last changed.
    """
    redactor = Redactor.from_environment(ws.store_url)
    facts = collect_facts(ws, service, redactor=redactor)
    text = render_runbook(ws, service, facts=facts, redactor=redactor)
    path = out if out is not None else default_runbook_path(ws, service)
    if path.is_dir():
        path = path / f"{service}.md"
    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)
    except OSError as exc:
        raise BadInput(
            f"cannot write the runbook to {path}: {exc.strerror or exc}",
            hint="choose another file with -o",
        ) from exc
    return RunbookResult(path, text, list(facts["gaps"]))
