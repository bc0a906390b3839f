"""Side effects: the types a traffic change or an alias move owes the world outside the store.

These live in ``core`` so that integrations (a container engine, GitHub) can
implement :class:`EffectTarget`-style appliers without importing ``api``. They
are plain data: applying them is the service layer's job
(:mod:`releaser.api.journal`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ChangeStatus", "EffectStatus", "SideEffect", "TrafficChange"]

ChangeStatus = Literal["in_progress", "paused", "promoted", "rolled_back", "aborted", "stable"]
"""Where the service's traffic stands after the change."""

EffectStatus = Literal["done", "unchanged", "failed", "skipped", "planned"]
"""``planned`` only in a dry run: the effect the real run would apply."""


@dataclass(frozen=True)
class SideEffect:
    """One effect outside the store, with its outcome and how to finish it if it failed."""

    name: str
    status: EffectStatus
    detail: str = ""
    retry: str | None = None


@dataclass(frozen=True)
class TrafficChange:
    """One committed change of who serves a service's traffic.

    ``stable`` is the release serving everyone outside the candidate's cohort
    (after the change); ``candidate`` the release being rolled out, if any;
    ``percent`` the candidate's share of everyone else at the live step (0-100;
    named groups come on top); ``status`` where the rollout stands.
    """

    service: str
    action: str
    status: ChangeStatus
    stable: str | None
    candidate: str | None
    rollout_id: str | None
    step: str | None
    percent: float | None
    reason: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> TrafficChange:
        """The change :meth:`to_dict` wrote (as kept in the journal)."""
        return cls(**value)
