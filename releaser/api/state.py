"""What the store knows about a service and its rollouts, and the traffic change a
transition makes: the reads every rollout, rollback, gate and GitHub command shares.

Nothing here writes or imports the other use-case modules: it sits below them.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from releaser.core import rollout as ro
from releaser.core.effects import ChangeStatus, TrafficChange
from releaser.core.guard import GuardState
from releaser.errors import ConfigError, NotFound, WorkspaceError
from releaser.store.base import Record

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "ROLLOUT_KIND",
    "SERVICE_KIND",
    "ServiceState",
    "back_to_stable",
    "plain_sections",
    "rollout_record",
    "service_state",
    "state_record",
    "traffic_change",
]

ROLLOUT_KIND = ro.ROLLOUT_RECORD
SERVICE_KIND = ro.SERVICE_RECORD


class ServiceState(BaseModel):
    """What releaser knows about a service: stable release, live rollout, known-good history."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    stable: str | None = None
    active_rollout: str | None = None
    known_good: list[str] = Field(default_factory=list, description="Oldest first.")
    rollouts: int = 0
    analysis: dict[str, Any] = Field(default_factory=dict, description="State of the live tests.")
    last_rollback: dict[str, Any] | None = Field(
        default=None, description="The last return to a known-good release (cleared on promotion)."
    )
    guard: GuardState | None = Field(
        default=None,
        description="The post-promotion guard of the stable release, while it lasts "
        "(absent in records written before the guard existed).",
    )
    pending_effects: list[str] = Field(
        default_factory=list,
        description="No longer written: owed side effects live in the journal (kept so "
        "records written before it still read).",
    )


def state_record(ws: Workspace, service: str) -> tuple[ServiceState, int]:
    """The service's state record and its version (0 when none is stored yet)."""
    rec = ws.store.get(SERVICE_KIND, service)
    if rec is not None and plain_sections(ws, service) is not None:
        # The file lists the service: whether the rest of it is valid or not, the
        # stored state is what is read (see below), so the whole file is not validated.
        return ServiceState.model_validate(rec.value), rec.version
    try:
        ws.config.service(service)
    except (ConfigError, WorkspaceError):
        # A broken (or, with --store, absent) releaser.yaml does not block what needs
        # only the stored state of a service the store knows (a rollback at 3 a.m.);
        # anything that needs the file still meets the error when it reads it.
        if rec is None and ws.degraded is not None:
            known = [r.key for r in ws.store.list(SERVICE_KIND)]
            close = difflib.get_close_matches(service, known, n=1)
            raise NotFound(
                f"the state store {ws.store.url} has no service {service!r}"
                + (f"; did you mean {close[0]!r}?" if close else ""),
                hint=f"services it knows: {', '.join(known) or 'none'}",
            ) from None
        if rec is None:
            raise
    if rec is None:
        return ServiceState(service=service), 0
    return ServiceState.model_validate(rec.value), rec.version


def plain_sections(ws: Workspace, service: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(top level, ``service``'s mapping) of releaser.yaml as written, when that is enough.

    None when the workspace has the whole file validated already (``ws.config``
    answers, as it always did), works from the store alone, or when
    :func:`~releaser.config.peek_service` cannot tell: the caller then reads
    ``ws.config``. The mappings are not validated: only which keys are present
    may be read from them.
    """
    # Workspace has no public "is the whole file loaded" question: a workspace opened
    # with it validated keeps answering from that, never from a second read of the file.
    if ws.degraded is not None or ws._config is not None:
        return None
    from releaser.config import peek_service

    return peek_service(ws.config_path, service)


def service_state(ws: Workspace, service: str) -> ServiceState:
    """The service's stable release, live rollout and known-good history."""
    return state_record(ws, service)[0]


def rollout_record(ws: Workspace, rollout_id: str) -> tuple[ro.Rollout, Record]:
    """A rollout and its stored record; NotFound when the store has lost it."""
    rec = ws.store.get(ROLLOUT_KIND, rollout_id)
    if rec is None:
        raise NotFound(f"rollout {rollout_id} is missing from the store")
    return ro.Rollout.model_validate(rec.value), rec


def back_to_stable(state: ServiceState, candidate: str, reason: str, now: str) -> ServiceState:
    """The service after its live rollout ended early: no rollout, back on the stable release."""
    return state.model_copy(
        update={
            "active_rollout": None,
            "analysis": {},
            "last_rollback": {
                "from": candidate,
                "to": state.stable,
                "at": now,
                "reason": reason,
                "kind": "mid-rollout",
            },
        }
    )


def traffic_change(
    service: str,
    action: str,
    stable: str | None,
    rollout: ro.Rollout | None,
    rolled_back: str | None,
    reason: str | None,
    now: str,
) -> TrafficChange:
    """The traffic change a transition makes, as deploy targets and GitHub are told it."""
    status: ChangeStatus
    if rollout is None:
        status = "rolled_back" if rolled_back else "stable"
        return TrafficChange(
            service,
            action,
            status,
            stable,
            rolled_back,
            None,
            None,
            0.0 if rolled_back else None,
            reason or "",
            now,
        )
    status = {"running": "in_progress", "paused": "paused"}.get(rollout.status, rollout.status)  # type: ignore[assignment]
    percent = {"promoted": 100.0, "rolled_back": 0.0, "aborted": 0.0}.get(
        rollout.status, rollout.current.percent
    )
    return TrafficChange(
        service,
        action,
        status,
        stable,
        rollout.candidate,
        rollout.id,
        rollout.current.name,
        percent,
        reason or "",
        now,
    )
