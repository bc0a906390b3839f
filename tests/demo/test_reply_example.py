"""The reply-drafter example: its golden set, its prompts, and the outcome they are built for.

Every prompt version is rendered for every golden row with promptregistry's strict
renderer, answered by the local stand-in model through the real chat client, and
graded by the judge prompt the same way. The outcome the demo tells is asserted with
its numbers: v2 reads better overall but the judge marks it down on council tax,
and v3 beats v1 on every topic.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import defaultdict
from collections.abc import Iterator
from statistics import mean
from typing import Any

import pytest

from promptregistry import PromptSpec, load_spec_file, render
from releaser.demo.llm_stub import ChatStub
from releaser.demo.workspace import example_dir
from releaser.integrations.llm_chat import ChatAnswer, ChatSettings, run_chats

EXAMPLE = example_dir().parent / "reply_drafter"
VERSIONS = ("v1", "v2", "v3")
INPUT_COLUMNS = ("message", "resident_name", "reference", "topic")
TOPICS = ("council-tax", "housing", "waste", "planning", "noise", "benefits")
SCORE = re.compile(r"^Score: (?P<n>-?\d+)$")

# Mean judge score (1..5) and `contains` rate per version and topic, and overall: the
# numbers the README states. The stand-in model is deterministic at temperature 0.
EXPECTED: dict[str, dict[str, tuple[float, float]]] = {
    "v1": {
        "council-tax": (3.0, 1.0),
        "housing": (3.0, 0.5),
        "waste": (3.0, 0.47),
        "planning": (3.0, 0.47),
        "noise": (3.0, 0.47),
        "benefits": (3.0, 0.47),
        "overall": (3.0, 0.6),
    },
    "v2": {
        "council-tax": (2.0, 0.0),
        "housing": (4.0, 1.0),
        "waste": (4.0, 1.0),
        "planning": (4.0, 1.0),
        "noise": (4.0, 1.0),
        "benefits": (4.0, 1.0),
        "overall": (3.52, 0.76),
    },
    "v3": {topic: (5.0, 1.0) for topic in (*TOPICS, "overall")},
}


def golden_rows() -> list[dict[str, str]]:
    with (EXAMPLE / "golden.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def spec(version: str) -> PromptSpec:
    return load_spec_file(EXAMPLE / "prompts" / f"reply-draft-{version}.yaml")


def judge_spec() -> PromptSpec:
    return load_spec_file(EXAMPLE / "prompts" / "reply-judge.yaml")


def settings_for(stub: ChatStub, prompt: PromptSpec, **override: Any) -> ChatSettings:
    """Chat settings from the prompt version's own parameters, as the gate uses them."""
    params = prompt.parameters
    temperature = params.get("temperature")
    max_tokens = params.get("max_tokens")
    assert isinstance(temperature, float) and isinstance(max_tokens, int)
    base: dict[str, Any] = {
        "base_url": stub.url,
        "model": stub.model,
        "temperature": temperature,
        "max_tokens": max_tokens,
        # Retried as the gate does: the stand-in server can reset a connection when many
        # open at once (its listen queue is short), which a retry absorbs.
        "max_retries": 4,
        "backoff_s": 0.05,
    }
    return ChatSettings(**{**base, **override})


def answers(settings: ChatSettings, prompts: list[str], *, samples: int = 1) -> list[str]:
    results = run_chats(settings, prompts, concurrency=16, samples=samples)
    bad = [r for r in results if not isinstance(r, ChatAnswer)]
    assert not bad, bad[:3]
    return [r.text for r in results if isinstance(r, ChatAnswer)]


def inputs(row: dict[str, str]) -> dict[str, str]:
    return {column: row[column] for column in INPUT_COLUMNS}


def judge_scores(stub: ChatStub, rows: list[dict[str, str]], replies: list[str]) -> list[int]:
    judge = judge_spec()
    prompts = [
        render(judge, **inputs(row), answer=reply) for row, reply in zip(rows, replies, strict=True)
    ]
    scores = []
    for text in answers(settings_for(stub, judge), prompts):
        match = SCORE.match(text)
        assert match, text
        scores.append(int(match.group("n")))
    return scores


@pytest.fixture(scope="module")
def stub() -> Iterator[ChatStub]:
    with ChatStub() as server:
        yield server


@pytest.fixture(scope="module")
def outcome(stub: ChatStub) -> dict[str, dict[str, tuple[float, float]]]:
    """Per version: slice (each topic and ``overall``) -> (mean judge score, contains rate)."""
    rows = golden_rows()
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for version in VERSIONS:
        prompt = spec(version)
        replies = answers(settings_for(stub, prompt), [render(prompt, **inputs(r)) for r in rows])
        scores = judge_scores(stub, rows, replies)
        by_slice: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        for row, reply, score in zip(rows, replies, scores, strict=True):
            hit = row["expected"] in reply
            by_slice[row["topic"]].append((score, hit))
            by_slice["overall"].append((score, hit))
        table[version] = {
            name: (mean(s for s, _ in cells), mean(float(h) for _, h in cells))
            for name, cells in by_slice.items()
        }
    return table


def test_golden_set_is_the_generators_output_with_the_documented_shape() -> None:
    path = EXAMPLE / "golden.py"
    module_spec = importlib.util.spec_from_file_location("_reply_drafter_golden", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    text = (EXAMPLE / "golden.csv").read_text(encoding="utf-8")
    assert text == module.to_csv(module.rows())

    rows = golden_rows()
    assert len(rows) == 100
    assert list(rows[0]) == [*INPUT_COLUMNS, "expected"]
    by_topic = defaultdict(list)
    for row in rows:
        by_topic[row["topic"]].append(row)
        assert all(row[c].strip() for c in INPUT_COLUMNS), row
        assert "\n" not in row["message"]
    assert sorted(by_topic) == sorted(TOPICS)
    assert len(by_topic["council-tax"]) >= 20
    assert {r["expected"] for r in by_topic["council-tax"]} == {"payment plan"}
    for topic in TOPICS[1:]:
        for row in by_topic[topic]:
            assert row["expected"] in ("reply within 10 working days", row["reference"])
    assert len({r["reference"] for r in rows}) == len(rows)


def test_prompt_specs_declare_the_golden_columns() -> None:
    for version in VERSIONS:
        prompt = spec(version)
        assert prompt.name == "reply-draft"
        assert set(prompt.variables) == set(INPUT_COLUMNS)
        assert prompt.commit_message
    judge = judge_spec()
    assert judge.name == "reply-judge"
    assert set(judge.variables) == {*INPUT_COLUMNS, "answer"}
    assert "You are grading a reply" in judge.template
    assert "Score from 1 to 5." in judge.template
    # Three different versions: the registry would store each as a new version.
    assert len({spec(v).compute_hash() for v in VERSIONS}) == 3


def test_v3_keeps_every_instruction_of_v1_and_v2_drops_the_payment_plan() -> None:
    def instructions(version: str) -> set[str]:
        return {line for line in spec(version).template.splitlines() if line.startswith("- ")}

    assert instructions("v1") < instructions("v3")
    assert "- Offer a payment plan for council tax." in instructions("v1")
    assert "- Offer a payment plan for council tax." not in instructions("v2")
    assert "- Say what happens next." in instructions("v2")


@pytest.mark.slow
def test_outcome_matches_the_stated_numbers(
    outcome: dict[str, dict[str, tuple[float, float]]],
) -> None:
    rounded = {
        version: {name: (round(s, 2), round(c, 2)) for name, (s, c) in slices.items()}
        for version, slices in outcome.items()
    }
    assert rounded == EXPECTED


@pytest.mark.slow
def test_v2_is_worse_on_council_tax_though_not_worse_overall(
    outcome: dict[str, dict[str, tuple[float, float]]],
) -> None:
    v1, v2 = outcome["v1"], outcome["v2"]
    # The judge: a clear drop on the slice (>= 0.5 on a 1..5 scale) ...
    assert v1["council-tax"][0] - v2["council-tax"][0] >= 0.5
    # ... hidden by an overall mean that is no worse (here it is better).
    assert v2["overall"][0] >= v1["overall"][0] - 0.25
    # The contains scorer agrees: no council-tax reply offers a payment plan.
    assert v2["council-tax"][1] == 0.0 < v1["council-tax"][1] == 1.0


@pytest.mark.slow
def test_v3_is_at_least_v1_on_every_topic_and_better_overall(
    outcome: dict[str, dict[str, tuple[float, float]]],
) -> None:
    v1, v3 = outcome["v1"], outcome["v3"]
    for topic in TOPICS:
        assert v3[topic][0] >= v1[topic][0], topic
        assert v3[topic][1] >= v1[topic][1], topic
    assert v3["overall"][0] > v1["overall"][0]
    assert v3["overall"][1] > v1["overall"][1]


@pytest.mark.slow
def test_temperature_above_zero_with_different_seeds_gives_varied_answers(
    stub: ChatStub,
) -> None:
    rows = [r for r in golden_rows() if r["topic"] == "council-tax"][:10]
    prompt = spec("v3")
    prompts = [render(prompt, **inputs(r)) for r in rows]
    k = 5

    cold = answers(settings_for(stub, prompt, seed=0), prompts, samples=k)
    for i in range(len(rows)):
        assert len(set(cold[i * k : (i + 1) * k])) == 1  # temperature 0: one answer

    hot_settings = settings_for(stub, prompt, temperature=1.0, seed=0)
    hot = answers(hot_settings, prompts, samples=k)
    varied = [len(set(hot[i * k : (i + 1) * k])) > 1 for i in range(len(rows))]
    assert sum(varied) >= len(rows) // 2, varied
    # Reproducible: the same seed gives the same samples.
    assert answers(hot_settings, prompts, samples=k) == hot
    # And the variance reaches the judge: some samples lose an instruction and a point.
    scores = judge_scores(stub, [r for r in rows for _ in range(k)], hot)
    assert min(scores) < 5 == max(scores)
