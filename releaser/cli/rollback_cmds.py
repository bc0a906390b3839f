"""``releaser rollback`` and ``releaser reconcile``: the 3 a.m. commands.

Output says first whether traffic is back, then each side effect; exit 0
once traffic is back even if a side effect failed (it is printed with the
command that finishes it).
"""

from __future__ import annotations

from typing import Annotated

import typer

from releaser.cli.app import app, state


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from releaser.yaml.")],
    reason: Annotated[str, typer.Option("--reason", help="What went wrong (audited).")] = "",
    to: Annotated[
        str | None, typer.Option("--to", help="Release to return to (default: last known-good).")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish side effects a previous rollback left.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Roll back a release marked irreversible.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Send all traffic back to the last known-good release (mid-rollout or after promotion)."""
    import sys

    from releaser.api.rollback import plan_rollback
    from releaser.api.rollback import rollback as do_rollback
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say, warn
    from releaser.errors import BadInput

    # A broken releaser.yaml (even one git left conflict markers in) must not stand between
    # operations and a rollback: it runs from the store alone, and what needs the file
    # (aliases, deploy targets) stays owed until it is fixed.
    ws = state(ctx).workspace(store_only=True)
    if resume and not reason:
        reason = "resume side effects"
    if not reason.strip():
        raise BadInput("a reason is required", hint="pass --reason 'what went wrong'")
    plan = plan_rollback(ws, service, to=to)
    if not (yes or dry_run or resume or plan.kind == "already"):
        if not sys.stdin.isatty():
            raise BadInput(
                f"about to: {plan.describe()}",
                hint="pass --yes to confirm (required without a terminal)",
            )
        typer.confirm(f"{plan.describe()}. Roll back?", abort=True)
    result = do_rollback(
        ws, service, reason=reason, to=to, force=force, dry_run=dry_run, resume=resume
    )
    set_outputs(
        {
            "rolled_back_to": result.plan.to_release,
            "switched": str(result.switched).lower(),
            "pending": ",".join(e.name for e in result.pending),
        }
    )
    for text in result.warnings:
        warn(text)
    if as_json:
        emit_json(result.to_dict())
    elif dry_run:
        say(f"dry run: {result.plan.describe()}; nothing changed")
    elif not result.switched:
        say(f"{result.plan.describe()}; traffic already there (nothing switched)")
    else:
        say(f"traffic switched: {result.plan.describe()}")
    if not as_json:
        for e in result.side_effects:
            if e.status == "failed":
                warn(f"{e.name}: PENDING ({e.detail}); finish it with: {e.retry}")
            elif e.status == "planned":
                say(f"  would apply {e.name}: {e.detail}")
            else:
                say(f"  {e.name}: {e.status}" + (f" ({e.detail})" if e.detail else ""))


@app.command("reconcile")
def reconcile(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from releaser.yaml.")],
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Only report drift and owed side effects; exit 1 if there are any."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Bring MLflow and prompt aliases in line with the stable release; report drift."""
    from releaser.api.rollback import reconcile as do_reconcile
    from releaser.cli.output import emit_json, say, warn

    drift, effects = do_reconcile(state(ctx).workspace(), service, fix=not check)
    if as_json:
        emit_json(
            {"drift": [d.__dict__ for d in drift], "side_effects": [e.__dict__ for e in effects]}
        )
    else:
        if not [d for d in drift if not d.override]:
            say(f"{service}: aliases match the stable release")
        for d in drift:
            if d.override:
                say(
                    f"override: {d.alias} points at {d.actual} by a recorded hand promotion "
                    f"(the stable release pins {d.expected}); left as it is"
                )
            else:
                warn(f"drift: {d.alias} points at {d.actual}, stable release pins {d.expected}")
        for e in effects:
            if e.status == "planned":
                warn(f"owed: {e.name} ({e.detail}); finish it with: {e.retry}")
            else:
                say(f"  {e.name}: {e.status}" + (f" ({e.detail})" if e.detail else ""))
    if check and ([d for d in drift if not d.override] or effects):
        raise typer.Exit(1)


@app.command("drill")
def drill(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from releaser.yaml.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (audited).")] = "drill",
    to: Annotated[
        str | None, typer.Option("--to", help="Release to rehearse returning to.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Rehearse a rollback on a scratch copy of the state; record the time-to-revert."""
    from releaser.api.drills import run_drill
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say, warn
    from releaser.errors import CheckFailed

    record = run_drill(state(ctx).workspace(), service, to=to, reason=reason)
    set_outputs(
        {
            "drill_ok": str(record.ok).lower(),
            "time_to_revert_ms": ""
            if record.time_to_revert_ms is None
            else str(record.time_to_revert_ms),
        }
    )
    if as_json:
        emit_json(record.model_dump(mode="json"))
    else:
        say(
            f"drill ({record.kind}) on a scratch copy in a {record.store} store: "
            f"{record.from_release} -> {record.to_release}; the live service was not touched"
        )
        if record.time_to_revert_ms is not None:
            say(
                f"  time-to-revert: {record.time_to_revert_ms:.0f} ms (a router in another "
                f"process served {record.to_release} to all {record.ids_checked} probed ids)"
            )
            say(f"  store write of the switch: {record.switch_ms:.1f} ms")
        say(f"  audit chain of the copy: {'verified' if record.audit_verified else 'BROKEN'}")
        for line in record.not_rehearsed:
            say(f"  not rehearsed (a real rollback does it next): {line}")
        for note in record.notes:
            warn(note)
        say(f"recorded at {record.at}; runbooks show the last drill")
    if not record.ok:
        raise CheckFailed(
            f"the drill failed: {record.detail or 'the audit chain of the copy did not verify'}",
            hint="run the drill again with --verbose; if it fails again, escalate before a real "
            "rollback is needed",
        )
