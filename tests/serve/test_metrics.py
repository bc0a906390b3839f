"""The gateway's request counts print as prometheus-client's own Counter and Histogram would."""

from __future__ import annotations

import random
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from releaser.serve.metrics import _BUCKETS, GatewayMetrics

SERVICE = "case-triage"


def _samples(text: bytes, prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name.startswith(prefix) and not sample.name.endswith("_created"):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _reference(observations: list[tuple[str, str, int, float]]) -> bytes:
    """The same observations through prometheus-client's Counter and Histogram."""
    registry = CollectorRegistry()
    requests = Counter(
        "releaser_gateway_requests",
        "Requests proxied, by variant, release and response status code.",
        ["service", "variant", "release", "code"],
        registry=registry,
    )
    latency = Histogram(
        "releaser_gateway_request_duration_seconds",
        "Time from request to the last byte of the upstream's response.",
        ["service", "variant", "release"],
        buckets=_BUCKETS,
        registry=registry,
    )
    for variant, release, code, seconds in observations:
        requests.labels(SERVICE, variant, release, str(code)).inc()
        latency.labels(SERVICE, variant, release).observe(seconds)
    return generate_latest(registry)


def test_counts_and_buckets_match_prometheus_client_for_random_requests() -> None:
    rng = random.Random(11)
    observations = []
    for _ in range(5000):
        variant = rng.choice(["baseline", "candidate", "stable"])
        release = rng.choice(["38a2", "91f0", ""])
        code = rng.choice([200, 200, 200, 404, 502])
        # Bounds exactly, between them, and past the largest: "le" holds its own bound.
        seconds = rng.choice([*_BUCKETS, rng.uniform(0, 0.02), rng.expovariate(0.5), 60.0])
        observations.append((variant, release, code, seconds))
    metrics = GatewayMetrics(SERVICE)
    for observation in observations:
        metrics.observe(*observation)
    ours, _ = metrics.exposition()
    theirs = _reference(observations)
    for prefix in ("releaser_gateway_requests", "releaser_gateway_request_duration_seconds"):
        expected = _samples(theirs, prefix)
        got = _samples(ours, prefix)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if key[0].endswith("_sum"):  # added up in another order
                assert abs(got[key] - value) < 1e-6
            else:
                assert got[key] == value


def test_each_series_has_its_created_time() -> None:
    metrics = GatewayMetrics(SERVICE)
    metrics.observe("candidate", "91f0", 200, 0.003)
    text = metrics.exposition()[0].decode()
    assert 'releaser_gateway_requests_created{code="200",release="91f0"' in text
    assert 'releaser_gateway_request_duration_seconds_created{release="91f0"' in text
    assert "# TYPE releaser_gateway_requests_total counter" in text
    assert "# TYPE releaser_gateway_request_duration_seconds histogram" in text


def test_a_scrape_from_another_thread_while_requests_are_counted_never_fails() -> None:
    metrics = GatewayMetrics(SERVICE)
    stop = threading.Event()
    failures: list[BaseException] = []

    def scrape() -> None:
        while not stop.is_set():
            try:
                metrics.exposition()
            except BaseException as exc:  # reported below
                failures.append(exc)
                return

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for i in range(20000):  # new series keep appearing while the scraper copies them
            metrics.observe("baseline", f"r{i % 500}", 200 + i % 3, 0.001)
    finally:
        stop.set()
        scraper.join()
    assert failures == []
    final = _samples(metrics.exposition()[0], "releaser_gateway_requests_total")
    assert sum(final.values()) == 20000
