"""The `services:` part of releaser.yaml: model, prompts, data, eval, SLOs, rollout, phases."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from promptregistry.model import alias_problem, name_problem
from releaser.config._common import (
    FUNCTION_PATTERN,
    MAX_BAKE_MINUTES,
    MAX_COUNT,
    MAX_DAYS,
    MAX_TIMEOUT_S,
    PREDICT_PATTERN,
    Issue,
    RepoPath,
    Slug,
    _duplicates,
    _Model,
    did_you_mean,
    problem,
    raise_issues,
    unknown_group,
)
from releaser.config.deploy import DeploySpec
from releaser.config.metrics import MetricsSpec


class ModelSpec(_Model):
    """The registered model a service serves: by alias or by pinned version, not both."""

    name: str = Field(min_length=1, description="Registered model name in the model registry.")
    alias: str | None = Field(default=None, description="Registry alias, e.g. champion.")
    version: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="A pinned version number."
    )

    @model_validator(mode="after")
    def _alias_or_version(self) -> ModelSpec:
        if (self.alias is None) == (self.version is None):
            both = self.alias is not None
            raise problem(
                "give either 'alias' or 'version', not both"
                if both
                else "give 'alias' or 'version' to say which model version to release",
                hint="an alias (e.g. 'alias: champion') follows the registry; "
                "a version pins one build",
            )
        return self


class PromptSpec(_Model):
    """A prompt the service renders, by name and the alias to resolve.

    Names and aliases follow the prompt registry's own rules (a name becomes a
    folder of the file backend, so no path separators, '..' or control characters).
    """

    name: str = Field(min_length=1, description="Prompt name in the prompt registry.")
    alias: str = Field(default="production", description="Alias to resolve at release time.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        found = name_problem(value)
        if found is not None:
            raise problem(
                found,
                hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        return value

    @field_validator("alias")
    @classmethod
    def _safe_alias(cls, value: str) -> str:
        found = alias_problem(value)
        if found is not None:
            raise problem(found, hint="for example: production, staging, canary")
        return value


def _name_object(value: Any) -> Any:
    """Accept the short form ``- some-name`` for ``- {name: some-name}``."""
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, bool | int | float):
        raise problem(
            f"expected a name, got {value!r}", hint="YAML read this as a number: put it in quotes"
        )
    if not isinstance(value, dict | BaseModel):
        raise problem("expected a name, or a mapping such as {name: ...}")
    return value


PromptItem = Annotated[
    PromptSpec, BeforeValidator(_name_object, json_schema_input_type=str | PromptSpec)
]


class DatasetSpec(_Model):
    """A DVC-tracked dataset the service depends on."""

    path: RepoPath = Field(description="Path relative to the repository (tracked by DVC).")
    role: Literal["golden", "training", "reference", "other"] = Field(
        default="other", description="golden: the evaluation set gates run against."
    )


ScorerName = Literal[
    "exact_match",
    "token_f1",
    "accuracy",
    "contains",
    "regex",
    "numeric_tolerance",
    "json_valid",
    "json_schema",
    "judge",
    "latency",
    "custom",
]
_SCORER_OPTION = {
    "pattern": "regex",
    "tolerance": "numeric_tolerance",
    "function": "custom",
    "schema_file": "json_schema",
    "prompt": "judge",
}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HTTP_URL = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"


class ChatPrices(_Model):
    """What an LLM endpoint charges, per 1,000 tokens, for the cost budget."""

    input_per_1k: float = Field(ge=0, description="Price of 1,000 prompt tokens.")
    output_per_1k: float = Field(ge=0, description="Price of 1,000 completion tokens.")


class LlmEndpoint(_Model):
    """An OpenAI-compatible chat-completions endpoint (vLLM, Ollama, TGI, LiteLLM, hosted APIs)."""

    base_url: str = Field(
        pattern=_HTTP_URL,
        max_length=2048,
        description="Base URL; requests go to <base_url>/chat/completions.",
    )
    model: str = Field(min_length=1, max_length=256, description="Model name sent with each call.")

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        netloc = value.split("://", 1)[1].split("/", 1)[0]
        if "@" in netloc:
            raise problem(
                "the base URL holds credentials (user:password@): they would be written into "
                "releases, reports and runbooks",
                hint="give the key through api_key_env (the name of an environment variable)",
            )
        return value

    api_key_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Name of the environment variable holding the API key (never the key).",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature; null: the prompt's, else 0."
    )
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Largest answer, in tokens."
    )
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1, description="Sent as 'seed'.")
    timeout_s: float = Field(default=60, gt=0, le=MAX_TIMEOUT_S, description="Per call.")
    max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries on 429, 5xx and lost connections."
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="Calls in flight at once.")
    prices: ChatPrices | None = Field(default=None, description="For the cost budget.")


class LlmPredict(LlmEndpoint):
    """The gate's predictions from an LLM endpoint: the release's pinned prompt, rendered."""

    prompt: str | None = Field(
        default=None,
        description="Which of the service's prompts is rendered with each row's input "
        "columns and sent as the user message (default: the service's only prompt).",
    )
    samples: int = Field(
        default=1, ge=1, le=20, description="Answers per row; more than 1 reports the variance."
    )


class PredictLlm(_Model):
    """``predict: {llm: ...}``: predictions from an LLM endpoint."""

    llm: LlmPredict


PredictRef = Annotated[str, StringConstraints(pattern=PREDICT_PATTERN)]


class Budgets(_Model):
    """Limits on what the release costs per request, checked by the gate."""

    mean_tokens: float | None = Field(default=None, gt=0, description="Mean tokens per request.")
    p95_tokens: float | None = Field(default=None, gt=0, description="95th percentile tokens.")
    cost_per_1k_requests: float | None = Field(
        default=None, ge=0, description="Cost of 1,000 requests, at the endpoint's prices."
    )
    p95_latency_ms: float | None = Field(default=None, gt=0, description="95th percentile, ms.")


class ScorerSpec(_Model):
    """One scorer of an eval suite; it reports a metric named after it."""

    name: ScorerName = Field(description="Built-in scorer, or custom for your own function.")
    pattern: str | None = Field(default=None, description="regex: the pattern to search for.")
    tolerance: float | None = Field(
        default=None, ge=0, description="numeric_tolerance: the largest absolute error allowed."
    )
    function: str | None = Field(
        default=None,
        pattern=FUNCTION_PATTERN,
        description="custom: 'module:function' taking (prediction, label) and returning a score.",
    )
    schema_file: RepoPath | None = Field(
        default=None,
        description="json_schema: a JSON Schema file the answer must be valid against.",
    )
    prompt: str | None = Field(
        default=None,
        max_length=256,
        description="judge: the judge prompt's name in the prompt registry (pinned at release "
        "creation through 'alias' or 'version').",
    )
    alias: str | None = Field(
        default=None, max_length=64, description="judge: the alias to pin (default production)."
    )
    version: int | None = Field(default=None, ge=1, description="judge: a version to pin.")
    scale: tuple[float, float] = Field(
        default=(0.0, 1.0),
        description="judge: the lowest and highest score the judge gives; scores are mapped "
        "to [0, 1].",
    )
    labels: dict[str, float] | None = Field(
        default=None,
        description="judge: labels the judge answers with, and their scores in [0, 1].",
    )
    endpoint: LlmEndpoint | None = Field(
        default=None, description="judge: the endpoint that answers it (default: predict's)."
    )

    @model_validator(mode="after")
    def _options_fit(self) -> ScorerSpec:
        issues: list[Issue] = []
        for option, scorer in _SCORER_OPTION.items():
            given = getattr(self, option) is not None
            if scorer == self.name and not given:
                issues.append(Issue((), f"the {scorer} scorer needs '{option}'"))
            elif given and scorer != self.name:
                issues.append(Issue((option,), f"'{option}' only applies to the {scorer} scorer"))
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                issues.append(Issue(("pattern",), f"not a valid regular expression: {exc}"))
        judge_only = {
            "alias": self.alias is not None,
            "version": self.version is not None,
            "scale": self.scale != (0.0, 1.0),
            "labels": self.labels is not None,
            "endpoint": self.endpoint is not None,
        }
        if self.name != "judge":
            issues += [
                Issue((k,), f"'{k}' only applies to the judge scorer")
                for k, v in judge_only.items()
                if v
            ]
        else:
            if self.alias is not None and self.version is not None:
                issues.append(Issue(("version",), "give the judge's alias or version, not both"))
            low, high = self.scale
            if not low < high:
                issues.append(Issue(("scale",), f"the scale [{low:g}, {high:g}] is empty"))
            for label, value in (self.labels or {}).items():
                if not 0.0 <= value <= 1.0:
                    issues.append(
                        Issue(("labels", label), f"the score of {label!r} is not in [0, 1]")
                    )
        raise_issues(issues)
        return self

    @property
    def metric(self) -> str:
        """The metric name this scorer reports: its name, or a custom function's name."""
        if self.name == "custom" and self.function:
            return self.function.rsplit(":", 1)[1]
        return self.name


ScorerItem = Annotated[
    ScorerSpec, BeforeValidator(_name_object, json_schema_input_type=str | ScorerSpec)
]


class NonRegression(_Model):
    """The candidate must not score worse than the baseline by more than ``max_drop``."""

    metric: str = Field(min_length=1, description="Metric compared with the baseline release.")
    max_drop: float = Field(default=0.0, ge=0, description="Largest drop allowed.")
    confidence: float = Field(
        default=0.95, gt=0, lt=1, description="Confidence of the bootstrap interval."
    )
    bootstrap_samples: int = Field(
        default=2000, ge=100, le=1_000_000, description="Bootstrap resamples (at most a million)."
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=2**64 - 1,
        description="Seed of the bootstrap, so gates are repeatable (0 to 2**64 - 1).",
    )


class EvalSuite(_Model):
    """How the gate evaluates a release on a golden dataset."""

    dataset: RepoPath = Field(description="One of the service's datasets (its path).")
    predict: PredictRef | PredictLlm = Field(
        description="What makes predictions: a 'models:/name@alias' URI, 'module:function', "
        "or {llm: ...}, an OpenAI-compatible endpoint answering the release's prompt.",
    )
    input_columns: list[str] = Field(min_length=1, description="Columns passed to predict.")
    label_column: str = Field(min_length=1, description="Column holding the expected answer.")
    slices: list[str] = Field(
        default_factory=list, description="Columns to report metrics per value of."
    )
    scorers: list[ScorerItem] = Field(min_length=1, description="Scorers to run.")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Minimum value per metric (for latency: the maximum in ms).",
    )
    non_regression: NonRegression | None = Field(
        default=None, description="Compare with the baseline release, not only thresholds."
    )
    slice_max_drop: float | None = Field(
        default=None, ge=0, description="Largest drop allowed in any slice against the baseline."
    )
    slice_min_rows: int = Field(
        default=20,
        ge=1,
        le=MAX_COUNT,
        description="Slices with fewer rows are reported but not judged.",
    )
    predict_timeout: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Seconds a predict may take on one row (a model's call on k rows: k "
        "times that); a call that takes longer counts as raised (TimeoutError) and is left "
        "behind, and a model's rows in it are tried one by one. null: no limit.",
    )
    max_consecutive_errors: int | None = Field(
        default=20,
        ge=1,
        le=MAX_COUNT,
        description="Stop predicting a release after this many rows in a row raise (an "
        "endpoint that is down); the rows left are not predicted and the gate fails. "
        "null: predict every row.",
    )
    budgets: Budgets | None = Field(
        default=None, description="Tokens, cost and latency per request the gate allows."
    )
    store_predictions: bool = Field(
        default=True,
        description="Keep the predictions in the state store with the gate's report, for "
        "CI runners and later candidates' gates; false keeps them in this machine's cache "
        "only (model outputs that must not go into a shared database).",
    )

    @model_validator(mode="after")
    def _metrics_known(self) -> EvalSuite:
        metrics = [s.metric for s in self.scorers]
        issues = [
            Issue(("scorers", i), f"two scorers report the metric {m!r}")
            for i, m in _duplicates(metrics)
        ]
        for key in self.thresholds:
            if key not in metrics:
                issues.append(Issue(("thresholds", key), *_unknown_metric(key, metrics)))
        nr = self.non_regression
        if nr is not None and nr.metric not in metrics:
            issues.append(Issue(("non_regression", "metric"), *_unknown_metric(nr.metric, metrics)))
        llm = self.llm
        uses_llm = [s for s in self.scorers if s.name == "judge" and s.endpoint is None]
        if llm is None and uses_llm:
            issues.append(
                Issue(
                    ("scorers", self.scorers.index(uses_llm[0])),
                    "the judge needs an endpoint: give it 'endpoint', or predict with {llm: ...}",
                )
            )
        budgets = self.budgets
        if budgets is not None and llm is None:
            for key in ("mean_tokens", "p95_tokens", "cost_per_1k_requests"):
                if getattr(budgets, key) is not None:
                    issues.append(
                        Issue(("budgets", key), f"'{key}' needs predictions from {{llm: ...}}")
                    )
        if budgets is not None and budgets.cost_per_1k_requests is not None and llm is not None:
            if llm.prices is None:
                issues.append(
                    Issue(
                        ("budgets", "cost_per_1k_requests"),
                        "a cost budget needs the endpoint's prices",
                        "add predict.llm.prices: {input_per_1k: ..., output_per_1k: ...}",
                    )
                )
        if self.label_column in self.input_columns:
            issues.append(
                Issue(
                    ("label_column",),
                    f"the label column {self.label_column!r} is also an input column",
                    "the model would see the answer; remove it from input_columns",
                )
            )
        raise_issues(issues)
        return self

    @property
    def llm(self) -> LlmPredict | None:
        """The LLM endpoint predictions come from, if any."""
        return self.predict.llm if isinstance(self.predict, PredictLlm) else None

    @property
    def predict_ref(self) -> str | None:
        """The 'models:/...' URI or 'module:function', if predictions come from one."""
        return self.predict if isinstance(self.predict, str) else None


def _unknown_metric(name: str, metrics: list[str]) -> tuple[str, str]:
    close = did_you_mean(name, metrics)
    return f"no scorer reports the metric {name!r}", close or (
        f"the scorers report: {', '.join(metrics)}"
    )


class Slos(_Model):
    """Service level objectives; rollouts stop when a step breaks them."""

    latency_p95_ms: float | None = Field(default=None, gt=0, description="95th percentile, ms.")
    availability: float | None = Field(
        default=None, gt=0, le=1, description="Share of requests served, e.g. 0.995."
    )
    error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Largest share of failed requests."
    )
    quality_score: float | None = Field(
        default=None, ge=0, le=1, description="Smallest mean quality or feedback score."
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> Slos:
        if all(
            v is None
            for v in (self.latency_p95_ms, self.availability, self.error_rate, self.quality_score)
        ):
            raise problem(
                "give at least one objective",
                hint="latency_p95_ms, availability, error_rate or quality_score",
            )
        return self


_MAX_TOKENS = 1e9
"""The most tokens a request may count (the router ignores larger counts)."""


class TokenPrices(_Model):
    """Prices of 1,000 tokens of the candidate's model, for the cost guardrail and status."""

    input_per_1k: float = Field(ge=0, le=1e6, description="Price of 1,000 prompt tokens.")
    output_per_1k: float = Field(ge=0, le=1e6, description="Price of 1,000 completion tokens.")


class Guardrails(_Model):
    """Absolute limits that stop a rollout whatever the comparison with the baseline says.

    The token limits read the counts services pass to ``Router.record(prompt_tokens=...,
    completion_tokens=...)``; their tests assume only that counts are non-negative.
    """

    error_rate: float | None = Field(default=None, ge=0, le=1, description="Largest error rate.")
    latency_p95_ms: float | None = Field(default=None, gt=0, description="Largest p95, ms.")
    quality_score: float | None = Field(
        default=None, ge=0, le=1, description="Smallest quality score."
    )
    tokens_mean: float | None = Field(
        default=None,
        gt=0,
        le=_MAX_TOKENS,
        description="Largest mean of total tokens (prompt + completion) per request.",
    )
    tokens_p95: float | None = Field(
        default=None,
        gt=0,
        le=_MAX_TOKENS,
        description="Largest p95 of total tokens per request: at most 5% of requests above it.",
    )
    cost_per_1k_requests: float | None = Field(
        default=None,
        gt=0,
        description="Largest mean cost of 1,000 requests at 'prices' (their currency).",
    )
    prices: TokenPrices | None = Field(
        default=None,
        description="Prices per 1,000 tokens: needed by cost_per_1k_requests; 'rollout "
        "status' shows the cost when they are set.",
    )

    @model_validator(mode="after")
    def _priced(self) -> Guardrails:
        if self.cost_per_1k_requests is not None and self.prices is None:
            raise ValueError(
                "cost_per_1k_requests needs prices: {input_per_1k: ..., output_per_1k: ...}"
            )
        return self

    def limits(self) -> dict[str, float]:
        """The limits a rollout pins: those set, prices as ``price_input_per_1k`` and
        ``price_output_per_1k`` (the keys of the analysis' guardrails)."""
        out = {k: v for k, v in self.model_dump(exclude={"prices"}).items() if v is not None}
        if self.prices is not None:
            out["price_input_per_1k"] = self.prices.input_per_1k
            out["price_output_per_1k"] = self.prices.output_per_1k
        return out


_COMPARE_PATTERN = r"^(json|text|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"
_PATH_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"
_HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _mirrored_methods() -> list[_HttpMethod]:
    return ["GET", "POST"]


class ShadowSpec(_Model):
    """A shadow step: requests also sent to the candidate, whose answers are only judged."""

    percent: float = Field(
        default=10, gt=0, le=100, description="Share of requests mirrored to the candidate, %."
    )
    compare: str = Field(
        default="json",
        pattern=_COMPARE_PATTERN,
        description="How answers agree: 'json' (equal JSON documents), 'text' (equal after "
        "case folding and collapsing white space) or 'module:function' returning a bool or a "
        "score in [0, 1] for (stable, candidate).",
    )
    path: str | None = Field(
        default=None,
        pattern=_PATH_PATTERN,
        max_length=512,
        description="Dotted path into JSON answers, e.g. 'choices.0.message.content'; only "
        "that value is compared.",
    )
    min_agreement: float = Field(
        default=0.95, gt=0, le=1, description="Smallest share of agreeing answers."
    )
    max_in_flight: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Mirrored requests in flight at once; past it a request is not mirrored.",
    )
    timeout_ms: float = Field(
        default=10_000,
        gt=0,
        le=MAX_TIMEOUT_S * 1000,
        description="Time a mirrored call may "
        "take; past it the candidate's answer counts as an error.",
    )
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1,
        le=64 * 1_048_576,
        description="Largest request or answer mirrored and compared, in bytes.",
    )
    methods: list[_HttpMethod] = Field(
        default_factory=_mirrored_methods,
        min_length=1,
        description="Request methods mirrored. The candidate must not act on a mirrored "
        "request (it carries X-Releaser-Shadow: 1).",
    )


class RolloutStep(_Model):
    """One cohort: named groups first, then a percentage of everyone else."""

    name: Slug = Field(description="Step name, unique in the plan.")
    groups: list[str] = Field(
        default_factory=list, description="Names of user groups (under 'groups') included."
    )
    percent: float = Field(ge=0, le=100, description="Share of everyone else, 0 to 100.")
    bake_minutes: float = Field(
        default=0, ge=0, le=MAX_BAKE_MINUTES, description="Minimum time before advancing."
    )
    min_samples: int = Field(
        default=0,
        ge=0,
        le=MAX_COUNT,
        description="Minimum requests per variant in this step before it may advance.",
    )
    shadow: ShadowSpec | None = Field(
        default=None,
        description="Make this (first) step a shadow step: percent 0, no groups; the "
        "candidate answers mirrored requests only and is judged on errors, latency and "
        "agreement with the stable answers.",
    )

    @field_validator("groups")
    @classmethod
    def _groups_defined(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # The loader passes the raw group names so that a misspelt group is reported
        # together with every other problem; Config checks again for Python callers.
        context = info.context
        known = context.get("group_names") if isinstance(context, dict) else None
        if isinstance(known, list):
            raise_issues(
                [
                    Issue((j,), *unknown_group(g, known))
                    for j, g in enumerate(value)
                    if g not in known
                ]
            )
        return value


Comparison = Literal["error_rate", "latency", "quality_score"]


class GuardPlan(_Model):
    """The post-promotion guard: how long after a promotion ``advance`` keeps judging."""

    window_hours: float = Field(
        default=24,
        ge=0,
        le=720,
        description="How long the promoted release stays under guard; 0 turns it off.",
    )
    check_minutes: float = Field(
        default=5, ge=1, le=60, description="Shortest time between two judged batches."
    )
    alpha: float = Field(
        default=0.01,
        gt=0,
        le=0.1,
        description="Most probability of rolling back a healthy release over the window.",
    )

    @model_validator(mode="after")
    def _check_fits(self) -> GuardPlan:
        if 0 < self.window_hours * 60 < self.check_minutes:
            raise_issues(
                [
                    Issue(
                        ("check_minutes",),
                        f"a check every {self.check_minutes:g} min does not fit in a "
                        f"{self.window_hours:g} h window",
                        "make the window longer or the checks more frequent",
                    )
                ]
            )
        return self


class RolloutPlan(_Model):
    """The steps a candidate goes through, and how each step is judged."""

    steps: list[RolloutStep] = Field(min_length=1, description="Steps, widening to 100%.")
    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="False-alarm rate of the sequential tests."
    )
    guardrails: Guardrails = Field(
        default_factory=Guardrails, description="Absolute limits checked at every step."
    )
    comparisons: list[Comparison] = Field(
        default_factory=lambda: list(typing.get_args(Comparison)),
        description="Metrics compared between candidate and baseline.",
    )
    guard: GuardPlan = Field(
        default_factory=GuardPlan,
        description="After a promotion: the window in which a breach rolls back by itself.",
    )

    @model_validator(mode="after")
    def _steps_widen(self) -> RolloutPlan:
        issues = [
            Issue(("steps", i, "name"), f"the step name {name!r} is used twice")
            for i, name in _duplicates(s.name for s in self.steps)
        ]
        issues += [
            Issue(("comparisons", i), f"{c!r} is listed twice")
            for i, c in _duplicates(self.comparisons)
        ]
        for i, (prev, step) in enumerate(zip(self.steps, self.steps[1:], strict=False), 1):
            if step.percent < prev.percent:
                issues.append(
                    Issue(
                        ("steps", i, "percent"),
                        f"step {step.name!r} goes down to {step.percent:g}% after "
                        f"{prev.name!r} at {prev.percent:g}%",
                        "percentages must not decrease: widening never takes users back",
                    )
                )
        last = self.steps[-1]
        if last.percent != 100:
            issues.append(
                Issue(
                    ("steps", len(self.steps) - 1, "percent"),
                    f"the last step {last.name!r} is at {last.percent:g}%, not 100%",
                    "end the plan with a step at 100 so the release reaches everyone",
                )
            )
        for i, step in enumerate(self.steps):
            if step.shadow is not None:
                issues += _shadow_issues(i, step)
            elif step.percent == 0 and not step.groups:
                issues.append(
                    Issue(
                        ("steps", i),
                        f"step {step.name!r} reaches nobody",
                        "give it groups or a percent above 0",
                    )
                )
        raise_issues(issues)
        return self


def _shadow_issues(index: int, step: RolloutStep) -> list[Issue]:
    """What is wrong with a shadow step where it stands."""
    found: list[Issue] = []
    if index != 0:
        found.append(
            Issue(
                ("steps", index, "shadow"),
                f"step {step.name!r} is a shadow step but not the first",
                "only the first step may be a shadow step: it comes before any user is "
                "served by the candidate",
            )
        )
    if step.percent != 0 or step.groups:
        found.append(
            Issue(
                ("steps", index, "percent" if step.percent else "groups"),
                f"the shadow step {step.name!r} would serve users",
                "a shadow step serves nobody: give it percent: 0 and no groups (the share "
                "mirrored is shadow.percent)",
            )
        )
    return found


def default_rollout_plan() -> RolloutPlan:
    """internal (1%) -> 5% -> 25% -> 100%; no groups, since none are known here."""
    return RolloutPlan(
        steps=[
            RolloutStep(name="internal", percent=1, bake_minutes=30, min_samples=50),
            RolloutStep(name="canary-5", percent=5, bake_minutes=60, min_samples=200),
            RolloutStep(name="canary-25", percent=25, bake_minutes=120, min_samples=500),
            RolloutStep(name="full", percent=100, bake_minutes=60, min_samples=0),
        ]
    )


class ApprovalRule(_Model):
    """How many people holding a role must approve."""

    role: str = Field(min_length=1, description="Role that approves, e.g. data-protection.")
    count: int = Field(default=1, ge=1, le=MAX_COUNT, description="How many distinct approvers.")


class ChecklistItem(_Model):
    """Something that must be done (and usually evidenced) before entering a phase."""

    id: Slug = Field(description="Short id, e.g. dpia or runbook.")
    description: str = Field(min_length=1, description="What must be true.")
    evidence_required: bool = Field(
        default=True, description="Whether a link or file must be attached."
    )


class PhaseCriteria(_Model):
    """What a release needs before the service enters a phase."""

    eval_gate: bool = Field(default=False, description="The eval suite must pass.")
    approvals: list[ApprovalRule] = Field(default_factory=list, description="Sign-offs needed.")
    checklist: list[ChecklistItem] = Field(default_factory=list, description="Items to tick.")
    min_days_in_previous: float = Field(
        default=0,
        ge=0,
        le=MAX_DAYS,
        description="Days the service must have spent in the phase before.",
    )

    @model_validator(mode="after")
    def _unique(self) -> PhaseCriteria:
        issues = [
            Issue(("checklist", i, "id"), f"the checklist id {v!r} is used twice")
            for i, v in _duplicates(c.id for c in self.checklist)
        ]
        issues += [
            Issue(
                ("approvals", i, "role"), f"the role {v!r} is listed twice", "raise 'count' instead"
            )
            for i, v in _duplicates(a.role for a in self.approvals)
        ]
        raise_issues(issues)
        return self


PhaseName = Literal["poc", "pilot", "production", "operations"]
PHASES: tuple[PhaseName, ...] = ("poc", "pilot", "production", "operations")


class PhaseGates(_Model):
    """Entry criteria per lifecycle phase: poc -> pilot -> production -> operations."""

    poc: PhaseCriteria | None = Field(default=None, description="Entering proof of concept.")
    pilot: PhaseCriteria | None = Field(default=None, description="Entering the pilot.")
    production: PhaseCriteria | None = Field(default=None, description="Entering production.")
    operations: PhaseCriteria | None = Field(
        default=None, description="Handing over to operations."
    )

    def criteria(self, phase: PhaseName) -> PhaseCriteria:
        """The criteria for ``phase`` (none declared: nothing required)."""
        found: PhaseCriteria | None = getattr(self, phase)
        return found if found is not None else PhaseCriteria()


class Service(_Model):
    """Something users call: a model and/or prompts, datasets, gates and a rollout plan."""

    description: str = Field(default="", description="What the service does, for runbooks.")
    model: ModelSpec | None = Field(default=None, description="The registered model served.")
    prompts: list[PromptItem] = Field(
        default_factory=list, description="Prompt names, or {name, alias} objects."
    )
    datasets: list[DatasetSpec] = Field(default_factory=list, description="DVC datasets.")
    eval: EvalSuite | None = Field(default=None, description="The evaluation the gate runs.")
    slos: Slos = Field(description="Service level objectives (at least one).")
    rollout: RolloutPlan = Field(
        default_factory=default_rollout_plan,
        description="Rollout steps; default internal (1%) -> 5% -> 25% -> 100%.",
    )
    phases: PhaseGates = Field(default_factory=PhaseGates, description="Phase entry criteria.")
    irreversible: bool = Field(
        default=False,
        description="A release cannot be rolled back (e.g. it ran a data migration).",
    )
    # Excluded from dumps, so from the config hash: where a release runs is not what it is.
    deploy: DeploySpec | None = Field(
        default=None,
        exclude=True,
        description="Where releases run and how the gateway finds them (docker, kubernetes, "
        "or upstream URLs).",
    )
    # Excluded too: where the counts are read is not part of what a release is.
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec,
        exclude=True,
        description="Where canary analysis reads its counts: the router (default) or Prometheus.",
    )

    @model_validator(mode="after")
    def _references(self) -> Service:
        issues = [
            Issue(("prompts", i, "name"), f"the prompt {v!r} is listed twice")
            for i, v in _duplicates(p.name for p in self.prompts)
        ]
        issues += [
            Issue(("datasets", i, "path"), f"the dataset {v!r} is listed twice")
            for i, v in _duplicates(d.path for d in self.datasets)
        ]
        paths = [d.path for d in self.datasets]
        if self.eval is not None and self.eval.dataset not in paths:
            close = did_you_mean(self.eval.dataset, paths)
            listed = ", ".join(paths) if paths else "none"
            issues.append(
                Issue(
                    ("eval", "dataset"),
                    f"the eval dataset {self.eval.dataset!r} is not one of the service's datasets",
                    close or f"add it under 'datasets' (listed: {listed})",
                )
            )
        for phase in PHASES:
            criteria = getattr(self.phases, phase)
            if criteria is not None and criteria.eval_gate and self.eval is None:
                issues.append(
                    Issue(
                        ("phases", phase, "eval_gate"),
                        f"the {phase} phase requires the eval gate but the service has no 'eval'",
                        "add an 'eval' suite, or set eval_gate: false",
                    )
                )
        llm = self.eval.llm if self.eval is not None else None
        if llm is not None:
            names = [p.name for p in self.prompts]
            if llm.prompt is not None and llm.prompt not in names:
                issues.append(
                    Issue(
                        ("eval", "predict", "llm", "prompt"),
                        f"{llm.prompt!r} is not one of the service's prompts",
                        did_you_mean(llm.prompt, names)
                        or f"the service's prompts: {', '.join(names) or 'none'}",
                    )
                )
            elif llm.prompt is None and len(names) != 1:
                issues.append(
                    Issue(
                        ("eval", "predict", "llm"),
                        "an LLM endpoint renders one of the service's prompts, and it has "
                        f"{len(names)}",
                        "name it: predict: {llm: {prompt: <name>, ...}}"
                        if names
                        else "add the prompt under the service's 'prompts'",
                    )
                )
        if self.model is None and not self.prompts:
            issues.append(
                Issue(
                    (),
                    "the service has neither a model nor prompts",
                    "add 'model' and/or 'prompts'",
                )
            )
        raise_issues(issues)
        return self

    def golden_dataset(self) -> DatasetSpec | None:
        """The dataset the eval suite uses, if any."""
        if self.eval is None:
            return None
        return next((d for d in self.datasets if d.path == self.eval.dataset), None)
