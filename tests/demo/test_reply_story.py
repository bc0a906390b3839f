"""The prompt path end to end: an LLM service whose prompt versions are gated by a judge
against a real OpenAI-compatible server, released with one call, and canaried; the key
that server demands appears nowhere releaser writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from releaser.api.workspace import open_workspace
from releaser.demo.reply_story import run_reply_story
from releaser.demo.workspace import ExampleWorkspace

pytestmark = pytest.mark.slow
KEY = "demo-key-not-a-secret"


def _everything_written(root: Path, lines: list[str]) -> list[tuple[str, str]]:
    """(where, text) for the report, every store record and event, every cache and MLflow file."""
    found = [("report", "\n".join(lines))]
    ws = open_workspace(root)
    try:
        for kind in ("release", "gate", "predictions", "rollout", "service", "route"):
            for record in ws.store.list(kind):
                found.append((f"store {kind}/{record.key}", json.dumps(record.value)))
        for event in ws.store.events():
            found.append((f"event {event.seq}", repr(event)))
    finally:
        ws.close()
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path.stat().st_size < 50_000_000:
            found.append((str(path.relative_to(root)), path.read_bytes().decode("latin-1")))
    return found


def test_v2_is_refused_naming_the_slice_v3_is_canaried_and_the_key_is_never_written(
    release_ws: ExampleWorkspace,
) -> None:
    root = release_ws.root
    lines: list[str] = []
    story = run_reply_story(root, lines.append)
    refused, passed = story.refused, story.passed
    assert refused.gate is not None and not refused.gate.passed and refused.rollout is None
    assert any(
        f.startswith("slice topic=council-tax regressed: judge") for f in refused.gate.failures
    )
    # v2 reads better overall (the judge says so): only the slice shows the regression.
    assert refused.gate.metrics["judge"] > refused.gate.baseline_metrics["judge"]
    assert passed.gate is not None and passed.gate.passed and passed.rollout is not None
    assert story.reached_step == "canary-25"
    gate = passed.gate
    assert gate.judges["judge"]["prompt"] == "reply-judge" and gate.judges["judge"]["version"] == 1
    assert gate.usage is not None and gate.usage["requests"] == 100
    assert {b["name"] for b in gate.budgets} == {
        "mean_tokens",
        "p95_tokens",
        "cost_per_1k_requests",
    }
    assert all(b["passed"] for b in gate.budgets)
    assert gate.prompts == "reply-draft@3"
    # The release pins the judge; a release diff would show a change of judge.
    assert [(j.name, j.version) for j in passed.release.content.judges] == [("reply-judge", 1)]
    # The MLflow run holds each row: rendered prompt, answers, scores.
    ws = open_workspace(root)
    try:
        rows_path = ws.models.client.download_artifacts(gate.mlflow_run_id, "eval_rows.jsonl")
    finally:
        ws.close()
    rows = [json.loads(line) for line in Path(rows_path).read_text().splitlines()]
    assert len(rows) == 100 and rows[0]["prompt"] == "reply-draft@3"
    assert "Greet the resident by name" in rows[0]["rendered"] and rows[0]["answers"][0]
    assert set(rows[0]["scores"]) == {"contains", "judge"}
    # The endpoint demanded the key on every call; it is written nowhere.
    leaks = [where for where, text in _everything_written(root, lines) if KEY in text]
    assert leaks == []
    _over_budget(root)
    assert (
        subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout
        == ""
    )


def _over_budget(root: Path) -> None:
    """The same prompt v3, now sampled 3 times a row at temperature 1, with a mean-token
    budget it cannot meet (its calls average about 115 tokens): the new release's gate
    reports the variance between samples and fails naming the budget; nothing starts."""
    import os

    from releaser.api.prompt_release import release_prompt
    from releaser.demo.llm_stub import ChatStub
    from releaser.demo.reply_story import KEY_ENV

    cfg = root / "releaser.yaml"
    stub = ChatStub()  # the workspace's endpoint stopped with the story: a new one
    text = cfg.read_text()
    old_url = text.split("base_url: ", 1)[1].split("\n", 1)[0]
    text = text.replace("mean_tokens: 250", "mean_tokens: 60").replace(old_url, stub.url)
    text = text.replace(
        "          concurrency: 16\n",
        "          concurrency: 16\n          samples: 3\n          temperature: 1.0\n",
        1,
    )
    cfg.write_text(text)
    subprocess.run(["git", "commit", "-qam", "a tight budget"], cwd=root, check=True)
    os.environ[KEY_ENV] = "any"  # this stand-in takes any key
    ws = open_workspace(root)
    try:
        res = release_prompt(ws, "reply-drafter", "reply-draft", 3)
    finally:
        ws.close()
        stub.close()
        os.environ.pop(KEY_ENV, None)
    assert res.gate is not None and not res.gate.passed and res.rollout is None
    failures = [f for f in res.gate.failures if f.startswith("budget")]
    assert len(failures) == 1 and failures[0].startswith("budget mean_tokens: ")
    assert failures[0].endswith("> 60")
    gate = res.gate
    assert gate.usage is not None and gate.usage["requests"] == 300  # 100 rows x 3 samples
    # At temperature 1 the stand-in drops an instruction in some samples: the judge's
    # grades of a row's samples differ, and the report says by how much.
    assert set(gate.sample_variance) == {"contains", "judge"}
    assert gate.sample_variance["judge"] > 0
