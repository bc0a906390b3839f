"""Pieces of the gate against an LLM endpoint that need no workspace: reading a judge's
answer, averaging samples, and the client settings a config and a prompt give."""

from __future__ import annotations

import pytest

from releaser.api.gate_llm import chat_settings, parse_judge, row_means, sample_scores
from releaser.config.service import LlmEndpoint
from releaser.core.scorers import contains


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Score: 4", 0.75),
        ('{"score": 5}', 1.0),
        ("score=2 because it forgot the reference", 0.25),
        ("3", 0.5),
        ("I would give it a 9", 1.0),  # clamped to the scale
        ("no number here", None),
        ("between 2 and 3", None),  # two numbers and no 'score': not readable
    ],
)
def test_a_judge_is_read_on_its_scale(text: str, expected: float | None) -> None:
    assert parse_judge(text, (1.0, 5.0), None) == expected


def test_a_judge_answering_labels_is_read_by_the_first_label() -> None:
    labels = {"good": 1.0, "acceptable": 0.5, "bad": 0.0}
    assert parse_judge("Verdict: acceptable. Not good enough to send.", (0, 1), labels) == 0.5
    assert parse_judge("GOOD", (0, 1), labels) == 1.0
    assert parse_judge("goodness knows", (0, 1), labels) is None  # whole words only


def test_samples_are_averaged_per_row_with_their_variance() -> None:
    calls = [
        [["a payment plan", 10, 5, 100.0], ["no plan", 10, 4, 120.0]],
        [["payment plan", 10, 5, 90.0], ["payment plan again", 10, 5, 95.0]],
        None,  # no answer: scores 0
    ]
    means, variances = sample_scores(calls, ["payment plan"] * 3, contains)
    assert means == [0.5, 1.0, 0.0]
    assert variances == [0.5, 0.0, 0.0]
    one = [[["payment plan", 1, 1, 1.0]], [["x", 1, 1, 1.0]]]
    assert sample_scores(one, ["payment plan"] * 2, contains) == ([1.0, 0.0], None)
    assert row_means([[0.25, 0.75], [1.0, 1.0]]) == ([0.5, 1.0], [0.125, 0.0])
    assert row_means([[0.25], [1.0]]) == ([0.25, 1.0], None)


def test_settings_come_from_the_config_then_the_prompt_version() -> None:
    endpoint = LlmEndpoint(base_url="http://127.0.0.1:8011/v1", model="m", api_key_env="KEY")
    s = chat_settings(endpoint, {"temperature": 0.7, "max_tokens": 300, "top_p": 1.0})
    assert (s.temperature, s.max_tokens, s.api_key_env) == (0.7, 300, "KEY")
    fixed = endpoint.model_copy(update={"temperature": 0.0, "max_tokens": 50})
    s = chat_settings(fixed, {"temperature": 0.7, "max_tokens": 300})
    assert (s.temperature, s.max_tokens) == (0.0, 50)
    assert chat_settings(endpoint, None).temperature == 0.0


def test_a_model_gate_checks_only_its_latency_budget() -> None:
    from releaser.api.gate_llm import LlmEvidence
    from releaser.api.gate_predict import Predictions
    from releaser.config.service import EvalSuite

    suite = EvalSuite.model_validate(
        {
            "dataset": "g.csv",
            "predict": "models:/m@champion",
            "input_columns": ["text"],
            "label_column": "label",
            "scorers": ["accuracy"],
            "budgets": {"p95_latency_ms": 50},
        }
    )
    fast = Predictions(["a"] * 20, [True] * 20, [10.0] * 19 + [None], [])
    slow = Predictions(["a"] * 20, [True] * 20, [10.0] * 10 + [90.0] * 10, [])
    ok = LlmEvidence(None, None, None, suite, [], fast, None)  # type: ignore[arg-type]
    assert [(b.name, b.passed) for b in ok.budgets] == [("p95_latency_ms", True)]
    assert ok.usage is None  # tokens are not measured without an LLM endpoint
    over = LlmEvidence(None, None, None, suite, [], slow, None)  # type: ignore[arg-type]
    assert [(b.name, b.passed, b.value) for b in over.budgets] == [("p95_latency_ms", False, 90.0)]
    none = suite.model_copy(update={"budgets": None})
    assert LlmEvidence(None, None, None, none, [], slow, None).budgets == []  # type: ignore[arg-type]
