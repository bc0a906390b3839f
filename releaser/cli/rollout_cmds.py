"""``releaser rollout ...``: canary and staged rollouts to widening user groups."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from releaser.cli.app import state

if TYPE_CHECKING:
    from releaser.api.rollout_status import StatusReport
    from releaser.api.rollouts import SideEffect, TransitionResult
    from releaser.api.workspace import Workspace
    from releaser.core.rollout import Rollout

app = typer.Typer(
    help="Staged rollouts: start, watch, advance, pause, promote.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ServiceArg = Annotated[str, typer.Argument(help="Service name from releaser.yaml.")]


def _where(r: Rollout) -> str:
    if r.final:
        return r.status
    s = r.current
    groups = f" + groups {', '.join(s.groups)}" if s.groups else ""
    return f"step {r.step + 1}/{len(r.steps)} '{s.name}' ({s.percent:g}%{groups}), {r.status}"


def _effects(effects: list[SideEffect]) -> None:
    from releaser.cli.output import say, warn

    for e in effects:
        line = f"  {e.name}: {e.status}" + (f" ({e.detail})" if e.detail else "")
        if e.status == "failed":
            warn(f"{e.name} failed: {e.detail}; finish it with: {e.retry}")
        else:
            say(line)


def _result(res: TransitionResult, as_json: bool, verb: str) -> None:
    from releaser.cli.github import set_outputs
    from releaser.cli.output import emit_json, say, warn

    r = res.rollout
    set_outputs({"rollout_id": r.id, "status": r.status, "step": str(r.step)})
    for text in res.warnings:
        warn(text)
    if as_json:
        emit_json(
            {
                "rollout": r.to_value(),
                "side_effects": [e.__dict__ for e in res.side_effects],
                "warnings": res.warnings,
            }
        )
        return
    say(f"{verb} rollout {r.id} of {r.candidate}: {_where(r)}")
    _effects(res.side_effects)


@app.command("start")
def start(
    ctx: typer.Context,
    service: ServiceArg,
    release: Annotated[str, typer.Option("--release", help="Release id (or unique prefix).")],
    initial: Annotated[
        bool, typer.Option("--initial", help="First deployment: make it stable at once.")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why (audited).")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Start although the eval gate has not passed (needs --reason)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start rolling a release out at the plan's first step (its eval gate must have passed).

    Exits 2, with nothing written, when the gateway serves the service and no endpoint in
    deploy.upstreams serves the stable or the new release.
    """
    from releaser.api.rollouts import start_rollout

    res = start_rollout(
        state(ctx).workspace(), service, release, initial=initial, reason=reason, force=force
    )
    _result(res, as_json, "started" if not initial else "initial release; promoted")


@app.command("status")
def status(ctx: typer.Context, service: ServiceArg, as_json: JsonOpt = False) -> None:
    """Per-variant counts, metrics, test statistics and time in step."""
    from releaser.api.rollout_status import rollout_status
    from releaser.cli.output import emit_json, say, table, warn

    # From the store alone: the stored state shows even while releaser.yaml is broken.
    rep = rollout_status(state(ctx).workspace(store_only=True), service)
    if as_json:
        emit_json(rep.to_dict())
        return
    for problem in rep.problems:
        warn(problem)
    say(f"{service}: stable release {rep.state.stable or '(none)'}")
    for side in rep.endpoints or ():
        where = side.url or "no endpoint (add it to deploy.upstreams.releases)"
        say(f"  {side.role} {side.release} served by {where}")
    for e in rep.owed:
        warn(f"owed: {e.name} ({e.detail}) is recorded but not applied; finish it with: {e.retry}")
    for n in rep.notices:
        warn(
            f"owed: notification {n['event']} of {n['at']} ({n['status']}) is not told yet; "
            f"the next command on {service} posts it"
        )
    _show_freezes(rep)
    if rep.rollout is None:
        say(f"no rollout yet (state store {state(ctx).workspace(store_only=True).store.url})")
        return
    if rep.baseline is None:
        say(f"last rollout {rep.rollout.id}: {rep.rollout.status}")
        _guard_lines(rep.to_dict()["guard"])
        back = rep.state.last_rollback
        if back:
            say(
                f"last rollback ({back.get('kind')}): {back.get('from')} -> {back.get('to')} "
                f"at {back.get('at')}: {back.get('reason')}"
            )
        return
    r = rep.rollout
    minutes = (rep.in_step_s or 0) / 60
    say(f"rollout {r.id}: candidate {r.candidate} at {_where(r)}, {minutes:.0f} min in step")
    data = rep.to_dict()["variants"]
    # The tokens column shows only once a request of either variant reported tokens.
    with_tokens = any(data[name]["tokens"] for name in ("baseline", "candidate"))
    rows: list[list[Any]] = []
    for name in ("baseline", "candidate"):
        v = data[name]
        row = [
            name,
            v["requests"],
            v["errors"],
            _pct(v["error_rate"]),
            _num(v["latency_p95_ms"]),
            _num(v["quality_mean"]),
        ]
        if with_tokens:
            row.append(_tokens(v["tokens"]))
        rows.append(row)
    headers = ["variant", "requests", "errors", "error rate", "p95 ms", "quality"]
    table(headers + (["tokens mean / p95 (cost per 1k)"] if with_tokens else []), rows)
    shadow = rep.to_dict()["shadow"]
    if shadow is not None:
        say(
            f"shadow step: {shadow['percent']:g}% of requests mirrored to the candidate, "
            f"which serves no user; {shadow['mirrored']} mirrored (the candidate row), "
            f"{shadow['compared']} compared, agreement {_pct(shadow['agreement'])} "
            f"(at least {_pct(shadow['min_agreement'])} needed)"
        )
    if rep.preview is not None:
        for t in rep.preview.tests:
            say(f"  {t.explain()}")
        say(f"advance now would: {rep.preview.action} ({'; '.join(rep.preview.reasons)})")
        if rep.freezes and rep.freezes.in_force and rep.preview.action in ("advance", "promote"):
            say(f"  but it holds instead: {rep.freezes.in_force[0].describe()}")


def _show_freezes(rep: StatusReport) -> None:
    """Freezes in force (with their end), problems reading the windows, windows configured."""
    from releaser.cli.output import say, warn

    if rep.freezes is None:
        return
    for problem in rep.freezes.problems:
        warn(problem)
    for f in rep.freezes.in_force:
        say(f"FROZEN: {f.describe()}; rollback, pause and abort still work")
    names = [str(w["name"]) for w in rep.freezes.windows]
    if names:
        say(f"freeze windows: {', '.join(names)}")


def _guard_lines(guard: dict[str, Any] | None) -> None:
    """The post-promotion guard: time left, checks so far, and each reference's evidence."""
    from releaser.cli.output import say

    if guard is None:
        return
    if guard["verdict_preview"] == "ended":
        say(f"the guard of {guard['release']} ended at {guard['ends_at']} with no breach")
        return
    left = (guard["time_left_s"] or 0) / 3600
    say(
        f"under guard until {guard['ends_at']} ({left:.1f} h left, {guard['checks']} "
        f"check(s)); a confirmed breach rolls back to {guard['previous']}"
    )
    for e in guard["evidence"]:
        log_e = "-" if e["log_e"] is None else f"{e['log_e']:.2f}"
        say(
            f"  {e['metric']} vs {e['source']} {_pct(e['reference_rate'])}: observed "
            f"{_pct(e['observed_rate'])} of {e['requests']} requests; "
            f"log e {log_e} (breach at {e['log_threshold']:.2f})"
        )
    for reason in guard["reasons"]:
        say(f"  {reason}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _tokens(t: dict[str, Any] | None) -> str:
    """'812 / 1900 (1.23)': mean and p95 of total tokens per request, and the cost of
    1,000 requests when prices are pinned."""
    if t is None:
        return "-"
    text = f"{_count(t['mean'])} / {_count(t['p95'])}"
    cost = t.get("cost_per_1k_requests")
    return text if cost is None else f"{text} ({cost:.3g})"


def _count(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v < 10_000 else f"{v / 1000:.3g}k"


@app.command("advance")
def advance(
    ctx: typer.Context,
    service: ServiceArg,
    if_live: Annotated[
        bool,
        typer.Option(
            "--if-live",
            help="With no rollout in progress, report 'idle' (or 'paused' for a paused "
            "rollout) and exit 0 instead of failing (for a CI schedule that runs whether or "
            "not a rollout is live).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Analyse live metrics and take at most one step (safe from a CI cron).

    A promotion the gateway could not serve (no endpoint in deploy.upstreams.releases for
    the candidate) exits 2 with nothing written.
    """
    from releaser.api.rollouts import advance_if_live, advance_rollout
    from releaser.cli.github import append_step_summary, set_outputs
    from releaser.cli.output import emit_json, say, warn

    ws = state(ctx).workspace()
    res = advance_if_live(ws, service) if if_live else advance_rollout(ws, service)
    frozen = _freezes(ws, service)
    if isinstance(res, str):  # --if-live, and nothing running: no step was taken
        _idle(service, res, as_json, frozen)
        return
    d, r = res.decision, res.rollout
    set_outputs({"decision": d.action, "rollout_id": r.id, "status": r.status, "freeze": frozen[0]})
    for text in res.warnings:
        warn(text)
    append_step_summary(
        f"### releaser rollout advance: {service}\n\n**{d.action}** ({_where(r)})\n\n"
        + "\n".join(f"- {reason}" for reason in d.reasons)
        + (f"\n\n**Change freeze:** {frozen[0]}" if frozen[0] else "")
    )
    if as_json:
        emit_json(
            {
                # The tests' internal state (log-likelihood grids) stays in the store.
                "decision": d.model_dump(mode="json", exclude={"state"}),
                "rollout": r.to_value(),
                "transitioned": res.transitioned,
                "side_effects": [e.__dict__ for e in res.side_effects],
                "warnings": res.warnings,
                "freeze": res.frozen.to_dict() if res.frozen else None,
                "freezes_in_force": frozen[1],
                "guard": None
                if res.guard is None
                else {
                    "verdict": res.guard.verdict,
                    "ends_at": res.guard.state.ends_at,
                    "observed": res.guard.observed.model_dump(mode="json"),
                    "evidence": res.guard.evidence,
                },
            }
        )
        return
    if res.guard is not None:
        say(f"guard {res.guard.verdict}: {d.action} (rollout {r.id} {r.status})")
        for reason in d.reasons:
            say(f"  {reason}")
        _effects(res.side_effects)
        return
    say(f"{d.action}: rollout {r.id} now at {_where(r)}")
    for reason in d.reasons:
        say(f"  {reason}")
    _effects(res.side_effects)


def _freezes(ws: Workspace, service: str) -> tuple[str, list[dict[str, str]]]:
    """The first freeze in force as one line ('' when none), and every one as JSON."""
    from releaser.api.freeze import freezes_now

    found = freezes_now(ws, service)
    return (found[0].describe() if found else "", [f.to_dict() for f in found])


def _idle(service: str, why: str, as_json: bool, frozen: tuple[str, list[dict[str, str]]]) -> None:
    """--if-live found nothing to do: ``idle`` (no rollout) or ``paused`` (held by operators)."""
    from releaser.cli.github import append_step_summary, set_outputs
    from releaser.cli.output import emit_json, say

    text = {
        "idle": f"{service} has no rollout in progress",
        "paused": f"the rollout of {service} is paused; 'releaser rollout resume {service}' "
        "continues it",
    }[why]
    set_outputs({"decision": why, "rollout_id": "", "status": why, "freeze": frozen[0]})
    append_step_summary(
        f"### releaser rollout advance: {service}\n\n**{why}**: {text}"
        + (f"\n\n**Change freeze:** {frozen[0]}" if frozen[0] else "")
    )
    if as_json:
        decision = {"action": why, "reasons": [text]}
        emit_json(
            {
                "decision": decision,
                "rollout": None,
                "transitioned": False,
                "side_effects": [],
                "freeze": None,
                "freezes_in_force": frozen[1],
            }
        )
    else:
        say(f"{why}: {text}")


@app.command("pause")
def pause(
    ctx: typer.Context,
    service: ServiceArg,
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Hold the live step (traffic stays as it is)."""
    from releaser.api.rollouts import pause_rollout

    ws = state(ctx).workspace(store_only=True)  # works while releaser.yaml is broken
    _result(pause_rollout(ws, service, reason=reason), as_json, "paused")


@app.command("resume")
def resume(
    ctx: typer.Context,
    service: ServiceArg,
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Continue a paused rollout."""
    from releaser.api.rollouts import resume_rollout

    ws = state(ctx).workspace(store_only=True)  # works while releaser.yaml is broken
    _result(resume_rollout(ws, service, reason=reason), as_json, "resumed")


@app.command("promote")
def promote(
    ctx: typer.Context,
    service: ServiceArg,
    reason: Annotated[str, typer.Option(help="Why (audited).")],
    force: Annotated[
        bool, typer.Option("--force", help="Required: skips remaining steps.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Promote the candidate now, skipping the remaining steps (needs --force).

    Exits 2, with nothing written, when the gateway serves the service and no endpoint in
    deploy.upstreams.releases serves the candidate.
    """
    from releaser.api.rollouts import promote_rollout
    from releaser.errors import BadInput

    if not force:
        raise BadInput(
            "promote skips the remaining steps and their analysis",
            hint="pass --force --reason '...' to do it anyway (audited)",
        )
    _result(promote_rollout(state(ctx).workspace(), service, reason=reason), as_json, "promoted")


@app.command("abort")
def abort(
    ctx: typer.Context,
    service: ServiceArg,
    reason: Annotated[str, typer.Option(help="Why (audited).")],
    force: Annotated[
        bool, typer.Option("--force", help="Abort a rollout whose candidate is irreversible.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """End the rollout; all traffic returns to the stable release."""
    from releaser.api.rollouts import abort_rollout

    ws = state(ctx).workspace(store_only=True)  # works while releaser.yaml is broken
    _result(abort_rollout(ws, service, reason=reason, force=force), as_json, "aborted")
