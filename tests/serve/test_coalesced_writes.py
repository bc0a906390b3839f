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


def test_writes_of_one_step_leave_as_one_in_order() -> None:
    async def run() -> tuple[list[bytes], list[bytes], int]:
        outer, inner = _wrapped(asyncio.get_running_loop())
        outer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        outer.write(b"")
        outer.write(b"body")
        held = list(inner.writes)
        size = outer.get_write_buffer_size()
        await asyncio.sleep(0)  # the step ends: the flush runs
        outer.write(b"next")
        await asyncio.sleep(0)
        return held, inner.writes, size

    held, writes, size = asyncio.run(run())
    assert held == []  # nothing left during the step
    assert size == len(b"HTTP/1.1 200 OK\r\n\r\nbody")  # held bytes count as buffered
    assert writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


def test_a_large_write_goes_at_once_after_what_is_held() -> None:
    big = b"x" * COALESCE_MAX_BYTES

    async def run() -> list[bytes]:
        outer, inner = _wrapped(asyncio.get_running_loop())
        outer.write(big)  # nothing held: straight through
        outer.write(b"head")
        outer.write(big)  # past the cap: what is held and this leave now
        writes = list(inner.writes)
        await asyncio.sleep(0)
        assert inner.writes == writes  # nothing left to flush
        return writes

    assert asyncio.run(run()) == [big, b"head" + big]


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
