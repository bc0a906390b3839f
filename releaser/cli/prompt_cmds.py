"""``releaser prompt ...``: register, inspect, diff, promote and roll back prompt versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from releaser.cli.app import state

if TYPE_CHECKING:
    from promptregistry import AliasChange, PromptVersion
    from releaser.api.workspace import Workspace

app = typer.Typer(help="Versioned prompts: register, promote, roll back.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")]
ExpectOpt = Annotated[
    int | None,
    typer.Option(
        "--expect-current",
        help="Move only if the alias points at this version now (exit 4 otherwise).",
    ),
]
OverrideOpt = Annotated[
    bool,
    typer.Option(
        "--override",
        help="Move a production alias that a stable release pins: recorded as a deliberate "
        "override, which reconcile reports and leaves until the service's next release change.",
    ),
]


def version_dict(pv: PromptVersion) -> dict[str, Any]:
    """The documented JSON shape of a prompt version."""
    return pv.model_dump(mode="json")


def change_dict(change: AliasChange) -> dict[str, Any]:
    """The documented JSON shape of an alias move."""
    return change.model_dump(mode="json")


def _workspace(ctx: typer.Context) -> Workspace:
    # Only the store, mlflow and prompts keys of releaser.yaml must validate: prompt
    # commands start fast and work while another part of the file is being fixed.
    return state(ctx).workspace(settings_only=True)


@app.command("register")
def register(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A prompt spec YAML file.")],
    as_json: JsonOpt = False,
) -> None:
    """Lint and register a new version (identical content reuses the latest version)."""
    from releaser.api.prompts import register_prompt
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say, warn

    result = register_prompt(_workspace(ctx), file)
    for w in result.warnings:
        warn(w)
    pv = result.version
    set_outputs({"prompt": pv.name, "prompt_version": str(pv.version)})
    if as_json:
        emit_json({"created": result.created, "version": version_dict(pv)})
    elif result.created:
        say(f"registered {pv.name} version {pv.version} (sha256 {pv.content_hash[:12]})")
    else:
        say(f"{pv.name}: content identical to version {pv.version}; nothing registered")


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List prompts with their latest version and aliases."""
    from releaser.api.prompts import list_prompts
    from releaser.cli.output import emit_json, say, table

    rows = list_prompts(_workspace(ctx))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("no prompts yet: run 'releaser prompt register FILE'")
        return
    table(
        ["name", "latest", "versions", "aliases"],
        [
            (
                r["name"],
                r["latest"],
                r["versions"],
                ", ".join(f"{a}->v{v}" for a, v in sorted(r["aliases"].items())),
            )
            for r in rows
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME@ALIAS or NAME/VERSION.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one prompt version: template, variables, parameters."""
    from releaser.api.prompts import get_prompt
    from releaser.cli.output import emit_json, say

    pv = get_prompt(_workspace(ctx), ref)
    if as_json:
        emit_json(version_dict(pv))
        return
    say(f"{pv.name} version {pv.version}  sha256 {pv.content_hash}")
    say(f"aliases: {', '.join(pv.aliases) or '-'}   created {pv.created_at.isoformat()}")
    if pv.commit_message:
        say(f"message: {pv.commit_message}")
    variables = ", ".join(f"{k}: {v}" for k, v in sorted(pv.variables.items()))
    say(f"variables: {variables or '-'}")
    if pv.parameters:
        say("parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(pv.parameters.items())))
    say("---")
    say(pv.template.rstrip())


@app.command("diff")
def diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    a: Annotated[str, typer.Argument(help="Version number or alias.")],
    b: Annotated[str, typer.Argument(help="Version number or alias.")],
    as_json: JsonOpt = False,
) -> None:
    """Unified diff of two versions plus variable and parameter changes."""
    from releaser.api.prompts import diff_prompt
    from releaser.cli.output import emit_json, say

    d = diff_prompt(_workspace(ctx), name, a, b)
    if as_json:
        emit_json(d.model_dump(mode="json"))
        return
    say(d.render_text().rstrip())


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    version: Annotated[int, typer.Argument(help="Version to point the alias at.")],
    to: Annotated[str, typer.Option("--to", help="Alias to move, e.g. production.")],
    reason: ReasonOpt,
    expect_current: ExpectOpt = None,
    override: OverrideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Point an alias at a version (recorded and audited first, then moved)."""
    from releaser.api.prompts import promote_prompt

    change = promote_prompt(
        _workspace(ctx),
        name,
        version,
        to,
        reason,
        expect_current=expect_current,
        override=override,
    )
    _report(change, as_json)


@app.command("release")
def release(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    version: Annotated[int, typer.Argument(help="The version to release.")],
    service: Annotated[str, typer.Option("--service", help="The service that uses the prompt.")],
    as_json: JsonOpt = False,
) -> None:
    """The recommended path for a prompt change: release, gate, then canary.

    Creates the release that pins this prompt version (everything else as the service
    resolves it now), runs the eval gate against the stable release, and on a pass starts
    the rollout at the plan's first step, printing the plan and the next command. Exits 1,
    with no rollout started, when the gate fails. Safe to run again after a crash.
    """
    from releaser.api.prompt_release import release_prompt
    from releaser.cli.gate_cmds import _progress_bar
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say, warn
    from releaser.errors import CheckFailed

    update, stop = _progress_bar()
    try:
        res = release_prompt(state(ctx).workspace(), service, name, version, progress=update)
    finally:
        if stop is not None:
            stop()
    rel, gate, started = res.release, res.gate, res.rollout
    set_outputs(
        {
            "release_id": rel.id,
            "gate": "none" if gate is None else "passed" if gate.passed else "failed",
            "rollout_id": started.rollout.id if started else "",
        }
    )
    if as_json:
        emit_json(
            {
                "release": rel.id,
                "created": res.created,
                "gate": None if gate is None else gate.to_dict(),
                "rollout": None if started is None else started.rollout.to_value(),
                "already_live": res.already_live,
                "warnings": res.warnings,
            }
        )
    else:
        say(f"release {rel.id} pins {name} v{version} ({'created' if res.created else 'exists'})")
        if gate is not None:
            verdict = "PASSED" if gate.passed else "FAILED"
            say(f"eval gate against stable {gate.baseline_id}: {verdict}")
            for failure in gate.failures:
                say(f"  FAIL {failure}")
        if res.already_live:
            say(f"its rollout is already running: 'releaser rollout status {service}'")
        if started is not None:
            r = started.rollout
            say(f"rollout {r.id} started at step 1/{len(r.steps)} '{r.current.name}':")
            for i, step in enumerate(r.steps, 1):
                groups = f" + groups {', '.join(step.groups)}" if step.groups else ""
                kind = " (shadow: serves nobody)" if step.shadow is not None else ""
                say(f"  {i}. {step.name}: {step.percent:g}%{groups}{kind}")
            say(f"next: 'releaser rollout advance {service}' (or the scheduled workflow) judges it")
        for w in res.warnings:
            warn(w)
    if gate is not None and not gate.passed:
        raise CheckFailed(
            f"release {rel.id} (prompt {name} v{version}) failed the eval gate; no rollout started",
            hint=f"see 'releaser gate {service} --release {rel.id}' for the full report",
        )


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    alias: Annotated[str, typer.Option("--alias", help="Alias to move back.")] = "production",
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in the audit log).")
    ] = "rollback",
    expect_current: ExpectOpt = None,
    override: OverrideOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back to the version it pointed at before its last move (audited)."""
    from releaser.api.prompts import rollback_prompt

    change = rollback_prompt(
        _workspace(ctx), name, alias, reason, expect_current=expect_current, override=override
    )
    _report(change, as_json)


def _report(change: AliasChange, as_json: bool) -> None:
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say

    set_outputs(
        {"prompt": change.name, "alias": change.alias, "prompt_version": str(change.to_version)}
    )
    if as_json:
        emit_json(change_dict(change))
    elif not change.changed:
        say(f"{change.name}@{change.alias} already at version {change.to_version}; nothing moved")
    else:
        before = f"v{change.from_version}" if change.from_version is not None else "(unset)"
        say(f"{change.name}@{change.alias}: {before} -> v{change.to_version} ({change.action})")


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    as_json: JsonOpt = False,
) -> None:
    """Every alias move of a prompt: who, when, from, to, why."""
    from promptregistry import validate_name
    from releaser.api.prompts import history_rows, prompt_errors
    from releaser.cli.output import emit_json, say, table

    # history_rows reads only the store, where any name simply has no moves: refuse a
    # name no prompt can have (exit 2, naming the rule) instead of "no recorded moves".
    with prompt_errors():
        validate_name(name)
    rows = history_rows(_workspace(ctx), name)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say(f"no recorded alias moves for {name}")
        return
    table(
        ["seq", "at", "actor", "alias", "from", "to", "move", "reason"],
        [
            (r["seq"], r["at"], r["actor"], r["alias"], r["from"], r["to"], r["move"], r["reason"])
            for r in rows
        ],
    )
