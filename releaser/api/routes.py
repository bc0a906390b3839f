"""The routing record a service's routers follow: who is stable, who is the live cohort.

Every traffic transition rewrites it in the same commit as the rollout and
service records; routers (SDK, gateway) compile it into their snapshot.

The same commit keeps each version of the record in the route history (kind
``route_history``, key ``<service>/<record version, 10 digits>``, value: the route
and the time it applies ``from``), so ``releaser explain`` can replay which release
a unit got at any past time. ``retention.route_history_days`` (default 400) bounds
how long a version is kept after it stopped applying (:mod:`releaser.api.retention`).
"""

from __future__ import annotations

from releaser.api.releases import get_release
from releaser.api.workspace import Workspace
from releaser.core import rollout as ro
from releaser.core.release import Release
from releaser.core.routing import ROUTE_KIND, GroupDef, ReleaseArtifacts, ServiceRoute
from releaser.errors import ConfigError
from releaser.store.base import Write

__all__ = [
    "ROUTE_HISTORY_KIND",
    "build_route",
    "history_key",
    "route_write",
    "route_writes",
]

ROUTE_HISTORY_KIND = "route_history"
"""Store kind of the versions of each service's routing record."""


def _group_defs(ws: Workspace, service: str, names: list[str]) -> dict[str, GroupDef]:
    try:
        groups = ws.config.groups
    except ConfigError:
        # releaser.yaml is broken: a pause or resume keeps the live step, whose group
        # definitions the stored route already holds; anything else needs the file.
        rec = ws.store.get(ROUTE_KIND, service)
        stored = ServiceRoute.model_validate(rec.value).group_defs if rec else {}
        if all(name in stored for name in names):
            return {name: stored[name] for name in names}
        raise
    return {
        name: GroupDef(allow=list(groups[name].allow), rules=groups[name].rule_triples())
        for name in names
    }


def _artifacts(release: Release) -> ReleaseArtifacts:
    m = release.content.model
    return ReleaseArtifacts(
        model=f"{m.name}/{m.version}" if m else None,
        model_uri=m.model_uri if m else None,
        prompts={p.name: p.version for p in release.content.prompts},
    )


def build_route(
    ws: Workspace, service: str, stable: str | None, rollout: ro.Rollout | None, now: str
) -> ServiceRoute:
    """The routing record for ``service``: the stable release and any live cohort."""
    ids = [i for i in (stable, rollout.candidate if rollout else None) if i]
    artifacts = {i: _artifacts(get_release(ws, i)) for i in ids}
    live = rollout is not None and not rollout.final
    if not live or rollout is None:
        return ServiceRoute(service=service, stable=stable, artifacts=artifacts, updated_at=now)
    step = rollout.current
    return ServiceRoute(
        service=service,
        stable=stable,
        candidate=rollout.candidate,
        rollout_id=rollout.id,
        step=rollout.step,
        step_name=step.name,
        seed=rollout.seed,
        percent=step.percent,
        groups=list(step.groups),
        group_defs=_group_defs(ws, service, list(step.groups)),
        paused=rollout.status == "paused",
        shadow=step.shadow,
        artifacts=artifacts,
        updated_at=now,
    )


def route_write(ws: Workspace, route: ServiceRoute) -> Write:
    """The compare-and-swap write that replaces the service's routing record."""
    rec = ws.store.get(ROUTE_KIND, route.service)
    return Write(ROUTE_KIND, route.service, route.to_value(), rec.version if rec else 0)


def history_key(service: str, version: int) -> str:
    """The route history key of ``service``'s routing record at ``version`` (sorts by it)."""
    return f"{service}/{version:010d}"


def route_writes(ws: Workspace, route: ServiceRoute) -> list[Write]:
    """The routing record's write and its route history entry, for one commit."""
    write = route_write(ws, route)
    version = write.expected_version + 1
    entry = {"service": route.service, "version": version, "from": route.updated_at}
    entry["route"] = route.to_value()
    return [write, Write(ROUTE_HISTORY_KIND, history_key(route.service, version), entry, 0)]
