"""The gateway's Prometheus metrics, on a registry of its own.

Label children are cached per (variant, release, code), so the request path does one dict
look-up and an increment rather than prometheus-client's label resolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["GatewayMetrics"]

# Request latency buckets in seconds: sub-millisecond to a slow LLM call.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Counters and a latency histogram per variant and release, plus router health gauges."""

    def __init__(self, service: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.service = service
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "releaser_gateway_requests",
            "Requests proxied, by variant, release and response status code.",
            ["service", "variant", "release", "code"],
            registry=self.registry,
        )
        self._errors = Counter(
            "releaser_gateway_upstream_errors",
            "Requests counted as errors for their variant (upstream down, timeout, 5xx).",
            ["service", "variant", "release", "kind"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "releaser_gateway_request_duration_seconds",
            "Time from request to the last byte of the upstream's response.",
            ["service", "variant", "release"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._rejected = Counter(
            "releaser_gateway_rejected_requests",
            "Requests refused for breaking a limit (too many, too large, too slow), by reason; "
            "not counted against any variant.",
            ["service", "reason"],
            registry=self.registry,
        )
        self.snapshot_version = Gauge(
            "releaser_gateway_snapshot_version",
            "Store change token of the routing snapshot the gateway serves from.",
            ["service"],
            registry=self.registry,
        ).labels(service)
        self.store_reachable = Gauge(
            "releaser_gateway_store_reachable",
            "1 while the router can read the store, 0 while it serves its last snapshot.",
            ["service"],
            registry=self.registry,
        ).labels(service)
        self.route_unserved = Gauge(
            "releaser_gateway_route_unserved",
            "1 while the service's live route names a release no endpoint serves (the "
            "gateway keeps serving the previous route), else 0.",
            ["service"],
            registry=self.registry,
        ).labels(service)
        self._shadow = Counter(
            "releaser_gateway_shadow_requests",
            "Requests mirrored to the candidate in a shadow step, by outcome: compared, "
            "not_compared, error (5xx or no answer), timeout, skipped_busy (too many in "
            "flight: not mirrored).",
            ["service", "outcome"],
            registry=self.registry,
        )
        self._shadow_agreement = Counter(
            "releaser_gateway_shadow_agreement",
            "Sum of the agreement scores of compared mirrored answers (1 agree, 0 disagree); "
            "divided by the compared count it is the agreement rate.",
            ["service"],
            registry=self.registry,
        ).labels(service)
        self._shadow_latency = Histogram(
            "releaser_gateway_shadow_duration_seconds",
            "Time a mirrored request took the candidate, to the last byte of its answer.",
            ["service"],
            buckets=_BUCKETS,
            registry=self.registry,
        ).labels(service)
        self._request_children: dict[tuple[str, str, int], object] = {}
        self._latency_children: dict[tuple[str, str], object] = {}

    def observe(self, variant: str, release: str, code: int, seconds: float) -> None:
        """Count one response and its latency."""
        key = (variant, release, code)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self._requests.labels(
                self.service, variant, release, str(code)
            )
        counter.inc()  # type: ignore[attr-defined]
        lkey = (variant, release)
        histogram = self._latency_children.get(lkey)
        if histogram is None:
            histogram = self._latency_children[lkey] = self._latency.labels(
                self.service, variant, release
            )
        histogram.observe(seconds)  # type: ignore[attr-defined]

    def error(self, variant: str, release: str, kind: str) -> None:
        """Count one request that failed for its variant."""
        self._errors.labels(self.service, variant, release, kind).inc()

    def shadow(
        self, outcome: str, seconds: float | None = None, score: float | None = None
    ) -> None:
        """Count one mirrored request (or one not mirrored because too many were)."""
        self._shadow.labels(self.service, outcome).inc()
        if seconds is not None:
            self._shadow_latency.observe(seconds)
        if score is not None:
            self._shadow_agreement.inc(score)

    def rejected(self, reason: str) -> None:
        """Count one request refused for breaking a limit."""
        self._rejected.labels(self.service, reason).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
