"""The runner harness itself: expressions, file commands, masking, refusals (no releaser)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from .expressions import ExpressionError, condition, evaluate, interpolate, names_used, parse
from .runner import ROOT, Runner
from .workflow_files import WorkflowError, load, parse_file_command

OK = {"success": True, "failure": False, "always": True, "cancelled": False}
FAILED = {"success": False, "failure": True, "always": True, "cancelled": False}
CTX: dict[str, Any] = {
    "inputs": {"service": "case-triage", "override": False, "n": 3.0},
    "steps": {"release": {"outputs": {"release_id": "r-1"}, "outcome": "success"}},
    "needs": {"advance": {"outputs": {"decision": "promote"}}},
    "github": {"event_name": "pull_request", "event": {"labels": ["a", "b"]}},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("inputs.service", "case-triage"),
        ("inputs['service']", "case-triage"),
        ("inputs.missing", None),
        ("steps.release.outputs.release_id", "r-1"),
        ("needs.advance.outputs.decision == 'promote'", True),
        ("needs.advance.outputs.decision == 'PROMOTE'", True),  # strings: case-insensitive
        ("needs.advance.outputs.decision != 'promote'", False),
        ("!inputs.override", True),
        ("inputs.override || 'fallback'", "fallback"),
        ("inputs.service && 'yes'", "yes"),
        ("inputs.n == 3", True),
        ("inputs.n == '3'", True),  # mixed types compare as numbers
        ("inputs.n > 2 && inputs.n <= 3", True),
        ("'it''s'", "it's"),
        ("null == 0", True),
        ("format('{0}-{1} {{x}}', inputs.service, 2)", "case-triage-2 {x}"),
        ("contains(github.event.labels, 'B')", True),
        ("contains('abc', 'd')", False),
        ("startsWith(inputs.service, 'case')", True),
        ("endsWith(inputs.service, 'x')", False),
        ("fromJSON('{\"a\": [1, 2]}').a[1]", 2),
        ("toJSON(inputs.override)", "false"),
        ("join(github.event.labels, '+')", "a+b"),
        ("github.event.labels.*", ["a", "b"]),
        ("(1 == 2) || (2 == 2)", True),
    ],
)
def test_expressions_evaluate_like_github(source: str, expected: Any) -> None:
    assert evaluate(parse(source), CTX, OK) == expected


def test_status_functions_and_the_implicit_success() -> None:
    assert evaluate(condition("inputs.service == 'case-triage'"), CTX, OK) is True
    assert evaluate(condition("inputs.service == 'case-triage'"), CTX, FAILED) is False
    assert evaluate(condition("${{ always() }}"), CTX, FAILED) is True
    assert evaluate(condition("failure()"), CTX, FAILED) is True
    not_cancelled = "${{ !cancelled() && steps.release.outcome == 'success' }}"
    assert evaluate(condition(not_cancelled), CTX, FAILED) is True


def test_templates_keep_a_lone_value_and_join_the_rest() -> None:
    assert interpolate("${{ inputs.override }}", CTX, OK) is False
    assert interpolate("gate ${{ inputs.service }}: ${{ inputs.n }}", CTX, OK) == (
        "gate case-triage: 3"
    )
    assert interpolate("${{ format('}}{0}', 'x') }}", CTX, OK) == "}x"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("secretz.TOKEN", "unknown context 'secretz'"),
        ("hashFiles('x')", "unknown function 'hashFiles'"),
        ("inputs.service ==", "expected more"),
        ("inputs.service = 'x'", "unexpected"),
        ("'open", "unexpected character"),
        ("success(1)", "takes no arguments"),
    ],
)
def test_unknown_names_and_bad_syntax_are_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate(parse(source), CTX, OK)


def test_every_expression_in_the_workflows_uses_known_contexts_and_functions() -> None:
    """Also steps no run reaches, and the docs' caller files: each ${{ }} and if: parses and
    names only known contexts and functions."""
    from .expressions import FUNCTIONS, template_parts

    known = {"inputs", "secrets", "github", "steps", "needs", "env", "vars", "jobs", "runner"}
    files = [*sorted((ROOT / ".github" / "workflows").glob("*.yml")), ROOT / "action.yml"]
    seen = 0

    def walk(value: Any, key: str = "") -> None:
        nonlocal seen
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str):
            trees = [parse(t) for is_expr, t in template_parts(value) if is_expr]
            if key == "if":
                trees.append(condition(value))
            for tree in trees:
                seen += 1
                for kind, name in names_used(tree):
                    assert name in (FUNCTIONS if kind == "function" else known), (kind, name)

    from .test_workflow_runs import caller_examples

    for doc in [*map(load, files), *map(load, caller_examples().values())]:
        walk(doc)
    assert seen > 50


def test_file_commands_read_both_forms() -> None:
    text = "release_id=r-1\nnotes<<EOF_1\nline one\nline=two\nEOF_1\n\nempty=\n"
    assert parse_file_command(text, "GITHUB_OUTPUT") == {
        "release_id": "r-1",
        "notes": "line one\nline=two",
        "empty": "",
    }
    with pytest.raises(WorkflowError, match="no closing 'EOF'"):
        parse_file_command("x<<EOF\nvalue\n", "GITHUB_OUTPUT")
    with pytest.raises(WorkflowError, match="invalid line"):
        parse_file_command("just words\n", "GITHUB_ENV")


def _runner(tmp_path: Path) -> Runner:
    checkout = tmp_path / "repo"
    (checkout / "sub").mkdir(parents=True, exist_ok=True)
    return Runner(
        checkout=checkout,
        python_bin=Path(sys.executable).parent,
        work=tmp_path / f"runner-{len(list(tmp_path.iterdir()))}",
        github={"event_name": "workflow_dispatch", "repository": "o/r", "token": "ghs_TOKENX"},
    )


TOY = """
name: toy
on:
  workflow_call:
    inputs:
      who: {type: string, required: true}
      loud: {type: boolean, default: false}
    secrets:
      PASSWORD: {required: true}
    outputs:
      greeting: {value: "${{ jobs.first.outputs.greeting }}"}
      leaked: {value: "${{ jobs.first.outputs.leaked }}"}
env:
  LEVEL: workflow
jobs:
  first:
    runs-on: ubuntu-24.04
    environment: ${{ inputs.who }}-env
    defaults:
      run:
        working-directory: sub
    env:
      WHO: ${{ inputs.who }}
      PASSWORD: ${{ secrets.PASSWORD }}
    outputs:
      greeting: ${{ steps.say.outputs.greeting }}
      leaked: ${{ steps.say.outputs.leaked }}
    steps:
      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1
        with:
          persist-credentials: false
      - id: say
        env:
          LOUD: ${{ inputs.loud }}
        run: |
          echo "in $(basename "$PWD") at $LEVEL, loud=$LOUD"
          echo "password is $PASSWORD"
          echo "::add-mask::derived-$WHO"
          echo "derived-$WHO appears"
          echo "greeting=hello $WHO" >> "$GITHUB_OUTPUT"
          echo "leaked=$PASSWORD" >> "$GITHUB_OUTPUT"
          { echo "NOTE<<END"; echo "two"; echo "lines"; echo "END"; } >> "$GITHUB_ENV"
          mkdir -p "$RUNNER_TEMP/bin"
          printf '#!/bin/sh\\necho tool ran\\n' > "$RUNNER_TEMP/bin/tool"
          chmod +x "$RUNNER_TEMP/bin/tool" && echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
          echo "### summary for $WHO" >> "$GITHUB_STEP_SUMMARY"
      - run: |
          echo "note: $NOTE"
          tool
      - run: false | true
      - name: only on failure
        if: failure()
        run: echo "cleaning up"
      - name: never
        run: echo "not reached"
  second:
    needs: first
    if: ${{ always() && needs.first.result == 'failure' }}
    runs-on: ubuntu-24.04
    steps:
      - run: echo "first said ${{ needs.first.outputs.greeting }}" > /dev/null
"""


def test_a_toy_workflow_runs_like_on_github(tmp_path: Path) -> None:
    toy = tmp_path / "toy.yml"
    toy.write_text(TOY.replace('echo "first said ${{ needs.first.outputs.greeting }}"', "true"))
    run = _runner(tmp_path).call(toy, {"who": "ana"}, {"PASSWORD": "s3cr3t-SENTINEL"})
    first = run.jobs["first"]
    assert first.environment == "ana-env"
    assert [s.outcome for s in first.steps] == [
        "success", "success", "success", "failure", "success", "skipped",
    ]  # fmt: skip
    log = run.log
    assert "in sub at workflow, loud=false" in log
    assert "password is ***" in log and "s3cr3t" not in log
    assert "*** appears" in log and "derived-ana" not in log
    assert "note: two\nlines" in log and "tool ran" in log
    assert "Process completed with exit code 1." in log  # `false | true` under pipefail
    assert "cleaning up" in log and "not reached" not in log
    assert first.steps[1].outputs == {"greeting": "hello ana", "leaked": "s3cr3t-SENTINEL"}
    # A job output holding a secret is dropped, as GitHub does.
    assert first.outputs == {"greeting": "hello ana"}
    assert run.outputs == {"greeting": "hello ana", "leaked": ""}
    assert run.summary == "### summary for ana\n"
    assert first.result == "failure" and run.jobs["second"].result == "success"


@pytest.mark.parametrize(
    ("inputs", "secrets", "message"),
    [
        ({}, {"PASSWORD": "x"}, "required input 'who' not given"),
        ({"who": "a", "typo": "b"}, {"PASSWORD": "x"}, "unexpected input 'typo'"),
        ({"who": "a", "loud": "yes"}, {"PASSWORD": "x"}, "must be a boolean"),
        ({"who": "a"}, {}, "required secret PASSWORD not given"),
        ({"who": "a"}, {"PASSWORD": "x", "OTHER": "y"}, "secret OTHER is not defined"),
    ],
)
def test_workflow_call_checks_inputs_and_secrets(
    tmp_path: Path, inputs: dict[str, Any], secrets: dict[str, str], message: str
) -> None:
    toy = tmp_path / "toy.yml"
    toy.write_text(TOY)
    with pytest.raises(WorkflowError, match=message):
        _runner(tmp_path).call(toy, inputs, secrets)


def test_an_action_without_a_local_equivalent_is_refused_by_step_name(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yml"
    wf.write_text(
        TOY.replace(
            "      - uses: actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1\n",
            "      - name: Cache things\n"
            "        uses: actions/cache@0123456789012345678901234567890123456789\n",
        )
    )
    with pytest.raises(WorkflowError, match="step 'Cache things': uses 'actions/cache@0123"):
        _runner(tmp_path).call(wf, {"who": "a"}, {"PASSWORD": "x"})
    bumped = tmp_path / "bumped.yml"
    bumped.write_text(TOY.replace("3d3c42e5aac5ba805825da76410c181273ba90b1", "f" * 40))
    with pytest.raises(WorkflowError, match="has no local equivalent"):
        _runner(tmp_path).call(bumped, {"who": "a"}, {"PASSWORD": "x"})


def test_an_unknown_context_in_a_step_fails_the_run(tmp_path: Path) -> None:
    wf = tmp_path / "wf.yml"
    wf.write_text(TOY.replace("LOUD: ${{ inputs.loud }}", "LOUD: ${{ matrix.loud }}"))
    with pytest.raises(WorkflowError, match="unknown context 'matrix'"):
        _runner(tmp_path).call(wf, {"who": "a"}, {"PASSWORD": "x"})


def test_a_caller_granting_less_than_the_called_jobs_need_is_refused(tmp_path: Path) -> None:
    caller = """
on: workflow_dispatch
permissions: {}
jobs:
  rollback:
    uses: OWNER/releaser/.github/workflows/rollback.yml@SHA
    permissions:
      contents: read
      id-token: write
    with: {service: s, reason: r}
    secrets:
      RELEASER_STORE: x
"""
    with pytest.raises(WorkflowError, match="rollback.yml job rollback needs deployments: write"):
        _runner(tmp_path).run(caller)
    with pytest.raises(WorkflowError, match="not one of this repository's reusable workflows"):
        _runner(tmp_path).run(caller.replace("rollback.yml@SHA", "deploy.yml@SHA"))


def test_upload_artifact_copies_to_the_runners_artifacts_folder(tmp_path: Path) -> None:
    flow = tmp_path / "upload.yml"
    flow.write_text(
        """
name: upload
on: {workflow_call: {}}
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - run: mkdir -p out && echo "the handover pack" > out/pack.txt
      - uses: actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0
        with: {name: pack, path: out/pack.txt, if-no-files-found: error}
      - uses: actions/upload-artifact@bbbca2ddaa5d8feaa63e36b76fdaad77386f024f # v7.0.0
        with: {name: nothing, path: out/missing.txt}
"""
    )
    runner = _runner(tmp_path)
    run = runner.call(flow)
    assert run.jobs["build"].result == "success", run.log
    assert (runner.work / "artifacts" / "pack" / "pack.txt").read_text() == "the handover pack\n"
    assert not (runner.work / "artifacts" / "nothing").exists()  # warned by the action: no file
    flow.write_text(flow.read_text().replace("out/pack.txt, if", "out/gone.txt, if"))
    with pytest.raises(WorkflowError, match="no files at out/gone.txt"):
        _runner(tmp_path).call(flow)
