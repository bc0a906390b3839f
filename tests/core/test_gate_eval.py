"""The gate's verdict from per-row scores: thresholds, non-regression, slices, errors."""

from __future__ import annotations

import numpy as np

from releaser.core.gate_eval import NonRegressionRule, evaluate_gate

RULE = NonRegressionRule("accuracy", max_drop=0.02, samples=500, seed=0)


def _data(slice_drop_rows: int):
    """600 rows, 90% right for the baseline; the candidate loses ``slice_drop_rows`` in 'pilot'."""
    rng = np.random.default_rng(5)
    base = (rng.random(600) < 0.9).astype(float)
    groups = ["pilot"] * 80 + ["public"] * 520
    cand = base.copy()
    right_in_pilot = [i for i in range(80) if base[i] == 1.0]
    cand[right_in_pilot[:slice_drop_rows]] = 0.0
    return {"accuracy": cand}, {"accuracy": base}, {"user_group": groups}


def _judge(cand, base, slices, **kw):
    args = dict(
        thresholds={"accuracy": 0.8},
        non_regression=RULE,
        primary_metric="accuracy",
        slice_columns=slices,
        slice_max_drop=0.05,
    )
    args.update(kw)
    return evaluate_gate(cand, base, **args)


def test_a_slice_that_regresses_fails_even_when_the_overall_score_holds() -> None:
    cand, base, slices = _data(6)  # pilot -6/80 = -0.075, overall -0.01
    was = base["accuracy"][:80].mean()
    out = _judge(cand, base, slices)
    assert not out.passed
    by_kind = {c["name"]: c["passed"] for c in out.checks}
    assert by_kind["accuracy non-regression"] and by_kind["accuracy threshold"]
    assert by_kind["slice user_group=pilot"] is False and by_kind["slice user_group=public"]
    assert out.failures == [
        f"slice user_group=pilot regressed: accuracy {was - 0.075:.4f} against {was:.4f} for "
        "the baseline (-0.0750 on 80 rows; allowed drop 0.05)"
    ]
    pilot = next(s for s in out.slices if s["value"] == "pilot")
    assert pilot["n"] == 80 and pilot["delta"] == -0.075 and not pilot["passed"]


def test_no_change_passes_and_small_slices_are_not_judged() -> None:
    assert _judge(*_data(0)).passed
    cand, base, slices = _data(6)
    out = _judge(cand, base, slices, slice_min_rows=100)
    assert out.passed
    pilot = next(c for c in out.checks if c["name"] == "slice user_group=pilot")
    assert pilot["detail"] == "80 rows: too few to judge (minimum 100)"


def test_without_a_baseline_only_thresholds_and_errors_are_judged() -> None:
    cand, _base, slices = _data(6)
    out = _judge(cand, None, slices, errors=3, error_examples=["row 4: ValueError: bad"])
    assert [c["kind"] for c in out.checks] == ["threshold", "threshold"]
    assert out.failures == [
        "3 of 600 rows raised an error in predict (first: row 4: ValueError: bad)"
    ]
    assert all(s["baseline"] is None and s["passed"] for s in out.slices)


def test_latency_is_judged_lower_is_better() -> None:
    lat_c = np.full(200, 120.0)
    lat_b = np.full(200, 100.0)
    out = evaluate_gate(
        {"latency": lat_c},
        {"latency": lat_b},
        thresholds={"latency": 150.0},
        non_regression=NonRegressionRule("latency", max_drop=10.0, samples=200),
        primary_metric="latency",
        slice_columns={},
        slice_max_drop=None,
    )
    assert [c["passed"] for c in out.checks] == [True, True, False]
    assert "latency may have regressed" in out.failures[0]


def _worse_candidate_and_a_baseline_that_raised() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """600 rows: the candidate loses 8% of the baseline's right answers; the baseline's
    predict raised on about 30% of the rows (scored 0.0, as the harness scores them)."""
    rng = np.random.default_rng(11)
    base = (rng.random(600) < 0.92).astype(float)
    cand = base.copy()
    cand[(base == 1.0) & (rng.random(600) < 0.08)] = 0.0
    raised = rng.random(600) < 0.3
    return cand, np.where(raised, 0.0, base), raised


def test_baseline_rows_that_raised_are_left_out_of_the_comparison() -> None:
    cand, base, raised = _worse_candidate_and_a_baseline_that_raised()
    slices = {"user_group": ["pilot"] * 100 + ["public"] * 500}
    # Scored as wrong, the baseline's failed rows let the regression through:
    assert _judge({"accuracy": cand}, {"accuracy": base}, slices).passed
    out = _judge(
        {"accuracy": cand},
        {"accuracy": base},
        slices,
        baseline_ok=(~raised).tolist(),
        baseline_error_examples=["row 3: TimeoutError: no answer"],
    )
    kept = int((~raised).sum())
    assert not out.passed
    assert {c["name"]: c["passed"] for c in out.checks}["accuracy non-regression"] is False
    assert out.warnings == [
        f"the baseline did not answer {600 - kept} of 600 rows (first: row 3: "
        f"TimeoutError: no answer); the comparison with the baseline uses the {kept} rows "
        "it answered"
    ]
    # The candidate is judged on every row; the baseline on the rows it answered.
    assert out.metrics["accuracy"] == cand.mean()
    assert out.baseline_metrics["accuracy"] == base[~raised].mean()
    pilot = next(s for s in out.slices if s["value"] == "pilot")
    assert pilot["n"] == int((~raised[:100]).sum())
    assert pilot["candidate"] == round(float(cand[:100][~raised[:100]].mean()), 6)


def test_a_baseline_that_raised_on_every_row_cannot_pass_non_regression() -> None:
    cand, base, _raised = _worse_candidate_and_a_baseline_that_raised()
    out = _judge({"accuracy": cand}, {"accuracy": base}, {}, baseline_ok=[False] * 600)
    check = next(c for c in out.checks if c["kind"] == "non_regression")
    assert not out.passed and not check["passed"]
    assert check["detail"] == "the baseline answered no row: nothing to compare"
    assert out.failures == [
        "accuracy cannot be compared with the baseline: the baseline answered no row"
    ]
