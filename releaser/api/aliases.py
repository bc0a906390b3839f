"""The ``production`` aliases: point the model's and prompts' aliases at a release.

Called after a promotion, a rollback or a reconcile; idempotent, and each
alias is reported as its own side effect so a failure never hides the others.
"""

from __future__ import annotations

from typing import Literal

from releaser.api.context import current_actor
from releaser.api.rollouts import PRODUCTION_ALIAS, SideEffect
from releaser.api.workspace import Workspace
from releaser.core.release import Release

__all__ = ["move_production_aliases"]


def move_production_aliases(ws: Workspace, release: Release) -> list[SideEffect]:
    """Point the model's and prompts' ``production`` aliases at ``release``; idempotent."""
    effects: list[SideEffect] = []
    retry = f"releaser reconcile {release.service}"
    m = release.content.model
    if m is not None:
        name = f"MLflow alias {m.name}@{PRODUCTION_ALIAS}"
        try:
            current = ws.models.get_alias(m.name, PRODUCTION_ALIAS)
            if current == m.version:
                effects.append(SideEffect(name, "unchanged", f"already v{m.version}"))
            else:
                ws.models.set_alias(m.name, PRODUCTION_ALIAS, m.version)
                effects.append(SideEffect(name, "done", f"v{current} -> v{m.version}"))
        except Exception as exc:  # noqa: BLE001 - reported per effect; traffic already moved
            effects.append(SideEffect(name, "failed", str(exc), retry))
    for p in release.content.prompts:
        name = f"prompt alias {p.name}@{PRODUCTION_ALIAS}"
        try:
            from releaser.api.prompts import prompt_errors

            with prompt_errors():
                change = ws.prompts.promote(
                    p.name,
                    p.version,
                    PRODUCTION_ALIAS,
                    f"release {release.id}",
                    current_actor().name,
                )
            status: Literal["done", "unchanged"] = "done" if change.changed else "unchanged"
            effects.append(SideEffect(name, status, f"v{change.from_version} -> v{p.version}"))
        except Exception as exc:  # noqa: BLE001 - reported per effect
            effects.append(SideEffect(name, "failed", str(exc), retry))
    return effects
