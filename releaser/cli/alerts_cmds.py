"""``releaser alerts render`` and ``releaser notify test``: SLO alerts as code, and webhooks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from releaser.cli.app import state

app = typer.Typer(help="Prometheus alerting rules from the services' SLOs.", no_args_is_help=True)
notify_app = typer.Typer(help="Webhook notifications of rollout transitions.", no_args_is_help=True)

ServiceArg = Annotated[str, typer.Argument(help="Service name from releaser.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command("render")
def render(
    ctx: typer.Context,
    service: ServiceArg,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder to write SERVICE.rules.yml into (default: alerts/)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write multiwindow, multi-burn-rate Prometheus rules for the service's SLOs.

    Check them with 'promtool check rules FILE'. Render again after a promotion or a
    rollback: the alerts carry the stable release as a label.
    """
    from releaser.api.alerts import write_alert_rules
    from releaser.cli.output import emit_json, say, warn

    result = write_alert_rules(state(ctx).workspace(), service, out)
    if as_json:
        emit_json(result.to_dict())
        return
    for line in result.rules.warnings:
        warn(line)
    verb = "wrote" if result.changed else "unchanged"
    say(f"{verb} {result.path} ({len(result.rules.alerts)} alerts)")
    for a in result.rules.alerts:
        say(f"  {a.name} [{a.severity}] {a.runbook_url}")


@notify_app.command("test")
def test(ctx: typer.Context, service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Post a test event to every webhook that takes the service's events.

    Exits 1 when a webhook could not be reached (what failed is named; nothing secret).
    """
    from releaser.api.notify import send_test
    from releaser.cli.output import emit_json, say, warn
    from releaser.errors import CheckFailed

    outcomes = send_test(state(ctx).workspace(), service)
    if as_json:
        emit_json({"webhooks": [o.to_dict() for o in outcomes]})
    else:
        if not outcomes:
            say(f"no webhook takes {service}'s events (see 'notifications:' in releaser.yaml)")
        for o in outcomes:
            if o.ok:
                say(f"  {o.webhook}: delivered ({o.attempts} attempt(s))")
            else:
                warn(f"{o.webhook}: not delivered: {o.error}")
    if any(not o.ok for o in outcomes):
        raise CheckFailed(
            "a webhook did not take the test event",
            hint="each webhook's error is listed with it ('webhooks' in --json)",
        )
