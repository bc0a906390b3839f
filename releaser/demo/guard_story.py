"""The guard chapter of the demo: a release that passed its canary breaks after 100%.

The reply-drafter's prompt v3 (canaried to 25% in the previous chapter) is driven on to
the full step and promoted on healthy evidence. Ten minutes later the evening batch of
letters arrives, and at full traffic the longer replies it asks for time out at the LLM
endpoint: 6% of requests fail, against 0.5% before. The post-promotion guard keeps
counting the new stable release through the same router, ``rollout advance`` (as the
scheduled workflow runs it every 5 minutes) judges it, and the confirmed breach rolls the
service back to the previous release in one write, with the evidence in the audit log.
Traffic and clock are simulated as in the rollout chapters.

While the guard judges, releaser.yaml names a webhook to a :class:`LocalReceiver` (the ops
channel, on this machine, as in the rollback chapter); the ``guard.breach`` notification
it receives is shown, and the webhook removed again after the chapter.
``on_rollback`` is the hook for whatever else should hear of the rollback; it gets the
``advance`` result that rolled back.
Library code: it reports through ``report``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from releaser.api.rollouts import AdvanceResult

__all__ = ["GuardStory", "run_guard_story"]

Report = Callable[[str], None]
SERVICE = "reply-drafter"
HEALTHY, DEGRADED = 0.005, 0.06
HEALTHY_CHECKS = 2
"""The first checks after the promotion still see healthy traffic."""
PER_CHECK = 600
"""Requests per 5-minute check after the promotion (2 per second)."""


@dataclass(frozen=True)
class GuardStory:
    """What the guard chapter did."""

    promoted: str | None
    rolled_back_to: str | None
    checks: int
    reasons: list[str]


def run_guard_story(
    root: Path, report: Report, *, on_rollback: Callable[[AdvanceResult], None] | None = None
) -> GuardStory:
    """Promote reply-drafter's live rollout, degrade it, and let the guard roll it back."""
    from releaser.api.audit import audit_log
    from releaser.api.rollouts import advance_if_live, service_state
    from releaser.api.workspace import open_workspace
    from releaser.demo.traffic import drive_rollout, make_users, simulate
    from releaser.demo.webhooks import LocalReceiver, notify_to
    from releaser.router import Router

    ws = open_workspace(root)
    try:
        state = service_state(ws, SERVICE)
        if state.active_rollout is None:
            report(f"  {SERVICE} has no rollout in progress: nothing to guard")
            return GuardStory(None, None, 0, [])
        users = make_users(20_000, seed=6)
        # Later than the prompt chapter's simulated checks, so every bake counts from here.
        start = datetime.now(UTC) + timedelta(hours=6)
        driven = drive_rollout(
            ws,
            SERVICE,
            error_rates={"baseline": HEALTHY, "candidate": HEALTHY},
            start=start,
            users=users,
        )
        state = service_state(ws, SERVICE)
        guard = state.guard
        if guard is None:
            actions = ", ".join(driven.actions[-3:])
            report(f"  the rollout did not end in a guarded promotion ({actions})")
            return GuardStory(None, None, 0, [])
        report(
            f"prompt v3 promoted to everyone ({len(driven.actions)} checks, "
            f"{HEALTHY:.1%} errors on both sides); release {guard.release} is stable"
        )
        hours = (
            datetime.fromisoformat(guard.ends_at.replace("Z", "+00:00"))
            - datetime.fromisoformat(guard.started_at.replace("Z", "+00:00"))
        ).total_seconds() / 3600
        report(
            f"under guard for {hours:.0f} h: routers keep counting it; references: "
            + "; ".join(f"{r.metric} <= {r.rate:.2%} ({r.source})" for r in guard.references)
        )
        report(
            f"10 minutes later the evening batch of letters arrives: at full traffic the longer "
            f"replies time out at the LLM endpoint and {DEGRADED:.0%} of requests fail"
        )
        promoted_at = datetime.fromisoformat(guard.started_at.replace("Z", "+00:00"))
        rng = random.Random(7)
        checks = 0
        result: AdvanceResult | None = None
        with (
            LocalReceiver() as channel,  # the ops channel's webhook, on this machine
            Router(ws.store_url, refresh_interval_ms=5) as router,
        ):
            notify_to(root, channel.url)
            report(f"  the ops channel's webhook is set in releaser.yaml ({channel.url})")
            told = open_workspace(root)  # reads releaser.yaml with the webhook
            try:
                for k in range(1, 13):
                    rate = HEALTHY if k <= HEALTHY_CHECKS else DEGRADED
                    simulate(router, SERVICE, users, rng, {"stable": rate}, PER_CHECK)
                    now = promoted_at + timedelta(minutes=5 * k)
                    got = advance_if_live(told, SERVICE, now=_iso(now))
                    if isinstance(got, str):
                        break
                    checks = k
                    result = got
                    report(f"  [+{5 * k} min] rollout advance --if-live: {got.decision.action}")
                    if got.decision.action == "rollback":
                        break
            finally:
                told.close()
                notify_to(root, None)
        heard = [body for body in channel.received if body.get("event") == "guard.breach"]
        if result is None or result.decision.action != "rollback":
            report("  the guard did not confirm a breach within an hour")
            return GuardStory(guard.release, None, checks, [])
        for reason in result.decision.reasons:
            report(f"      {reason}")
        for e in result.side_effects:
            report(f"    {e.name}: {e.status}" + (f" ({e.detail})" if e.detail else ""))
        back = service_state(ws, SERVICE).stable
        event = next(e for e in audit_log(ws, limit=5) if e.action == "guard.rollback")
        report(
            f"  stable release back to {back}; audit #{event.seq} guard.rollback holds the "
            "evidence (counts, reference rates, e-values)"
        )
        for body in heard:
            report(f"  the ops channel's webhook received: {body['event']}: {body['title']}")
            report(
                f"      release {body.get('release')} rolled back to {body.get('rolled_back_to')}: "
                + "; ".join(str(r) for r in body.get("reasons", []))
            )
        if not heard:
            report("  the ops channel's webhook received no guard.breach notification")
        if on_rollback is not None:
            on_rollback(result)
        again = advance_if_live(ws, SERVICE, now=_iso(promoted_at + timedelta(hours=1)))
        report(f"  the next scheduled advance: {again} (nothing left to judge)")
        return GuardStory(guard.release, back, checks, list(result.decision.reasons))
    finally:
        ws.close()


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
