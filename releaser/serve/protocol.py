"""The gateway's HTTP protocol: proxied requests answered without ASGI, the rest by uvicorn.

uvicorn serves the gateway (:func:`releaser.serve.server.gateway_config`) with this
protocol class, a subclass of its httptools protocol with the connection limits of
:mod:`releaser.serve.limits`. A proxied request with a body of at most 64 KiB (by
Content-Length, or none) takes the fast path: from the parser's callbacks it is routed
(:meth:`releaser.serve.gateway.Gateway.route_request`), sent upstream on a pooled
connection that is itself a protocol (:mod:`releaser.serve.upstream_pool`), and the
upstream's head and body are written to the client in one write. No ASGI scope, task,
receive or send message, no timer per request. Its limits are the ASGI path's: it counts
against ``max_concurrent_requests`` from its headers (503 with ``Retry-After`` past it,
before its body is read); a body not in within ``body_timeout_s`` gets 408; either closes
the connection and is counted as rejected, not against a variant. An upstream answer that
is chunked, past 64 KiB or read until close is streamed to the client as it arrives (with
back-pressure); one that breaks off closes the client's connection, so it never looks
complete.

Everything else is handed to the ASGI app (:class:`releaser.serve.gateway.Gateway`) as
uvicorn would hand it: ``/healthz``, ``/metrics``, the verdict endpoint, a chunked body or
one past 64 KiB (streamed, bounded by the app), ``Expect: 100-continue``, upgrades,
headers past ``max_header_bytes``, a request pipelined behind another. Both paths share
the gateway's routing, in-flight count, recording and shadow mirroring.

Why: on the gateway bench (2 cores, loopback, wrk), the gateway process's own CPU a
proxied request fell by about 40% against the same gateway with every request through
ASGI, measured in the same run; see ``bench/bench_gateway.py``.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from releaser.router.snapshot import Assignment
from releaser.serve.limits import bounded_protocol
from releaser.serve.upstream_client import HOP_BY_HOP, UpstreamError, UpstreamResponse

if TYPE_CHECKING:
    from releaser.serve.gateway import Gateway

__all__ = ["FAST_BODY_MAX", "gateway_protocol"]

logger = logging.getLogger("releaser.serve")

FAST_BODY_MAX = 64 * 1024
"""Largest request body taken on the fast path (by Content-Length); larger ones stream."""
_FAST_METHODS = frozenset({b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"HEAD"})
_NO_BODY_STATUS = frozenset({204, 304})


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode()


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


class _NoEvent:
    """Stands in for the event uvicorn sets on a cycle's connection loss (nothing waits)."""

    __slots__ = ()

    def set(self) -> None:
        """Nothing to wake."""


_NO_EVENT = _NoEvent()
_UNROUTED = Assignment("", None, "stable")


class _Exchange:
    """One request on the fast path; the connection's current cycle, as uvicorn sees it."""

    __slots__ = (
        "assignment",
        "base",
        "body",
        "counted",
        "disconnected",
        "head_sent",
        "headers",
        "keep_alive",
        "marks",
        "message_event",
        "method",
        "mirrored",
        "response_complete",
        "start",
        "target",
        "unit",
    )

    def __init__(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = b""
        self.keep_alive = keep_alive  # uvicorn's shutdown sets it False mid-request
        self.response_complete = False
        self.disconnected = False  # uvicorn's connection_lost sets it
        self.head_sent = False
        # Set once it is routed.
        self.start = 0.0
        self.base = ""
        self.assignment: Assignment = _UNROUTED
        self.marks: list[tuple[bytes, bytes]] = []
        self.mirrored: list[tuple[bytes, bytes]] | None = None  # headers, if mirrored
        self.counted = False  # in the gateway's in-flight count
        self.unit: str | None = None  # the unit id routed on, counted once per variant
        self.message_event = _NO_EVENT


def _json_response(status: int, body: bytes, extra: bytes = b"", close: bool = False) -> bytes:
    return b"".join(
        (
            _STATUS_LINES[status],
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\n",
            extra,
            b"connection: close\r\n" if close else b"",
            b"\r\n",
            body,
        )
    )


def _header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


def gateway_protocol(gateway: Gateway) -> type[asyncio.Protocol]:
    """uvicorn's bounded HTTP protocol, answering proxied requests of ``gateway`` itself."""
    settings = gateway.settings
    limits = settings.limits
    bounded = bounded_protocol(limits)
    health = settings.health_path.encode("latin-1")
    metrics_path = settings.metrics_path.encode("latin-1")
    verdict = b"/v1/rollouts/" if gateway.verdict is not None else None
    max_header_bytes = limits.max_header_bytes
    body_max = min(limits.max_body_bytes, FAST_BODY_MAX)
    max_in_flight = limits.max_concurrent_requests
    busy = _json_response(
        503,
        json.dumps({"error": "too many requests in flight; retry shortly"}).encode(),
        f"retry-after: {limits.retry_after_s}\r\n".encode(),
        close=True,
    )
    body_timeout_s = limits.body_timeout_s
    too_slow = _json_response(
        408, json.dumps({"error": "request body not received in time"}).encode(), close=True
    )
    record = gateway.record
    # id(marks) -> (marks, their header lines); the list is kept so its id is not reused.
    marks_lines: dict[int, tuple[list[tuple[bytes, bytes]], bytes]] = {}
    route_request = gateway.route_request
    metrics = gateway.metrics

    class GatewayProtocol(bounded):  # type: ignore[misc, valid-type]
        """Proxied requests on the fast path; everything else through uvicorn's ASGI cycle."""

        _raw: Any = None
        cycle: Any  # uvicorn's RequestResponseCycle, or an _Exchange
        headers: list[tuple[bytes, bytes]]
        _pending: _Exchange | None = None  # headers in, body still to come
        _task: asyncio.Task[None] | None = None
        _body_timer: asyncio.TimerHandle | None = None
        _current: _Exchange  # the request being proxied

        def connection_made(self, transport: Any) -> None:
            self._raw = transport  # the fast path writes once a response: nothing to hold
            super().connection_made(transport)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._pending is not None and self._body_timer is None:
                # The body did not come whole with the headers: it has body_timeout_s.
                self._body_timer = self.loop.call_later(body_timeout_s, self._body_too_slow)

        def connection_lost(self, exc: Exception | None) -> None:
            pending = self._pending
            if pending is not None:
                self._pending = None
                self._stop_body_timer()
                self._uncount(pending)
                metrics.rejected("client_gone")
            super().connection_lost(exc)

        def _stop_body_timer(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def _body_too_slow(self) -> None:
            self._body_timer = None
            pending = self._pending
            if pending is not None:
                self._pending = None
                self._uncount(pending)
                metrics.rejected("body_too_slow")
                self._finish(pending, too_slow, close=True)

        # -- httptools callbacks ----------------------------------------------------------

        def on_message_begin(self) -> None:
            # uvicorn builds the ASGI scope here; only a request handed to it needs one.
            self.url = b""
            self.headers = []
            self.expect_100_continue = False

        def on_headers_complete(self) -> None:
            exchange = self._fast_exchange()
            if exchange is None:
                self._to_asgi()
                return
            self.cycle = exchange
            if gateway.in_flight >= max_in_flight:  # before its body is read, as in ASGI
                metrics.rejected("too_many_requests")
                self._finish(exchange, busy, close=True)
                return
            # In flight from its headers: a request whose body is still coming counts.
            gateway.in_flight += 1
            exchange.counted = True
            self._pending = exchange

        def on_body(self, body: bytes) -> None:
            pending = self._pending
            if pending is None:
                super().on_body(body)
            else:
                pending.body += body

        def on_message_complete(self) -> None:
            pending = self._pending
            if pending is None:
                super().on_message_complete()
                return
            self._pending = None
            self._stop_body_timer()
            self._proxy(pending)

        # -- which path --------------------------------------------------------------------

        def _fast_exchange(self) -> _Exchange | None:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                return None  # pipelined behind a request in flight: uvicorn queues it
            url: bytes = self.url
            if url[:1] != b"/" or self.expect_100_continue or b"#" in url:
                return None
            parser = self.parser
            method = parser.get_method()
            # (Not asked: the HTTP version. Its string costs as much as the rest of this
            # check; an HTTP/1.0 request is answered alike, kept alive only if it asked.)
            if method not in _FAST_METHODS or parser.should_upgrade():
                return None
            path = url.partition(b"?")[0]
            if (
                path == health
                or path == metrics_path
                or b"%" in path
                or (verdict is not None and path.startswith(verdict))
            ):
                return None
            size = 0
            for name, value in self.headers:
                size += len(name) + len(value) + 4
                if name == b"content-length":
                    if not value.isdigit() or int(value) > body_max:
                        return None
                elif name == b"transfer-encoding":
                    return None
            if size > max_header_bytes:
                return None
            return _Exchange(
                method.decode("ascii"),
                url.decode("latin-1"),
                self.headers,
                parser.should_keep_alive(),
            )

        def _to_asgi(self) -> None:
            """Hand the request whose headers are in to uvicorn's ASGI cycle."""
            url, headers, expect = self.url, self.headers, self.expect_100_continue
            super().on_message_begin()  # the scope, as uvicorn makes it
            self.url, self.headers, self.expect_100_continue = url, headers, expect
            self.scope["headers"] = headers
            super().on_headers_complete()

        # -- the fast path -----------------------------------------------------------------

        def _proxy(self, exchange: _Exchange) -> None:
            exchange.start = start = time.perf_counter()
            assignment, base, forward, marks, unit = route_request(exchange.headers)
            exchange.assignment, exchange.marks, exchange.unit = assignment, marks, unit
            if base is None:
                self._uncount(exchange)
                body = gateway.failed(start, assignment, 503, "no upstream", "no endpoint", unit)
                self._finish(exchange, self._error_response(exchange, 503, body))
                return
            mirror = gateway.mirror
            if (
                mirror is not None
                and assignment.variant == "baseline"
                and len(exchange.body) <= mirror.plan.max_body_bytes
                and mirror.wants(exchange.method)
            ):
                exchange.mirrored = forward  # as sent, before the stable side's marks
            exchange.base = base
            self._current = exchange
            pool = gateway.open_pool()
            pool.request(
                exchange.method,
                base,
                exchange.target,
                forward + marks,
                exchange.body,
                self._answered,
                self._failed,
            )

        def _error_response(self, exchange: _Exchange, status: int, body: bytes) -> bytes:
            marks = _header_lines(exchange.marks)
            return _json_response(status, body, marks, not exchange.keep_alive)

        def _finish(self, exchange: _Exchange, data: bytes, close: bool = False) -> None:
            """Write a whole response, then on to the connection's next request."""
            exchange.head_sent = exchange.response_complete = True
            if not exchange.disconnected:
                self._raw.write(data)
                if close or not exchange.keep_alive:
                    self._raw.close()
            self.on_response_complete()

        def _uncount(self, exchange: _Exchange) -> None:
            if exchange.counted:
                exchange.counted = False
                gateway.in_flight -= 1

        def _failed(self, exc: UpstreamError) -> None:
            """The upstream call failed: 504 for a timeout, else 502, counted as errors."""
            exchange = self._current
            self._uncount(exchange)
            if exc.kind == "timeout":
                status, what, detail = 504, "upstream timeout", str(exc)
            else:
                status, what, detail = 502, "upstream unavailable", f"{exchange.base}: {exc}"
            try:
                body = gateway.failed(
                    exchange.start, exchange.assignment, status, what, detail, exchange.unit
                )
                self._finish(exchange, self._error_response(exchange, status, body))
            except Exception:
                self._crashed(exchange)

        def _answered(self, response: UpstreamResponse) -> None:
            """The upstream's answer: written to the client in one write when whole."""
            exchange = self._current
            try:
                content = response.content
                if content is None:  # a body still arriving: streamed by a task
                    self._task = self.loop.create_task(self._stream_answer(exchange, response))
                    return
                status = response.status
                error = status >= 500
                assignment = exchange.assignment
                record(assignment, exchange.start, status, error, exchange.unit)
                if error:
                    metrics.error(assignment.variant, assignment.release_id or "", "status_5xx")
                raw = response.head
                if raw is not None:  # as received, but for its last line end
                    marks = self._marks_lines(exchange.marks)
                    close = b"" if exchange.keep_alive else b"connection: close\r\n"
                    data = b"".join((raw[:-2], marks, close, b"\r\n", content))
                else:
                    head = self._head(exchange, response)
                    head.append(b"\r\n")
                    head.append(content)
                    data = b"".join(head)
                self._uncount(exchange)
                self._finish(exchange, data)
                self._mirror(exchange, status, None if error else content)
            except Exception:
                self._crashed(exchange)

        def _marks_lines(self, marks: list[tuple[bytes, bytes]]) -> bytes:
            # The gateway reuses each marks list, so its lines are made once.
            found = marks_lines.get(id(marks))
            if found is None or found[0] is not marks:
                found = (marks, _header_lines(marks))
                if len(marks_lines) >= 64:
                    marks_lines.clear()
                marks_lines[id(marks)] = found
            return found[1]

        def _head(self, exchange: _Exchange, response: UpstreamResponse) -> list[bytes]:
            status = response.status
            head = [_STATUS_LINES.get(status) or _status_line(status)]
            for name, value in response.headers:
                if name not in HOP_BY_HOP:
                    head.append(name + b": " + value + b"\r\n")
            for name, value in exchange.marks:
                head.append(name + b": " + value + b"\r\n")
            if not exchange.keep_alive:
                head.append(b"connection: close\r\n")
            return head

        def _mirror(self, exchange: _Exchange, status: int, answer: bytes | None) -> None:
            mirror = gateway.mirror
            mirrored = exchange.mirrored
            if mirror is None or mirrored is None:
                return
            if answer is not None and len(answer) > mirror.plan.max_body_bytes:
                answer = None  # too large to compare
            mirror.start(exchange.method, exchange.target, mirrored, exchange.body, status, answer)

        def _crashed(self, exchange: _Exchange) -> None:
            """A bug must not leave the client waiting: 500, or the connection closed."""
            logger.exception("releaser gateway: proxying %s failed", exchange.target)
            self._uncount(exchange)
            if exchange.head_sent:
                if not exchange.response_complete:
                    self._raw.close()
            else:
                body = json.dumps({"error": "internal error in the gateway"}).encode()
                self._finish(exchange, _json_response(500, body), close=True)

        async def _stream_answer(self, exchange: _Exchange, response: UpstreamResponse) -> None:
            try:
                status = response.status
                head = self._head(exchange, response)
                sized = any(name == b"content-length" for name, _ in response.headers)
                mirror = gateway.mirror
                keep = 0
                if exchange.mirrored is not None and mirror is not None:
                    keep = mirror.plan.max_body_bytes
                answer, error = await self._stream(
                    exchange, response.body, head, sized, status, keep
                )
                assignment = exchange.assignment
                record(assignment, exchange.start, status, error, exchange.unit)
                if error:
                    kind = "status_5xx" if status >= 500 else "broken"
                    metrics.error(assignment.variant, assignment.release_id or "", kind)
                self._uncount(exchange)
                if exchange.response_complete:  # else broken off: the connection is closed
                    self.on_response_complete()
                self._mirror(exchange, status, None if error else answer)
            except Exception:
                self._crashed(exchange)
            finally:
                self._uncount(exchange)
                self._task = None

        async def _stream(
            self,
            exchange: _Exchange,
            chunks: Any,
            head: list[bytes],
            sized: bool,
            status: int,
            keep: int,
        ) -> tuple[bytes | None, bool]:
            """Write the head, then the body as it arrives: (the body if <= ``keep``, error)."""
            chunked = not sized and exchange.method != "HEAD" and status not in _NO_BODY_STATUS
            if chunked:
                head.append(b"transfer-encoding: chunked\r\n")
            head.append(b"\r\n")
            raw = self._raw
            flow = self.flow
            kept: list[bytes] | None = [] if keep else None
            size = 0
            broken = False
            exchange.head_sent = True
            if not exchange.disconnected:
                raw.write(b"".join(head))
            try:
                async for chunk in chunks:
                    if kept is not None:
                        size += len(chunk)
                        if size <= keep:
                            kept.append(chunk)
                        else:
                            kept = None
                    if exchange.disconnected:
                        continue  # read to the end: the upstream connection is not cut
                    raw.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    if flow.write_paused:
                        await flow.drain()
            except UpstreamError as exc:  # the upstream broke off mid-response
                broken = True
                logger.warning("releaser gateway: upstream broke off: %s", exc)
            finally:
                await chunks.aclose()
            if broken:
                # The client sees the response cut short, never a complete-looking one.
                raw.close()
                return None, True
            if chunked and not exchange.disconnected:
                raw.write(b"0\r\n\r\n")
            exchange.response_complete = True
            if not exchange.keep_alive:
                raw.close()
            return (None if kept is None else b"".join(kept)), status >= 500

    return GatewayProtocol
