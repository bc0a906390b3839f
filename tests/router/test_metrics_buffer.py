"""record() -> flush -> store.read_metrics: exact totals, odd values, failures, the cap."""

from __future__ import annotations

import logging
import math
import threading

import pytest

from releaser.core.stats_aggregates import LATENCY_BINS, LatencyHistogram, VariantStats, latency_bin
from releaser.errors import ExternalUnavailable
from releaser.router import Assignment, Router
from releaser.router.metrics_buffer import MetricsBuffer
from releaser.store.base import Store

from .conftest import (
    LostConfirmation,
    StoreBackend,
    make_route,
    put_route,
    rollout_route,
    wait_until,
)

BASELINE = Assignment("svc", "rel-stable", "baseline", 2, "ro-1")
CANDIDATE = Assignment("svc", "rel-cand", "candidate", 2, "ro-1")


def test_recorded_requests_reach_the_store_exactly(backend: StoreBackend, store: Store) -> None:
    put_route(store, rollout_route(percent=50, step=2))
    latencies = [0.4, 1.0, 3.7, 12.5, 99.9, 250.0, 1800.0, 100_000.0, 250_000.0]
    scores = [0.0, 0.25, 0.5, 0.75, 1.0]  # exact in binary: sums compare exactly
    with Router(backend.url, flush_interval_ms=60_000) as router:
        units = [f"user-{i}" for i in range(4000)]
        by_variant: dict[str, list[int]] = {"baseline": [], "candidate": []}
        for i, unit in enumerate(units):
            assignment = router.assign("svc", unit)
            router.record(
                assignment,
                latency_ms=latencies[i % len(latencies)],
                error=i % 7 == 0,
                score=scores[i % len(scores)] if i % 3 else None,
            )
            by_variant[assignment.variant].append(i)
        assert router.flush() == 2
        assert router.flush() == 0  # nothing new
        counts = router.metrics_counts()
    assert counts.flushed_requests == len(units) and counts.pending_requests == 0
    stored = store.read_metrics("ro-1")
    assert sorted(stored) == [(2, "baseline"), (2, "candidate")]
    for variant, indices in by_variant.items():
        expected = VariantStats.of(
            errors=[i % 7 == 0 for i in indices],
            latencies_ms=[latencies[i % len(latencies)] for i in indices],
            scores=[scores[i % len(scores)] for i in indices if i % 3],
        )
        assert stored[(2, variant)] == expected, variant


def test_background_flush_and_close_flush(backend: StoreBackend, store: Store) -> None:
    put_route(store, rollout_route(percent=100))
    router = Router(backend.url, flush_interval_ms=20)
    try:
        assignment = router.assign("svc", "u1")
        for _ in range(10):
            router.record(assignment, latency_ms=5.0)
        assert wait_until(lambda: store.read_metrics("ro-1").get((0, "candidate")) is not None)
        router.record(assignment, error=True)
    finally:
        router.close()  # flushes what the thread has not written yet
    stats = store.read_metrics("ro-1")[(0, "candidate")]
    assert (stats.requests, stats.errors, stats.latency.total) == (11, 1, 10)


def test_stable_traffic_is_not_recorded(sqlite_backend: StoreBackend, sqlite_store: Store) -> None:
    put_route(sqlite_store, make_route())
    with Router(sqlite_backend.url) as router:
        router.record(router.assign("svc", "u1"), latency_ms=3.0, score=0.5)
        assert router.flush() == 0
        assert router.metrics_counts().pending_requests == 0


def test_odd_values_are_clamped_or_ignored_never_raised(sqlite_store: Store) -> None:
    buffer = MetricsBuffer()
    buffer.add(CANDIDATE, latency_ms=math.inf, score=1.7)  # clamped to 1
    buffer.add(CANDIDATE, latency_ms=-3.0, score=-0.2)  # clamped to 0
    buffer.add(CANDIDATE, latency_ms=math.nan, score=math.nan)  # NaN score ignored
    buffer.add(CANDIDATE, latency_ms="slow", score="good")  # type: ignore[arg-type]
    buffer.add(CANDIDATE, latency_ms=20, score=1)  # ints are numbers
    counts = buffer.counts()
    assert (counts.clamped_scores, counts.rejected_values) == (2, 3)
    buffer.flush(sqlite_store)
    stats = sqlite_store.read_metrics("ro-1")[(2, "candidate")]
    bins = [0] * LATENCY_BINS
    bins[LATENCY_BINS - 1] += 1
    bins[0] += 2
    bins[latency_bin(20)] += 1
    assert stats == VariantStats(
        requests=5,
        latency=LatencyHistogram(counts=tuple(bins)),
        quality_count=3,
        quality_sum=2.0,
        quality_sumsq=2.0,
    )


def test_inlined_latency_bins_match_latency_bin(sqlite_store: Store) -> None:
    values = [1.0, 1.122, 1.1220184543019633, 9.999999, 10.0, 31.6227766, 99_999.99999, 99_999.0]
    values += [1.0 + i * 0.37 for i in range(5000)] + [10 ** (i / 20) for i in range(101)]
    buffer = MetricsBuffer()
    expected = [0] * LATENCY_BINS
    for ms in values:
        buffer.add(BASELINE, latency_ms=ms)
        expected[latency_bin(ms)] += 1
    buffer.flush(sqlite_store)
    assert sqlite_store.read_metrics("ro-1")[(2, "baseline")].latency.counts == tuple(expected)


def test_failed_flush_keeps_counts_for_the_next_one(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    buffer = MetricsBuffer()
    for _ in range(3):
        buffer.add(CANDIDATE, latency_ms=2.0)
    broken = sqlite_backend.open()
    broken.close()
    with pytest.raises(Exception, match="closed"):
        buffer.flush(broken)
    buffer.add(CANDIDATE, latency_ms=2.0)
    buffer.add(BASELINE, error=True)
    assert buffer.counts().pending_requests == 5
    # The failed batch (one delta) is re-sent under its id, then the newer counts (two).
    assert buffer.flush(sqlite_store) == 3
    stored = sqlite_store.read_metrics("ro-1")
    assert stored[(2, "candidate")].requests == 4
    assert stored[(2, "baseline")].errors == 1
    assert buffer.counts().pending_requests == 0


def test_pending_counts_are_capped(
    sqlite_backend: StoreBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="releaser.router")
    buffer = MetricsBuffer(max_pending_keys=1)
    broken = sqlite_backend.open()
    broken.close()
    buffer.add(BASELINE)
    buffer.add(CANDIDATE)
    buffer.add(CANDIDATE)
    with pytest.raises(Exception, match="closed"):
        buffer.flush(broken)
    counts = buffer.counts()
    assert counts.pending_requests == 2  # the newest key is kept
    assert counts.dropped_requests == 1
    assert "dropped the oldest 1 (1 requests)" in caplog.text


def test_concurrent_recording_loses_nothing(sqlite_store: Store) -> None:
    buffer = MetricsBuffer()
    per_thread = 20_000

    def hammer() -> None:
        for i in range(per_thread):
            buffer.add(CANDIDATE if i % 2 else BASELINE, latency_ms=3.0, score=0.5)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    flushes = 0
    while any(t.is_alive() for t in threads):
        flushes += buffer.flush(sqlite_store) > 0
    for thread in threads:
        thread.join()
    buffer.flush(sqlite_store)
    stored = sqlite_store.read_metrics("ro-1")
    total = sum(s.requests for s in stored.values())
    assert total == 4 * per_thread
    assert all(s.quality_count == s.requests for s in stored.values())


def test_a_batch_whose_commit_was_not_confirmed_is_counted_once(
    backend: StoreBackend, store: Store
) -> None:
    buffer = MetricsBuffer()
    for _ in range(5):
        buffer.add(CANDIDATE, latency_ms=2.0)
    buffer.add(BASELINE, error=True)
    flaky = LostConfirmation(store)
    with pytest.raises(ExternalUnavailable):
        buffer.flush(flaky)  # type: ignore[arg-type]
    assert store.read_metrics("ro-1")[(2, "candidate")].requests == 5  # it did land
    buffer.add(CANDIDATE, latency_ms=3.0)
    assert buffer.counts().pending_requests == 7  # the router cannot know it landed
    buffer.flush(flaky)  # type: ignore[arg-type]
    stored = store.read_metrics("ro-1")
    assert stored[(2, "candidate")].requests == 6  # 5 once, then the new one
    assert stored[(2, "baseline")].requests == 1
    assert buffer.counts().pending_requests == 0
    assert buffer.counts().flushed_requests == 7


def test_capping_trims_an_unconfirmed_batch_without_double_counting(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    buffer = MetricsBuffer(max_pending_keys=1)
    buffer.add(BASELINE)
    buffer.add(CANDIDATE)
    flaky = LostConfirmation(sqlite_store)
    with pytest.raises(ExternalUnavailable):
        buffer.flush(flaky)  # type: ignore[arg-type]
    # Both keys landed; the cap trimmed the kept copy to one key, under the same id.
    assert buffer.counts().dropped_requests == 1
    buffer.flush(sqlite_store)
    stored = sqlite_store.read_metrics("ro-1")
    assert (stored[(2, "baseline")].requests, stored[(2, "candidate")].requests) == (1, 1)


def test_token_counts_reach_the_store_exactly(backend: StoreBackend, store: Store) -> None:
    put_route(store, rollout_route(percent=50, step=2))
    usage = [(120, 30), (0, 0), (2_048, 512), (99_000, 999), (150_000, 4_000), (7, 0)]
    with Router(backend.url, flush_interval_ms=60_000) as router:
        by_variant: dict[str, list[int]] = {"baseline": [], "candidate": []}
        for i in range(3000):
            assignment = router.assign("svc", f"user-{i}")
            prompt, completion = usage[i % len(usage)]
            if i % 4 == 0:
                router.record(assignment, latency_ms=12.0)  # no tokens reported
            else:
                router.record(
                    assignment,
                    latency_ms=12.0,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                )
            by_variant[assignment.variant].append(i)
        router.flush()
        assert router.metrics_counts().rejected_values == 0
    stored = store.read_metrics("ro-1")
    for variant, indices in by_variant.items():
        expected = VariantStats.of(
            errors=[False] * len(indices),
            latencies_ms=[12.0] * len(indices),
            tokens=[usage[i % len(usage)] for i in indices if i % 4],
        )
        assert stored[(2, variant)] == expected, variant


def test_bad_token_counts_are_rejected_never_raised(sqlite_store: Store) -> None:
    buffer = MetricsBuffer()
    buffer.add(CANDIDATE, prompt_tokens=100)  # completion left out: 0
    buffer.add(CANDIDATE, completion_tokens=40.0)  # type: ignore[arg-type]  # a whole float
    buffer.add(CANDIDATE, prompt_tokens=-5, completion_tokens=10)  # negative: rejected
    buffer.add(CANDIDATE, prompt_tokens=3.5)  # type: ignore[arg-type]  # not whole: rejected
    buffer.add(CANDIDATE, prompt_tokens="12", completion_tokens=math.nan)  # type: ignore[arg-type]
    buffer.add(CANDIDATE, prompt_tokens=True)  # type: ignore[arg-type]  # a bool is no count
    buffer.add(CANDIDATE, prompt_tokens=10**10)  # above the bound: rejected
    buffer.add(CANDIDATE, latency_ms="x", prompt_tokens=5, completion_tokens=6)  # type: ignore[arg-type]
    buffer.add(CANDIDATE, score=2.0, prompt_tokens=1, completion_tokens=1)  # clamped, counted
    counts = buffer.counts()
    assert (counts.clamped_scores, counts.rejected_values) == (1, 7)
    buffer.flush(sqlite_store)
    stats = sqlite_store.read_metrics("ro-1")[(2, "candidate")]
    assert stats.requests == 9
    assert (stats.token_requests, stats.prompt_tokens, stats.completion_tokens) == (4, 106, 47)
    assert stats.tokens_sumsq == 100.0**2 + 40.0**2 + 11.0**2 + 2.0**2
    assert stats.tokens.total == 4 and stats.quality_count == 1


def test_token_bins_match_the_latency_layout(sqlite_store: Store) -> None:
    values = [0, 1, 2, 9, 10, 11, 99, 100, 101, 999, 1_000, 1_001, 31_623, 99_999, 100_000]
    values += list(range(0, 5000, 7)) + [10**6, 10**9]
    buffer = MetricsBuffer()
    expected = [0] * LATENCY_BINS
    for n in values:
        buffer.add(BASELINE, prompt_tokens=n)
        expected[latency_bin(n)] += 1
    buffer.flush(sqlite_store)
    stored = sqlite_store.read_metrics("ro-1")[(2, "baseline")]
    assert stored.tokens.counts == tuple(expected)
    assert stored.tokens_sumsq == float(sum(n * n for n in values))


def test_a_batch_with_tokens_whose_commit_was_not_confirmed_is_counted_once(
    backend: StoreBackend, store: Store
) -> None:
    buffer = MetricsBuffer()
    for _ in range(5):
        buffer.add(CANDIDATE, prompt_tokens=300, completion_tokens=50)
    flaky = LostConfirmation(store)
    with pytest.raises(ExternalUnavailable):
        buffer.flush(flaky)  # type: ignore[arg-type]
    buffer.add(CANDIDATE, prompt_tokens=1, completion_tokens=2)
    buffer.flush(flaky)  # type: ignore[arg-type]
    stats = store.read_metrics("ro-1")[(2, "candidate")]
    assert (stats.token_requests, stats.prompt_tokens, stats.completion_tokens) == (6, 1501, 252)
