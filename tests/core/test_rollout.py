"""The rollout state machine: legal paths, refused transitions, cumulative cohorts."""

from __future__ import annotations

import pytest

from releaser.core import rollout as ro
from releaser.errors import BadInput

T0 = "2026-01-01T00:00:00.000000Z"
T1 = "2026-01-01T00:10:00.000000Z"
T2 = "2026-01-01T00:30:00.000000Z"
T3 = "2026-01-01T01:00:00.000000Z"


def _steps() -> list[ro.StepPlan]:
    return [
        ro.StepPlan(name="internal", groups=["staff"], percent=0, bake_s=600, min_samples=10),
        ro.StepPlan(name="canary-5", groups=["pilot"], percent=5, bake_s=600, min_samples=10),
        ro.StepPlan(name="canary-25", percent=25, bake_s=600, min_samples=10),
        ro.StepPlan(name="full", percent=100, bake_s=0, min_samples=0),
    ]


def _start() -> ro.Rollout:
    return ro.start(
        rollout_id="r1",
        service="svc",
        baseline="a" * 16,
        candidate="b" * 16,
        seed=7,
        steps=_steps(),
        now=T0,
    )


def test_walks_every_step_to_promotion() -> None:
    r = _start()
    names = [r.current.name]
    while r.status == "running":
        r = ro.advance(r, now=T1)
        if r.status == "running":
            names.append(r.current.name)
    assert names == ["internal", "canary-5", "canary-25", "full"]
    assert r.status == "promoted" and r.ended_at == T1
    assert [d.action for d in r.decisions] == ["start", "advance", "advance", "advance", "promote"]


def test_groups_are_cumulative_so_widening_keeps_everyone() -> None:
    r = _start()
    assert [s.groups for s in r.steps] == [
        ["staff"],
        ["staff", "pilot"],
        ["staff", "pilot"],
        ["staff", "pilot"],
    ]


@pytest.mark.parametrize("final", ["rolled_back", "aborted", "promoted"])
def test_final_states_refuse_every_transition(final: str) -> None:
    r = _start()
    r = {
        "rolled_back": lambda: ro.roll_back(r, now=T1, reasons=["x"]),
        "aborted": lambda: ro.abort(r, now=T1, reason="x"),
        "promoted": lambda: ro.promote(r, now=T1, reason="x"),
    }[final]()
    for attempt in (
        lambda: ro.advance(r, now=T2),
        lambda: ro.pause(r, now=T2),
        lambda: ro.resume(r, now=T2),
        lambda: ro.abort(r, now=T2, reason="y"),
        lambda: ro.roll_back(r, now=T2, reasons=["y"]),
    ):
        with pytest.raises(ro.IllegalTransition, match=final):
            attempt()


def test_pause_stops_the_bake_clock_and_blocks_advance() -> None:
    r = _start()
    p = ro.pause(r, now=T1)
    with pytest.raises(ro.IllegalTransition, match="paused"):
        ro.advance(p, now=T2)
    assert ro.bake_elapsed_s(p, T3) == 600.0
    resumed = ro.resume(p, now=T2)
    # 10 min before the pause, 30 min after resuming: 40 min of bake, 20 min paused excluded
    assert ro.bake_elapsed_s(resumed, T3) == 600.0 + 1800.0


def test_start_refuses_same_release_and_falling_percent() -> None:
    with pytest.raises(BadInput, match="already the stable release"):
        ro.start(
            rollout_id="r", service="s", baseline="x", candidate="x", seed=1, steps=_steps(), now=T0
        )
    bad = [
        ro.StepPlan(name="a", percent=25, bake_s=0, min_samples=0),
        ro.StepPlan(name="b", percent=5, bake_s=0, min_samples=0),
    ]
    with pytest.raises(BadInput, match="must not decrease"):
        ro.start(
            rollout_id="r", service="s", baseline="x", candidate="y", seed=1, steps=bad, now=T0
        )
