"""``releaser audit ...``: read and verify the hash-chained audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from releaser.cli.app import state

app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@app.command("log")
def log(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Show the latest N events (0: all).")] = 50,
    subject: Annotated[
        str | None, typer.Option(help="Only events about this subject, e.g. release:ID.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show audit events, oldest first."""
    from releaser.api.audit import audit_log
    from releaser.cli.output import emit_json, say, table
    from releaser.errors import BadInput

    if limit < 0:
        raise BadInput(
            f"--limit must be 0 or more, got {limit}",
            hint="pass --limit N for the latest N events, or --limit 0 for all of them",
        )
    events = audit_log(state(ctx).workspace(), limit=limit or None, subject=subject)
    if as_json:
        emit_json([e.to_dict() for e in events])
        return
    if not events:
        say("no audit events yet")
        return
    table(
        ["seq", "at", "actor", "action", "subject", "reason"],
        [(e.seq, e.at, e.actor, e.action, e.subject, e.reason or "") for e in events],
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Verify the hash chain; exit 1 naming the first bad entry if it is broken."""
    from releaser.api.audit import verify_audit
    from releaser.cli.output import emit_json, err, say

    result = verify_audit(state(ctx).workspace())
    if as_json:
        emit_json(
            {
                "ok": result.ok,
                "count": result.count,
                "head_hash": result.head_hash,
                "bad_seq": result.bad_seq,
                "problem": result.problem,
            }
        )
    elif result.ok:
        say(f"audit chain ok: {result.count} events, head {result.head_hash[:16]}")
    else:
        err(f"audit chain BROKEN at entry {result.bad_seq}: {result.problem}")
        err(
            f"hint: entries before {result.bad_seq} verified; inspect with "
            f"'releaser audit log --limit 0' and restore the store from a backup"
        )
    if not result.ok:
        raise typer.Exit(1)
