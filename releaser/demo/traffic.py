"""Simulated users and requests through the real router SDK, for the demo and the tests.

The traffic is synthetic (seeded): each request's error is drawn with the
rate given for the variant that served it. Everything else is real: the
router assigns from the store's routing record, records metrics that flush to
the store, and ``advance_rollout`` analyses them. The clock is simulated too,
so bake times of hours pass in seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from releaser.api.rollouts import AdvanceResult, advance_rollout
from releaser.api.workspace import Workspace

if TYPE_CHECKING:
    from releaser.router import Router

__all__ = ["DriveResult", "Users", "advance_to_step", "drive_rollout", "make_users", "simulate"]

Users = list[tuple[str, dict[str, str]]]


def make_users(
    n: int, *, seed: int, staff_share: float = 0.1, staff_domain: str = "@example.org"
) -> Users:
    """``n`` users with an email attribute; ``staff_share`` of them in the staff domain."""
    rng = random.Random(seed)
    users: Users = []
    for i in range(n):
        domain = staff_domain if rng.random() < staff_share else "@mail.example"
        users.append((f"user-{i}", {"email": f"u{i}{domain}"}))
    return users


def simulate(
    router: Router,
    service: str,
    users: Users,
    rng: random.Random,
    error_rates: Mapping[str, float],
    requests: int,
) -> None:
    """Send ``requests`` simulated requests through ``router`` and flush the metrics."""
    assign, record = router.assign, router.record
    for _ in range(requests):
        uid, attrs = users[rng.randrange(len(users))]
        a = assign(service, uid, attrs)
        record(
            a,
            latency_ms=rng.lognormvariate(5.0, 0.3),
            error=rng.random() < error_rates.get(a.variant, 0.0),
        )
    router.flush()


@dataclass
class DriveResult:
    """Every advance decision taken, and which users had the candidate at each step."""

    results: list[AdvanceResult] = field(default_factory=list)
    candidates_by_step: dict[str, set[str]] = field(default_factory=dict)

    @property
    def actions(self) -> list[str]:
        """The decision actions in order."""
        return [r.decision.action for r in self.results]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def drive_rollout(
    ws: Workspace,
    service: str,
    *,
    error_rates: Mapping[str, float],
    start: datetime,
    users: Users,
    seed: int = 2,
    batch: int = 3000,
    minutes_per_batch: float = 45,
    max_rounds: int = 60,
    on_decision: Callable[[AdvanceResult, datetime], None] | None = None,
    stop_at_step: str | None = None,
) -> DriveResult:
    """Alternate simulated traffic and ``advance`` until the rollout ends (or rounds run out).

    With ``stop_at_step``, stop as soon as the rollout has moved to that step.
    """
    from releaser.router import Router

    rng = random.Random(seed)
    out = DriveResult()
    now = start
    router = Router(ws.store_url, refresh_interval_ms=5)
    try:
        for _ in range(max_rounds):
            simulate(router, service, users, rng, error_rates, batch)
            now += timedelta(minutes=minutes_per_batch)
            result = advance_rollout(ws, service, now=_iso(now))
            out.results.append(result)
            if on_decision is not None:
                on_decision(result, now)
            if result.rollout.final:
                break
            if result.transitioned:
                step = result.rollout.current.name
                _wait_for_step(router, service, step)
                out.candidates_by_step[step] = {
                    uid
                    for uid, attrs in users
                    if router.assign(service, uid, attrs).variant == "candidate"
                }
                if step == stop_at_step:
                    break
    finally:
        router.close()
    return out


def _wait_for_step(router: Router, service: str, step: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        route = router.routes().get(service)
        if route is not None and route.step_name == step:
            return
        time.sleep(0.005)
    raise TimeoutError(f"the router did not see step {step} of {service} within {timeout_s} s")


def advance_to_step(ws: Workspace, service: str, step_name: str, *, hours: int = 10) -> None:
    """Feed healthy, identical metrics to both variants and advance until ``step_name`` is live.

    A fixed simulated clock (2030-01-01, two hours a round) meets every bake time;
    for tests, benchmarks and demos that need a rollout at a given step quickly.
    Raises ``RuntimeError`` if the step is not reached within ``hours`` rounds.
    """
    from releaser.api.rollouts import service_state
    from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
    from releaser.store.base import MetricDelta

    stats = VariantStats(requests=5000, errors=50, latency=LatencyHistogram.of([150.0] * 5000))
    for hour in range(1, hours + 1):
        rollout_id = service_state(ws, service).active_rollout
        record = ws.store.get("rollout", rollout_id or "")
        if record is None:
            raise RuntimeError(f"{service} has no live rollout")
        step = record.value["step"]
        if record.value["steps"][step]["name"] == step_name:
            return
        ws.store.add_metrics(
            [
                MetricDelta(record.key, step, "baseline", stats),
                MetricDelta(record.key, step, "candidate", stats),
            ]
        )
        advance_rollout(ws, service, now=f"2030-01-01T{hour * 2:02d}:00:00.000000Z")
    raise RuntimeError(f"the rollout of {service} never reached {step_name!r}")
