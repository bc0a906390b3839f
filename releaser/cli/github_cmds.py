"""``releaser github ...``: mirror release state to GitHub again, comment on a pull request.

Both print each GitHub effect; a failed one is a warning with the command that
finishes it. ``sync`` is that command, so it then exits 3 (GitHub unavailable);
``comment`` runs inside release steps and, like them, still exits 0 (GitHub
mirrors state, it does not decide it: a fork's read-only token must not fail a gate).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from releaser.cli.app import state

if TYPE_CHECKING:
    from releaser.core.effects import SideEffect

app = typer.Typer(
    help="GitHub mirrors: deployments, PR comments, releases (needs GITHUB_TOKEN).",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ServiceArg = Annotated[str, typer.Argument(help="Service name from releaser.yaml.")]


def _report(effects: list[SideEffect], as_json: bool, *, strict: bool) -> None:
    from releaser.cli.output import emit_json, say, warn
    from releaser.errors import ExternalUnavailable

    if as_json:
        emit_json({"side_effects": [e.__dict__ for e in effects]})
    else:
        for e in effects:
            if e.status != "failed":
                say(f"{e.name}: {e.status}{f' ({e.detail})' if e.detail else ''}")
    failed = [e for e in effects if e.status == "failed"]
    for e in failed:
        warn(f"{e.name} failed: {e.detail}; finish it with: {e.retry}")
    if failed and strict:
        raise ExternalUnavailable(
            f"{len(failed)} GitHub update{'s' if len(failed) != 1 else ''} failed",
            hint="the release state in the store is unchanged; re-run this command later",
        )


@app.command("sync")
def sync(
    ctx: typer.Context,
    service: ServiceArg,
    pack: Annotated[
        Path | None,
        typer.Option(
            "--pack", help="Handover pack zip to attach to the stable release's GitHub Release."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Mirror the service's current state to GitHub again (deployment status, release)."""
    from releaser.api.github import sync_service

    effects = sync_service(state(ctx).workspace(), service, pack_path=pack)
    _report(effects, as_json, strict=True)


@app.command("comment")
def comment(
    ctx: typer.Context,
    service: ServiceArg,
    file: Annotated[Path, typer.Option("--file", help="Markdown to post (e.g. the gate report).")],
    pr: Annotated[
        int | None,
        typer.Option("--pr", help="Pull request number (default: from GITHUB_REF or the event)."),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option("--release", help="Add what this release changes against production."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Post the service's one comment on the pull request, or edit it in place."""
    from releaser.api.github import comment_on_pr, release_diff_markdown
    from releaser.errors import ArtifactNotFound

    try:
        body = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactNotFound(
            f"cannot read {file}: {exc.strerror}", hint="pass the Markdown report's path to --file"
        ) from None
    ws = state(ctx).workspace()
    ws.config.service(service)
    if release is not None:
        body = body.rstrip() + "\n\n" + release_diff_markdown(ws, service, release)
    effect = comment_on_pr(ws, service=service, body_md=body, pr_number=pr)
    _report([effect], as_json, strict=False)
