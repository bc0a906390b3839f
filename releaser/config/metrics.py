"""A service's ``metrics:`` part of releaser.yaml: where canary analysis reads its counts.

``source: router`` (the default) reads the counts the router SDK and the gateway write to
the store; ``source: prometheus`` reads counter and histogram increases from a Prometheus
server (see ``docs/concepts/metrics.md``). The defaults of :class:`PrometheusMetrics` are
the series ``releaser serve`` exports.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from releaser.config._common import _Model, problem

__all__ = ["MetricsSpec", "PrometheusMetrics", "QualitySeries"]

_SELECTOR = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*(\{.*\})?$|^\{.+\}$", re.DOTALL)
_MAX_SELECTOR = 2048
_UNITS = {"seconds": 1000.0, "milliseconds": 1.0, "microseconds": 0.001}


def _selector(value: str, field: str) -> str:
    """A series selector: a metric name and/or label matchers, no functions, no range."""
    text = value.strip()
    if len(text) > _MAX_SELECTOR or not _SELECTOR.match(text) or text.endswith("]"):
        raise problem(
            f"{field} must be a series selector such as "
            "'my_requests_total{job=\"model\"}' (a metric name and label matchers; "
            "no functions, no [range])",
            hint="releaser adds the range and the per-release grouping itself",
        )
    return text


class QualitySeries(_Model):
    """Counters of quality scores in [0, 1]: their sum and their count (and sum of squares)."""

    sum: str = Field(description="Selector of the counter of summed scores.")
    count: str = Field(description="Selector of the counter of scores.")
    sumsq: str | None = Field(
        default=None,
        description="Selector of the counter of squared scores; without it scores are taken "
        "at their largest variance (as if 0 or 1).",
    )

    @field_validator("sum", "count", "sumsq")
    @classmethod
    def _selectors(cls, value: str | None) -> str | None:
        return None if value is None else _selector(value, "a quality series")


class PrometheusMetrics(_Model):
    """Where and what to read from Prometheus; ``{service}`` in a selector is the service."""

    url: str = Field(
        default="http://127.0.0.1:9090",
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Base URL of the Prometheus HTTP API (user:password@ allowed; never shown).",
    )
    requests: str = Field(
        default='releaser_gateway_requests_total{service="{service}"}',
        description="Selector of the counter of requests served.",
    )
    errors: str = Field(
        default='releaser_gateway_upstream_errors_total{service="{service}"}',
        description="Selector of the counter of failed requests (e.g. requests with "
        'code=~"5.."). No series means no error yet.',
    )
    latency: str | None = Field(
        default='releaser_gateway_request_duration_seconds_bucket{service="{service}"}',
        description="Selector of a histogram's _bucket series (with an 'le' label); null "
        "to compare without latency.",
    )
    latency_unit: Literal["seconds", "milliseconds", "microseconds"] = Field(
        default="seconds", description="Unit of the histogram's 'le' bounds."
    )
    quality: QualitySeries | None = Field(default=None, description="Optional quality scores.")
    release_label: str = Field(
        default="release",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Label whose value is the release id serving the request.",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=120, description="Per query.")
    lookback_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="How far before a step's start to look for the counter's value then "
        "(at least two scrape intervals).",
    )

    @field_validator("requests", "errors", "latency")
    @classmethod
    def _selectors(cls, value: str | None) -> str | None:
        return None if value is None else _selector(value, "a metrics selector")

    @model_validator(mode="after")
    def _latency_is_buckets(self) -> Self:
        if self.latency is not None and not self.latency.split("{", 1)[0].endswith("_bucket"):
            raise problem(
                "latency must select a histogram's _bucket series (with an 'le' label)",
                hint="e.g. 'http_request_duration_seconds_bucket{job=\"model\"}', or null",
            )
        return self

    @property
    def scale_to_ms(self) -> float:
        """Factor from the histogram's unit to milliseconds."""
        return _UNITS[self.latency_unit]

    def selector(self, which: str, service: str) -> str:
        """A selector with ``{service}`` filled in."""
        value = getattr(self, which) if "." not in which else getattr(self.quality, which[8:])
        return str(value).replace("{service}", service)


class MetricsSpec(_Model):
    """Which source of counts canary analysis reads."""

    source: Literal["router", "prometheus"] = Field(
        default="router",
        description="router: counts the router and gateway write to the store; prometheus: "
        "counter increases read from Prometheus.",
    )
    prometheus: PrometheusMetrics | None = Field(
        default=None, description="The Prometheus server and series (source: prometheus)."
    )

    @property
    def server(self) -> PrometheusMetrics:
        """The Prometheus settings; every field has a default fitting ``releaser serve``."""
        return self.prometheus or PrometheusMetrics()
