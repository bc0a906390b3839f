"""Rollout metrics and change waits: part of the Store Protocol suite, on every backend."""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from typing import Any

import pytest

from releaser.core.stats_aggregates import LATENCY_BINS, LatencyHistogram, VariantStats
from releaser.errors import BadInput, ReleaserError
from releaser.store.base import MetricDelta, Store, Write

from . import _workers
from .conftest import Backend, draft, insert

WORKERS = 4


def stats(**kw: Any) -> VariantStats:
    """Aggregates of a few requests, latencies and scores (keyword args go to ``of``)."""
    return VariantStats.of(**{"errors": [False, True, False], **kw})


def everything(store: Store, *rollouts: str) -> tuple[Any, ...]:
    """All a refused batch must leave untouched: metrics, audit head and change token."""
    return (
        tuple(store.read_metrics(r) for r in rollouts),
        store.audit_head(),
        store.change_token(),
    )


def merged(*parts: VariantStats) -> VariantStats:
    """The parts added up, as the core merges them."""
    total = VariantStats()
    for part in parts:
        total = total.merge(part)
    return total


class TestMetrics:
    def test_nothing_reported_reads_empty(self, store: Store) -> None:
        assert store.read_metrics("ro-1") == {}
        store.add_metrics([])
        assert store.read_metrics("ro-1") == {}

    def test_batches_add_up_per_step_and_variant(self, store: Store) -> None:
        a = stats(latencies_ms=[3.0, 40.0, 900.0], scores=[0.25, 1.0], slow_threshold_ms=300.5)
        b = stats(errors=[True], latencies_ms=[0.2], scores=[0.1])
        c = VariantStats.of(errors=[False] * 5, latencies_ms=[120_000.0, 7.5, 7.6, 7.7, 8.0])
        store.add_metrics(
            [
                MetricDelta("ro-1", 1, "candidate", a),
                MetricDelta("ro-1", 0, "baseline", b),
                MetricDelta("ro-1", 1, "candidate", b),  # same key twice in one batch
                MetricDelta("ro-2", 0, "baseline", c),
            ]
        )
        store.add_metrics(
            [MetricDelta("ro-1", 1, "candidate", c), MetricDelta("ro-1", 0, "baseline", a)]
        )

        got = store.read_metrics("ro-1")
        assert list(got) == [(0, "baseline"), (1, "candidate")]
        assert got[(1, "candidate")] == merged(a, b, c)
        assert got[(0, "baseline")] == merged(b, a)
        assert got[(1, "candidate")].requests == 3 + 1 + 5
        assert got[(1, "candidate")].latency.total == 3 + 1 + 5
        assert got[(1, "candidate")].slow_threshold_ms == 300.5
        assert store.read_metrics("ro-2") == {(0, "baseline"): c}
        assert store.read_metrics("ro") == {}

    def test_every_latency_bin_round_trips(self, store: Store) -> None:
        counts = tuple(range(1, LATENCY_BINS + 1))
        delta = VariantStats(requests=sum(counts), latency=LatencyHistogram(counts=counts))
        store.add_metrics([MetricDelta("ro", 0, "baseline", delta)] * 2)
        got = store.read_metrics("ro")[(0, "baseline")]
        assert got.latency.counts == tuple(2 * n for n in counts)

    def test_metrics_are_not_audited_and_do_not_move_the_token(self, store: Store) -> None:
        insert(store, "rollout", "ro", {"step": 0})
        head, token = store.audit_head(), store.change_token()
        store.add_metrics([MetricDelta("ro", 0, "candidate", stats())])
        assert store.read_metrics("ro")[(0, "candidate")].requests == 3
        assert store.audit_head() == head
        assert store.change_token() == token
        assert len(list(store.raw_events())) == 1

    def test_the_first_slow_threshold_stays(self, store: Store) -> None:
        key = ("ro", 0, "candidate")
        store.add_metrics([MetricDelta(*key, stats())])
        store.add_metrics([MetricDelta(*key, stats(latencies_ms=[500.0], slow_threshold_ms=200))])
        store.add_metrics([MetricDelta(*key, stats())])  # no threshold: keeps the stored one
        got = store.read_metrics("ro")[(0, "candidate")]
        assert (got.requests, got.slow, got.slow_threshold_ms) == (9, 1, 200.0)

        before = everything(store, "ro", "other")
        with pytest.raises(BadInput, match="200.0 ms.*250.0 ms") as info:
            store.add_metrics(
                [
                    MetricDelta("other", 0, "baseline", stats()),
                    MetricDelta(*key, stats(slow_threshold_ms=250)),
                ]
            )
        assert info.value.hint and "one threshold" in info.value.hint
        assert everything(store, "ro", "other") == before

    def test_two_thresholds_in_one_batch_are_refused(self, store: Store) -> None:
        with pytest.raises(BadInput, match="slow requests were counted over 100.0 ms"):
            store.add_metrics(
                [
                    MetricDelta("ro", 2, "baseline", stats(slow_threshold_ms=100)),
                    MetricDelta("ro", 2, "baseline", stats(slow_threshold_ms=101)),
                ]
            )
        assert store.read_metrics("ro") == {}

    def test_a_batch_id_is_added_once(self, store: Store) -> None:
        batch = [
            MetricDelta("ro", 0, "candidate", stats()),
            MetricDelta("ro", 0, "baseline", stats()),
        ]
        assert store.add_metrics(batch, batch_id="b-1") is True
        once = everything(store, "ro")
        assert store.add_metrics(batch, batch_id="b-1") is False  # a re-send
        assert everything(store, "ro") == once
        assert store.add_metrics(batch, batch_id="b-2") is True
        assert store.read_metrics("ro")[(0, "candidate")] == merged(stats(), stats())
        assert store.add_metrics(batch) is True  # no id: always added
        assert store.read_metrics("ro")[(0, "candidate")].requests == 9

    def test_a_refused_batch_does_not_use_up_its_id(self, store: Store) -> None:
        good = MetricDelta("ro", 0, "candidate", stats())
        bad = MetricDelta("ro", -1, "candidate", stats())
        with pytest.raises(BadInput):
            store.add_metrics([good, bad], batch_id="b-1")
        assert store.read_metrics("ro") == {}
        assert store.add_metrics([good], batch_id="b-1") is True
        assert store.read_metrics("ro")[(0, "candidate")].requests == 3

    @pytest.mark.parametrize("batch_id", ["", "x" * 129, "tab\there", "ünï", 7])
    def test_bad_batch_ids_are_refused(self, store: Store, batch_id: Any) -> None:
        before = everything(store, "ro")
        with pytest.raises(BadInput, match="batch id"):
            store.add_metrics([MetricDelta("ro", 0, "baseline", stats())], batch_id=batch_id)
        assert everything(store, "ro") == before

    @pytest.mark.parametrize(
        ("delta", "match"),
        [
            (MetricDelta("ro", 0, "canary", stats()), "unknown variant 'canary'"),
            (MetricDelta("ro", 0, "Baseline", stats()), "unknown variant"),
            (MetricDelta("ro", -1, "baseline", stats()), "step -1 is not a step index"),
            (MetricDelta("ro", True, "baseline", stats()), "step True"),
            (MetricDelta("", 0, "baseline", stats()), "rollout_id must be a non-empty"),
            (
                MetricDelta("ro", 0, "baseline", VariantStats.model_construct(requests=-1)),
                "requests: Input should be greater than or equal to 0",
            ),
            (
                MetricDelta(
                    "ro",
                    0,
                    "baseline",
                    VariantStats.model_construct(
                        latency=LatencyHistogram.model_construct(
                            counts=(-5,) + (0,) * (LATENCY_BINS - 1)
                        )
                    ),
                ),
                "non-negative counts",
            ),
            (
                MetricDelta("ro", 0, "baseline", VariantStats.model_construct(errors=2)),
                "errors .2. exceed requests .0.",
            ),
            (
                MetricDelta(
                    "ro", 0, "baseline", VariantStats.model_construct(quality_sum=float("nan"))
                ),
                "quality_sum",
            ),
            (
                MetricDelta("ro", 0, "baseline", VariantStats.model_construct(requests=2**60)),
                "a count above",
            ),
            (MetricDelta("ro", 0, "baseline", {"requests": 1}), "not a VariantStats"),  # type: ignore[arg-type]
            (("ro", 0, "baseline", stats()), "not a MetricDelta"),
        ],
    )
    def test_bad_input_writes_nothing(self, store: Store, delta: Any, match: str) -> None:
        store.add_metrics([MetricDelta("ro", 0, "baseline", stats())])
        before = everything(store, "ro")
        good = MetricDelta("ro", 1, "candidate", stats())
        with pytest.raises(BadInput, match=match):
            store.add_metrics([good, delta, good])
        assert everything(store, "ro") == before

    def test_threads_sharing_one_store_lose_no_count(self, store: Store) -> None:
        barrier = threading.Barrier(4)
        failures: list[BaseException] = []

        def flush() -> None:
            try:
                barrier.wait(timeout=30)
                for _ in range(50):
                    store.add_metrics([MetricDelta("ro", 0, "candidate", VariantStats(requests=1))])
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=flush) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert failures == []
        assert store.read_metrics("ro")[(0, "candidate")].requests == 200

    @pytest.mark.slow
    def test_concurrent_flushing_processes_lose_no_count(
        self, store: Store, backend: Backend
    ) -> None:
        outcomes = _workers.run_processes(_workers.flush_metrics, backend.url, WORKERS)
        assert [status for _, status, _ in outcomes] == ["ok"] * WORKERS, outcomes

        expected = merged(
            *(_workers.one_request(w, i) for w in range(WORKERS) for i in range(_workers.FLUSHES))
        )
        assert expected.requests == WORKERS * _workers.FLUSHES == 2000
        got = store.read_metrics(_workers.METRICS_ROLLOUT)
        assert list(got) == [(0, "baseline"), (0, "candidate"), (1, "baseline"), (1, "candidate")]
        for key, aggregate in got.items():
            assert aggregate.requests == 2000, key
            assert aggregate.latency.total == 2000, key
            assert aggregate == expected, key
        # Metrics are not state changes: the audit chain saw none of the 2000 flushes.
        assert store.audit_head()[0] == 0


class TestWaitForChange:
    def test_timeout_returns_the_same_token(self, store: Store) -> None:
        insert(store, "rollout", "svc", {"step": 0})
        token = store.change_token()
        assert store.wait_for_change(token, 0.05) == token
        assert store.wait_for_change(token, 0) == token
        # Metrics do not count as changes.
        store.add_metrics([MetricDelta("svc", 0, "baseline", stats())])
        assert store.wait_for_change(token, 0.05) == token

    def test_a_stale_token_returns_at_once(self, store: Store) -> None:
        insert(store, "rollout", "svc", {"step": 0})
        # A 10 s timeout: returning the current token proves it did not time out.
        assert store.wait_for_change(0, 10) == store.change_token() == 1

    def test_wakes_on_a_commit_from_another_thread(self, store: Store, backend: Backend) -> None:
        other = backend.open()
        try:
            token = store.change_token()
            woke: list[int] = []
            waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(token, 10)))
            waiter.start()
            time.sleep(0.2)  # let the waiter block first; the result is right either way
            event = other.commit([Write("rollout", "svc", {"step": 0}, 0)], draft())
            waiter.join(timeout=30)
            # The timeout would have returned the old token; a new one means the wait woke.
            assert woke == [event.seq] and event.seq != token
            # Waiting again from the new token blocks until the next commit.
            again: list[int] = []
            waiter = threading.Thread(
                target=lambda: again.append(store.wait_for_change(woke[0], 10))
            )
            waiter.start()
            time.sleep(0.2)
            second = other.commit([], draft())
            waiter.join(timeout=30)
            assert again == [second.seq]
        finally:
            other.close()

    @pytest.mark.slow
    def test_wakes_on_a_commit_from_another_process(self, store: Store, backend: Backend) -> None:
        ctx = multiprocessing.get_context("spawn")
        results: Any = ctx.Queue()
        proc = ctx.Process(target=_workers.wait_then_report, args=(backend.url, 10.0, results))
        with _workers.importable_here():
            proc.start()
        try:
            status, token = results.get(timeout=120)
            assert status == "ready", token
            time.sleep(0.2)  # let the child block first; the result is right either way
            event = store.commit([], draft())
            assert results.get(timeout=60) == ("woke", event.seq)
            assert event.seq != token
        except queue.Empty:
            raise AssertionError(
                f"the waiting process did not report (exit {proc.exitcode})"
            ) from None
        finally:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
            results.close()
            results.join_thread()
        assert proc.exitcode == 0

    def test_closed_store_refuses_to_wait(self, store: Store) -> None:
        assert store.wait_for_change(-1, 1) == 0
        store.close()
        with pytest.raises(ReleaserError, match="closed"):
            store.wait_for_change(0, 0.05)

    def test_closing_the_store_ends_a_wait(self, store: Store) -> None:
        outcome: list[BaseException | int] = []

        def wait() -> None:
            try:
                outcome.append(store.wait_for_change(store.change_token(), 60))
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)
        store.close()
        waiter.join(timeout=10)
        # The 60 s wait ended long before its timeout, with a clear error.
        assert not waiter.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], ReleaserError), outcome
        assert "closed" in str(outcome[0])
