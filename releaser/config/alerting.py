"""The ``alerts:`` and ``notifications:`` parts of releaser.yaml.

``alerts`` says how ``releaser alerts render`` turns SLOs into Prometheus rules:
which metrics to read, how to select a service's series, and where the runbook
lives. ``notifications`` lists the webhooks told about rollout transitions.
Neither is part of what a release *is*: they live at the top of the file, so a
changed webhook or runbook URL never changes a release's config hash.

A webhook's URL may itself be a secret (a Slack incoming-webhook URL is one), so
it can be given through an environment variable (``url_env``); a token for a
header is only ever named (``token_env``), never written in the file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from releaser.config._common import Issue, Slug, _duplicates, _Model, problem, raise_issues

__all__ = [
    "DEFAULT_LATENCY_BUCKETS_S",
    "NOTIFY_EVENTS",
    "AlertSettings",
    "Webhook",
]

DEFAULT_LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""The gateway's latency histogram buckets (``releaser serve``), in seconds."""

NOTIFY_EVENTS: tuple[str, ...] = (
    "rollout.started",
    "rollout.step-advanced",
    "rollout.held",
    "rollout.resumed",
    "rollout.promoted",
    "rollout.rolled-back",
    "rollout.aborted",
    "guard.breach",
    "effects.pending",
    "drill.failed",
)
"""Every event a webhook can be sent (``events:`` filters on them)."""

_METRIC = r"^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HEADER = r"^[A-Za-z0-9-]{1,64}$"
# One or more label matchers, as PromQL writes them inside braces.
_MATCHER = re.compile(r'\s*[a-zA-Z_]\w*\s*(=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*')


def _selector_problem(value: str) -> str | None:
    """Why ``value`` is not a comma-separated list of PromQL label matchers, if it is not."""
    rest = value.replace("{service}", "x")
    if not rest.strip():
        return None
    for part in _split_matchers(rest):
        if not _MATCHER.fullmatch(part):
            return f'{part.strip()!r} is not a label matcher such as service="{{service}}"'
    return None


def _split_matchers(text: str) -> list[str]:
    """Split on commas outside quoted strings."""
    parts, current, quoted, escaped = [], "", False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return parts


class AlertSettings(_Model):
    """How ``releaser alerts render`` writes Prometheus rules from a service's SLOs."""

    runbook_base_url: str = Field(
        default="runbooks",
        max_length=2048,
        pattern=r"^\S+$",
        description="Where the generated runbooks are published; each alert's runbook_url "
        "is '<runbook_base_url>/<service>.md#<alert>'. Default 'runbooks' (the folder "
        "'releaser runbook' writes, relative to the repository); set it to e.g. "
        "'https://github.com/ORG/REPO/blob/main/runbooks' so the link opens from an alert.",
    )
    requests_metric: str = Field(
        default="releaser_gateway_requests_total",
        pattern=_METRIC,
        description="Counter of requests with a status 'code' label (the gateway's by default).",
    )
    error_codes: str = Field(
        default="5..",
        min_length=1,
        max_length=200,
        description="Regular expression on the 'code' label of requests that count as errors.",
    )
    latency_histogram: str = Field(
        default="releaser_gateway_request_duration_seconds",
        pattern=_METRIC,
        description="Histogram of request durations in seconds (its _bucket and _count series).",
    )
    latency_buckets_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_LATENCY_BUCKETS_S),
        min_length=1,
        max_length=200,
        description="The histogram's bucket bounds, in seconds (default: the gateway's).",
    )
    selector: str = Field(
        default='service="{service}"',
        max_length=1000,
        description="Label matchers that select one service's series; '{service}' becomes "
        "the service name.",
    )

    @field_validator("selector")
    @classmethod
    def _matchers(cls, value: str) -> str:
        found = _selector_problem(value)
        if found is not None:
            raise problem(found, hint='for example: service="{service}", job="gateway"')
        return value

    @field_validator("error_codes")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise problem(f"not a valid regular expression: {exc}") from None
        if '"' in value or "\\" in value:
            raise problem("quotes and backslashes are not allowed here", hint="e.g. 5..|429")
        return value

    @field_validator("latency_buckets_s")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(b <= 0 for b in value) or any(
            b >= a for a, b in zip(value[1:], value, strict=False)
        ):
            raise problem("bucket bounds must be positive and increasing")
        return value


class Webhook(_Model):
    """One webhook told about rollout transitions, as generic JSON or as a Slack message."""

    name: Slug = Field(description="Name shown in warnings and the audit log (not the URL).")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/\S*)?$",
        max_length=2048,
        description="Where to POST. A URL that is itself a secret (Slack's) goes in url_env.",
    )
    url_env: str | None = Field(
        default=None, pattern=_ENV_NAME, description="Environment variable holding the URL."
    )
    format: Literal["json", "slack"] = Field(
        default="json", description="json: releaser's payload; slack: {text, blocks}."
    )
    events: list[str] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS),
        min_length=1,
        description="Events to send (default: all).",
    )
    services: list[str] = Field(
        default_factory=list, description="Services to send events of (default: all)."
    )
    timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Longest time one event's delivery may take, retries included; webhooks "
        "are posted in parallel, so a command waits at most the largest of these.",
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="Retries on 5xx, 429 and lost connections."
    )
    header: str | None = Field(
        default=None,
        pattern=_HEADER,
        description="Header to send a token in, e.g. Authorization (needs token_env).",
    )
    token_env: str | None = Field(
        default=None,
        pattern=_ENV_NAME,
        description="Environment variable holding the header's value (never the value).",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is not None and "@" in value.split("://", 1)[1].split("/", 1)[0]:
            raise problem(
                "the URL holds credentials (user:password@): they would be in the file",
                hint="give the URL through url_env, or a token through header and token_env",
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Webhook:
        issues: list[Issue] = []
        if (self.url is None) == (self.url_env is None):
            issues.append(Issue((), "give 'url' or 'url_env', not both"))
        if (self.header is None) != (self.token_env is None):
            issues.append(Issue(("header",), "'header' and 'token_env' go together"))
        issues += [
            Issue(("events", i), f"unknown event {e!r}", f"events: {', '.join(NOTIFY_EVENTS)}")
            for i, e in enumerate(self.events)
            if e not in NOTIFY_EVENTS
        ]
        issues += [
            Issue(("events", i), f"{e!r} is listed twice") for i, e in _duplicates(self.events)
        ]
        raise_issues(issues)
        return self
