"""Which endpoint serves each release of a service the gateway serves, and refusing unserved ones.

A service is served by the gateway when its ``deploy`` has target ``none`` and
``upstreams`` (:attr:`releaser.config.deploy.DeploySpec.served_by_gateway`). Its endpoints
are looked up per release id (:meth:`releaser.config.deploy.UpstreamUrls.endpoint_for`):
the gateway labels a response with a release only when the endpoint it proxied to serves
that release, so a traffic change that would send a release to no known endpoint is
refused before anything is written (:func:`require_endpoints`), and ``releaser serve``
refuses to start on such a route.

The deprecated role form (``baseline``/``candidate`` URLs) is trusted only while the
service's stable release is still its first release: after a promotion the ``baseline``
endpoint still serves the old release, and nothing would tell the operator to redeploy it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from releaser.api.releases import RELEASE_KIND
from releaser.errors import BadInput

if TYPE_CHECKING:
    from releaser.api.state import ServiceState
    from releaser.api.workspace import Workspace
    from releaser.config.deploy import EndpointRole, UpstreamUrls

__all__ = ["Endpoint", "endpoints_of", "require_endpoints", "roles_trusted"]


@dataclass(frozen=True)
class Endpoint:
    """The endpoint serving one side of a route: its release, its URL (None if unknown)."""

    role: EndpointRole
    release: str
    url: str | None


def roles_trusted(first_release: str | None, stable: str | None) -> bool:
    """Whether the role form may be read: ``stable`` is still the service's first release."""
    return stable is None or first_release is None or stable == first_release


def _upstreams(ws: Workspace, service: str) -> UpstreamUrls | None:
    """The service's upstream URLs when the gateway serves it (target none), else None."""
    deploy = ws.config.service(service).deploy
    if deploy is None or not deploy.served_by_gateway:
        return None
    return deploy.upstreams


def endpoints_of(
    ws: Workspace, service: str, sides: dict[str, EndpointRole], *, first: str | None, stable: str
) -> list[Endpoint] | None:
    """The endpoint of each release in ``sides`` (release id -> role), or None when the
    gateway does not serve ``service`` (docker and kubernetes targets know their own).

    ``first`` is the service's first stable release and ``stable`` the stable release the
    route has (or will have), which decide whether the role form is trusted.
    """
    urls = _upstreams(ws, service)
    if urls is None:
        return None
    trusted = roles_trusted(first, stable)
    return [
        Endpoint(role, release, urls.endpoint_for(release, role, roles_trusted=trusted))
        for release, role in sides.items()
    ]


def require_endpoints(
    ws: Workspace,
    service: str,
    sides: dict[str, EndpointRole],
    *,
    state: ServiceState,
    stable: str,
    doing: str,
) -> None:
    """Refuse (BadInput, exit 2) ``doing`` when a release in ``sides`` has no known endpoint.

    Only for services the gateway serves; ``stable`` is the stable release after the change.
    A ``releases`` key that is a prefix of more than one of the service's releases is
    refused too: the endpoint would be claimed by two releases.
    """
    urls = _upstreams(ws, service)
    if urls is None:
        return
    first = state.known_good[0] if state.known_good else None
    for endpoint in endpoints_of(ws, service, sides, first=first, stable=stable) or []:
        key = urls.release_key(endpoint.release)
        if key is not None and key != endpoint.release:
            claimed = [r.key for r in ws.store.list(RELEASE_KIND, prefix=key)]
            if len(claimed) > 1:
                raise BadInput(
                    f"services.{service}.deploy.upstreams.releases key {key!r} is a prefix of "
                    f"{len(claimed)} releases, so it cannot say which one its endpoint serves",
                    hint=f"write the full release id {endpoint.release} in releaser.yaml",
                )
        if endpoint.url is not None:
            continue
        why = (
            " (the baseline/candidate URLs are read only until the first promotion: the "
            "baseline endpoint still serves the old release)"
            if urls.by_role
            else ""
        )
        raise BadInput(
            f"cannot {doing}: no endpoint serves {endpoint.role} release {endpoint.release} "
            f"of {service} in services.{service}.deploy.upstreams{why}",
            hint=f"deploy release {endpoint.release} on an endpoint, then add it to "
            f"releaser.yaml: deploy: {{upstreams: {{releases: {{{endpoint.release[:12]}: "
            "http://HOST:PORT}}}}",
        )
