"""``releaser demo``: print the story the library tells."""

from __future__ import annotations

from pathlib import Path


def run_demo(directory: Path, *, keep: bool) -> None:
    """Run the demo story, printing each step as it happens."""
    from releaser.cli.output import say
    from releaser.demo.story import run_demo as story

    summary = story(directory, keep=keep, report=say)
    if not summary.audit_ok:
        from releaser.errors import CheckFailed

        raise CheckFailed("the demo's audit chain did not verify")
