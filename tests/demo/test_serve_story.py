"""The gateway chapter of the demo, on a real store and real sockets."""

from __future__ import annotations

from pathlib import Path

from releaser.core.audit import EventDraft
from releaser.core.bucketing import bucket
from releaser.core.routing import ROUTE_KIND, ServiceRoute
from releaser.demo.serve_story import run_gateway_story
from releaser.store import open_store
from releaser.store.base import Write

SEED = 424242


def _put(store_url: str, route: ServiceRoute) -> None:
    with open_store(store_url) as store:
        current = store.get(ROUTE_KIND, route.service)
        store.commit(
            [Write(ROUTE_KIND, route.service, route.to_value(), current.version if current else 0)],
            EventDraft(
                actor="tests", action="route.set", subject="route/x", at="2030-01-01T00:00:00Z"
            ),
        )


def test_the_story_reports_the_split_and_the_rollback(tmp_path: Path) -> None:
    url = f"sqlite://{(tmp_path / 'state.db').as_posix()}"
    live = ServiceRoute(
        service="svc",
        stable="rel-a",
        candidate="rel-b",
        rollout_id="ro",
        step=1,
        step_name="canary",
        percent=25.0,
        seed=SEED,
    )
    _put(url, live)
    lines: list[str] = []
    story = run_gateway_story(
        url,
        "svc",
        lines.append,
        users=300,
        rollback=lambda: _put(url, ServiceRoute(service="svc", stable="rel-a", seed=SEED)),
    )
    expected = sum(bucket(SEED, f"user-{i}") < 2500 for i in range(300))
    assert story.requests == 600 and story.to_candidate == expected
    assert story.sticky and story.headers_match
    assert story.candidate_after_rollback_s is not None
    assert any("plan 25%" in line for line in lines)
    assert any("after the rollback" in line for line in lines)
