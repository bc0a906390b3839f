"""``releaser release ...``: create, list, show and diff release bundles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from releaser.cli.app import state

if TYPE_CHECKING:
    from releaser.core.release import Release

app = typer.Typer(help="Immutable release bundles.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def release_dict(release: Release) -> dict[str, Any]:
    """The documented JSON shape of a release."""
    return release.model_dump(mode="json")


def _model_text(release: Release) -> str:
    m = release.content.model
    return f"{m.name} v{m.version}" if m else "-"


@app.command("create")
def create(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name from releaser.yaml.")],
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Allow uncommitted changes (recorded).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Resolve and pin the service's model, prompts, data and code into a release."""
    from releaser.api.releases import create_release
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say, warn

    ws = state(ctx).workspace()
    result = create_release(ws, service, allow_dirty=allow_dirty)
    for w in result.warnings:
        warn(w)
    rel = result.release
    set_outputs({"release_id": rel.id, "created": str(result.created).lower()})
    if as_json:
        emit_json({"created": result.created, "release": release_dict(rel)})
        return
    verb = "created" if result.created else "unchanged inputs: existing"
    say(f"{verb} release {rel.id} for {service}")
    _print_release(rel)


def _print_release(rel: Release) -> None:
    from releaser.cli.output import table

    c = rel.content
    rows: list[tuple[str, str, str]] = []
    if c.model:
        rows.append(
            (
                "model",
                f"{c.model.name} v{c.model.version}",
                f"run {c.model.run_id or '-'} alias {c.model.alias or '-'}",
            )
        )
    for p in c.prompts:
        rows.append(("prompt", f"{p.name} v{p.version}", f"sha256 {p.content_hash[:12]}"))
    for d in c.datasets:
        rows.append(("dataset", d.path, f"md5 {d.md5} @ {d.rev[:10]}"))
    dirty = " (dirty)" if c.code.dirty else ""
    rows.append(("code", f"{c.code.sha[:12]}{dirty}", c.code.branch or "(detached)"))
    rows.append(("config", c.config_hash[:12], ""))
    table(
        ["kind", "pinned", "detail"],
        rows,
        title=f"release {rel.id}  service {c.service}  by {rel.created_by} at {rel.created_at}",
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List releases, oldest first."""
    from releaser.api.releases import release_summaries
    from releaser.cli.output import emit_json, say, table

    releases = release_summaries(state(ctx).workspace(), service)
    if as_json:
        emit_json([r.to_dict() for r in releases])
        return
    if not releases:
        say("no releases yet: run 'releaser release create SERVICE'")
        return
    table(
        ["id", "service", "model", "prompts", "gate", "stable", "code", "created", "by"],
        [
            (
                r.id,
                r.service,
                f"{r.model['name']} v{r.model['version']}" if r.model else "-",
                ", ".join(f"{p['name']} v{p['version']}" for p in r.prompts) or "-",
                r.gate or "-",
                "stable" if r.stable else ("known-good" if r.known_good else ""),
                str(r.code.get("sha") or "")[:10],
                r.created_at,
                r.created_by,
            )
            for r in releases
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    release_id: Annotated[str, typer.Argument(help="Release id or a unique prefix.")],
    as_json: JsonOpt = False,
) -> None:
    """Show everything a release pins."""
    from releaser.api.releases import get_release
    from releaser.cli.output import emit_json

    rel = get_release(state(ctx).workspace(), release_id)
    if as_json:
        emit_json(release_dict(rel))
        return
    _print_release(rel)


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The older release (id or prefix).")],
    b: Annotated[str, typer.Argument(help="The newer release (id or prefix).")],
    as_json: JsonOpt = False,
) -> None:
    """What changed between two releases: model, prompt text, data hashes, code, config."""
    from releaser.api.releases import diff_releases
    from releaser.cli.output import emit_json, say, table

    d = diff_releases(state(ctx).workspace(), a, b)
    if as_json:
        emit_json(d.to_dict())
        return
    if not d.changes:
        say(f"{d.a.id} and {d.b.id} pin the same content")
        return
    table(
        ["field", d.a.id, d.b.id], [(c.path, _short(c.before), _short(c.after)) for c in d.changes]
    )
    for name, text in d.prompt_text_diffs.items():
        say(f"\nprompt {name}:")
        say(text.rstrip())


def _short(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
