"""``releaser drill``: rehearse a rollback on a scratch copy of the state and time it.

A drill copies what a rollback reads and writes (the service's releases,
service record, live rollout and route) from the real store into a fresh
sqlite store in a temporary folder, starts a router SDK in another process on
that copy, then runs the same rollback code operations would run. The
time-to-revert is measured from the rollback call to the moment the other
process serves the target release to every probed unit id with no rollout
left (variant ``stable``), which is what users feel. Side effects outside
the store (MLflow and prompt aliases, deploy targets, GitHub) are not
rehearsed: the drill lists what they would do. The result is recorded in
the real store (kind ``drill``) with an audit event, so runbooks can show
the last drill; nothing else in the real store changes.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from releaser.api.audit import verify_audit
from releaser.api.context import current_actor, utc_now
from releaser.api.notify import drill_failed, drill_notice
from releaser.api.releases import RELEASE_KIND, get_release
from releaser.api.rollback import plan_rollback, rollback
from releaser.api.state import ROLLOUT_KIND, SERVICE_KIND, service_state
from releaser.api.workspace import Workspace
from releaser.core.audit import EventDraft
from releaser.core.release import Release
from releaser.core.routing import ROUTE_KIND
from releaser.errors import ExternalUnavailable, NotFound
from releaser.store import open_store
from releaser.store.base import Record, Write

__all__ = ["DRILL_KIND", "DrillRecord", "last_drill", "list_drills", "run_drill"]

DRILL_KIND = "drill"
PROBE_IDS = 2_000
"""Unit ids the probe router checks; all must get the target release."""
PROBE_TIMEOUT_S = 10.0

# The other process: a real router on the scratch store, polling its snapshot.
_PROBE = textwrap.dedent(
    """
    import sys, time
    from releaser.router import Router
    url, service, target, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    ids = [f"drill-unit-{i}" for i in range(n)]
    with Router(url, refresh_interval_ms=10) as router:
        def on_target():
            # Reverted: every unit gets the target with no rollout left ("stable"), which
            # also holds at steps that reach only named groups (no probed id in the cohort).
            for u in ids:
                a = router.assign(service, u, {})
                if a.release_id != target or a.variant != "stable":
                    return False
            return True
        print("ready", int(on_target()), flush=True)
        deadline = time.monotonic() + float(sys.argv[5])
        while time.monotonic() < deadline:
            if on_target():
                print("reverted", time.monotonic(), flush=True)
                break
            time.sleep(0.002)
        else:
            print("timeout", flush=True)
    """
)


class DrillRecord(BaseModel):
    """One rehearsed rollback: what it did, how long traffic took to come back, and by whom."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    at: str
    kind: str = Field(description="mid-rollout or after-promotion, as the real rollback would.")
    from_release: str | None
    to_release: str
    ok: bool
    time_to_revert_ms: float | None = Field(
        description="From the rollback call to another process's router serving the target."
    )
    switch_ms: float | None = Field(description="The atomic store write of the switch.")
    ids_checked: int
    store: str = Field(
        default="sqlite", description="The kind of store rehearsed on: the team's own kind."
    )
    actor: str
    audit_verified: bool = Field(description="The scratch copy's audit chain verified after.")
    not_rehearsed: list[str] = Field(
        default_factory=list, description="Side effects a real rollback would run next."
    )
    notes: list[str] = Field(default_factory=list)
    detail: str = ""


def _copy_state(ws: Workspace, service: str, scratch_url: str) -> None:
    """Seed the scratch store with what the rollback reads, in one commit."""
    state = service_state(ws, service)
    records: list[Record] = [
        r for r in ws.store.list(RELEASE_KIND) if Release.model_validate(r.value).service == service
    ]
    for kind, key in (
        (SERVICE_KIND, service),
        (ROUTE_KIND, service),
        (ROLLOUT_KIND, state.active_rollout or ""),
    ):
        rec = ws.store.get(kind, key) if key else None
        if rec is not None:
            records.append(rec)
    scratch = open_store(scratch_url)
    try:
        scratch.commit(
            [Write(r.kind, r.key, r.value, 0) for r in records],
            EventDraft(
                actor=current_actor().name,
                action="drill.seed",
                subject=f"service:{service}",
                at=utc_now(),
                after={"records": len(records), "from": ws.store.url},
            ),
        )
    finally:
        scratch.close()


@contextmanager
def _scratch(ws: Workspace) -> Iterator[tuple[str, str]]:
    """(URL, kind) of an empty scratch store of the workspace's own kind, removed after.

    A team on PostgreSQL rehearses on PostgreSQL (a scratch schema on the same
    server), so the time-to-revert it records is the one a real rollback meets.
    """
    url = ws.store_url.strip()
    if url.startswith(("postgresql://", "postgres://")) or ("://" not in url and "=" in url):
        from releaser.store.postgres import scratch_schema

        with scratch_schema(url, prefix="releaser_drill") as dsn:
            yield dsn, "postgresql"
        return
    with tempfile.TemporaryDirectory(prefix="releaser-drill-") as tmp:
        yield f"sqlite:///{(Path(tmp) / 'state.db').as_posix()}", "sqlite"


def _start_probe(url: str, service: str, target: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _PROBE, url, service, target, str(PROBE_IDS), str(PROBE_TIMEOUT_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _probe_line(probe: subprocess.Popen[str]) -> list[str]:
    assert probe.stdout is not None
    line = probe.stdout.readline().split()
    if not line:
        err = probe.stderr.read() if probe.stderr else ""
        raise ExternalUnavailable(
            "the drill's router process ended early: " + (err.strip().splitlines() or ["?"])[-1],
            hint="run 'releaser drill' with --verbose; check that the store is readable",
        )
    return line


def run_drill(
    ws: Workspace, service: str, *, to: str | None = None, reason: str = "drill"
) -> DrillRecord:
    """Rehearse ``releaser rollback SERVICE [--to RELEASE]`` on a scratch copy; record timing."""
    ws.config.service(service)  # an unknown service fails here, with a hint
    nothing = NotFound(
        f"{service} has no rollout live and no earlier known-good release, "
        "so there is nothing to rehearse rolling back",
        hint="drill during a rollout or after a promotion, or name a release with --to",
    )
    try:
        plan = plan_rollback(ws, service, to=to)
    except NotFound as exc:
        raise nothing from exc
    if plan.kind == "already":
        raise nothing
    at = utc_now()
    notes = []
    if plan.irreversible:
        notes.append(
            f"release {plan.from_release} is irreversible: the real rollback needs --force"
        )
    target = get_release(ws, plan.to_release)
    not_rehearsed = []
    if target.content.model is not None:
        m = target.content.model
        not_rehearsed.append(f"MLflow alias {m.name}@production -> v{m.version}")
    not_rehearsed += [
        f"prompt alias {p.name}@production -> v{p.version}" for p in target.content.prompts
    ]
    from releaser.api.effects import configured_targets

    not_rehearsed += [t.name for t in configured_targets(ws, service)]

    with _scratch(ws) as (url, store_kind):
        _copy_state(ws, service, url)
        probe = _start_probe(url, service, plan.to_release)
        ttr: float | None = None
        switch_ms: float | None = None
        detail = ""
        try:
            ready = _probe_line(probe)
            if ready[:2] != ["ready", "0"]:
                detail = "before the switch the probe already saw the target release, stable"
            scratch = replace(
                ws, store_url=url, _store=None, _models=None, _prompts=None, _github={}
            )
            try:
                t0 = time.monotonic()
                rollback(
                    scratch, service, reason=reason, to=to, force=True, side_effects=False, now=at
                )
                switch_ms = (time.monotonic() - t0) * 1000
                seen = _probe_line(probe)
                if seen[0] == "reverted":
                    ttr = (float(seen[1]) - t0) * 1000
                else:
                    detail = f"the router did not serve the target within {PROBE_TIMEOUT_S:.0f} s"
                audit_ok = verify_audit(scratch).ok
            finally:
                scratch.close()
        finally:
            probe.kill()
            probe.communicate()
    record = DrillRecord(
        service=service,
        at=at,
        kind=plan.kind,
        from_release=plan.from_release,
        to_release=plan.to_release,
        ok=ttr is not None and audit_ok and not detail,
        time_to_revert_ms=None if ttr is None else round(ttr, 1),
        switch_ms=None if switch_ms is None else round(switch_ms, 1),
        ids_checked=PROBE_IDS,
        store=store_kind,
        actor=current_actor().name,
        audit_verified=audit_ok,
        not_rehearsed=not_rehearsed,
        notes=notes,
        detail=detail,
    )
    actor = current_actor()
    ws.store.commit(
        [
            Write(DRILL_KIND, f"{service}/{at}", record.model_dump(mode="json"), 0),
            *drill_notice(ws, record),
        ],
        EventDraft(
            actor=actor.name,
            action="drill",
            subject=f"service:{service}",
            at=at,
            after={
                "ok": record.ok,
                "kind": record.kind,
                "to": record.to_release,
                "time_to_revert_ms": record.time_to_revert_ms,
            },
            reason=reason,
            context=actor.context,
        ),
    )
    if not record.ok:  # told once it is recorded
        record = record.model_copy(update={"notes": [*notes, *drill_failed(ws, record)]})
    return record


def list_drills(ws: Workspace, service: str) -> list[DrillRecord]:
    """Every recorded drill of ``service``, oldest first."""
    return [
        DrillRecord.model_validate(r.value) for r in ws.store.list(DRILL_KIND, prefix=f"{service}/")
    ]


def last_drill(ws: Workspace, service: str) -> DrillRecord | None:
    """The most recent drill of ``service``, or ``None`` if it was never rehearsed."""
    drills = list_drills(ws, service)
    return drills[-1] if drills else None
