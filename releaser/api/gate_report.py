"""The eval gate's report: what it measured and judged, as JSON and as Markdown."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GateReport"]


class GateReport(BaseModel):
    """The outcome of one eval gate run on a release: metrics, checks, slices, failures."""

    model_config = ConfigDict(frozen=True)

    service: str
    release_id: str
    baseline_id: str | None = None
    passed: bool
    at: str
    actor: str = ""
    dataset: str
    dataset_md5: str
    dataset_rev: str = ""
    rows: int
    errors: int = Field(description="Rows whose predict raised.")
    error_examples: list[str] = Field(default_factory=list)
    not_predicted: int = Field(
        default=0, description="Rows left unpredicted after too many errors in a row."
    )
    baseline_errors: int = Field(
        default=0,
        description="Rows the baseline gave no prediction for (left out of the comparison).",
    )
    metrics: dict[str, float | None] = Field(description="The candidate's metrics.")
    baseline_metrics: dict[str, float | None] = Field(default_factory=dict)
    checks: list[dict[str, Any]] = Field(default_factory=list)
    slices: list[dict[str, Any]] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    ms_per_row: dict[str, float] = Field(
        default_factory=dict,
        description="Predict time a row (ms) by model URI, for the candidate and the "
        "baseline: later gate runs size their first predict call by it.",
    )
    cached: bool = Field(
        default=False, description="Predictions came from the cache (local or the store)."
    )
    mlflow_run_id: str | None = None
    mlflow_attempt: str | None = Field(
        default=None,
        description="Set while the MLflow run of this report is owed: the tag "
        "(releaser.gate_attempt) the run is logged under, so a re-run finds a run logged "
        "by a process killed before it recorded the run's id.",
    )
    warnings: list[str] = Field(default_factory=list)
    usage: dict[str, Any] | None = Field(
        default=None,
        description="From an LLM endpoint: the candidate's calls, tokens (mean, p95), cost "
        "per 1,000 requests and p95 latency per call.",
    )
    baseline_usage: dict[str, Any] | None = None
    budgets: list[dict[str, Any]] = Field(
        default_factory=list, description="Each budget: name, limit, value, passed."
    )
    judges: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per judge metric: the judge prompt and the version the candidate pins "
        "(both releases' answers are graded by it), calls, seconds, unreadable answers.",
    )
    prompts: str = Field(
        default="", description="The prompt versions the release pins, as name@version."
    )
    sample_variance: dict[str, float] = Field(
        default_factory=dict,
        description="With samples: k > 1, per metric, the mean variance of a row's score "
        "between its samples (the paired bootstrap resamples rows of sample means).",
    )

    def to_dict(self) -> dict[str, Any]:
        """The documented ``gate --json`` shape."""
        return self.model_dump(mode="json")

    def markdown(self) -> str:
        """The report as Markdown, fit for a GitHub step summary."""
        verdict = "passed" if self.passed else "FAILED"
        icon = "✅" if self.passed else "❌"
        base = f"`{self.baseline_id}`" if self.baseline_id else "none (thresholds only)"
        lines = [
            f"## {icon} Eval gate {verdict}: {self.service} `{self.release_id}`",
            "",
            f"- baseline: {base}",
            f"- golden set: `{self.dataset}` md5 `{self.dataset_md5}` ({self.rows} rows)",
            f"- rows whose predict raised: {self.errors}"
            + (f", not predicted: {self.not_predicted}" if self.not_predicted else "")
            + (
                f" (baseline: {self.baseline_errors}, left out of the comparison)"
                if self.baseline_errors
                else ""
            ),
            f"- run at {self.at}" + (" (cached predictions)" if self.cached else ""),
            "",
        ]
        if self.failures:
            lines += ["### Failures", "", *[f"- {f}" for f in self.failures], ""]
        lines += ["### Metrics", "", "| metric | candidate | baseline |", "| --- | --- | --- |"]
        for metric, value in self.metrics.items():
            lines.append(
                f"| {metric} | {_num(value)} | {_num(self.baseline_metrics.get(metric))} |"
            )
        lines += ["", "### Checks", "", "| check | value | limit | CI | result |"]
        lines.append("| --- | --- | --- | --- | --- |")
        for c in self.checks:
            if c["kind"] == "slice":
                continue
            ci = (
                f"[{_num(c['ci_low'])}, {_num(c['ci_high'])}]"
                if c.get("ci_low") is not None
                else ""
            )
            result = "pass" if c["passed"] else "**FAIL**"
            lines.append(
                f"| {c['name']} | {_num(c['value'])} | {_num(c['limit'])} | {ci} | {result} |"
            )
        if self.slices:
            lines += [
                "",
                "### Slices",
                "",
                "| slice | rows | candidate | baseline | change | result |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for s in self.slices:
                result = "pass" if s["passed"] else "**FAIL**"
                lines.append(
                    f"| {s['column']}={s['value']} | {s['n']} | {_num(s['candidate'])} | "
                    f"{_num(s['baseline'])} | {_num(s['delta'], signed=True)} | {result} |"
                )
        lines += self._llm_lines()
        if self.warnings:
            lines += ["", *[f"> warning: {w}" for w in self.warnings]]
        return "\n".join(lines) + "\n"

    def _llm_lines(self) -> list[str]:
        """Judges, usage and budgets, for a gate against an LLM endpoint."""
        lines: list[str] = []
        for metric, j in self.judges.items():
            lines += [
                "",
                f"- judge `{metric}`: prompt {j['prompt']} v{j['version']}, {j['calls']} "
                f"calls in {j['seconds']:.1f} s, unreadable answers {j['unreadable']}, "
                f"failed calls {j['failed']}",
            ]
        if self.usage is not None:
            u = self.usage
            cost = u.get("cost_per_1k_requests")
            lines += [
                "",
                f"- usage: {u['requests']} calls, mean {_num(u['mean_tokens'])} tokens, "
                f"p95 {_num(u['p95_tokens'])}, p95 latency {_num(u['p95_latency_ms'])} ms"
                + (f", cost {_num(cost)} per 1,000 requests" if cost is not None else ""),
            ]
        for metric, v in self.sample_variance.items():
            lines.append(f"- {metric}: mean variance between samples of a row {v:.4g}")
        if self.budgets:
            lines += ["", "### Budgets", "", "| budget | value | limit | result |"]
            lines.append("| --- | --- | --- | --- |")
            for b in self.budgets:
                result = "pass" if b["passed"] else "**FAIL**"
                lines.append(
                    f"| {b['name']} | {_num(b['value'])} | {_num(b['limit'])} | {result} |"
                )
        return lines


def _num(value: Any, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | int):
        return f"{value:+.4f}" if signed else f"{value:.4g}"
    return str(value)
