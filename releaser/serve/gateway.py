"""The HTTP gateway: a raw ASGI app that routes each request to its release's endpoint.

Per request: read the unit id (a header, else a cookie), ask the router which release the
unit gets (an in-process snapshot, no I/O), proxy to that release's upstream through a
pooled keep-alive client (:mod:`releaser.serve.upstream_client`), stream the response
back with ``X-Releaser-Release`` and ``X-Releaser-Variant`` added, and record latency and
outcome for the variant (the router batches them into the store). ``/healthz`` and
``/metrics`` are answered by the gateway, and so is ``/v1/rollouts/<service>/verdict``
(:mod:`releaser.serve.verdict`) when the gateway is built for a workspace.

Limits (``deploy.limits``, :class:`releaser.config.deploy.GatewayLimits`): past
``max_concurrent_requests`` proxied requests a request gets 503 with ``Retry-After``;
headers past ``max_header_bytes`` get 431; a body declared or sent past ``max_body_bytes``
gets 413; a body not received within ``body_timeout_s`` gets 408. Those answers close the
connection and are not counted against a variant (the client erred, not the release). A
body of several messages is streamed to the upstream as it arrives; only a chunked one
(no Content-Length to forward) is read whole first, up to ``max_body_bytes``. The
connection-level limits are in :mod:`releaser.serve.limits`.

Faults: an upstream that cannot be reached or times out gets a 502 (504 for a timeout)
with a JSON body naming the variant and release, and an upstream 5xx, are errors of that
variant. A missing or malformed unit id gets the baseline. While the store is unreachable
the router serves its last snapshot (and warns); ``/healthz`` says so.

Written by hand rather than on a framework: the added latency is the product. For the
same reason ``releaser serve`` runs it under a protocol of its own
(:mod:`releaser.serve.protocol`) that proxies the common request itself, with this app's
:meth:`Gateway.route_request`, :meth:`Gateway.record` and :meth:`Gateway.failed`, and hands
everything else to the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from releaser.config.deploy import GatewayLimits
from releaser.core.routing import ServiceRoute
from releaser.router.snapshot import Assignment, Decide, Variant, compile_route
from releaser.serve.metrics import GatewayMetrics
from releaser.serve.shadow import ShadowMirror
from releaser.serve.upstream_client import HOP_BY_HOP, UpstreamClient, UpstreamError
from releaser.serve.upstream_pool import UpstreamPool
from releaser.serve.upstreams import Upstreams

if TYPE_CHECKING:
    from releaser.router import Router
    from releaser.serve.verdict import VerdictEndpoint

__all__ = ["Gateway", "GatewaySettings"]

logger = logging.getLogger("releaser.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_UNIT_ID_LENGTH = 256
# Hop-by-hop headers and Host are not forwarded either way.
_HOP_BY_HOP = HOP_BY_HOP | {b"host"}
# Requests also lose Content-Length: the upstream client sets it for the body it sends.
# Responses keep it (the body is passed through unchanged), so they are not re-chunked.
_NOT_FORWARDED_UP = _HOP_BY_HOP | {b"content-length"}
# Response marks are made once per (variant, release, served) and reused, never mutated.
_MAX_CACHED_MARKS = 64
Routed = tuple[
    Assignment, "str | None", list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], "str | None"
]
"""(assignment, upstream base URL or None, request headers to forward, response marks, the
unit id routed on or None)."""


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway reads unit ids and talks to upstreams."""

    unit_header: str = "X-User-Id"
    unit_cookie: str | None = None
    attribute_headers: Mapping[str, str] = field(default_factory=dict)
    """Unit attribute -> request header (for the rollout's group rules)."""
    timeout_s: float = 30.0
    connect_timeout_s: float = 2.0
    max_idle_connections: int = 200
    """Keep-alive connections kept open per upstream between requests (not a cap on
    concurrent requests: each request in flight has its own connection)."""
    health_path: str = "/healthz"
    metrics_path: str = "/metrics"
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    """Sizes and times accepted from clients."""


def _unit_id(raw: bytes | None) -> str | None:
    """A usable unit id from header bytes: printable ASCII, 1-256 chars; else None."""
    if not raw or len(raw) > MAX_UNIT_ID_LENGTH:
        return None
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if not text or not text.isprintable():
        return None
    return text


def _cookie(raw: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in a Cookie header, or None."""
    for part in raw.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value.strip().strip(b'"')
    return None


class Gateway:
    """An ASGI application proxying one service's traffic to the release each unit gets.

    The caller owns ``router`` and ``upstreams`` (and closes them); the gateway owns its
    HTTP client, opened at ASGI lifespan start-up or on the first request.
    """

    def __init__(
        self,
        service: str,
        router: Router,
        upstreams: Upstreams,
        settings: GatewaySettings | None = None,
        verdict: VerdictEndpoint | None = None,
    ) -> None:
        self.service = service
        # ``/v1/rollouts/<service>/verdict`` (Argo's analysis asks it), when given.
        self.verdict = verdict
        self.router = router
        self.upstreams = upstreams
        self.settings = settings or GatewaySettings()
        self.metrics = GatewayMetrics(service)
        self._header = self.settings.unit_header.lower().encode("latin-1")
        cookie = self.settings.unit_cookie
        self._cookie = cookie.encode("latin-1") if cookie else None
        # lower-cased header bytes -> attribute name
        self._attributes = {
            header.lower().encode("latin-1"): attribute
            for attribute, header in self.settings.attribute_headers.items()
        }
        self._client: UpstreamClient | None = None
        self._pool: UpstreamPool | None = None
        self._no_route = Assignment(service, None, "stable")
        # The route the gateway serves: adopted from the router's snapshot only when every
        # release it names has an endpoint, so a response is never labelled with a release
        # its endpoint does not serve. ``_route_at`` is the snapshot version last looked
        # at; ``_unserved`` says why the live route is not adopted (looked at again on
        # every request until it is: an endpoint may appear, e.g. a container).
        self._route_at: int | None = None
        self._served: ServiceRoute | None = None
        self._decide: Decide | None = None
        self._unserved: str | None = None
        self._warned_no_route = False
        self.in_flight = 0
        self._marks: dict[tuple[str, str | None, bool], list[tuple[bytes, bytes]]] = {}
        # In a shadow step: mirrors chosen requests to the candidate (None otherwise).
        self._mirror: ShadowMirror | None = None

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: http requests and the lifespan protocol."""
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == self.settings.health_path:
                await self._health(send)
            elif path == self.settings.metrics_path:
                await self._metrics(send)
            elif self.verdict is not None and path.startswith("/v1/rollouts/"):
                await self.verdict(scope, receive, send)
            else:
                await self._bounded_proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._open_client()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def open_pool(self) -> UpstreamPool:
        """The fast path's upstream connections (:mod:`releaser.serve.protocol`), on first use."""
        if self._pool is None:
            s = self.settings
            self._pool = UpstreamPool(
                asyncio.get_running_loop(),
                connect_timeout_s=s.connect_timeout_s,
                read_timeout_s=s.timeout_s,
                max_idle_per_origin=s.max_idle_connections,
            )
        return self._pool

    def _open_client(self) -> UpstreamClient:
        if self._client is None:
            s = self.settings
            self._client = UpstreamClient(
                connect_timeout_s=s.connect_timeout_s,
                read_timeout_s=s.timeout_s,
                max_idle_per_origin=s.max_idle_connections,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP clients (the router and upstreams belong to the caller)."""
        if self._mirror is not None:
            await self._mirror.aclose()
            self._mirror = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    @property
    def mirror(self) -> ShadowMirror | None:
        """The shadow step's mirror, while one runs (None otherwise)."""
        return self._mirror

    @property
    def shadow_in_flight(self) -> int:
        """Requests being mirrored to the candidate now (0 outside a shadow step)."""
        return 0 if self._mirror is None else self._mirror.in_flight

    # -- own endpoints ----------------------------------------------------------------

    async def _health(self, send: Send) -> None:
        router = self.router
        self._follow_if_changed()
        reachable = router.store_reachable
        served = self._served
        body = {
            "status": "ok",
            "service": self.service,
            "snapshot_version": router.snapshot_version,
            "store": "reachable" if reachable else "unreachable: serving the last snapshot",
            "serving": None
            if served is None
            else {"stable": served.stable, "candidate": served.candidate},
            "route": "served" if self._unserved is None else f"not served: {self._unserved}",
            "shadow": None if self._mirror is None else self._mirror_health(self._mirror),
        }
        await _respond(send, 200, json.dumps(body).encode(), b"application/json")

    @staticmethod
    def _mirror_health(mirror: ShadowMirror) -> dict[str, Any]:
        return {
            "candidate": mirror.assignment.release_id,
            "percent": mirror.plan.percent,
            "in_flight": mirror.in_flight,
            "problem": mirror.problem,
        }

    async def _metrics(self, send: Send) -> None:
        m = self.metrics
        m.snapshot_version.set(self.router.snapshot_version)
        m.store_reachable.set(1 if self.router.store_reachable else 0)
        self._follow_if_changed()
        m.route_unserved.set(0 if self._unserved is None else 1)
        payload, content_type = m.exposition()
        await _respond(send, 200, payload, content_type.encode())

    # -- the proxy ----------------------------------------------------------------------

    def _follow_if_changed(self) -> None:
        if self.router.snapshot_version != self._route_at or self._unserved is not None:
            self._follow_route()

    def _assign(self, unit: str | None, attributes: dict[str, str] | None) -> Assignment:
        if self.router.snapshot_version != self._route_at or self._unserved is not None:
            self._follow_route()
        decide = self._decide
        if decide is None:
            return self._no_route
        return decide(unit, attributes)

    def _follow_route(self) -> None:
        """Adopt the router's route for the service if an endpoint serves each release."""
        self._route_at = self.router.snapshot_version
        route = self.router.routes().get(self.service)
        if route is None:
            if not self._warned_no_route:  # warn once
                self._warned_no_route = True
                logger.warning(
                    "releaser gateway: no route for %r yet (no release rolled out); "
                    "proxying to the unrouted upstream, if any",
                    self.service,
                )
            return
        missing = [
            f"{variant} release {release}"
            for release, variant in _sides(route)
            if self.upstreams.url_for(Assignment(self.service, release, variant)) is None
        ]
        served = self._served
        if missing and served is not None and route != served:
            why = (
                f"no endpoint serves {' and '.join(missing)}; still serving stable "
                f"{served.stable}"
                + (f" and candidate {served.candidate}" if served.candidate else "")
            )
            if why != self._unserved:  # loudly, once per new problem
                logger.error(
                    "releaser gateway for %r: the route changed but %s; deploy it and add "
                    "it to deploy.upstreams.releases",
                    self.service,
                    why,
                )
            self._unserved = why
            return
        if route != served:
            # Nothing served before (first look) or every release has an endpoint. A
            # release whose endpoint is gone (a container stopped) is answered 503 and
            # unlabelled, never sent elsewhere.
            compiled = compile_route(route)
            self._decide = compiled.decide
            self._served = route
            self._follow_shadow(compiled.shadow)
        self._unserved = f"no endpoint serves {' and '.join(missing)}" if missing else None

    def _follow_shadow(self, shadow: Assignment | None) -> None:
        """Start mirroring in a shadow step, stop after it (calls in flight finish)."""
        old = self._mirror
        if old is not None and old.assignment is shadow:
            return
        if old is not None:
            old.retire()
        self._mirror = None
        served = self._served
        if shadow is None or served is None or served.shadow is None:
            return
        base = self.upstreams.url_for(shadow)
        if base is None:  # not adopted without one; kept for safety
            return
        self._mirror = ShadowMirror(
            served.shadow,
            shadow,
            base,
            self.router,
            self.metrics,
            connect_timeout_s=self.settings.connect_timeout_s,
        )

    async def _bounded_proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self.settings.limits
        if self.in_flight >= limits.max_concurrent_requests:
            self.metrics.rejected("too_many_requests")
            retry = str(limits.retry_after_s).encode()
            await _refuse(send, 503, "too many requests in flight; retry shortly", retry)
            return
        self.in_flight += 1
        try:
            await self._proxy(scope, receive, send)
        except _Refused as exc:
            self.metrics.rejected(exc.reason)
            await _refuse(send, exc.status, exc.detail)
        except _ClientGone:
            self.metrics.rejected("client_gone")
        finally:
            self.in_flight -= 1

    def route_request(self, headers: list[tuple[bytes, bytes]]) -> Routed:
        """Where a request goes, from its headers: the assignment, the upstream, what to send.

        Shared by the ASGI path and the fast protocol (:mod:`releaser.serve.protocol`).
        """
        unit_raw: bytes | None = None
        cookie_raw: bytes | None = None
        header_name = self._header
        wanted = self._attributes
        attributes: dict[str, str] | None = None
        forward: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            if name == header_name:
                unit_raw = value
            elif name == b"cookie":
                cookie_raw = value
            elif wanted and name in wanted:
                if attributes is None:
                    attributes = {}
                attributes[wanted[name]] = value.decode("latin-1")
            if name not in _NOT_FORWARDED_UP and not name.startswith(b"x-releaser-"):
                forward.append((name, value))  # a client cannot name its own release
        if unit_raw is None and cookie_raw is not None and self._cookie is not None:
            unit_raw = _cookie(cookie_raw, self._cookie)
        unit = _unit_id(unit_raw)
        assignment = self._assign(unit, attributes)
        base = self.upstreams.url_for(assignment)
        release = assignment.release_id
        marks = self._marks.get((assignment.variant, release, base is not None))
        if marks is None:
            marks = [(b"x-releaser-variant", assignment.variant.encode())]
            # Labelled only when an endpoint serves the release (none before the first
            # rollout).
            if release and base is not None:
                marks.append((b"x-releaser-release", release.encode()))
            if len(self._marks) < _MAX_CACHED_MARKS:
                self._marks[(assignment.variant, release, base is not None)] = marks
        return assignment, base, forward, marks, unit

    def record(
        self,
        assignment: Assignment,
        start: float,
        status: int,
        error: bool,
        unit: str | None = None,
    ) -> float:
        """Record one proxied request's outcome for its variant (and unit); its seconds."""
        elapsed = time.perf_counter() - start
        self.router.record(assignment, latency_ms=elapsed * 1000.0, error=error, unit_id=unit)
        self.metrics.observe(assignment.variant, assignment.release_id or "", status, elapsed)
        return elapsed

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        limits = self.settings.limits
        length = _declared_length(scope["headers"], limits)
        assignment, base, forward, marks, unit = self.route_request(scope["headers"])
        release = assignment.release_id or ""
        variant = assignment.variant
        if base is None:
            await self._fail(
                send, start, assignment, 503, "no upstream", "no endpoint", marks, unit
            )
            return
        deadline = asyncio.get_running_loop().time() + limits.body_timeout_s
        body: bytes | AsyncIterator[bytes]
        body, length = await _request_body(receive, length, limits, deadline)
        mirror = self._mirror
        mirrored: list[tuple[bytes, bytes]] | None = None
        if (
            mirror is not None
            and variant == "baseline"
            and isinstance(body, bytes)
            and len(body) <= mirror.plan.max_body_bytes
            and mirror.wants(scope["method"])
        ):
            mirrored = list(forward)  # the request as sent, before the stable side's marks
        forward = forward + marks
        query = scope.get("query_string") or b""
        raw_path = scope.get("raw_path") or scope["path"].encode()
        target = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        client = self._client or self._open_client()
        try:
            response = await client.request(scope["method"], base, target, forward, body, length)
        except UpstreamError as exc:
            if exc.kind == "timeout":
                what, status, detail = "upstream timeout", 504, str(exc)
            else:
                what, status, detail = "upstream unavailable", 502, f"{base}: {exc}"
            await self._fail(send, start, assignment, status, what, detail, marks, unit)
            return
        status = response.status
        headers = [(k, v) for k, v in response.headers if k not in _HOP_BY_HOP]
        headers.extend(marks)
        error = status >= 500
        # The stable answer, kept to compare with the candidate's (None past the limit).
        answer: list[bytes] | None = [] if mirrored is not None else None
        kept, keep_up_to = 0, mirror.plan.max_body_bytes if mirror is not None else 0
        # A small body read whole with the head goes in the last message (one write with
        # the head); a larger one is streamed as it arrives and the last message is empty.
        start_message = {"type": "http.response.start", "status": status, "headers": headers}
        last = response.content
        if last is not None:
            if answer is not None:
                answer = [last] if len(last) <= keep_up_to else None
            await send(start_message)
        else:
            last = b""
            body_iter = response.body
            try:
                await send(start_message)
                async for chunk in body_iter:
                    if answer is not None:
                        kept += len(chunk)
                        if kept > keep_up_to:
                            answer = None
                        else:
                            answer.append(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except UpstreamError as exc:  # the upstream broke off mid-response
                error = True
                logger.warning("releaser gateway: upstream %s broke off: %s", base, exc)
            finally:
                await body_iter.aclose()  # type: ignore[attr-defined]
        # Recorded before the last body message, so a client that has its response knows
        # the request is counted.
        self.record(assignment, start, status, error, unit)
        if error:
            self.metrics.error(variant, release, "status_5xx" if status >= 500 else "broken")
        await send({"type": "http.response.body", "body": last})
        if mirror is not None and mirrored is not None and isinstance(body, bytes):
            stable = None if answer is None or error else b"".join(answer)
            mirror.start(scope["method"], target, mirrored, body, status, stable)

    async def _fail(
        self,
        send: Send,
        start: float,
        assignment: Assignment,
        status: int,
        what: str,
        detail: str,
        marks: list[tuple[bytes, bytes]],
        unit: str | None,
    ) -> None:
        body = self.failed(start, assignment, status, what, detail, unit)
        await _respond(send, status, body, b"application/json", marks)

    def failed(
        self,
        start: float,
        assignment: Assignment,
        status: int,
        what: str,
        detail: str,
        unit: str | None = None,
    ) -> bytes:
        """Record a request its variant failed (``what``), and its unit, as served: the
        JSON body to answer with."""
        body = {
            "error": what,
            "service": self.service,
            "variant": assignment.variant,
            "release": assignment.release_id,
            "detail": detail,
        }
        self.record(assignment, start, status, True, unit)
        self.metrics.error(assignment.variant, assignment.release_id or "", what.replace(" ", "_"))
        return json.dumps(body).encode()


def _sides(route: ServiceRoute) -> list[tuple[str, Variant]]:
    """The releases a route sends traffic to, with the variant each is assigned as."""
    if route.stable is None:
        return []
    if route.candidate is None or route.rollout_id is None:
        return [(route.stable, "stable")]
    return [(route.stable, "baseline"), (route.candidate, "candidate")]


class _Refused(Exception):
    """The client broke a limit; answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


class _ClientGone(Exception):
    """The client disconnected before its request was read."""


def _declared_length(headers: list[tuple[bytes, bytes]], limits: GatewayLimits) -> int | None:
    """The request's Content-Length (None if chunked); _Refused if the headers break a limit."""
    size = 0
    length: int | None = None
    for name, value in headers:
        size += len(name) + len(value) + 4
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise _Refused(400, "bad_request", "invalid Content-Length") from None
    if size > limits.max_header_bytes:
        raise _Refused(
            431, "headers_too_large", f"request headers over {limits.max_header_bytes} bytes"
        )
    if length is not None and length > limits.max_body_bytes:
        raise _Refused(413, "body_too_large", f"request body over {limits.max_body_bytes} bytes")
    return length


async def _receive_body(receive: Receive, deadline: float) -> tuple[bytes, bool]:
    """One body message before ``deadline``: (bytes, more to come)."""
    try:
        async with asyncio.timeout_at(deadline):
            message = await receive()
    except TimeoutError:
        raise _Refused(408, "body_too_slow", "request body not received in time") from None
    if message["type"] == "http.disconnect":
        raise _ClientGone
    return message.get("body", b""), bool(message.get("more_body", False))


async def _request_body(
    receive: Receive, length: int | None, limits: GatewayLimits, deadline: float
) -> tuple[bytes | AsyncIterator[bytes], int | None]:
    """The body to forward and its length: bytes, or a stream when it is still arriving.

    A body in one message is bytes. A longer one with a Content-Length is streamed (the
    server enforces that length). A chunked one is read whole, up to ``max_body_bytes``,
    so the upstream gets a Content-Length.
    """
    first, more = await _receive_body(receive, deadline)
    if not more:
        return first, len(first)
    if length is not None:
        return _stream_body(receive, first, deadline), length
    parts = [first]
    size = len(first)
    while more:
        chunk, more = await _receive_body(receive, deadline)
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise _Refused(
                413, "body_too_large", f"request body over {limits.max_body_bytes} bytes"
            )
        parts.append(chunk)
    body = b"".join(parts)
    return body, len(body)


async def _stream_body(receive: Receive, first: bytes, deadline: float) -> AsyncIterator[bytes]:
    yield first
    more = True
    while more:
        chunk, more = await _receive_body(receive, deadline)
        if chunk:
            yield chunk


async def _refuse(send: Send, status: int, detail: str, retry_after: bytes | None = None) -> None:
    """Answer a request that broke a limit, and close its connection."""
    body = json.dumps({"error": detail}).encode()
    extra = [(b"connection", b"close")]
    if retry_after is not None:
        extra.append((b"retry-after", retry_after))
    await _respond(send, status, body, b"application/json", extra)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
