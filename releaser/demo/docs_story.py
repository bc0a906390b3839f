"""The demo's last chapter: the runbook and the handover pack, from the state the story left."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["write_docs"]


def write_docs(root: Path, service: str, report: Callable[[str], None]) -> tuple[Path, Path]:
    """Write ``runbooks/SERVICE.md`` and the handover pack under ``dist/``; report each step."""
    from releaser.api.workspace import open_workspace
    from releaser.docs import build_handover, write_runbook

    ws = open_workspace(root)
    try:
        runbook = write_runbook(ws, service)
        report(f"runbook written to {runbook.path} ({len(runbook.gaps)} gaps listed)")
        pack = build_handover(ws, service, root / "dist")
        report(
            f"handover pack #{pack.number}: {pack.folder}, {pack.zip_path.name}, "
            f"{pack.html_path.name}"
        )
        report(f"  ATRS v3 record: {pack.atrs_filled} of {pack.atrs_total} fields pre-filled")
        return runbook.path, pack.html_path
    finally:
        ws.close()
