"""The gateway's own HTTP protocol on real sockets: the fast path's edges.

A gateway served as ``releaser serve`` serves it (its protocol, under uvicorn, in a
thread), in front of real upstreams: the stdlib one of conftest, or a raw TCP server
answering with canned bytes (every framing an upstream may use, and faults).
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from releaser.router import Router
from releaser.serve import Gateway, StaticUpstreams

from .conftest import RunningGateway, Upstream
from .test_upstream_client import RawServer, raw_server  # noqa: F401  (a fixture)

GUARD_S = 15.0


@pytest.fixture
def gateway_to(
    store_url: str, serve_app: Callable[[Any], RunningGateway]
) -> Iterator[Callable[[str], tuple[Gateway, str]]]:
    """A gateway for a service without a route yet: every request to ``url``."""
    routers: list[Router] = []

    def start(url: str) -> tuple[Gateway, str]:
        router = Router(store_url)
        routers.append(router)
        app = Gateway("svc", router, StaticUpstreams(url, url))
        return app, serve_app(app).url

    yield start
    for router in routers:
        router.close()


class Client:
    """One client connection, reading responses off it one after another."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=GUARD_S)
        self._file = self.sock.makefile("rb")

    def makefile(self, *args: Any, **kwargs: Any) -> Any:
        return _Unclosed(self._file)  # every response read from one buffer: none is lost

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, method: str = "GET") -> http.client.HTTPResponse:
        response = http.client.HTTPResponse(self, method=method)  # type: ignore[arg-type]
        response.begin()
        return response

    def close(self) -> None:
        self._file.close()
        self.sock.close()


class _Unclosed:
    """A file whose close() leaves it open (a response closes its file when read)."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    upstreams: tuple[Upstream, Upstream], gateway_to: Callable[[str], tuple[Gateway, str]]
) -> None:
    base, _ = upstreams
    _, url = gateway_to(base.url)
    client = Client(url)
    client.send(
        b"GET /a HTTP/1.1\r\nhost: x\r\nx-user-id: u1\r\n\r\n"
        b"GET /b HTTP/1.1\r\nhost: x\r\nx-user-id: u2\r\n\r\n"
        b"POST /c HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
    )
    answers = []
    for _ in range(3):
        response = client.response()
        assert response.status == 200
        answers.append(httpx.Response(200, content=response.read()).json())
    client.close()
    assert [a["path"] for a in answers] == ["/a", "/b", "/c"]
    assert answers[2]["echo"] == "hello"


def test_a_body_sent_after_its_headers_reaches_the_upstream_whole(
    upstreams: tuple[Upstream, Upstream], gateway_to: Callable[[str], tuple[Gateway, str]]
) -> None:
    base, _ = upstreams
    _, url = gateway_to(base.url)
    client = Client(url)
    client.send(b"POST /late HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n")
    time.sleep(0.2)  # the headers are read alone, the body comes in two parts
    client.send(b"hello")
    time.sleep(0.1)
    client.send(b" world")
    response = client.response()
    assert response.status == 200
    assert httpx.Response(200, content=response.read()).json()["echo"] == "hello world"
    assert base.last_content_lengths == ["11"]
    client.close()


CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)
LARGE = b"x" * 200_000
SIZED_LARGE = b"HTTP/1.1 200 OK\r\ncontent-length: 200000\r\n\r\n" + LARGE


@pytest.mark.parametrize(
    ("answer", "close", "body"),
    [
        (CHUNKED, False, b"hello world"),
        (SIZED_LARGE, False, LARGE),
        (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end", True, b"until the end"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False, b""),
    ],
    ids=["chunked", "sized-200KB", "until-close", "no-content"],
)
def test_every_framing_of_an_answer_reaches_the_client_and_the_connection_stays_usable(
    raw_server: Callable[..., RawServer],  # noqa: F811
    gateway_to: Callable[[str], tuple[Gateway, str]],
    answer: bytes,
    close: bool,
    body: bytes,
) -> None:
    server = raw_server(lambda n: (answer, close))
    _, url = gateway_to(server.url)
    client = Client(url)
    for _ in range(2):  # the same client connection, twice
        client.send(b"GET /p HTTP/1.1\r\nhost: x\r\n\r\n")
        response = client.response()
        assert response.read() == body
        assert response.getheader("x-releaser-variant") == "stable"
    client.close()
    assert server.requests == 2


def test_an_answer_broken_off_mid_body_is_cut_short_for_the_client_and_counted(
    raw_server: Callable[..., RawServer],  # noqa: F811
    gateway_to: Callable[[str], tuple[Gateway, str]],
) -> None:
    cut = b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"y" * 70_000
    server = raw_server(lambda n: (cut, True))
    _, url = gateway_to(server.url)
    client = Client(url)
    client.send(b"GET /p HTTP/1.1\r\nhost: x\r\n\r\n")
    response = client.response()
    with pytest.raises(http.client.IncompleteRead):
        response.read()  # never a complete-looking answer
    client.close()
    metrics = httpx.get(url + "/metrics", timeout=GUARD_S).text
    assert 'kind="broken"' in metrics


def test_an_upstream_connection_closed_while_idle_is_retried_on_a_new_one(
    raw_server: Callable[..., RawServer],  # noqa: F811
    gateway_to: Callable[[str], tuple[Gateway, str]],
) -> None:
    # Each answer says nothing of closing, then the upstream closes: the pooled connection
    # is stale when the next request takes it.
    server = raw_server(lambda n: (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", True))
    _, url = gateway_to(server.url)
    with httpx.Client(base_url=url, timeout=GUARD_S) as client:
        statuses = []
        for _ in range(3):
            statuses.append(client.get("/p").status_code)
            time.sleep(0.1)  # the close has landed before the next request
    assert statuses == [200, 200, 200]
    assert server.connections == 3


def test_an_upstream_that_is_down_gets_a_502_naming_it(
    gateway_to: Callable[[str], tuple[Gateway, str]],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    _, url = gateway_to(dead)
    response = httpx.post(url + "/p", content=b"x", timeout=GUARD_S)
    assert response.status_code == 502
    assert response.json()["error"] == "upstream unavailable"
    assert dead in response.json()["detail"]


@pytest.mark.parametrize(
    ("answer", "close"),
    [
        (
            b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n"
            b"content-length: 2\r\nx-kept: yes\r\n\r\nok",
            False,
        ),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\nx-kept: yes\r\n\r\nok", True),
    ],
    ids=["hop-by-hop-headers", "http-1.0"],
)
def test_hop_by_hop_headers_are_dropped_and_the_answer_is_http_1_1(
    raw_server: Callable[..., RawServer],  # noqa: F811
    gateway_to: Callable[[str], tuple[Gateway, str]],
    answer: bytes,
    close: bool,
) -> None:
    server = raw_server(lambda n: (answer, close))
    _, url = gateway_to(server.url)
    client = Client(url)
    client.send(b"GET /p HTTP/1.1\r\nhost: x\r\n\r\n")
    response = client.response()
    assert response.version == 11
    assert response.read() == b"ok"
    assert response.getheader("x-kept") == "yes"
    assert response.getheader("keep-alive") is None
    assert response.getheader("connection") is None  # kept alive, as HTTP/1.1 is by default
    client.close()
