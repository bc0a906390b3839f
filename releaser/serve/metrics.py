"""The gateway's Prometheus metrics, on a registry of its own.

Every proxied request is counted, with its latency, by the event loop that served it. Those
two (``releaser_gateway_requests_total`` and ``releaser_gateway_request_duration_seconds``)
are kept here as plain counts, without prometheus-client's locks and label resolution, and
read by a collector of their own when ``/metrics`` is scraped; the text is what
prometheus-client's own Counter and Histogram print (``_total``, ``_created``, cumulative
``_bucket`` with ``le``, ``_count``, ``_sum``). Why: counting one request through
prometheus-client's Counter and Histogram (three locked increments, a bucket scan and
observability checks) took 1.30 us timed alone, against 0.33 us here, of the gateway
process's 42-45 us a proxied request on ``bench/bench_gateway.py``. Only the event loop
writes these counts, so no increment is lost; ``/metrics`` is served on that loop too, and a
scrape from another thread reads copies (it may see a request counted before its latency).
The rarer counters (errors, refusals, shadow traffic) and the router's gauges stay
prometheus-client's.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = ["GatewayMetrics"]

# Request latency buckets in seconds: sub-millisecond to a slow LLM call.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """Counters and a latency histogram per variant and release, plus router health gauges."""

    def __init__(self, service: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.service = service
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self._errors = Counter(
            "releaser_gateway_upstream_errors",
            "Requests counted as errors for their variant (upstream down, timeout, 5xx).",
            ["service", "variant", "release", "kind"],
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
        # (variant, release, code) -> [count, created]; (variant, release) -> one count per
        # bucket (the last for past the largest bound), then the sum of seconds, then created.
        self._requests: dict[tuple[str, str, int], list[float]] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}
        self.registry.register(_RequestCollector(self))

    def observe(self, variant: str, release: str, code: int, seconds: float) -> None:
        """Count one response and its latency."""
        counted = self._requests.get((variant, release, code))
        if counted is None:
            counted = self._requests[(variant, release, code)] = [0, time.time()]
        counted[0] += 1
        cells = self._latency.get((variant, release))
        if cells is None:
            cells = self._latency[(variant, release)] = [0.0] * (len(_BUCKETS) + 2)
            cells.append(time.time())
        cells[bisect_left(_BUCKETS, seconds)] += 1  # buckets are "le": a bound holds its own
        cells[-2] += seconds

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


class _RequestCollector:
    """prometheus-client's view of the plain request counts, read at each scrape."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.samples import Sample

        metrics = self._metrics
        service = metrics.service
        # list() copies in one step under the GIL: the event loop may add a key meanwhile.
        requests = CounterMetricFamily(
            "releaser_gateway_requests",
            "Requests proxied, by variant, release and response status code.",
            labels=["service", "variant", "release", "code"],
        )
        for (variant, release, code), (count, created) in list(metrics._requests.items()):
            requests.add_metric([service, variant, release, str(code)], count, created=created)
        yield requests
        name = "releaser_gateway_request_duration_seconds"
        latency = HistogramMetricFamily(
            name,
            "Time from request to the last byte of the upstream's response.",
            labels=["service", "variant", "release"],
        )
        created_samples = []
        for (variant, release), cells in list(metrics._latency.items()):
            cells = list(cells)
            buckets: list[tuple[str, float]] = []
            total = 0.0
            for bound, count in zip(_BOUNDS, cells[:-2], strict=True):
                total += count
                buckets.append((bound, total))
            latency.add_metric([service, variant, release], buckets, cells[-2])
            labels = {"service": service, "variant": variant, "release": release}
            created_samples.append(Sample(f"{name}_created", labels, cells[-1]))
        latency.samples.extend(created_samples)
        yield latency

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the registry need not call collect() to learn the names."""
        return iter(())


# The bucket labels as prometheus-client prints them, +Inf last.
_BOUNDS = (*(repr(float(bound)) for bound in _BUCKETS), "+Inf")
