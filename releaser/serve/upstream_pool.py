"""Upstream connections as asyncio protocols, for the gateway's fast path: no task, no stream.

:class:`UpstreamPool` sends a request on a pooled keep-alive connection and calls back with
the answer, from the connection's ``data_received``: no task, future or stream reader per
request (those were a third of the gateway's Python time a request, measured on the
gateway bench). A response whose Content-Length is at most 64 KiB (or that has no body)
is gathered there and handed over whole, its connection back in the pool first. Any other
(chunked, larger, until close) is handed over as a body stream read through an asyncio
``StreamReader``, as :mod:`releaser.serve.upstream_client` reads one; its connection is
closed after it, not reused.

The rules are :class:`releaser.serve.upstream_client.UpstreamClient`'s: a connect timeout;
a read timeout (one timer per connection, pushed forward rather than made anew); a
request that fails on a reused idle connection before any response byte arrives is sent
once more on a new connection; errors are :class:`UpstreamError` by kind.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Any

from releaser.serve.upstream_client import (
    MAX_HEADER_BYTES,
    NO_BODY_STATUS,
    WHOLE_MAX,
    UpstreamError,
    UpstreamResponse,
    deadline_passed,
    empty_body,
    origin_of,
    parse_head,
    read_body,
    request_head,
)

__all__ = ["UpstreamPool"]

OnAnswer = Callable[[UpstreamResponse], None]
OnError = Callable[[UpstreamError], None]


# An answer whose head has any of these is parsed in full (its headers are filtered).
_HOP_BY_HOP = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-authenticate|proxy-authorization|te|trailer"
    rb"|transfer-encoding|upgrade)[ \t]*:",
    re.IGNORECASE,
)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]+)[ \t]*\r\n", re.IGNORECASE)


_NO_HEADERS: list[tuple[bytes, bytes]] = []  # never appended to


def _quick_head(head: bytes) -> tuple[int, int] | None:
    """(status, Content-Length) of an HTTP/1.1 head with one length and no hop-by-hop header.

    None for any other head, which :func:`parse_head` then reads in full. A few scans in C
    rather than a loop over the header lines.
    """
    if not head.startswith(b"HTTP/1.1 ") or head[12:13] not in (b" ", b"\r"):
        return None
    code = head[9:12]
    if not code.isdigit() or _HOP_BY_HOP.search(head) is not None:
        return None
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) != 1 or head.lower().count(b"\r\ncontent-length") != 1:
        return None
    return int(code), int(lengths[0])


class _UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream; one request at a time."""

    def __init__(self, pool: UpstreamPool, origin: Any) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.closed = False
        # The request under way (None while idle).
        self.on_answer: OnAnswer | None = None
        self.on_error: OnError | None = None
        self.method = ""
        self.payload = b""  # kept to send again if a reused connection turns out closed
        self.buffer = b""
        self.got_bytes = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_start = 0
        self.need = 0  # bytes of head and body to gather; 0 until the head is in
        self.keep_alive = True
        self.head: bytes | None = None  # the answer's head, when passed on unparsed
        # The read timeout: loop time by which the read under way must complete.
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.reader: asyncio.StreamReader | None = None  # a streamed body's

    # -- asyncio protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is not None:
            reader.feed_data(data)
            return
        if self.on_answer is None:  # nothing asked: not HTTP as we speak it
            self.close()
            return
        self.got_bytes = True
        buffer = self.buffer + data if self.buffer else data
        if not self.need:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self._fail(UpstreamError("protocol", "response headers too large"))
                else:
                    self._wait_more(buffer)
                return
            head = buffer[: end + 4]
            if not self._quick(head, end):
                try:
                    status, headers, length, chunked, keep_alive = parse_head(head)
                except UpstreamError as exc:
                    self._fail(exc)
                    return
                if self.method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
                    length, chunked = 0, False
                if length is None or length > WHOLE_MAX:
                    self._stream(status, headers, length, chunked, buffer[end + 4 :])
                    return
                self.head = None
                self.status, self.headers, self.keep_alive = status, headers, keep_alive
                self.body_start = end + 4
                self.need = end + 4 + length
        if len(buffer) < self.need:
            self._wait_more(buffer)
            return
        content = buffer[self.body_start : self.need]
        spare = len(buffer) > self.need  # more than was asked: do not trust the connection
        answer = UpstreamResponse(self.status, self.headers, empty_body(), content, self.head)
        on_answer = self.on_answer
        self._idle()
        if self.keep_alive and not spare:
            self.pool.give_back(self)
        else:
            self.close()
        on_answer(answer)

    def _quick(self, head: bytes, end: int) -> bool:
        """Take the common answer's head as it is, unparsed; False for any other."""
        quick = _quick_head(head)
        if quick is None:
            return False
        status, length = quick
        if self.method == "HEAD" or status in NO_BODY_STATUS or 100 <= status < 200:
            length = 0
        if length > WHOLE_MAX:
            return False  # streamed: its headers are parsed to be filtered
        self.status, self.headers, self.keep_alive = status, _NO_HEADERS, True
        self.head = head
        self.body_start = end + 4
        self.need = end + 4 + length
        return True

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self.pool.discard(self)
        reader = self.reader
        if reader is not None:
            if exc is None:
                reader.feed_eof()
            else:
                reader.set_exception(exc)
            return
        if self.on_answer is None:
            return
        if self.reused and not self.got_bytes:  # closed while idle: once more, anew
            on_answer, on_error = self.on_answer, self.on_error
            assert on_error is not None
            self._idle()
            self.pool.connect_and_send(self.origin, self.method, self.payload, on_answer, on_error)
            return
        self._fail(UpstreamError("protocol", "the upstream closed the connection"))

    # -- requests -----------------------------------------------------------------------

    def send(self, method: str, payload: bytes, on_answer: OnAnswer, on_error: OnError) -> None:
        """Write one request; ``on_answer`` or ``on_error`` is called once with its outcome."""
        self.method, self.payload = method, payload
        self.on_answer, self.on_error = on_answer, on_error
        assert self.transport is not None
        self.transport.write(payload)
        self.arm(self.pool.read_timeout_s)

    def arm(self, timeout_s: float) -> None:
        """Start the read timeout for a read about to wait."""
        self.deadline = deadline = self.loop.time() + timeout_s
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._check)

    def _wait_more(self, buffer: bytes) -> None:
        # Part of the answer is in: the read timeout runs again for the next read.
        self.buffer = buffer
        self.deadline = self.loop.time() + self.pool.read_timeout_s

    def close(self) -> None:
        """Close the connection (what is under way fails through connection_lost)."""
        self._stop_timer()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check(self) -> None:
        if not deadline_passed(self):
            return
        if self.reader is not None:
            self.reader.set_exception(TimeoutError())  # the waiting read raises it
            self.close()
            return
        self._fail(UpstreamError("timeout", f"no response within {self.pool.read_timeout_s:g}s"))

    def _idle(self) -> None:
        self.on_answer = self.on_error = None
        self.payload = self.buffer = b""
        self.need = 0
        self.deadline = 0.0
        self.got_bytes = False

    def _fail(self, exc: UpstreamError) -> None:
        on_error = self.on_error
        self._idle()
        self.close()
        if on_error is not None:
            on_error(exc)

    def _stream(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
        chunked: bool,
        rest: bytes,
    ) -> None:
        """Hand the response over with a body read as it arrives; not reused after it."""
        reader = asyncio.StreamReader(limit=MAX_HEADER_BYTES, loop=self.loop)
        assert self.transport is not None
        reader.set_transport(self.transport)  # flow control: reading pauses when it fills
        if rest:
            reader.feed_data(rest)
        self.reader = reader
        on_answer = self.on_answer
        assert on_answer is not None
        self._idle()
        body = read_body(self, reader, self.pool.read_timeout_s, length, chunked, self._end)
        on_answer(UpstreamResponse(status, headers, body))

    def _end(self, done: bool) -> None:
        self.close()


class UpstreamPool:
    """Keep-alive protocol connections per upstream origin; one instance per event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 30.0,
        max_idle_per_origin: int = 100,
    ) -> None:
        self.loop = loop
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle = max_idle_per_origin
        self._origins: dict[str, Any] = {}
        self._idle: dict[Any, list[_UpstreamConnection]] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        self._ssl: ssl.SSLContext | None = None

    def request(
        self,
        method: str,
        base: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        on_answer: OnAnswer,
        on_error: OnError,
    ) -> None:
        """Send a request to ``base`` + ``target``; one of the callbacks gets its outcome."""
        origin = self._origins.get(base)
        if origin is None:
            origin = self._origins[base] = origin_of(base)
        payload = request_head(method, origin, target, headers, body)
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                conn.send(method, payload, on_answer, on_error)
                return
        self.connect_and_send(origin, method, payload, on_answer, on_error)

    def connect_and_send(
        self, origin: Any, method: str, payload: bytes, on_answer: OnAnswer, on_error: OnError
    ) -> None:
        """Open a new connection to ``origin`` and send ``payload`` on it."""
        task = self.loop.create_task(self._connect(origin, method, payload, on_answer, on_error))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(
        self, origin: Any, method: str, payload: bytes, on_answer: OnAnswer, on_error: OnError
    ) -> None:
        context: ssl.SSLContext | None = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await self.loop.create_connection(
                    lambda: _UpstreamConnection(self, origin), origin.host, origin.port, ssl=context
                )
        except TimeoutError:
            on_error(
                UpstreamError("timeout", f"connecting to {origin.host}:{origin.port} timed out")
            )
            return
        except OSError as exc:
            on_error(
                UpstreamError(
                    "connect",
                    f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}",
                )
            )
            return
        conn.send(method, payload, on_answer, on_error)

    def give_back(self, conn: _UpstreamConnection) -> None:
        """An idle connection, kept for the next request (closed past ``max_idle``)."""
        idle = self._idle.get(conn.origin)
        if idle is None:
            idle = self._idle[conn.origin] = []
        if len(idle) < self.max_idle:
            idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: _UpstreamConnection) -> None:
        """Forget a connection that closed."""
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)

    async def aclose(self) -> None:
        """Close every idle connection and stop connections being opened."""
        for task in list(self._connecting):
            task.cancel()
        for idle in self._idle.values():
            for conn in list(idle):
                conn.close()
        self._idle.clear()
