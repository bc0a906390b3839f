"""The eval gate against an LLM endpoint: render the pinned prompt per row, call, judge.

With ``predict: {llm: ...}`` the gate renders the prompt version the release pins
(promptregistry's strict, sandboxed rendering) with each golden row's input columns,
typed as the prompt declares them, and sends it as one user message to the
OpenAI-compatible endpoint (:mod:`releaser.integrations.llm_chat`: concurrency,
timeouts, retries with backoff on 429 and 5xx, answers cached by prompt, model and
parameters). Each row keeps every call it made (``samples: k`` makes k): the answer,
its prompt and completion tokens and its latency, for the budgets and the variance.

A judge scorer renders the judge prompt the release pins with the row's input columns,
``answer`` (the answer graded) and ``expected`` (the label), passing only the variables
the judge declares, and asks its endpoint (the scorer's, else predict's without predict's
temperature, max_tokens and seed: the judge prompt's parameters apply) for a score:
``Score: n`` or ``{"score": n}`` on the judge's ``scale``, or one of its ``labels``,
mapped to [0, 1]. An answer it cannot read scores 0 and is counted.

The API key is read from the environment variable the config names, at call time; it
is never in a rendered prompt, an answer, the cache, a report or an MLflow artifact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releaser.errors import BadInput, NotFound

if TYPE_CHECKING:
    from promptregistry import PromptVersion
    from releaser.api.gate_inputs import Golden
    from releaser.api.gate_predict import Predictions
    from releaser.api.workspace import Workspace
    from releaser.config.service import EvalSuite, LlmEndpoint, ScorerSpec
    from releaser.core.budgets import UsageFigures
    from releaser.core.refs import PromptRef
    from releaser.core.release import Release
    from releaser.integrations.llm_chat import ChatAnswer, ChatSettings

__all__ = [
    "ANSWER_CACHE",
    "Call",
    "JudgeScores",
    "LlmEvidence",
    "LlmRows",
    "answers_of",
    "chat_settings",
    "judge_rows",
    "llm_rows",
    "parse_judge",
    "row_means",
    "sample_scores",
    "schema_of",
    "trace_rows",
    "usage_of",
]

ANSWER_CACHE = ".releaser/cache/llm-answers.sqlite"
"""Where answers are cached, in the workspace (git-ignored with the rest of .releaser)."""

Progress = Callable[[int, int], None]
Call = list[Any]
"""One call of a row, as kept with the predictions: [answer, prompt tokens, completion
tokens, latency ms]."""


def chat_settings(endpoint: LlmEndpoint, parameters: dict[str, Any] | None = None) -> ChatSettings:
    """Client settings: the config's values, else the prompt version's parameters."""
    from releaser.integrations.llm_chat import ChatSettings

    params = parameters or {}

    def number(value: Any) -> float | None:
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    temperature = endpoint.temperature
    if temperature is None:
        temperature = number(params.get("temperature"))
    max_tokens = endpoint.max_tokens
    if max_tokens is None and isinstance(params.get("max_tokens"), int):
        max_tokens = int(params["max_tokens"])
    return ChatSettings(
        base_url=endpoint.base_url,
        model=endpoint.model,
        api_key_env=endpoint.api_key_env,
        temperature=0.0 if temperature is None else temperature,
        max_tokens=max_tokens,
        seed=endpoint.seed,
        timeout_s=endpoint.timeout_s,
        max_retries=endpoint.max_retries,
    )


def _pinned(refs: Sequence[PromptRef], name: str | None, what: str) -> PromptRef:
    if name is None and len(refs) == 1:
        return refs[0]
    for ref in refs:
        if ref.name == name:
            return ref
    pinned = ", ".join(r.name for r in refs) or "none"
    raise NotFound(
        f"the release pins no {what} {name!r} (it pins: {pinned})",
        hint="create a new release after fixing releaser.yaml",
    )


def _typed(value: Any, type_name: str, column: str, row: int) -> Any:
    """A CSV cell as the prompt declares its variable (str, int, float, bool, list, dict)."""
    if type_name == "str" or not isinstance(value, str):
        return value if type_name != "str" or isinstance(value, str) else str(value)
    try:
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name == "bool":
            low = value.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no", ""):
                return False
            raise ValueError(value)
        return json.loads(value)
    except ValueError:
        raise BadInput(
            f"golden row {row}: column {column!r} is {value!r}, not the {type_name} the "
            "prompt declares",
            hint="fix the golden set, or the prompt's variable type",
        ) from None


def _render(pv: PromptVersion, values: dict[str, Any], row: int) -> str:
    from promptregistry import render
    from releaser.api.prompt_refs import prompt_errors

    typed = {k: _typed(values[k], t, k, row) for k, t in pv.variables.items()}
    with prompt_errors():
        return render(pv, **typed)


def _cache(ws: Workspace) -> Any:
    from releaser.integrations.llm_chat import ChatCache

    path = ws.root / ANSWER_CACHE
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = path.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return ChatCache(path)


@dataclass(frozen=True)
class LlmRows:
    """The calls of the rows asked for: per row, its calls or the error that stopped them."""

    calls: list[list[Call] | None]
    errors: list[str | None]
    not_called: int = 0
    """Rows not asked at all: too many calls in a row had failed before them."""


def llm_rows(
    ws: Workspace,
    release: Release,
    golden: Golden,
    suite: EvalSuite,
    numbers: Sequence[int],
    progress: Progress | None,
) -> LlmRows:
    """Render the pinned prompt for the rows numbered in ``numbers`` and call the endpoint."""
    from releaser.integrations.llm_chat import ChatError, run_chats

    llm = suite.llm
    assert llm is not None
    ref = _pinned(release.content.prompts, llm.prompt, "prompt")
    pv = ws.prompts.get(ref.name, version=ref.version)
    unknown = sorted(set(pv.variables) - set(suite.input_columns))
    if unknown:
        raise BadInput(
            f"prompt {pv.name} v{pv.version} uses {', '.join(unknown)}, which "
            f"{'is not an input column' if len(unknown) == 1 else 'are not input columns'}",
            hint="add them to eval.input_columns (and the golden set), or remove them from "
            "the prompt",
        )
    texts = [_render(pv, golden.rows[n], n) for n in numbers]
    settings = chat_settings(llm, dict(pv.parameters))
    cache = _cache(ws)
    try:
        answers = run_chats(
            settings,
            texts,
            concurrency=llm.concurrency,
            cache=cache,
            samples=llm.samples,
            progress=progress,
            stop_after_errors=suite.max_consecutive_errors,
        )
    finally:
        cache.close()
    k = llm.samples
    not_called = 0
    calls: list[list[Call] | None] = []
    errors: list[str | None] = []
    for i in range(len(texts)):
        mine = answers[i * k : (i + 1) * k]
        failed = next((a for a in mine if isinstance(a, ChatError)), None)
        if failed is not None:
            calls.append(None)
            if failed.kind == "not_called":
                not_called += 1
                errors.append(None)
            else:
                errors.append(failed.message)
            continue
        calls.append([_call(a) for a in mine])  # type: ignore[arg-type]
        errors.append(None)
    return LlmRows(calls, errors, not_called)


def _call(answer: ChatAnswer) -> Call:
    return [answer.text, answer.prompt_tokens, answer.completion_tokens, answer.latency_ms]


# -- judges ------------------------------------------------------------------------------

_SCORE = re.compile(r"score\W{0,3}(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_judge(
    text: str, scale: tuple[float, float], labels: dict[str, float] | None
) -> float | None:
    """A judge's answer as a score in [0, 1], or None when it cannot be read.

    With ``labels``: the first label found as a word (case ignored; the longest wins a
    tie). Else a number on ``scale``: ``{"score": n}``, ``Score: n``, or the only number.
    """
    if labels:
        low = text.casefold()
        found = [
            (low.find(label.casefold()), -len(label), label)
            for label in labels
            if re.search(rf"\b{re.escape(label.casefold())}\b", low)
        ]
        if not found:
            return None
        return labels[min(found)[2]]
    value: float | None = None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("score"), int | float):
            value = float(data["score"])
    except ValueError:
        pass
    if value is None:
        match = _SCORE.search(text)
        if match:
            value = float(match.group(1))
        else:
            numbers = _NUMBER.findall(text)
            if len(numbers) == 1:
                value = float(numbers[0])
    if value is None or not math.isfinite(value):
        return None
    low_end, high_end = scale
    return min(1.0, max(0.0, (value - low_end) / (high_end - low_end)))


@dataclass(frozen=True)
class JudgeScores:
    """A judge's scores of every answer graded (per row, per sample) and what it cost."""

    scores: list[list[float]]
    unreadable: int
    failed: int
    calls: int
    seconds: float
    version: int


def judge_rows(
    ws: Workspace,
    release: Release,
    golden: Golden,
    suite: EvalSuite,
    spec: ScorerSpec,
    answers: Sequence[Sequence[Any] | None],
    progress: Progress | None = None,
) -> JudgeScores:
    """Grade each row's answers (None: a row without answers, scored 0) with the judge."""
    import time

    from releaser.integrations.llm_chat import ChatError, run_chats

    endpoint: LlmEndpoint | None = spec.endpoint
    if endpoint is None and suite.llm is not None:
        # predict's endpoint, without predict's sampling: the judge's own prompt parameters
        # (else temperature 0) decide how it answers.
        endpoint = suite.llm.model_copy(
            update={"temperature": None, "max_tokens": None, "seed": None}
        )
    if endpoint is None:  # refused by the config's validation
        raise BadInput("the judge has no endpoint", hint="give the judge scorer an 'endpoint'")
    ref = _pinned(release.content.judges, spec.prompt, "judge prompt")
    pv = ws.prompts.get(ref.name, version=ref.version)
    columns = set(suite.input_columns) | {"answer", "expected"}
    unknown = sorted(set(pv.variables) - columns)
    if unknown:
        raise BadInput(
            f"judge prompt {pv.name} v{pv.version} uses {', '.join(unknown)}",
            hint="a judge may use the input columns, 'answer' and 'expected'",
        )
    texts: list[str] = []
    where: list[tuple[int, int]] = []
    for row, mine in enumerate(answers):
        for sample, answer in enumerate(mine or ()):
            values = {**golden.rows[row], "answer": answer, "expected": golden.labels[row]}
            texts.append(_render(pv, values, row))
            where.append((row, sample))
    settings = chat_settings(endpoint, dict(pv.parameters))
    cache = _cache(ws)
    began = time.perf_counter()
    try:
        graded = run_chats(
            settings, texts, concurrency=endpoint.concurrency, cache=cache, progress=progress
        )
    finally:
        cache.close()
    seconds = time.perf_counter() - began
    scores: list[list[float]] = [[] for _ in answers]
    for row, mine in enumerate(answers):
        if mine is None:
            scores[row] = [0.0]
    unreadable = failed = 0
    for (row, _sample), answer in zip(where, graded, strict=True):
        if isinstance(answer, ChatError):
            failed += 1
            scores[row].append(0.0)
            continue
        value = parse_judge(answer.text, spec.scale, spec.labels)
        if value is None:
            unreadable += 1
            value = 0.0
        scores[row].append(value)
    return JudgeScores(scores, unreadable, failed, len(texts), seconds, pv.version)


def schema_of(ws: Workspace, release: Release, spec: ScorerSpec) -> Any:
    """The JSON Schema a json_schema scorer checks against, read at the release's commit
    (WorkspaceError naming the file and commit when it is not there)."""
    from releaser.core.structured_scorers import check_schema
    from releaser.integrations.git_repo import file_at_commit

    path = spec.schema_file or ""
    text = file_at_commit(ws.root, release.content.code.sha, ws.root / path)
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{path} is not JSON: {exc}", hint="fix the schema file") from None
    check_schema(schema, path)
    return schema


# -- scoring the calls -------------------------------------------------------------------


def answers_of(calls: Sequence[Sequence[Call] | None]) -> list[list[Any] | None]:
    """Each row's answers (one per sample), None for a row without answers."""
    return [None if row is None else [c[0] for c in row] for row in calls]


def sample_scores(
    calls: Sequence[Sequence[Call] | None], labels: Sequence[Any], fn: Callable[[Any, Any], float]
) -> tuple[list[float], list[float] | None]:
    """Per row, the mean score of its samples (0 for a row without answers), and, with more
    than one sample a row, each row's sample variance (None otherwise)."""
    means: list[float] = []
    variances: list[float] = []
    several = any(row is not None and len(row) > 1 for row in calls)
    for row, label in zip(calls, labels, strict=True):
        if row is None:
            means.append(0.0)
            variances.append(0.0)
            continue
        scores = [float(fn(c[0], label)) for c in row]
        mean = sum(scores) / len(scores)
        means.append(mean)
        if len(scores) > 1:
            variances.append(sum((x - mean) ** 2 for x in scores) / (len(scores) - 1))
    return means, (variances if several else None)


def row_means(per_row: Sequence[Sequence[float]]) -> tuple[list[float], list[float] | None]:
    """Per row, the mean of its (judge) scores, and each row's sample variance when a row
    has more than one."""
    means = [sum(r) / len(r) if r else 0.0 for r in per_row]
    if not any(len(r) > 1 for r in per_row):
        return means, None
    variances = [
        sum((x - m) ** 2 for x in r) / (len(r) - 1) if len(r) > 1 else 0.0
        for r, m in zip(per_row, means, strict=True)
    ]
    return means, variances


def usage_of(calls: Sequence[Sequence[Call] | None], endpoint: LlmEndpoint) -> UsageFigures:
    """Tokens, cost and latency of every call made (rows without answers left out)."""
    from releaser.core.budgets import usage_figures

    made = [c for row in calls if row is not None for c in row]
    prices = endpoint.prices
    return usage_figures(
        [int(c[1]) for c in made],
        [int(c[2]) for c in made],
        [float(c[3]) for c in made],
        input_per_1k=prices.input_per_1k if prices else None,
        output_per_1k=prices.output_per_1k if prices else None,
    )


class LlmEvidence:
    """What a gate against an LLM endpoint adds: judge scores, usage and budgets."""

    def __init__(
        self,
        ws: Workspace,
        release: Release,
        golden: Any,
        suite: EvalSuite,
        judge_specs: list[Any],
        cand: Predictions,
        base: Predictions | None,
    ) -> None:
        self.judged: dict[str, list[list[float]]] = {}
        self.base_judged: dict[str, list[list[float]]] = {}
        self.judges: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None
        self.baseline_usage: dict[str, Any] | None = None
        self.budgets: list[Any] = []

        def answers(preds: Predictions) -> list[list[Any] | None]:
            if preds.calls is not None:
                return answers_of(preds.calls)
            return [[v] if good else None for v, good in zip(preds.values, preds.ok, strict=True)]

        for spec in judge_specs:
            # Both releases' answers are graded by the judge the candidate pins.
            mine = judge_rows(ws, release, golden, suite, spec, answers(cand))
            self.judged[spec.metric] = mine.scores
            seconds, calls = mine.seconds, mine.calls
            if base is not None:
                theirs = judge_rows(ws, release, golden, suite, spec, answers(base))
                self.base_judged[spec.metric] = theirs.scores
                seconds, calls = seconds + theirs.seconds, calls + theirs.calls
            self.judges[spec.metric] = {
                "prompt": spec.prompt,
                "version": mine.version,
                "calls": calls,
                "seconds": round(seconds, 3),
                "unreadable": mine.unreadable,
                "failed": mine.failed,
            }
        from releaser.core.budgets import check_budgets, usage_figures

        llm = suite.llm
        if llm is not None and cand.calls is not None:
            figures = usage_of(cand.calls, llm)
            self.usage = figures.to_dict()
            if base is not None and base.calls is not None:
                self.baseline_usage = usage_of(base.calls, llm).to_dict()
        elif suite.budgets is not None:  # a model or a function: only the latency budget
            figures = usage_figures([], [], [ms for ms in cand.latency_ms if ms is not None])
        if suite.budgets is not None:
            self.budgets = check_budgets(figures, suite.budgets.model_dump())


def trace_rows(
    ws: Workspace,
    release: Release,
    golden: Golden,
    suite: EvalSuite,
    calls: Sequence[Sequence[Call] | None],
    scores: dict[str, Any],
    judged: dict[str, list[list[float]]],
) -> str:
    """The candidate's rows as JSON lines, for a failing row to be opened in MLflow: inputs,
    expected, the prompt version and its rendering, each call's answer, tokens and latency,
    the row's score per metric and each judge's grades."""
    llm = suite.llm
    assert llm is not None
    ref = _pinned(release.content.prompts, llm.prompt, "prompt")
    pv = ws.prompts.get(ref.name, version=ref.version)
    lines: list[str] = []
    for i, row in enumerate(golden.rows):
        mine = calls[i]
        item = {
            "row": i,
            "release": release.id,
            "prompt": f"{ref.name}@{ref.version}",
            "inputs": {c: row[c] for c in suite.input_columns},
            "expected": golden.labels[i],
            "rendered": _render(pv, row, i),
            "answers": None if mine is None else [c[0] for c in mine],
            "tokens": None if mine is None else [[c[1], c[2]] for c in mine],
            "latency_ms": None if mine is None else [c[3] for c in mine],
            "scores": {m: _finite(v[i]) for m, v in scores.items()},
            "judges": {m: g[i] for m, g in judged.items()},
        }
        lines.append(json.dumps(item, ensure_ascii=False, default=str))
    return "\n".join(lines) + "\n"


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
