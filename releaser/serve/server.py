"""Build the gateway of a workspace's service, and run it under uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from releaser.core.routing import ROUTE_KIND, ServiceRoute
from releaser.errors import BadInput
from releaser.router.snapshot import Assignment, Variant
from releaser.serve.gateway import Gateway, GatewaySettings
from releaser.serve.limits import bind_socket
from releaser.serve.protocol import gateway_protocol
from releaser.serve.upstreams import StaticUpstreams, Upstreams

if TYPE_CHECKING:
    import uvicorn

    from releaser.api.workspace import Workspace
    from releaser.config.deploy import DeploySpec, EndpointRole

__all__ = ["gateway_config", "gateway_for", "run_gateway", "settings_of", "upstreams_of"]


def settings_of(deploy: DeploySpec | None) -> GatewaySettings:
    """Gateway settings from a service's ``deploy:`` section (defaults without one)."""
    if deploy is None:
        return GatewaySettings()
    return GatewaySettings(
        unit_header=deploy.unit_header,
        unit_cookie=deploy.unit_cookie,
        attribute_headers=dict(deploy.attribute_headers),
        timeout_s=deploy.timeout_s,
        connect_timeout_s=deploy.connect_timeout_s,
        limits=deploy.limits,
    )


def _live_route(ws: Workspace, service: str) -> ServiceRoute | None:
    record = ws.store.get(ROUTE_KIND, service)
    return None if record is None else ServiceRoute.model_validate(record.value)


def _sides(route: ServiceRoute | None) -> dict[str, EndpointRole]:
    if route is None or route.stable is None:
        return {}
    sides: dict[str, EndpointRole] = {route.stable: "stable"}
    if route.candidate is not None:
        sides[route.candidate] = "candidate"
    return sides


def upstreams_of(ws: Workspace, service: str) -> Upstreams:
    """The upstream mapping of a service: its configured URLs by release, or its containers.

    With target ``none`` the mapping is by release id: ``deploy.upstreams.releases``, plus,
    while the deprecated role form is trusted (the stable release is still the service's
    first), each role URL pinned to the one release it serves. BadInput (exit 2) if the
    live route names a release no endpoint serves.
    """
    from releaser.api.endpoints import require_endpoints, roles_trusted
    from releaser.api.state import service_state

    deploy = ws.config.service(service).deploy
    if deploy is not None and deploy.target == "docker":
        from releaser.integrations.docker_target import ContainerUpstreams

        return ContainerUpstreams(service, engine=deploy.container.engine)
    if deploy is None or deploy.upstreams is None:
        raise BadInput(
            f"service {service!r} has no upstreams for the gateway",
            hint=f"add to services.{service} in releaser.yaml: deploy: {{upstreams: "
            "{releases: {<release id>: http://127.0.0.1:8001}}}, or deploy: {target: docker}",
        )
    urls = deploy.upstreams
    route = _live_route(ws, service)
    sides = _sides(route)
    state = service_state(ws, service)
    stable = route.stable if route is not None and route.stable else None
    if stable is not None:
        require_endpoints(ws, service, sides, state=state, stable=stable, doing=f"serve {service}")
    first = state.known_good[0] if state.known_good else None
    if not (urls.by_role and roles_trusted(first, stable)):
        return StaticUpstreams(urls.baseline, None, dict(urls.releases), by_role=False)
    # The role form, trusted: each role URL is pinned to the release it serves now (or,
    # before the first release, to the first release seen in that role).
    ups = StaticUpstreams(urls.baseline, urls.candidate, dict(urls.releases), pin_roles=True)
    for release, role in sides.items():
        ups.url_for(Assignment(service, release, "candidate" if role == "candidate" else "stable"))
    return ups


def _require_served(ws: Workspace, service: str, ups: Upstreams) -> None:
    """BadInput if a release of the live route has no endpoint in ``ups``."""
    route = _live_route(ws, service)
    variant: dict[EndpointRole, Variant] = {
        "stable": "stable" if route is None or route.candidate is None else "baseline",
        "candidate": "candidate",
    }
    for release, role in _sides(route).items():
        if ups.url_for(Assignment(service, release, variant[role])) is None:
            raise BadInput(
                f"cannot serve {service}: no endpoint serves its {role} release {release}",
                hint=f"start it first ('releaser containers up {service} --release "
                f"{release}'), then run 'releaser serve {service}' again",
            )


@contextmanager
def gateway_for(
    ws: Workspace, service: str, *, upstreams: Upstreams | None = None
) -> Iterator[Gateway]:
    """A gateway for ``service`` with its own router on the workspace's store; closed after.

    Raises ExternalUnavailable if the store cannot be read at start, NotFound for a service
    not in releaser.yaml, BadInput if it has no upstreams or if a release of its live route
    has no endpoint (the gateway labels a response only with the release its endpoint
    serves).
    """
    from releaser.router import Router

    deploy = ws.config.service(service).deploy
    ups = upstreams if upstreams is not None else upstreams_of(ws, service)
    try:
        _require_served(ws, service, ups)
        router = Router(ws.store_url)
    except BaseException:
        ups.close()
        raise
    try:
        from releaser.serve.verdict import VerdictEndpoint

        verdict = VerdictEndpoint(ws, service)
        yield Gateway(service, router, ups, settings_of(deploy), verdict)
    finally:
        router.close()
        ups.close()


def run_gateway(
    ws: Workspace,
    service: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "warning",
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve ``service`` through the gateway until interrupted (one process, on uvicorn).

    The socket is bound before anything else starts, so a bad or busy port raises
    BadInput with nothing running; ``on_listening`` then gets the URL really listened on
    (port 0 picks a free port). The service's ``deploy.limits`` bound every request.
    """
    import uvicorn

    sock = bind_socket(host, port)
    try:
        with gateway_for(ws, service) as gateway:
            config = gateway_config(gateway, log_level=log_level)
            if on_listening is not None:
                bound_host, bound_port = sock.getsockname()[:2]
                shown = f"[{bound_host}]" if ":" in bound_host else bound_host
                on_listening(f"http://{shown}:{bound_port}")
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def gateway_config(
    gateway: Gateway, *, log_level: str = "warning", host: str = "127.0.0.1", port: int = 8000
) -> uvicorn.Config:
    """uvicorn's configuration to serve ``gateway``: its own protocol, limits, no extras."""
    import uvicorn

    limits = gateway.settings.limits
    return uvicorn.Config(
        gateway,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        server_header=False,  # the upstream's Server and Date headers pass through
        date_header=False,
        # The gateway reads neither scope["client"] nor scope["scheme"], which is all
        # uvicorn's X-Forwarded-* rewriting sets; those headers reach the upstream as
        # they came either way.
        proxy_headers=False,
        lifespan="on",
        loop="auto",
        # Proxied requests on a fast path of its own, the rest through the ASGI app, both
        # under the connection limits (releaser.serve.protocol, releaser.serve.limits).
        http=gateway_protocol(gateway),
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
