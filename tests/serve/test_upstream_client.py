"""The gateway's upstream client against real sockets: bodies, keep-alive, faults."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from releaser.serve.upstream_client import UpstreamClient, UpstreamError

from .conftest import Upstream, free_port


class RawServer:
    """A TCP server that answers each request with a canned byte string, then maybe closes."""

    def __init__(self, respond: Callable[[int], tuple[bytes, bool]]) -> None:
        self.respond = respond  # request number -> (bytes to send, close afterwards?)
        self.connections = 0
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, _, buf = buf.partition(b"\r\n\r\n")
                self.requests += 1
                payload, close = self.respond(self.requests)
                if payload:
                    conn.sendall(payload)
                if close:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    made: list[RawServer] = []

    def make(respond: Callable[[int], tuple[bytes, bool]]) -> RawServer:
        server = RawServer(respond)
        made.append(server)
        return server

    yield make
    for s in made:
        s.close()


async def _get(client: UpstreamClient, base: str, target: str = "/") -> tuple[int, bytes]:
    response = await client.request("GET", base, target, [(b"x-test", b"1")], b"")
    body = b"".join([chunk async for chunk in response.body])
    return response.status, body


def test_keep_alive_reuses_one_connection(raw_server: Callable[..., RawServer]) -> None:
    server = raw_server(lambda n: (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", False))

    async def run() -> list[tuple[int, bytes]]:
        client = UpstreamClient()
        try:
            return [await _get(client, server.url) for _ in range(5)]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [(200, b"ok")] * 5
    assert server.connections == 1 and server.requests == 5


def test_chunked_and_until_close_bodies(raw_server: Callable[..., RawServer]) -> None:
    chunked = raw_server(
        lambda n: (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
            False,
        )
    )
    until_close = raw_server(lambda n: (b"HTTP/1.0 200 OK\r\n\r\nstreamed to the end", True))

    async def run() -> list[tuple[int, bytes]]:
        client = UpstreamClient()
        try:
            return [
                await _get(client, chunked.url),
                await _get(client, chunked.url),
                await _get(client, until_close.url),
                await _get(client, until_close.url),
            ]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [
        (200, b"hello world"),
        (200, b"hello world"),
        (200, b"streamed to the end"),
        (200, b"streamed to the end"),
    ]
    assert chunked.connections == 1  # chunked bodies keep the connection
    assert until_close.connections == 2  # a body read until close cannot


def test_a_connection_closed_while_idle_is_retried_once(
    raw_server: Callable[..., RawServer],
) -> None:
    # Request 1 is answered on a kept-alive connection; the server then hangs up on
    # request 2 without answering (as an upstream that timed the idle connection out
    # does); the client retries it once, on a new connection, where it is answered.
    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n!"
    server = raw_server(lambda n: (b"", True) if n == 2 else (ok, False))

    async def run() -> list[tuple[int, bytes]]:
        client = UpstreamClient()
        try:
            return [await _get(client, server.url), await _get(client, server.url)]
        finally:
            await client.aclose()

    assert asyncio.run(run()) == [(200, b"!"), (200, b"!")]
    assert server.requests == 3 and server.connections == 2


def test_faults_are_upstream_errors_by_kind(raw_server: Callable[..., RawServer]) -> None:
    silent = raw_server(lambda n: (b"", False))  # reads the request, never answers
    garbage = raw_server(lambda n: (b"NONSENSE\r\n\r\n", True))
    cut = raw_server(lambda n: (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", True))
    dead = f"http://127.0.0.1:{free_port()}"

    async def kind(base: str) -> str:
        client = UpstreamClient(read_timeout_s=0.3)
        try:
            await _get(client, base)
        except UpstreamError as exc:
            return exc.kind
        finally:
            await client.aclose()
        return "no error"

    async def run() -> list[str]:
        return [await kind(u) for u in (dead, silent.url, garbage.url, cut.url)]

    assert asyncio.run(run()) == ["connect", "timeout", "protocol", "protocol"]


def test_request_line_headers_and_body_reach_the_upstream(
    upstreams: tuple[Upstream, Upstream],
) -> None:
    base, _ = upstreams

    async def run() -> tuple[int, bytes]:
        client = UpstreamClient()
        try:
            response = await client.request(
                "POST", base.url + "/prefix", "/predict?q=1", [(b"x-trace", b"abc")], b"payload"
            )
            return response.status, b"".join([c async for c in response.body])
        finally:
            await client.aclose()

    status, body = asyncio.run(run())
    assert status == 200
    assert b'"path": "/prefix/predict?q=1"' in body and b'"echo": "payload"' in body
    assert base.last_headers["x-trace"] == "abc"
    assert base.last_headers["host"] == base.url.removeprefix("http://")


def test_a_small_body_comes_whole_with_the_head_and_frees_its_connection(
    raw_server: Callable[..., RawServer],
) -> None:
    server = raw_server(lambda n: (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", False))
    large = b"y" * (70 * 1024)
    streamed = raw_server(
        lambda n: (b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(large) + large, False)
    )

    async def run() -> tuple[bytes | None, bytes, bytes | None, bytes | None, bytes]:
        client = UpstreamClient()
        try:
            first = await client.request("GET", server.url, "/", [], b"")
            # Its connection is back in the pool before its body is iterated: a second
            # request meanwhile reuses it.
            second = await client.request("GET", server.url, "/", [], b"")
            body = b"".join([c async for c in first.body])
            big = await client.request("GET", streamed.url, "/", [], b"")
            big_body = b"".join([c async for c in big.body])
            return first.content, body, second.content, big.content, big_body
        finally:
            await client.aclose()

    content, body, again, big_content, big_body = asyncio.run(run())
    assert content == body == again == b"hello"
    assert server.connections == 1 and server.requests == 2
    assert big_content is None and big_body == large  # past 64 KiB: streamed


def test_a_body_that_stalls_times_out_after_its_head(raw_server: Callable[..., RawServer]) -> None:
    stalled = raw_server(lambda n: (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", False))
    chunked = raw_server(
        lambda n: (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", False)
    )

    async def run(base: str) -> tuple[int, bytes, str]:
        client = UpstreamClient(read_timeout_s=0.3)
        received = b""
        try:
            response = await client.request("GET", base, "/", [], b"")
            try:
                async for chunk in response.body:
                    received += chunk
            except UpstreamError as exc:
                return response.status, received, exc.kind
            return response.status, received, "no error"
        finally:
            await client.aclose()

    assert asyncio.run(run(stalled.url))[::2] == (200, "timeout")
    assert asyncio.run(run(chunked.url)) == (200, b"abc", "timeout")
