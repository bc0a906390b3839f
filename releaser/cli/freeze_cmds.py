"""``releaser freeze`` and ``releaser unfreeze``: stop rollouts widening for a while.

A freeze refuses ``rollout start``, ``rollout promote`` and ``prompt promote ... --to
production`` (exit 2, naming the freeze) and makes ``rollout advance`` hold instead of
widening; ``rollback``, ``rollout pause`` and ``rollout abort`` always work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from releaser.cli.app import app, state

if TYPE_CHECKING:
    from releaser.api.freeze import FreezeChange

ServiceArg = Annotated[str, typer.Argument(help="Service name from releaser.yaml.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (audited; required).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _show(res: FreezeChange, as_json: bool) -> None:
    from releaser.cli.output import emit_json, say

    if as_json:
        emit_json(res.to_dict())
        return
    manual = res.freeze or {}
    if res.action == "freeze":
        done = "froze" if res.changed else "already frozen (nothing written):"
        say(f"{done} {res.service} until {manual.get('until')}: {manual.get('reason')}")
    elif res.changed:
        say(f"lifted the manual freeze of {res.service}")
    else:
        say(f"{res.service} has no manual freeze in force (nothing written)")
    if res.audit_seq is not None:
        say(f"audited as entry {res.audit_seq}")
    for f in res.still_frozen:
        if f.kind != "manual":
            say(f"still in force: {f.describe()} (a window in releaser.yaml)")


@app.command("freeze")
def freeze(
    ctx: typer.Context,
    service: ServiceArg,
    until: Annotated[
        str,
        typer.Option(
            "--until", help="End: ISO 8601 (2026-12-24T18:00:00Z) or a duration (2h, 3d, 90m)."
        ),
    ],
    reason: ReasonOpt,
    as_json: JsonOpt = False,
) -> None:
    """Freeze a service's changes until a time: rollouts do not start, widen or promote.

    Rollback, pause and abort always work. Exits 2, writing nothing, for a time in the past.
    """
    from releaser.api.freeze import freeze_service

    _show(freeze_service(state(ctx).workspace(), service, until=until, reason=reason), as_json)


@app.command("unfreeze")
def unfreeze(
    ctx: typer.Context, service: ServiceArg, reason: ReasonOpt, as_json: JsonOpt = False
) -> None:
    """Lift a service's manual freeze (windows in releaser.yaml stay in force)."""
    from releaser.api.freeze import unfreeze_service

    _show(unfreeze_service(state(ctx).workspace(), service, reason=reason), as_json)
