"""Connection-level limits of the gateway: what uvicorn's own settings do not bound.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) but not the time a
client takes to send its headers, nor the bytes of headers it buffers (its default
parser, httptools, has no cap), nor the number of open connections (its
``limit_concurrency`` answers 503 only once a request arrives, without ``Retry-After``,
and counts a slow client's connection until it sends one). :func:`bounded_protocol`
subclasses uvicorn's HTTP protocol to add three things per connection:

- **too many connections**: at ``max_connections``, a new connection closes the one that
  has waited longest for a request's headers (a slow client, or an idle keep-alive one;
  a request in flight is never cut), so slow clients cannot lock out quick ones; when
  every connection has a request in flight, the new one is answered 503 with
  ``Retry-After`` and closed at once;
- **header time**: from the connection's start, and again after each response, the
  client has ``header_timeout_s`` to complete a request's headers; past it a connection
  that sent part of a request gets 408, an idle one is closed; after a response, a
  connection that sends nothing is closed at ``keep_alive_s`` (the same timer, one per
  connection, where uvicorn makes and cancels one per response);
- **header size**: bytes buffered before the headers complete are counted; past
  ``max_header_bytes`` the client gets 431 and the connection is closed.

It also hands uvicorn a transport that sends a response's small head with the write that
follows it (:class:`CoalescedWrites`): uvicorn writes the head at ``http.response.start``
and the body at ``http.response.body``, two system calls (and, on loopback, two wake-ups
of the client) where one does.

The body (size, time) and concurrent requests are bounded in the ASGI app
(:mod:`releaser.serve.gateway`), which sees them; the upstream's response time by the
upstream client's read timeout.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from typing import TYPE_CHECKING, Any

from releaser.errors import BadInput

if TYPE_CHECKING:
    from releaser.config.deploy import GatewayLimits

__all__ = ["CoalescedWrites", "bind_socket", "bounded_protocol", "connection_cap"]

MAX_PORT = 65_535
# Writes of this size or more are not held: coalescing is for a response's small head.
COALESCE_MAX_BYTES = 16 * 1024


def connection_cap(limits: GatewayLimits) -> int:
    """``max_connections``, capped at half the soft open-file limit (the rest: upstreams, store)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return limits.max_connections
    return max(1, min(limits.max_connections, soft // 2))


def _raw_response(status: int, reason: str, text: str, extra: bytes = b"") -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode()
        + b"content-type: text/plain; charset=utf-8\r\n"
        + extra
        + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        + body
    )


class CoalescedWrites:
    """A transport wrapper: a small write waits for the next one, so the two leave as one.

    A write under ``COALESCE_MAX_BYTES`` with nothing held is held (a response's head);
    the next write goes out with it, in one system call, at once. What is still held at
    the end of the event-loop step is sent then (``loop.call_soon``: a head whose body
    is not ready yet), and :meth:`flush` sends it sooner (the protocol calls it when a
    response is complete: a deferred send costs a loop iteration of latency, measured at
    about 0.1 ms at the median on the gateway bench). ``close()`` and ``write_eof()``
    flush first, so bytes leave in the order written and nothing is held past a close.
    At most one small write is held; flow control and everything else are the wrapped
    transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        """Hold a small ``data`` for the next write; else send it, with what is held."""
        if not data:
            return
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif len(data) < COALESCE_MAX_BYTES:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, data: Any) -> None:
        """Write each buffer, as :meth:`write` does."""
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is held now (dropped if the transport is closing)."""
        held = self._held
        if held is None:
            return
        self._held = None
        if not self._transport.is_closing():
            self._transport.write(held)

    def is_closing(self) -> bool:
        """Whether the wrapped transport is closing (asked several times a request)."""
        return self._transport.is_closing()

    def get_write_buffer_size(self) -> int:
        """The wrapped transport's buffered bytes plus those held."""
        held = self._held
        return self._transport.get_write_buffer_size() + (len(held) if held else 0)

    def write_eof(self) -> None:
        """Flush, then half-close."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Flush, then close."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is held and abort at once."""
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def bounded_protocol(limits: GatewayLimits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the connection, header-time and header-size limits."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    max_connections = connection_cap(limits)
    max_header_bytes = limits.max_header_bytes
    header_timeout_s = limits.header_timeout_s
    keep_alive_s = limits.keep_alive_s
    too_many = _raw_response(
        503,
        "Service Unavailable",
        "too many connections to the gateway; retry shortly\n",
        f"retry-after: {limits.retry_after_s}\r\n".encode(),
    )
    too_slow = _raw_response(408, "Request Timeout", "request headers too slow\n")
    too_large = _raw_response(431, "Request Header Fields Too Large", "request headers too large\n")

    # Connections waiting for a request's headers, longest-waiting first (dicts keep
    # insertion order): the ones to close when a new connection needs the room.
    waiting: dict[Any, None] = {}

    class BoundedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        """uvicorn's protocol, refusing extra connections and slow or oversized headers."""

        # The header clock: running while ``_header_deadline`` is set (loop time). One timer
        # per connection, pushed on when the clock restarts, rather than a timer made and
        # cancelled for every request of a keep-alive connection.
        _header_deadline = 0.0
        _idle_deadline = 0.0
        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _refused = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(CoalescedWrites(transport, self.loop))
            if len(self.connections) > max_connections:
                oldest = next(iter(waiting), None)
                if oldest is None:  # every connection has a request in flight
                    self._refused = True
                    transport.write(too_many)
                    transport.close()
                    return
                oldest._make_room()
            self._start_header_clock()

        def _make_room(self) -> None:
            self._stop_header_clock()
            self.connections.discard(self)  # counted out now, not when the close lands
            self.transport.close()

        def _start_header_clock(self, idle_s: float = 0.0) -> None:
            now = self.loop.time()
            self._header_bytes = 0
            self._header_deadline = deadline = now + header_timeout_s
            # After a response, an idle connection closes at the keep-alive time: one
            # timer per connection, where uvicorn makes and cancels one per response.
            self._idle_deadline = idle = now + idle_s if idle_s else 0.0
            first = min(deadline, idle) if idle else deadline
            timer = self._header_timer
            if timer is not None and timer.when() > first:  # set for a later deadline
                timer.cancel()
                timer = None
            if timer is None:
                self._header_timer = self.loop.call_at(first, self._header_clock_rings)
            waiting[self] = None

        def _stop_header_clock(self) -> None:
            waiting.pop(self, None)
            self._header_deadline = 0.0

        def _header_clock_rings(self) -> None:
            self._header_timer = None
            deadline = self._header_deadline
            if not deadline:
                return  # stopped since
            now = self.loop.time()
            idle = 0.0 if self._header_bytes else self._idle_deadline
            if idle and now >= idle:  # kept alive, nothing sent since: closed quietly
                self._stop_header_clock()
                if not self.transport.is_closing():
                    self.transport.close()
                return
            if now < deadline:  # restarted since, or idle until later: wait again
                wake = min(deadline, idle) if idle else deadline
                self._header_timer = self.loop.call_at(wake, self._header_clock_rings)
                return
            self._headers_too_slow()

        def _headers_too_slow(self) -> None:
            self._stop_header_clock()
            if self.transport.is_closing():
                return
            if self._header_bytes:
                self.transport.write(too_slow)
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            clocked = bool(self._header_deadline)
            cycle = self.cycle
            super().data_received(data)
            if not clocked or self.transport.is_closing():
                return
            if self.cycle is not cycle:  # a request's headers are complete
                self._stop_header_clock()
                return
            self._header_bytes += len(data)
            if self._header_bytes > max_header_bytes:
                self._stop_header_clock()
                self.transport.write(too_large)
                self.transport.close()

        def on_response_complete(self) -> None:
            # uvicorn's, less its keep-alive timer (the header clock closes idle connections).
            self.transport.flush()  # a complete response need not wait for the step's end
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            if self.pipeline:
                cycle, app = self.pipeline.pop()
                self._start_asgi_task(cycle, app)
                return
            cycle = self.cycle
            if (cycle is None or cycle.response_complete) and not self._header_deadline:
                # The next request's headers are on the clock, and idleness too.
                self._start_header_clock(keep_alive_s)

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_header_clock()
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return BoundedHTTPProtocol


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); BadInput if it cannot bind."""
    if not 0 <= port <= MAX_PORT:
        raise BadInput(
            f"port {port} is out of range",
            hint=f"give --port a number from 1 to {MAX_PORT}, or 0 for a free port",
        )
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadInput(
            f"cannot listen on {host!r}: {exc.strerror}",
            hint="give --host an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise BadInput(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 for a free one) or stop what listens there",
        ) from exc
    sock.setblocking(False)
    return sock
