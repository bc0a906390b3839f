"""Scorers: one score per row; errored rows score zero; latency aggregates as p95."""

from __future__ import annotations

import math

import numpy as np
import pytest

from releaser.core.scorers import (
    accuracy,
    aggregate,
    contains,
    exact_match,
    higher_is_better,
    numeric_tolerance,
    regex_match,
    score_rows,
    token_f1,
)


def test_exact_match_ignores_case_and_spacing_but_accuracy_does_not() -> None:
    assert exact_match("  Housing ", "housing") == 1.0
    assert exact_match("housing  benefit", "Housing benefit") == 1.0
    assert exact_match("housing", "benefits") == 0.0
    assert accuracy("housing", "housing") == 1.0
    assert accuracy("Housing", "housing") == 0.0
    assert accuracy(3, "3") == 1.0


@pytest.mark.parametrize(
    ("pred", "label", "expected"),
    [
        ("the cat sat", "the cat sat", 1.0),
        ("cat", "the cat sat", 0.5),  # precision 1, recall 1/3
        ("a dog", "the cat", 0.0),
        ("", "", 1.0),
        ("", "something", 0.0),
        ("Cat, sat!", "cat sat", 1.0),
    ],
)
def test_token_f1(pred: str, label: str, expected: float) -> None:
    assert token_f1(pred, label) == pytest.approx(expected)


def test_contains_and_regex() -> None:
    assert contains("Route to the HOUSING team", "housing") == 1.0
    assert contains("Route to waste", "housing") == 0.0
    score = regex_match(r"^(housing|benefits)$")
    assert score("housing", None) == 1.0
    assert score("housing team", None) == 0.0


def test_numeric_tolerance() -> None:
    score = numeric_tolerance(0.5)
    assert score("10.4", 10) == 1.0
    assert score(10.5, "10") == 1.0
    assert score(10.6, 10) == 0.0
    assert score("ten", 10) == 0.0
    assert score(float("nan"), 10) == 0.0


def test_rows_that_raised_score_zero_whatever_the_prediction() -> None:
    ok = np.array([True, False, True])
    scores = score_rows(accuracy, ["a", "a", "b"], ["a", "a", "a"], ok)
    assert scores.tolist() == [1.0, 0.0, 0.0]


def test_aggregate_mean_and_latency_p95_ignoring_unknown_rows() -> None:
    assert aggregate("accuracy", np.array([1.0, 0.0, 1.0, 1.0])) == 0.75
    lat = np.array([float(i) for i in range(1, 101)] + [math.nan])
    assert aggregate("latency", lat) == pytest.approx(np.percentile(np.arange(1, 101), 95))
    assert math.isnan(aggregate("latency", np.array([math.nan])))
    assert not higher_is_better("latency") and higher_is_better("token_f1")


@pytest.mark.parametrize("fn", [accuracy, exact_match])
@pytest.mark.parametrize(
    ("predictions", "labels"),
    [
        (["Waste", " waste ", "noise", "a  b", "x"], ["waste", "waste", "noise", "A B", "y"]),
        (["1", 1, None, "None", 2.0], ["1", "1", "None", "None", "2.0"]),  # not all text
    ],
)
def test_text_scores_match_scoring_row_by_row(fn, predictions, labels) -> None:
    # Text answers are scored in one pass; anything else row by row: the same scores.
    ok = np.array([True, True, True, True, False])
    by_row = [
        float(fn(p, g)) if good else 0.0 for p, g, good in zip(predictions, labels, ok, strict=True)
    ]
    assert score_rows(fn, predictions, labels, ok).tolist() == by_row
