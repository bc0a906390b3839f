"""Runbooks and handover packs, generated from live release state.

``write_runbook`` renders the operations runbook of a service (Markdown,
byte-identical for the same state); ``build_handover`` writes the handover
pack (folder, zip, self-contained HTML page). Templates are sandboxed Jinja2
files from ``runbooks/``; a workspace overrides one by adding a file of the
same name to its own ``runbooks/``.
"""

from __future__ import annotations

from releaser.docs.handover import HandoverResult, build_handover, list_handovers
from releaser.docs.runbook import RunbookResult, render_runbook, write_runbook

__all__ = [
    "HandoverResult",
    "RunbookResult",
    "build_handover",
    "list_handovers",
    "render_runbook",
    "write_runbook",
]
