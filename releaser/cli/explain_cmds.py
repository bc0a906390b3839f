"""``releaser explain``: which release a unit got at a time, and why; or a cohort export.

``releaser explain SERVICE UNIT [--at T] [--attr k=v ...]`` replays the bucketing against
the route history; ``releaser explain cohort SERVICE --from T --to T [--csv]`` lists the
requests and distinct units each release served per route period.
"""

from __future__ import annotations

import csv
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from releaser.cli.app import app, state

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _attributes(pairs: list[str]) -> dict[str, str]:
    from releaser.errors import BadInput

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(
                f"--attr {pair!r} is not key=value", hint="e.g. --attr country=uk --attr plan=pro"
            )
        out[key] = value
    return out


@app.command("explain")
def explain(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service name (or 'cohort' for an export).")],
    unit_id: Annotated[
        str, typer.Argument(help="The unit id (user or session); the service after 'cohort'.")
    ],
    at: Annotated[str | None, typer.Option("--at", help="When (ISO 8601; default: now).")] = None,
    attr: Annotated[
        list[str] | None,
        typer.Option("--attr", help="An attribute the service sent (k=v; repeatable)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Cohort export: start of the window (ISO 8601).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Cohort export: end of the window (ISO 8601).")
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="Cohort export as CSV.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Which release a unit got at a time, and why (the group it matched, or its bucket).

    'releaser explain cohort SERVICE --from T --to T' lists instead, per route period, the
    cohort and the requests and distinct units (estimated, per release and per group) each
    release served.
    """
    from releaser.errors import BadInput

    ws = state(ctx).workspace(store_only=True)  # the store alone answers
    if service == "cohort" and (start is not None or end is not None):
        if start is None or end is None:
            raise BadInput("a cohort export needs --from and --to", hint="e.g. --from 2026-12-01")
        _cohort(ws, unit_id, start, end, as_json, as_csv)
        return
    from releaser.api.explain import explain_unit
    from releaser.cli.output import emit_json, say

    res = explain_unit(ws, service, unit_id, at=at, attributes=_attributes(attr or []))
    if as_json:
        emit_json(res.to_dict())
        return
    say(f"{res.unit_id} of {res.service} at {res.at}: {res.release_id} ({res.variant})")
    say(f"  why: {res.reason}")
    if res.rollout_id is not None:
        say(f"  rollout {res.rollout_id}, step {res.step_name!r}, seed {res.seed}")
    until = res.route_until or "now"
    say(f"  route version {res.route_version}, in force {res.route_from} .. {until}")
    for note in res.notes:
        say(f"  note: {note}")


def _cohort(ws: Workspace, service: str, start: str, end: str, as_json: bool, as_csv: bool) -> None:
    from releaser.api.explain import cohort_export
    from releaser.cli.output import emit_json, say, table

    res = cohort_export(ws, service, start, end)
    if as_json:
        emit_json(res.to_dict())
        return
    head = ["from", "to", "stable", "candidate", "rollout", "step", "groups", "percent"]
    head += ["baseline_requests", "candidate_requests", "baseline_units", "candidate_units"]
    head += ["candidate_units_by_group"]
    rows = [
        [
            r.start,
            r.end or "",
            r.stable or "",
            r.candidate or "",
            r.rollout_id or "",
            r.step_name or "",
            " ".join(r.groups),
            f"{r.percent:g}",
            "" if r.baseline_requests is None else r.baseline_requests,
            "" if r.candidate_requests is None else r.candidate_requests,
            "" if r.baseline_units is None else r.baseline_units,
            "" if r.candidate_units is None else r.candidate_units,
            " ".join(f"{g}={n}" for g, n in (r.candidate_units_by_group or {}).items()),
        ]
        for r in res.rows
    ]
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(head)
        writer.writerows(rows)
        return
    say(f"{service} from {res.start} to {res.end}: {len(res.rows)} route period(s)")
    table(head, rows)
    say(f"counted: {res.counted}")
    for r in res.rows:
        if r.units_note is not None:
            say(f"units from {r.start}: {r.units_note}")
