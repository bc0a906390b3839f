"""``releaser gate``, ``releaser approve`` and ``releaser phase``: eval gates and phase gates.

``gate`` is a group whose default subcommand is ``run``: ``releaser gate
SERVICE --release ID`` is ``releaser gate run SERVICE --release ID``, and
``releaser gate check SERVICE --phase production`` checks a phase's entry
criteria. (A service literally named ``run`` or ``check`` is reached with the
explicit ``gate run``.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from releaser.cli.app import app as root_app
from releaser.cli.app import state

if TYPE_CHECKING:
    from releaser.api.gates import GateReport
    from releaser.api.phases import PhaseCheck

__all__ = ["app", "phase_app"]


class _DefaultRun(TyperGroup):
    """A group that runs ``run`` when the first word is not one of its subcommands."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultRun,
    help="Eval gate: 'gate SERVICE --release ID' runs it; 'gate check' checks a phase.",
    no_args_is_help=True,
)
phase_app = typer.Typer(
    help="Lifecycle phases: poc -> pilot -> production -> operations.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ServiceArg = Annotated[str, typer.Argument(help="Service name from releaser.yaml.")]


PROGRESS_EVERY = 10.0
"""Without a terminal (a CI log), a progress line at most this often, in seconds."""


def _progress_lines() -> Any:
    """A progress callback for logs: a line on stderr every :data:`PROGRESS_EVERY` s, so a
    slow gate (an LLM behind the predict) shows it is moving; a fast one prints none."""
    import sys
    import time

    began = last = time.monotonic()

    def update(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if done < total and now - last >= PROGRESS_EVERY:
            last = now
            print(
                f"predicting: {done} of {total} rows ({done / total:.0%}), {now - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    return update


def _progress_bar() -> tuple[Any, Any]:
    """A rich progress bar on a TTY (stderr), or progress lines in a log; (callback, closer)."""
    import sys

    if not (sys.stderr.isatty() and os.environ.get("TERM") != "dumb"):
        return _progress_lines(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    bar.start()
    task = bar.add_task("predicting", total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop


def _human(report: GateReport) -> None:
    from releaser.cli.output import say, table

    verdict = "PASSED" if report.passed else "FAILED"
    base = report.baseline_id or "none (thresholds only)"
    say(f"eval gate {verdict}: {report.service} release {report.release_id}")
    say(
        f"  baseline {base}; golden set {report.dataset} ({report.rows} rows, md5 "
        f"{report.dataset_md5[:12]}); predict errors {report.errors}"
        + (f", {report.not_predicted} rows not predicted" if report.not_predicted else "")
        + (f" (baseline {report.baseline_errors})" if report.baseline_errors else "")
        + ("; cached predictions" if report.cached else "")
    )
    rows = [
        [
            c["name"],
            _n(c["value"]),
            _n(c["limit"]),
            f"[{_n(c['ci_low'])}, {_n(c['ci_high'])}]" if c.get("ci_low") is not None else "",
            "pass" if c["passed"] else "FAIL",
        ]
        for c in report.checks
        if c["kind"] != "slice"
    ]
    table(["check", "value", "limit", "CI", "result"], rows)
    if report.slices:
        table(
            ["slice", "rows", "candidate", "baseline", "change", "result"],
            [
                [
                    f"{s['column']}={s['value']}",
                    s["n"],
                    _n(s["candidate"]),
                    _n(s["baseline"]),
                    "-" if s["delta"] is None else f"{s['delta']:+.4f}",
                    "pass" if s["passed"] else "FAIL",
                ]
                for s in report.slices
            ],
        )
    for f in report.failures:
        say(f"  FAIL: {f}")


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command("run")
def run(
    ctx: typer.Context,
    service: ServiceArg,
    release: Annotated[str, typer.Option("--release", help="Release id (or unique prefix).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the Markdown report here (and JSON beside it)."),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Predict every row again, ignoring cached and stored predictions (an "
            "endpoint whose model changed behind the same URL); the new ones replace them.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a release on its golden set; exit 0 if it passes, 1 if it fails."""
    import json

    from releaser.api.gates import run_gate
    from releaser.cli.github import append_step_summary, set_outputs
    from releaser.cli.output import emit_json, error_annotation, warn
    from releaser.errors import CheckFailed

    update, stop = _progress_bar()
    try:
        report = run_gate(
            state(ctx).workspace(), service, release, progress=update, use_cache=not no_cache
        )
    finally:
        if stop is not None:
            stop()
    markdown = report.markdown()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(markdown, encoding="utf-8")
        output.with_suffix(".json").write_text(
            json.dumps(report.to_dict(), indent=2, sort_keys=True), encoding="utf-8"
        )
    append_step_summary(markdown)
    # GitHub mirrors the verdict (commit status or check run, one PR comment); a GitHub
    # failure is a warning with the retry, never the gate's outcome.
    from releaser.api.github import comment_on_pr, publish_gate

    ws = state(ctx).workspace()
    for effect in (
        publish_gate(
            ws,
            service=service,
            release_id=report.release_id,
            passed=report.passed,
            summary_md=markdown,
        ),
        comment_on_pr(ws, service=service, body_md=markdown),
    ):
        if effect.status == "failed":
            warn(f"{effect.name}: {effect.detail}; finish it with: {effect.retry}")
    set_outputs(
        {
            "passed": str(report.passed).lower(),
            "release_id": report.release_id,
            "failures": "\n".join(report.failures),
        }
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        _human(report)
    for w in report.warnings:
        warn(w)
    if not report.passed:
        for f in report.failures:
            error_annotation(f)
        raise CheckFailed(
            f"release {report.release_id} failed the eval gate: "
            f"{len(report.failures)} failure{'s' if len(report.failures) != 1 else ''}",
            hint="the report above names each failing check and slice",
        )


def _render_check(check: PhaseCheck, as_json: bool) -> None:
    from releaser.cli.output import emit_json, say, table

    if as_json:
        emit_json(check.to_dict())
        return
    verdict = "ready" if check.ready else "NOT ready"
    say(
        f"{check.service}: {verdict} to enter {check.phase} (now in {check.current}"
        + (f"; release {check.release_id})" if check.release_id else ")")
    )
    table(
        ["", "kind", "item", "detail"],
        [["met" if i["met"] else "MISSING", i["kind"], i["id"], i["detail"]] for i in check.items],
    )


@app.command("check")
def check(
    ctx: typer.Context,
    service: ServiceArg,
    phase: Annotated[str, typer.Option("--phase", help="Phase to check the entry criteria of.")],
    release: Annotated[
        str | None, typer.Option("--release", help="Release to judge (default: the stable one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List what is met and what is missing to enter a phase; exit 1 when anything is missing."""
    from releaser.api.phases import check_phase
    from releaser.cli.github import set_outputs
    from releaser.errors import CheckFailed

    result = check_phase(state(ctx).workspace(), service, phase, release_id=release)
    _render_check(result, as_json)
    set_outputs({"ready": str(result.ready).lower(), "missing": ",".join(result.missing)})
    if not result.ready:
        raise CheckFailed(
            f"{service} is not ready for {result.phase}: missing {', '.join(result.missing)}",
            hint="record approvals with 'releaser approve' and evidence with "
            "'releaser phase evidence'",
        )


@root_app.command("approve")
def approve(
    ctx: typer.Context,
    service: ServiceArg,
    release: Annotated[str, typer.Option("--release", help="Release id (or unique prefix).")],
    role: Annotated[str, typer.Option("--role", help="Role you approve as, e.g. ops-lead.")],
    note: Annotated[str, typer.Option("--note", help="What you checked (audited).")] = "",
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="SSH key to sign with: a private key, or its .pub when the ssh-agent holds it "
            "(default: $RELEASER_SIGNING_KEY, else git's user.signingkey when gpg.format is ssh).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign and record your approval of a release for a role (audited; no self-approval).

    The key must be in your owners entry's ssh_keys in releaser.yaml at the release's
    commit; the phase gate verifies the signature against it.
    """
    from releaser.api.phases import approve as do_approve
    from releaser.cli.output import emit_json, say

    result = do_approve(state(ctx).workspace(), service, release, role, note, key=key)
    if as_json:
        emit_json({k: v for k, v in result.to_dict().items() if k != "statement"})
    else:
        say(
            f"approved {result.release_id} as {result.role} for entering {result.phase}: "
            f"{result.approver_name} <{result.approver}>, signed, at {result.at}"
        )


@phase_app.command("status")
def phase_status(ctx: typer.Context, service: ServiceArg, as_json: JsonOpt = False) -> None:
    """The service's current phase, since when, and its history."""
    from releaser.api.phases import phase_status as get_status
    from releaser.cli.output import emit_json, say, table

    st = get_status(state(ctx).workspace(), service)
    if as_json:
        emit_json(st.to_dict())
        return
    say(f"{service}: phase {st.phase}" + (f" since {st.entered_at}" if st.entered_at else ""))
    if st.history:
        table(
            ["phase", "entered", "by", "release"],
            [
                [h["phase"], h["entered_at"], h.get("by", ""), h.get("release_id") or ""]
                for h in st.history
            ],
        )


@phase_app.command("advance")
def phase_advance(
    ctx: typer.Context,
    service: ServiceArg,
    release: Annotated[
        str | None, typer.Option("--release", help="Release to judge (default: the stable one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move the service to its next phase when every entry criterion is met (else exit 1)."""
    from releaser.api.phases import advance_phase
    from releaser.cli.output import emit_json, say

    st = advance_phase(state(ctx).workspace(), service, release_id=release)
    if as_json:
        emit_json(st.to_dict())
    else:
        say(f"{service} entered {st.phase} at {st.entered_at}")


@phase_app.command("evidence")
def phase_evidence(
    ctx: typer.Context,
    service: ServiceArg,
    item: Annotated[str, typer.Argument(help="Checklist item id, e.g. dpia.")],
    evidence: Annotated[str, typer.Argument(help="A link, file path or reference.")],
) -> None:
    """Attach evidence to a checklist item (audited)."""
    from releaser.api.phases import record_evidence
    from releaser.cli.output import say

    record_evidence(state(ctx).workspace(), service, item, evidence)
    say(f"{service}: evidence recorded for {item}")
