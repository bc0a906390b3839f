"""``releaser runbook`` and ``releaser handover``: documents for operations, from live state."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from releaser.cli.app import app, state


@app.command("runbook")
def runbook(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from releaser.yaml.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: runbooks/SERVICE.md)."),
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Print the runbook instead of writing a file.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Write the service's runbook (Markdown) from releaser.yaml and the release state."""
    from releaser.cli.output import emit_json, say, warn

    ws = state(ctx).workspace()
    if stdout:
        from releaser.docs.runbook import render_runbook

        typer.echo(render_runbook(ws, service), nl=False)
        return
    from releaser.docs.runbook import write_runbook

    result = write_runbook(ws, service, output)
    if as_json:
        emit_json(result.to_dict())
        return
    say(f"wrote {result.path}")
    for gap in result.gaps:
        warn(f"gap: {gap['section']}: {gap['what']} (fill: {gap['how']})")


@app.command("handover")
def handover(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from releaser.yaml.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder to write the pack into.")
    ] = Path("dist"),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build the handover pack: a folder, a zip and one self-contained HTML page."""
    from releaser.cli.output import emit_json, say
    from releaser.docs.handover import build_handover

    result = build_handover(state(ctx).workspace(), service, output)
    if as_json:
        emit_json(result.to_dict())
        return
    say(f"handover pack #{result.number} for {service}:")
    say(f"  folder {result.folder}")
    say(f"  zip    {result.zip_path}")
    say(f"  page   {result.html_path}")
    say(f"  {len(result.files)} files, {len(result.gaps)} gaps listed in gaps.md")
    if result.changes:
        say(f"  changed since pack #{result.number - 1}:")
        for change in result.changes[:10]:
            say(f"    {change}")
