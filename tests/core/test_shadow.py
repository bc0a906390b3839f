"""Shadow steps in the core: comparing answers, the plan's place, and the agreement rule.

The agreement guardrail is checked by seeded simulation: how often it trips on a candidate
that agrees exactly as often as the floor (the worst case allowed), and how soon it trips
on one that clearly agrees less.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from releaser.core import rollout as ro
from releaser.core.analysis import decide
from releaser.core.shadow import ShadowPlan, agreement, extract, normalise_text
from releaser.core.stats_aggregates import VariantStats
from releaser.core.stats_guardrails import Agreement, Guardrails, check_agreement
from releaser.errors import BadInput

AT = "2026-01-01T00:00:00Z"


def _plan(**kw: object) -> ShadowPlan:
    return ShadowPlan(percent=10, **kw)  # type: ignore[arg-type]


def _j(value: object) -> bytes:
    return json.dumps(value).encode()


# --- comparing answers --------------------------------------------------------------------


def test_json_comparison_ignores_formatting_and_key_order() -> None:
    plan = _plan()
    assert agreement(plan, b'{"a": 1, "b": [1, 2]}', b'{"b":[1,2],"a":1}') == 1.0
    assert agreement(plan, b'{"a": 1}', b'{"a": 2}') == 0.0
    assert agreement(plan, b"plain text", b"plain text") == 1.0  # not JSON: equal bytes
    assert agreement(plan, b"plain text", b"other text") == 0.0
    assert agreement(plan, b'{"a": 1}', b"not json") == 0.0


def test_a_path_compares_one_field_of_chat_answers() -> None:
    def chat(text: str, id_: str) -> bytes:
        return _j({"id": id_, "choices": [{"message": {"role": "assistant", "content": text}}]})

    plan = _plan(path="choices.0.message.content")
    assert agreement(plan, chat("Refer to housing", "a"), chat("Refer to housing", "b")) == 1.0
    assert agreement(plan, chat("Refer to housing", "a"), chat("Refer to benefits", "a")) == 0.0
    # The stable answer lacks the field: nothing to compare with.
    assert agreement(plan, _j({"error": "x"}), chat("y", "b")) is None
    assert agreement(plan, b"not json", chat("y", "b")) is None
    # The candidate's answer lacks it, or is not JSON: it disagrees.
    assert agreement(plan, chat("y", "a"), _j({"choices": []})) == 0.0
    assert agreement(plan, chat("y", "a"), b"<html>") == 0.0
    assert extract({"a": [{"b": 3}]}, "a.0.b") == 3
    assert extract([1, 2], None) == [1, 2]


def test_text_comparison_folds_case_and_white_space() -> None:
    plan = _plan(compare="text")
    assert agreement(plan, b"Refer to  Housing\n", b"refer to housing") == 1.0
    assert agreement(plan, b"refer to housing", b"refer to benefits") == 0.0
    on_field = _plan(compare="text", path="label")
    assert agreement(on_field, _j({"label": "Housing "}), _j({"label": "housing"})) == 1.0
    assert normalise_text("  A\tB  ") == "a b"


def test_a_comparison_function_scores_and_its_failures_are_not_counted() -> None:
    plan = _plan(compare="pkg.mod:fn", path="label")

    def similar(stable: object, candidate: object) -> float:
        return 0.5 if stable != candidate else 1.0

    def broken(stable: object, candidate: object) -> float:
        raise RuntimeError("bug")

    left, right = _j({"label": "a"}), _j({"label": "b"})
    assert agreement(plan, left, right, similar) == 0.5
    assert agreement(plan, left, right, lambda s, c: s == c) == 0.0
    assert agreement(plan, left, right, broken) is None
    assert agreement(plan, left, right, lambda s, c: 7) is None  # not a score
    assert agreement(plan, left, right, lambda s, c: "yes") is None
    # Without a path, a function gets the texts when the answers are not JSON.
    seen: list[object] = []
    assert agreement(_plan(compare="m:f"), b"x", b"y", lambda s, c: seen.append((s, c)) or 1) == 1
    assert seen == [("x", "y")]


# --- where a shadow step may stand ----------------------------------------------------------


def _step(
    name: str, percent: float, *, shadow: bool = False, groups: list[str] | None = None
) -> ro.StepPlan:
    return ro.StepPlan(
        name=name,
        groups=groups or [],
        percent=percent,
        bake_s=0,
        min_samples=0,
        shadow=_plan() if shadow else None,
    )


def _start(steps: list[ro.StepPlan]) -> ro.Rollout:
    return ro.start(
        rollout_id="r-1",
        service="svc",
        baseline="a",
        candidate="b",
        seed=1,
        steps=steps,
        now=AT,
    )


def test_only_a_first_step_that_serves_nobody_may_shadow() -> None:
    rollout = _start([_step("shadow", 0, shadow=True), _step("full", 100)])
    assert rollout.current.shadow is not None
    after = ro.advance(rollout, now=AT)
    assert after.current.name == "full" and after.current.shadow is None
    for steps in (
        [_step("a", 5), _step("shadow", 5, shadow=True), _step("full", 100)],
        [_step("shadow", 5, shadow=True), _step("full", 100)],
        [_step("shadow", 0, shadow=True, groups=["staff"]), _step("full", 100)],
        [_step("shadow", 0, shadow=True)],
    ):
        with pytest.raises(BadInput, match="only the first step may be a shadow step"):
            _start(steps)


# --- the agreement rule ---------------------------------------------------------------------


def _trips(scores: np.ndarray, floor: float, looks: range) -> int | None:
    """The first look (number of answers) at which the rule trips, or None."""
    sums = np.cumsum(scores)
    guard = Guardrails(min_samples=50, alpha=0.01)
    for n in looks:
        if check_agreement(Agreement(compared=n, score_sum=float(sums[n - 1]), floor=floor), guard):
            return n
    return None


def test_agreement_at_the_floor_rarely_trips_and_clearly_lower_agreement_is_caught() -> None:
    """Seeded: 400 candidates agreeing exactly 95% of the time, looked at every 25 answers up
    to 2,000, may trip at most alpha (1%) of the time whatever the looks; observed 3 of 400.
    Candidates agreeing 80% of the time are all caught: at the first allowed look (50
    answers, the guardrails' min_samples) at the median, by 125 answers at the latest."""
    rng = np.random.default_rng(20261207)
    looks = range(25, 2001, 25)
    false_trips = sum(
        _trips((rng.random(2000) < 0.95).astype(float), 0.95, looks) is not None for _ in range(400)
    )
    assert false_trips <= 4  # 1% of 400; at the floor the expected rate is below that
    caught = [_trips((rng.random(2000) < 0.80).astype(float), 0.95, looks) for _ in range(100)]
    assert all(n is not None for n in caught)
    assert max(n for n in caught if n is not None) <= 200


def test_fractional_scores_count_as_partial_agreement() -> None:
    guard = Guardrails(min_samples=10, alpha=0.01)
    half = Agreement(compared=400, score_sum=200.0, floor=0.9)
    breach = check_agreement(half, guard)
    assert breach is not None and breach.metric == "agreement"
    assert "agreement with the stable answers 50.00% over 400 mirrored requests" in breach.explain()
    assert check_agreement(Agreement(compared=400, score_sum=392.0, floor=0.9), guard) is None
    # Not before min_samples, however bad.
    assert check_agreement(Agreement(compared=9, score_sum=0.0, floor=0.9), guard) is None
    # A floor of 1 is broken by the first disagreement past min_samples.
    strict = check_agreement(Agreement(compared=10, score_sum=9.0, floor=1.0), guard)
    assert strict is not None


def _decide_shadow(agreed: float, compared: int, requests: int) -> tuple[str, list[str]]:
    base = VariantStats.of(errors=[False] * requests, latencies_ms=[20.0] * requests)
    cand = VariantStats.of(errors=[False] * requests, latencies_ms=[22.0] * requests)
    decision = decide(
        base,
        cand,
        guardrails=Guardrails(min_samples=50),
        min_samples=100,
        bake_elapsed_s=60,
        bake_required_s=0,
        is_last_step=False,
        agreement=Agreement(compared=compared, score_sum=agreed, floor=0.9),
    )
    return decision.action, decision.reasons


def test_a_shadow_step_advances_on_agreement_waits_for_answers_and_rolls_back_on_disagreement() -> (
    None
):
    action, reasons = _decide_shadow(agreed=198.0, compared=200, requests=200)
    assert action == "advance"
    assert "200 mirrored requests, agreement 99.00% of 200" in reasons[0]
    action, reasons = _decide_shadow(agreed=40.0, compared=40, requests=200)
    assert action == "hold"
    assert reasons == ["waiting for compared answers: 40 of 100 mirrored requests"]
    action, reasons = _decide_shadow(agreed=100.0, compared=200, requests=200)
    assert action == "rollback"
    assert reasons[0].startswith("guardrail: agreement with the stable answers 50.00%")
