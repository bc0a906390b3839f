"""The end-to-end demo story, told through the public API on the example service.

Library code does not print: each step is reported through the ``report``
callback the CLI passes in.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from releaser.errors import WorkspaceError

__all__ = ["DemoSummary", "run_demo"]

Report = Callable[[str], None]
MARKER = ".releaser/demo-workspace"
SERVICE = "case-triage"
PROMPT = "case-triage-system"


@dataclass
class DemoSummary:
    """What the demo produced, for the CLI and for tests."""

    root: Path
    release_ids: list[str] = field(default_factory=list)
    audit_events: int = 0
    audit_ok: bool = False


def _prepare(directory: Path, keep: bool, report: Report) -> tuple[Path, bool]:
    root = directory.resolve()
    if root.exists() and any(root.iterdir()):
        if keep and (root / MARKER).exists():
            return root, False
        if not (root / MARKER).exists():
            raise WorkspaceError(
                f"{root} exists and is not a demo workspace; refusing to replace it",
                hint="choose another folder with --dir, or remove it yourself",
            )
        report(f"removing the previous demo workspace at {root}")
        shutil.rmtree(root)
    return root, True


def run_demo(directory: Path, *, keep: bool = False, report: Report) -> DemoSummary:
    """Build the example workspace and walk through the release story."""
    from releaser.api.audit import audit_log, verify_audit
    from releaser.api.prompts import promote_prompt, register_prompt
    from releaser.api.releases import create_release, diff_releases
    from releaser.api.workspace import open_workspace
    from releaser.config.template import render_init_template
    from releaser.demo.workspace import (
        PROMPT_PATH,
        ExampleWorkspace,
        add_golden_cases,
        build_example_workspace,
    )
    from releaser.integrations.mlflow_models import local_mlflow_uris

    root, fresh = _prepare(directory, keep, report)
    summary = DemoSummary(root=root)
    report("== 1. An AI pilot becomes a service with a recorded release")
    if fresh:
        report(f"building the example workspace in {root}")
        report("  git repo, DVC with a local remote, MLflow registry, a trained classifier ...")
        started = time.perf_counter()
        example = build_example_workspace(
            root, config_text=render_init_template("council-casework", SERVICE), model_versions=3
        )
        (root / MARKER).parent.mkdir(exist_ok=True)
        (root / MARKER).write_text("built by 'releaser demo'\n", encoding="utf-8")
        report(f"  built in {time.perf_counter() - started:.1f} s")
    else:
        tracking_uri, artifacts = local_mlflow_uris(root)
        example = ExampleWorkspace(
            root=root,
            tracking_uri=tracking_uri,
            artifact_location=artifacts,
            remote_dir=root / ".dvc-remote",
            model_versions=2,
        )
        report(f"reusing the demo workspace in {root}")

    ws = open_workspace(root)
    try:
        report(f"releaser.yaml is valid: services {', '.join(ws.config.services)}")
        reg = register_prompt(ws, root / PROMPT_PATH)
        pv = reg.version
        report(f"prompt {pv.name} v{pv.version} registered (sha256 {pv.content_hash[:12]})")
        change = promote_prompt(ws, pv.name, pv.version, "production", "first pilot version")
        if change.changed:
            report(f"  {pv.name}@production -> v{pv.version} (audited)")

        first = create_release(ws, SERVICE)
        r1 = first.release
        report(f"release {r1.id} {'created' if first.created else 'already existed'}:")
        _describe(r1, report)
        again = create_release(ws, SERVICE)
        same = "the same id" if again.release.id == r1.id else f"a NEW id {again.release.id}"
        report(f"created again from unchanged inputs: {same} (nothing new written)")

        report("")
        report("== 2. The golden set changes: a new release, and exactly what changed")
        rows = add_golden_cases(example, 25, seed=2026)
        report(f"caseworkers verified 25 more cases; golden set now {rows} rows (dvc push, commit)")
        second = create_release(ws, SERVICE)
        r2 = second.release
        report(f"release {r2.id} created")
        d = diff_releases(ws, r1.id, r2.id)
        for c in d.changes:
            report(f"  {c.path}: {_short(c.before)} -> {_short(c.after)}")
        summary.release_ids = [r1.id, r2.id]

        report("")
        report("== 3. Every change is in the hash-chained audit log")
        for ev in audit_log(ws, limit=10):
            report(f"  #{ev.seq} {ev.at} {ev.actor} {ev.action} {ev.subject}")
        result = verify_audit(ws)
        report(f"audit verify: {'ok' if result.ok else 'BROKEN'} ({result.count} events)")
        ws.close()
        ws = _rollout_story(root, r2.id, report)
        _rollback_story(ws, report)
        ws.close()
        report("")
        report("== 7. The eval gate: a better candidate passes, one worse on one slice fails")
        from releaser.demo.gates_story import run_gate_story

        gates = run_gate_story(root, report)
        _gateway_story(root, gates.better.release_id, report)
        _shadow_story(root, gates.better.release_id, report)
        report("")
        report("== 10. A prompt change, released like a model: LLM gate, judge, canary")
        from releaser.demo.reply_story import run_reply_story

        run_reply_story(root, report)
        report("")
        report("== 11. After 100%: the post-promotion guard rolls back a late regression")
        from releaser.demo.guard_story import run_guard_story

        run_guard_story(root, report)
        report("")
        report("== 12. Operations get a runbook and a handover pack, written from the live state")
        from releaser.demo.docs_story import write_docs

        write_docs(root, SERVICE, report)
        ws = open_workspace(root)
        result = verify_audit(ws)
        summary.audit_events, summary.audit_ok = result.count, result.ok
        report("")
        report(
            f"audit verify over the whole story: {'ok' if result.ok else 'BROKEN'} "
            f"({result.count} events)"
        )
        exe = Path(sys.executable).parent / "releaser"
        cmd = str(exe) if exe.exists() else "releaser"
        report(f"explore it: cd {root} && {cmd} rollout status {SERVICE} && {cmd} audit log")
    finally:
        ws.close()
    return summary


def _rollout_story(root: Path, stable_id: str, report: Report) -> Any:
    """Sections 4 and 5: a healthy canary promoted, a regressed one rolled back by itself."""
    from datetime import UTC, datetime

    from releaser.api.releases import create_release
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.demo.gates_story import serve_model_version
    from releaser.demo.traffic import drive_rollout, make_users

    users = make_users(20_000, seed=1)
    clock = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def show(result: Any, now: datetime) -> None:
        d = result.decision
        if d.action == "hold":
            return
        r = result.rollout
        where = r.status if r.final else f"step '{r.current.name}' ({r.current.percent:g}%)"
        report(f"  [{now:%a %H:%M}] {d.action} -> {where}")
        for reason in d.reasons[:2]:
            report(f"      {reason}")

    report("")
    report("== 4. A canary reaches widening user groups, promoted on live evidence")
    ws = open_workspace(root)
    _gate(ws, stable_id, report)
    start_rollout(ws, SERVICE, stable_id, initial=True, reason="first deployment")
    report(f"release {stable_id} is the stable release (first deployment)")
    ws.close()
    serve_model_version(root, 2)
    ws = open_workspace(root)
    candidate = create_release(ws, SERVICE).release
    report(f"candidate release {candidate.id}: model v2 (lighter and better tuned)")
    steps = " -> ".join(
        f"{s.name} {s.percent:g}%" for s in ws.config.service(SERVICE).rollout.steps
    )
    report(f"plan: {steps}; simulated users (10% staff), 1% errors on both releases")
    _gate(ws, candidate.id, report)
    start_rollout(ws, SERVICE, candidate.id, now=clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    drive_rollout(
        ws,
        SERVICE,
        error_rates={"baseline": 0.01, "candidate": 0.01},
        start=clock,
        users=users,
        on_decision=show,
    )
    report(
        f"model alias case-triage@production -> v{ws.models.get_alias('case-triage', 'production')}"
    )
    ws.close()

    report("")
    report("== 5. A regressed candidate is rolled back automatically")
    serve_model_version(root, 3)
    ws = open_workspace(root)
    bad = create_release(ws, SERVICE).release
    report(f"candidate release {bad.id}: model v3; in this simulation it fails 3% of requests")
    _gate(ws, bad.id, report)
    report("  started anyway with --force --reason (audited) to show the automatic rollback")
    clock = clock.replace(day=9)
    start_rollout(
        ws,
        SERVICE,
        bad.id,
        now=clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        force=True,
        reason="demo: let the live analysis catch it",
    )
    drive_rollout(
        ws,
        SERVICE,
        error_rates={"baseline": 0.01, "candidate": 0.03},
        start=clock,
        users=users,
        on_decision=show,
    )
    report("traffic is back on the stable release; the evidence is in the audit log")
    return ws


def _gate(ws: Any, release_id: str, report: Report) -> None:
    """Run the eval gate on a release and report its verdict in one or two lines."""
    from releaser.api.gates import run_gate

    result = run_gate(ws, SERVICE, release_id)
    base = f" against {result.baseline_id}" if result.baseline_id else ""
    metrics = ", ".join(
        f"{k} {v:.4f}"
        + (f" vs {b:.4f}" if (b := result.baseline_metrics.get(k)) is not None else "")
        for k, v in result.metrics.items()
        if v is not None
    )
    report(
        f"eval gate on {release_id}{base}: {'passed' if result.passed else 'FAILED'} ({metrics})"
    )
    for failure in result.failures[:2]:
        report(f"  {failure}")


def _rollback_story(ws: Any, report: Report) -> None:
    """Section 6: a drill, then one command returns to the last known-good release."""
    from releaser.api.drills import run_drill
    from releaser.api.rollback import rollback
    from releaser.api.workspace import open_workspace
    from releaser.demo.webhooks import LocalReceiver, notify_to
    from releaser.router import Router

    report("")
    report("== 6. Operations rehearse a rollback, then one command does it for real")
    from releaser.api.rollouts import service_state

    state = service_state(ws, SERVICE)
    back_to = [r for r in state.known_good if r != state.stable][-1]
    report(f"stable release {state.stable} (model v2); the one before it: {back_to}")
    drill = run_drill(ws, SERVICE, to=back_to, reason="monthly rollback drill")
    report(
        f"releaser drill {SERVICE}: on a scratch copy, {drill.from_release} -> "
        f"{drill.to_release}; a router in another process served the old release "
        f"{drill.time_to_revert_ms:.0f} ms after the command (store write {drill.switch_ms:.1f} ms)"
    )
    report("  the live service was not touched; the drill is recorded for the runbook")
    report("a week later caseworkers report wrong queues from model v2:")
    report(f"  releaser rollback {SERVICE} --to {back_to} --reason 'wrong queues' --yes")
    with LocalReceiver() as channel:  # the ops channel's webhook, on this machine
        notify_to(ws.root, channel.url)
        told = open_workspace(ws.root)
        try:
            result = rollback(
                told, SERVICE, to=back_to, reason="wrong queues reported by caseworkers"
            )
        finally:
            told.close()
            notify_to(ws.root, None)
    report(f"  traffic switched: {result.plan.describe()}")
    for e in result.side_effects:
        report(f"    {e.name}: {e.status}" + (f" ({e.detail})" if e.detail else ""))
    for body in channel.received:
        report(f"  the ops channel's webhook received: {body['event']}: {body['title']}")
    with Router(ws.store_url) as router:
        got = {router.assign(SERVICE, f"user-{i}").release_id for i in range(1000)}
    report(f"  a router opened now gives 1000 users: {', '.join(sorted(str(g) for g in got))}")
    again = rollback(ws, SERVICE, to=back_to, reason="wrong queues reported by caseworkers")
    report(f"  run again: {again.plan.describe()} (nothing written, exit 0)")


def _gateway_story(root: Path, release_id: str, report: Report) -> None:
    """Section 8: the gated release goes out behind the HTTP gateway, then is rolled back."""
    from datetime import UTC, datetime

    from releaser.api.rollback import rollback
    from releaser.api.rollouts import start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.demo.serve_story import run_gateway_story
    from releaser.demo.traffic import drive_rollout, make_users

    report("")
    report("== 8. Services called over HTTP: the gateway splits traffic by the same plan")
    ws = open_workspace(root)
    try:
        clock = datetime(2026, 3, 23, 9, 0, tzinfo=UTC)
        start_rollout(ws, SERVICE, release_id, now=clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        report(f"rollout of {release_id} (its gate passed) started; driven to the 25% step")
        drive_rollout(
            ws,
            SERVICE,
            error_rates={"baseline": 0.01, "candidate": 0.01},
            start=clock,
            users=make_users(20_000, seed=3),
            stop_at_step="canary-25",
        )
        report("releaser serve case-triage: two stand-in model endpoints behind the gateway")
        run_gateway_story(
            ws.store_url,
            SERVICE,
            report,
            users=2000,
            rollback=lambda: rollback(ws, SERVICE, reason="demo: rollback behind the gateway"),
        )
    finally:
        ws.close()


def _shadow_story(root: Path, better_id: str, report: Report) -> None:
    """Section 9: a shadow step catches an endpoint that disagrees, before any user."""
    from releaser.api.gates import run_gate
    from releaser.api.releases import create_release, get_release
    from releaser.api.rollouts import service_state
    from releaser.api.workspace import open_workspace
    from releaser.demo.gates_story import serve_model_version
    from releaser.demo.shadow_story import add_shadow_step, run_shadow_story

    report("")
    report("== 9. A shadow step: the candidate's endpoint answers mirrored requests first")
    ws = open_workspace(root)
    try:
        model = get_release(ws, better_id).content.model
        stable = service_state(ws, SERVICE).stable
    finally:
        ws.close()
    assert model is not None and stable is not None
    serve_model_version(root, model.version)
    add_shadow_step(root)
    report("the team tries the better model again, with a shadow step first in the plan:")
    report("  50% of requests also go to the candidate; its queue must agree 95% of the time")
    ws = open_workspace(root)
    try:
        release = create_release(ws, SERVICE).release
        gate = run_gate(ws, SERVICE, release.id)
        report(f"release {release.id}: eval gate {'PASSED' if gate.passed else 'FAILED'}")
    finally:
        ws.close()
    report("its endpoint, though, was deployed with a stale text-cleaning step (the gate")
    report("  scores the registered model, not the deployed endpoint)")
    run_shadow_story(root, release.id, stable, report)


def _describe(release: object, report: Report) -> None:
    from releaser.core.release import Release

    assert isinstance(release, Release)
    c = release.content
    if c.model:
        report(
            f"  model   {c.model.name} v{c.model.version} (alias {c.model.alias}, "
            f"run {c.model.run_id})"
        )
    for p in c.prompts:
        report(f"  prompt  {p.name} v{p.version} sha256 {p.content_hash[:12]}")
    for dset in c.datasets:
        report(f"  dataset {dset.path} md5 {dset.md5}")
    report(f"  code    {c.code.sha[:12]} on {c.code.branch}")


def _short(value: object) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 48 else text[:45] + "..."
