"""Targets outside the store that mirror every traffic change: deploy targets, GitHub.

The store is the source of truth. After each committed traffic change
(rollout start, step, promotion, rollback, abort, pause, resume) the use case
hands a :class:`~releaser.core.effects.TrafficChange` to every target configured
for the service (through the journal, :mod:`releaser.api.journal`); each target
applies it idempotently and returns one :class:`~releaser.core.effects.SideEffect`.
A target never raises: a failure is reported with the command that finishes
it, and it never decides the outcome of the transition.

Targets are found by :func:`configured_targets`; a service with none costs
nothing (no import of docker, github3 or anything heavy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from releaser.core.effects import ChangeStatus, SideEffect, TrafficChange
from releaser.errors import ConfigError

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "ChangeStatus",
    "EffectTarget",
    "TrafficChange",
    "apply_targets",
    "configured_targets",
    "prepare_targets",
    "targets_configured",
]


@runtime_checkable
class EffectTarget(Protocol):
    """Something outside the store that follows traffic changes (idempotent, never raises)."""

    name: str

    def apply(self, change: TrafficChange) -> SideEffect:
        """Bring the target in line with ``change``; report the outcome."""
        ...


def _wanted(ws: Workspace, service: str) -> tuple[bool, bool]:
    """(a docker target, a GitHub deployments mirror) for ``service``; ConfigError if broken."""
    from releaser.api.state import plain_sections

    plain = plain_sections(ws, service)
    if plain is not None and "github" not in plain[0] and "deploy" not in plain[1]:
        # Neither section is written: no target, whatever the rest of the file holds, so
        # the whole file is not validated for it (a rollback's path). A section that is
        # written is read validated, with the whole file, as the targets read it.
        return False, False
    spec = ws.config.services.get(service)
    docker = spec is not None and spec.deploy is not None and spec.deploy.target == "docker"
    github = False
    if ws.config.github is not None and ws.config.github.deployments:
        from releaser.api.github import github_active

        github = github_active(ws) is not None
    return docker, github


def targets_configured(ws: Workspace, service: str) -> bool:
    """Whether ``service`` has any target to apply changes to (imports none of them)."""
    return any(_wanted(ws, service))


def configured_targets(ws: Workspace, service: str) -> list[EffectTarget]:
    """The targets configured for ``service``, in the order they are applied."""
    targets: list[EffectTarget] = []
    docker, github = _wanted(ws, service)
    if docker:
        from releaser.integrations.docker_target import DockerTarget

        targets.append(DockerTarget(ws, service))
    if github:
        from releaser.api.github import GithubTarget

        targets.append(GithubTarget(ws))
    return targets


def prepare_targets(ws: Workspace, service: str, releases: dict[str, str]) -> None:
    """Before traffic moves, let targets that serve releases get ``releases`` ready.

    ``releases`` maps release ids to their role (``stable``, ``candidate``). A
    target with a ``prepare`` method (e.g. the docker target: run the release's
    container and wait for its health check) raises if it cannot, so the
    transition is refused and nothing is written.
    """
    for target in configured_targets(ws, service):
        prepare = getattr(target, "prepare", None)
        if prepare is not None:
            prepare(releases)


def apply_targets(ws: Workspace, change: TrafficChange) -> list[SideEffect]:
    """Apply ``change`` to every configured target; one side effect each, never raising."""
    effects: list[SideEffect] = []
    try:
        targets = configured_targets(ws, change.service)
    except ConfigError as exc:
        # A rollback, pause, resume or abort ran on the stored state alone while
        # releaser.yaml is broken (traffic has moved): the targets wait for the file.
        detail = f"releaser.yaml is invalid, so deploy targets were not updated: {exc.first()}"
        retry = f"fix releaser.yaml, then run 'releaser reconcile {change.service}'"
        return [SideEffect("deploy targets", "failed", detail, retry)]
    for target in targets:
        try:
            effects.append(target.apply(change))
        except Exception as exc:  # noqa: BLE001 - a target must not undo a committed change
            effects.append(
                SideEffect(
                    target.name,
                    "failed",
                    f"{type(exc).__name__}: {exc}",
                    f"releaser reconcile {change.service}",
                )
            )
    return effects
