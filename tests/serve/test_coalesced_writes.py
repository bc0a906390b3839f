"""The gateway's write-coalescing transport: one write per event-loop step, order kept."""

from __future__ import annotations

import asyncio
from typing import Any

from releaser.serve.limits import COALESCE_MAX_BYTES, CoalescedWrites


class Recording:
    """The transport's side: what reached it, as the writes it was given."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, data: Any) -> None:
        self.writes.append(b"".join(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


def _wrapped(loop: asyncio.AbstractEventLoop) -> tuple[CoalescedWrites, Recording]:
    inner = Recording()
    return CoalescedWrites(inner, loop), inner  # type: ignore[arg-type]


def test_a_small_write_leaves_with_the_next_at_once_or_at_the_steps_end() -> None:
    async def run() -> tuple[list[bytes], int, list[bytes], list[bytes], list[bytes]]:
        outer, inner = _wrapped(asyncio.get_running_loop())
        outer.write(b"HTTP/1.1 200 OK\r\n\r\n")  # held: nothing has left
        outer.write(b"")
        held, size = list(inner.writes), outer.get_write_buffer_size()
        outer.write(b"body")  # leaves at once, with the head, as one write
        together = list(inner.writes)
        outer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # nothing follows it this step
        await asyncio.sleep(0)  # the step ends: it is sent
        alone = list(inner.writes)
        outer.write(b"next")
        outer.flush()  # sent when asked (a response complete)
        return held, size, together, alone, inner.writes

    held, size, together, alone, flushed = asyncio.run(run())
    assert held == [] and size == len(b"HTTP/1.1 200 OK\r\n\r\n")  # held bytes count
    assert together == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert alone == [*together, b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert flushed == [*alone, b"next"]


def test_a_large_write_is_not_held() -> None:
    big = b"x" * COALESCE_MAX_BYTES

    async def run() -> list[bytes]:
        outer, inner = _wrapped(asyncio.get_running_loop())
        outer.write(big)  # nothing held: straight through
        outer.write(b"head")
        outer.write(big)  # with what is held
        outer.write(big)
        writes = list(inner.writes)
        await asyncio.sleep(0)
        assert inner.writes == writes  # nothing left to send
        return writes

    assert asyncio.run(run()) == [big, b"head" + big, big]


def test_close_flushes_first_abort_drops_and_the_rest_is_the_transports() -> None:
    async def run() -> tuple[list[bytes], bool, list[bytes], bool, Any]:
        outer, inner = _wrapped(asyncio.get_running_loop())
        outer.write(b"refused\r\n")
        outer.close()
        await asyncio.sleep(0)
        gone, dropped = _wrapped(asyncio.get_running_loop())
        gone.write(b"never sent")
        gone.abort()
        await asyncio.sleep(0)
        return (
            inner.writes,
            inner.closed,
            dropped.writes,
            dropped.aborted,
            outer.get_extra_info("peername"),
        )

    writes, closed, dropped, aborted, peer = asyncio.run(run())
    assert writes == [b"refused\r\n"] and closed
    assert dropped == [] and aborted
    assert peer == ("127.0.0.1", 1)
