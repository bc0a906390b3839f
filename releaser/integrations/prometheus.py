"""A small client of the Prometheus HTTP API: raw counter samples, bounded in size and time.

Raw samples, not ``increase()``: PromQL's ``increase()`` extrapolates to the window's edges
and so returns fractional, approximate counts; canary analysis wants the exact difference
of scraped values. An instant query of a range selector (``selector[Nms]`` at ``time=end``,
``/api/v1/query``) returns every scraped sample of every matching series in (end - N, end],
one series at a time, so counter resets can be found per series before anything is added
up (summing first, e.g. ``sum by (release)``, would hide a restart of one process behind
the growth of the others). ``/api/v1/query_range`` is not used: it evaluates at a fixed step
and so re-samples, and caps the points it returns.

The URL may carry ``user:password@`` (basic auth); messages show it as ``***@``. httpx is
imported inside the functions that use it, so importing this module stays light.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from releaser.core.prom_counts import Sample
from releaser.errors import BadInput, ExternalUnavailable
from releaser.store.redact import redact_url

__all__ = ["MAX_RESPONSE_BYTES", "PrometheusClient", "QueryFailed", "ResponseTooLarge", "Series"]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest answer read from Prometheus (a day of 15-second samples of 1,000 series is ~9 MB)."""


class QueryFailed(BadInput):
    """Prometheus refused a query (HTTP 400: the selector does not parse, or the like)."""


class ResponseTooLarge(QueryFailed):
    """The answer was larger than the client reads (ask for a shorter window)."""


@dataclass(frozen=True)
class Series:
    """One series: its labels and its samples in time order."""

    labels: dict[str, str]
    samples: list[Sample]


class PrometheusClient:
    """Queries one Prometheus server; every call is bounded by ``timeout_s`` and the size cap."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, max_bytes: int = MAX_RESPONSE_BYTES
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    @property
    def shown_url(self) -> str:
        """The URL as messages show it (credentials redacted)."""
        return redact_url(self.url)

    def raw_samples(self, selector: str, *, at: float, window_s: float) -> list[Series]:
        """Every sample of every series ``selector`` matches in (at - window_s, at]."""
        millis = max(1, math.ceil(window_s * 1000))
        data = self._query(f"{selector}[{millis}ms]", at, shown=selector)
        if data.get("resultType") != "matrix":
            raise QueryFailed(
                f"Prometheus answered the query {selector!r} with a {data.get('resultType')} "
                "instead of raw samples",
                hint="give a plain series selector (a metric name and label matchers)",
            )
        return [_series(item, selector) for item in data.get("result") or []]

    def check(self, selector: str, *, at: float) -> int:
        """How many series ``selector`` matches now (raises naming it when it is refused)."""
        data = self._query(selector, at, shown=selector)
        return len(data.get("result") or [])

    def _query(self, query: str, at: float, *, shown: str) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + self.timeout_s
        endpoint = f"{self.url}/api/v1/query"
        try:
            with (
                httpx.Client(timeout=self.timeout_s, trust_env=False) as client,
                client.stream(
                    "POST", endpoint, data={"query": query, "time": f"{at:.3f}"}
                ) as response,
            ):
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ResponseTooLarge(
                            f"the answer to the query {shown!r} is larger than "
                            f"{self.max_bytes:,} bytes",
                            hint="narrow the selector with label matchers",
                        )
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the answer took too long")
                status = response.status_code
        except httpx.HTTPError as exc:
            raise ExternalUnavailable(
                f"Prometheus at {self.shown_url} did not answer the query {shown!r} "
                f"({type(exc).__name__})",
                hint="check that Prometheus runs and the url in the service's 'metrics' is "
                "right; the rollout holds until it answers",
            ) from None
        payload = _json(bytes(body))
        if status == 400 or status == 422:
            raise QueryFailed(
                f"Prometheus refused the query {shown!r}: {_error_text(payload)}",
                hint="fix the selector in the service's 'metrics.prometheus'",
            )
        if status != 200 or not isinstance(payload, dict) or payload.get("status") != "success":
            raise ExternalUnavailable(
                f"Prometheus at {self.shown_url} failed the query {shown!r} "
                f"(HTTP {status}: {_error_text(payload)})",
                hint="the rollout holds until Prometheus answers",
            )
        data = payload.get("data")
        return data if isinstance(data, dict) else {}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _error_text(payload: Any) -> str:
    """Prometheus' own error message, cut short."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])[:300]
    return "no error message"


def _series(item: Any, selector: str) -> Series:
    try:
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        samples = [(float(t), float(v)) for t, v in item.get("values") or []]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ExternalUnavailable(
            f"Prometheus answered the query {selector!r} in an unexpected shape",
            hint="is the url a Prometheus server (its HTTP API under /api/v1)?",
        ) from None
    return Series(labels, samples)
