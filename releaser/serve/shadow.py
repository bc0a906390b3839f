"""Mirroring in a shadow step: a share of requests also sent to the candidate, in the background.

The gateway serves every user from the stable release. For a request chosen for the
shadow step's ``percent``, once the user's response has been sent in full, a
:class:`ShadowMirror` sends the same request to the candidate's endpoint (marked
``X-Releaser-Shadow: 1``), reads its answer, discards it, and records on the candidate's
assignment of that step: the latency, whether it failed (a 5xx, no answer, a timeout),
and how far it agrees with the stable answer (:func:`releaser.core.shadow.agreement`).

Bounded so that it can never slow or fail a user's request: it starts after the user's
response is complete; past ``max_in_flight`` mirrored calls a request is not mirrored
(counted as skipped); mirrored calls use a connection pool of their own with the step's
timeout; requests or answers over ``max_body_bytes`` are not mirrored or not compared; a
comparison function runs in a worker thread. What happens to a mirrored call is counted in
``/metrics``.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from typing import TYPE_CHECKING

from releaser.core.shadow import BUILTIN_COMPARISONS, Compare, ShadowPlan, agreement
from releaser.serve.upstream_client import UpstreamClient, UpstreamError

if TYPE_CHECKING:
    from releaser.router import Router
    from releaser.router.snapshot import Assignment
    from releaser.serve.metrics import GatewayMetrics

__all__ = ["ShadowMirror", "load_compare"]

logger = logging.getLogger("releaser.serve")

_INLINE_COMPARE_BYTES = 64 * 1024
"""Answers larger than this (together) are compared in a worker thread."""


def load_compare(spec: str) -> Compare | None:
    """The ``module:function`` a shadow step compares with; None for a built-in comparison.

    Raises ImportError or AttributeError (with the reason) when it cannot be loaded.
    """
    if spec in BUILTIN_COMPARISONS:
        return None
    module_name, _, name = spec.partition(":")
    function = getattr(importlib.import_module(module_name), name)
    if not callable(function):
        raise TypeError(f"{spec} is not callable")
    return function  # type: ignore[no-any-return]


class ShadowMirror:
    """Mirrors chosen requests of one shadow step to the candidate and records the outcome."""

    def __init__(
        self,
        plan: ShadowPlan,
        assignment: Assignment,
        base: str,
        router: Router,
        metrics: GatewayMetrics,
        *,
        connect_timeout_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.plan = plan
        self.assignment = assignment
        self.base = base
        self._router = router
        self._metrics = metrics
        self._share = plan.percent / 100.0
        self._methods = frozenset(plan.methods)
        self._timeout_s = plan.timeout_ms / 1000.0
        self._random = (rng or random.Random()).random
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired = False
        self._function: Compare | None = None
        self.problem: str | None = None
        """Why answers cannot be compared (a comparison function that does not load)."""
        try:
            self._function = load_compare(plan.compare)
        except Exception as exc:
            self.problem = f"the shadow comparison {plan.compare} does not load: {exc}"
            logger.error("releaser gateway: %s; mirrored answers are not compared", self.problem)
        self._client = UpstreamClient(
            connect_timeout_s=min(connect_timeout_s, self._timeout_s),
            read_timeout_s=self._timeout_s,
            max_idle_per_origin=plan.max_in_flight,
        )

    @property
    def in_flight(self) -> int:
        """Mirrored calls not finished yet."""
        return len(self._tasks)

    def wants(self, method: str) -> bool:
        """Whether to mirror this request (its method, and a draw against the share)."""
        return method in self._methods and self._random() < self._share

    def start(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        stable_status: int,
        stable_body: bytes | None,
    ) -> None:
        """Mirror one request in the background; skipped (and counted) when too many are."""
        if len(self._tasks) >= self.plan.max_in_flight:
            self._metrics.shadow("skipped_busy")
            return
        marked = [
            *headers,
            (b"x-releaser-variant", b"candidate"),
            (b"x-releaser-release", (self.assignment.release_id or "").encode()),
            (b"x-releaser-shadow", b"1"),
        ]
        task = asyncio.get_running_loop().create_task(
            self._call(method, target, marked, body, stable_status, stable_body)
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._retired and not self._tasks:
            self._close_pool()

    def retire(self) -> None:
        """The step is over: let mirrored calls in flight finish, then close the pool."""
        self._retired = True
        if not self._tasks:
            self._close_pool()

    def _close_pool(self) -> None:
        asyncio.get_running_loop().create_task(self._client.aclose())

    async def _call(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        stable_status: int,
        stable_body: bytes | None,
    ) -> None:
        start = time.perf_counter()
        status = 0
        answer: bytes | None = None
        outcome = "compared"
        try:
            response = await self._client.request(method, self.base, target, headers, body)
            status = response.status
            answer = await self._read(response.body, start)
        except UpstreamError as exc:
            outcome = "timeout" if exc.kind == "timeout" else "error"
        except _TooSlow:
            outcome = "timeout"
        except Exception:  # never let a mirrored call's bug reach the event loop's log only
            logger.exception("releaser gateway: a mirrored request failed")
            outcome = "error"
        elapsed = time.perf_counter() - start
        error = outcome != "compared" or status >= 500
        if error and outcome == "compared":
            outcome = "error"
        score = None
        if not error:
            score = await self._score(stable_status, stable_body, status, answer)
            if score is None:
                outcome = "not_compared"
        self._router.record(self.assignment, latency_ms=elapsed * 1000.0, error=error, score=score)
        self._metrics.shadow(outcome, elapsed, score)

    async def _read(self, chunks: object, start: float) -> bytes | None:
        """The candidate's answer, or None past ``max_body_bytes``; _TooSlow past the timeout."""
        parts: list[bytes] = []
        size = 0
        limit = self.plan.max_body_bytes
        deadline = start + self._timeout_s
        iterator = chunks.__aiter__()  # type: ignore[attr-defined]
        try:
            async for chunk in iterator:
                if time.perf_counter() > deadline:
                    raise _TooSlow
                size += len(chunk)
                if size > limit:
                    return None
                parts.append(chunk)
        finally:
            await iterator.aclose()
        return b"".join(parts)

    async def _score(
        self, stable_status: int, stable_body: bytes | None, status: int, answer: bytes | None
    ) -> float | None:
        if stable_body is None or answer is None or stable_status >= 500 or self.problem:
            return None
        if status != stable_status:
            return 0.0
        function = self._function
        if function is None and len(stable_body) + len(answer) <= _INLINE_COMPARE_BYTES:
            return agreement(self.plan, stable_body, answer)
        return await asyncio.to_thread(agreement, self.plan, stable_body, answer, function)

    async def aclose(self) -> None:
        """Stop mirrored calls in flight (not recorded) and close the pool."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()


class _TooSlow(Exception):
    """The candidate's answer took longer than the shadow step's timeout."""
