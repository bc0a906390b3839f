"""The Store Protocol suite: every backend must pass every test here."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from releaser.core.audit import GENESIS_HASH, EventDraft, chain_hash, verify_chain
from releaser.core.stats_aggregates import LATENCY_BINS, LatencyHistogram, VariantStats
from releaser.errors import BadInput, ReleaserError, StateConflict
from releaser.store.base import MetricDelta, Record, Store, Write

from .conftest import AT, Backend, draft, insert, shipped


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a failed commit must leave untouched."""
    records = tuple(store.list("rollout")) + tuple(store.list("release"))
    return records, tuple(store.raw_events()), store.audit_head(), store.change_token()


class TestRecords:
    def test_implements_protocol(self, store: Store, backend: Backend) -> None:
        assert isinstance(store, Store)
        assert store.url == backend.url

    def test_insert_get_list(self, store: Store) -> None:
        event = store.commit(
            [
                Write("release", "svc-b", {"n": 2}, 0),
                Write("release", "svc-a", {"n": 1}, 0),
                Write("release", "other", {"n": 3}, 0),
                Write("rollout", "svc-a", {"step": 0}, 0),
            ],
            draft("release/svc-a", "create", at="2025-05-05T00:00:00Z"),
        )
        assert event.seq == 1
        got = store.get("release", "svc-a")
        assert got == Record("release", "svc-a", 1, {"n": 1}, "2025-05-05T00:00:00Z")
        assert store.get("release", "missing") is None
        assert store.get("rollout", "svc-b") is None
        assert [r.key for r in store.list("release")] == ["other", "svc-a", "svc-b"]
        assert [r.key for r in store.list("release", prefix="svc-")] == ["svc-a", "svc-b"]
        assert store.list("release", prefix="zzz") == []
        assert store.list("nothing") == []
        assert [r.value for r in store.list("rollout")] == [{"step": 0}]

    def test_list_can_omit_paths_the_database_leaves_out(self, store: Store) -> None:
        value = {"id": "r1", "content": {"config": {"big": [1, 2]}, "model": {"v": 1}}, "n": 0.5}
        insert(store, "release", "r1", value)
        insert(store, "release", "r2", {"id": "r2"})  # paths it does not have: unchanged
        got = store.list("release", omit=("content.config", "n", "absent.path"))
        assert [r.value for r in got] == [
            {"id": "r1", "content": {"model": {"v": 1}}},
            {"id": "r2"},
        ]
        assert store.list("release")[0].value == value  # nothing stored changed
        for bad in ("a'b", "a..b", "", "a.b; DROP TABLE records"):
            with pytest.raises(ValueError, match="cannot omit"):
                store.list("release", omit=(bad,))

    def test_prefix_is_literal_not_a_pattern(self, store: Store) -> None:
        insert(store, "release", "a%b", {})
        insert(store, "release", "a_c", {})
        insert(store, "release", "axb", {})
        assert [r.key for r in store.list("release", prefix="a%")] == ["a%b"]
        assert [r.key for r in store.list("release", prefix="a_")] == ["a_c"]

    def test_values_round_trip(self, store: Store) -> None:
        value = {
            "text": "café ✓ 名前",
            "float": 0.1,
            "big": 2**53 + 1,
            "neg": -7,
            "flags": [True, False, None],
            "nested": {"z": {"y": []}, "a": {}},
        }
        insert(store, "release", "r", value)
        record = store.get("release", "r")
        assert record is not None
        assert record.value == value

    def test_floats_round_trip_exactly(self, store: Store) -> None:
        # The gate compares stored predictions with its own to skip rewriting them, and
        # audit verify compares each record with the digest its entry wrote: a float must
        # come back as the same float, over the whole double range (PostgreSQL keeps the
        # text as written, json not jsonb, so 7.2e+246 is not turned into a 247-digit int).
        import math
        import random
        import sys

        rng = random.Random(7)
        floats = [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(2000)]
        floats += [5e-324, 2.2250738585072014e-308, 1e-310, 1e-300, 1e300, sys.float_info.max]
        floats += [1e16, 7.2e246, -1e300, -0.0, 0.0, 9.999999999999998e15, 1 / 3, -2.5e-7]
        insert(store, "release", "f", {"latency_ms": floats, "big": 1e16, "int": 10**16})
        record = store.get("release", "f")
        assert record is not None
        back = record.value["latency_ms"]
        assert back == floats and all(type(b) is float for b in back)
        assert [math.copysign(1, b) for b in back] == [math.copysign(1, f) for f in floats]
        assert type(record.value["big"]) is float and type(record.value["int"]) is int
        listed = {r.key: r for r in store.list("release")}["f"]
        assert listed.value["latency_ms"] == floats

    def test_nan_and_infinity_are_refused_naming_the_record(self, store: Store) -> None:
        for bad in (float("nan"), float("inf"), float("-inf")):
            with pytest.raises(BadInput, match="record release/x: value cannot be stored"):
                insert(store, "release", "x", {"score": bad})
        assert store.get("release", "x") is None and store.audit_head()[0] == 0

    def test_cas_update_bumps_version_and_time(self, store: Store) -> None:
        insert(store, "rollout", "svc", {"step": 0})
        store.commit([Write("rollout", "svc", {"step": 1}, 1)], draft(at="2025-06-01T00:00:00Z"))
        store.commit([Write("rollout", "svc", {"step": 2}, 2)], draft(at="2025-06-02T00:00:00Z"))
        assert store.get("rollout", "svc") == Record(
            "rollout", "svc", 3, {"step": 2}, "2025-06-02T00:00:00Z"
        )


class TestConflicts:
    def test_stale_version_changes_nothing(self, store: Store) -> None:
        insert(store, "rollout", "svc", {"step": 0})
        store.commit([Write("rollout", "svc", {"step": 1}, 1)], draft())
        before = snapshot(store)
        with pytest.raises(StateConflict) as info:
            store.commit([Write("rollout", "svc", {"step": 9}, 1)], draft())
        message = str(info.value)
        assert "rollout/svc" in message
        assert "expected version 1" in message and "found version 2" in message
        assert info.value.hint and "re-read" in info.value.hint
        assert snapshot(store) == before

    def test_insert_of_existing_changes_nothing(self, store: Store) -> None:
        insert(store, "release", "r1", {"v": 1})
        before = snapshot(store)
        with pytest.raises(StateConflict, match="release/r1 already exists"):
            store.commit([Write("release", "r1", {"v": 2}, 0)], draft("release/r1"))
        assert snapshot(store) == before

    def test_update_of_missing_record(self, store: Store) -> None:
        before = snapshot(store)
        with pytest.raises(StateConflict, match="expected version 4, it does not exist"):
            store.commit([Write("rollout", "ghost", {}, 4)], draft())
        assert snapshot(store) == before

    def test_one_conflict_applies_no_write_and_no_event(self, store: Store) -> None:
        insert(store, "rollout", "a", {"step": 0})
        insert(store, "rollout", "b", {"step": 0})
        before = snapshot(store)
        with pytest.raises(StateConflict, match="rollout/b"):
            store.commit(
                [
                    Write("rollout", "a", {"step": 1}, 1),
                    Write("release", "new", {"x": 1}, 0),
                    Write("rollout", "b", {"step": 1}, 7),
                ],
                draft(),
            )
        assert snapshot(store) == before
        assert store.get("release", "new") is None
        # The store is still usable after the rolled-back transaction.
        store.commit([Write("rollout", "a", {"step": 1}, 1)], draft())
        assert store.audit_head()[0] == 3

    @pytest.mark.parametrize(
        ("writes", "match"),
        [
            ([Write("r", "k", {}, 0), Write("r", "k", {}, 0)], "written twice"),
            ([Write("r", "k", {"x": math.nan}, 0)], "cannot be stored as JSON"),
            ([Write("r", "k", {"x": object()}, 0)], "cannot be stored as JSON"),
            ([Write("r", "k", {}, -1)], "negative"),
            ([Write("", "k", {}, 0)], "must not be empty"),
        ],
    )
    def test_bad_writes_are_refused_before_writing(
        self, store: Store, writes: list[Write], match: str
    ) -> None:
        before = snapshot(store)
        with pytest.raises(BadInput, match=match):
            store.commit(writes, draft())
        assert snapshot(store) == before

    def test_unserialisable_event_is_refused(self, store: Store) -> None:
        before = snapshot(store)
        with pytest.raises(BadInput, match="audit event"):
            store.commit([Write("r", "k", {}, 0)], draft(context={"bad": {1, 2}}))
        assert snapshot(store) == before

    def test_threads_sharing_one_store_race_safely(self, store: Store) -> None:
        insert(store, "rollout", "svc", {"step": 0})
        barrier = threading.Barrier(6)
        outcomes: list[str] = []

        def attempt(i: int) -> None:
            barrier.wait(timeout=30)
            try:
                store.commit([Write("rollout", "svc", {"by": i}, 1)], draft(actor=f"t{i}"))
                outcomes.append("ok")
            except StateConflict:
                outcomes.append("conflict")

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["conflict"] * 5 + ["ok"]
        assert verify_chain(store.raw_events(), head=store.audit_head()).count == 2


class TestAuditChain:
    def test_commit_returns_the_chained_event(self, store: Store) -> None:
        first = store.commit([Write("release", "r1", {}, 0)], draft("release/r1", "create"))
        second = store.commit(
            [],
            EventDraft(
                actor="alice",
                action="approve",
                subject="release/r1",
                at=AT,
                before={"approved": False},
                after={"approved": True},
                reason="looks good",
                context={"run": "https://ci/1"},
            ),
        )
        assert (first.seq, first.prev_hash) == (1, GENESIS_HASH)
        assert (second.seq, second.prev_hash) == (2, first.hash)
        assert second.actor == "alice" and second.reason == "looks good"
        assert second.after == {"approved": True} and second.context == {"run": "https://ci/1"}
        raw = list(store.raw_events())
        assert raw[1].hash == second.hash == chain_hash(2, first.hash, raw[1].payload)
        assert store.audit_head() == (2, second.hash)
        assert list(store.events()) == [first, second]

    def test_empty_store(self, store: Store) -> None:
        assert store.audit_head() == (0, GENESIS_HASH)
        assert list(store.events()) == []
        assert list(store.raw_events()) == []
        assert verify_chain(store.raw_events(), head=store.audit_head()).ok

    def test_events_filtering(self, store: Store) -> None:
        for i in range(1, 7):
            subject = "rollout/a" if i % 2 else "rollout/b"
            store.commit([], draft(subject, f"act{i}"))
        assert [e.seq for e in store.events()] == [1, 2, 3, 4, 5, 6]
        assert [e.seq for e in store.events(after_seq=4)] == [5, 6]
        assert [e.seq for e in store.events(limit=2)] == [1, 2]
        assert [e.seq for e in store.events(limit=0)] == []
        assert [e.seq for e in store.events(subject="rollout/a")] == [1, 3, 5]
        assert [e.seq for e in store.events(subject="rollout/b", after_seq=2, limit=1)] == [4]
        assert [e.action for e in store.events(subject="rollout/b")] == ["act2", "act4", "act6"]
        assert list(store.events(subject="nobody")) == []
        assert list(store.events(after_seq=6)) == []

    def test_reads_page_through_batches(self, backend: Backend) -> None:
        small = backend.open(batch_size=3)
        try:
            for i in range(10):
                small.commit([], draft("s/even" if i % 2 == 0 else "s/odd"))
            assert [e.seq for e in small.raw_events()] == list(range(1, 11))
            assert [e.seq for e in small.events(after_seq=2)] == list(range(3, 11))
            assert [e.seq for e in small.events(limit=7)] == list(range(1, 8))
            assert [e.seq for e in small.events(subject="s/odd", limit=4)] == [2, 4, 6, 8]
            assert verify_chain(small.raw_events(), head=small.audit_head()).count == 10
        finally:
            small.close()

    def test_raw_events_verify(self, store: Store) -> None:
        insert(store, "rollout", "svc", {"step": 0})
        for version in range(1, 5):
            store.commit([Write("rollout", "svc", {"step": version}, version)], draft())
        result = verify_chain(store.raw_events(), head=store.audit_head())
        assert result.ok, result.problem
        assert result.count == 5
        assert result.head_hash == store.audit_head()[1]

    def test_change_token_moves_on_every_commit_from_anyone(
        self, store: Store, backend: Backend
    ) -> None:
        other = backend.open()
        try:
            start = store.change_token()
            assert other.change_token() == start
            other.commit([Write("release", "r", {}, 0)], draft())
            seen_by_first = store.change_token()
            assert seen_by_first != start
            with pytest.raises(StateConflict):
                other.commit([Write("release", "r", {}, 0)], draft())
            assert store.change_token() == seen_by_first
            store.commit([], draft())
            assert other.change_token() not in (start, seen_by_first)
        finally:
            other.close()


class TestLifecycle:
    def test_reopen_keeps_data_and_does_not_remigrate(self, store: Store, backend: Backend) -> None:
        insert(store, "release", "r", {"v": 1})
        store.close()
        for _ in range(2):
            again = backend.open()
            try:
                assert again.get("release", "r") is not None
                assert verify_chain(again.raw_events(), head=again.audit_head()).ok
            finally:
                again.close()
        applied = backend.sql("SELECT version FROM schema_version ORDER BY version")
        assert applied == [(m.version,) for m in shipped(backend)]

    def test_newer_schema_is_refused(self, store: Store, backend: Backend) -> None:
        insert(store, "release", "r", {"v": 1})
        store.close()
        backend.sql("INSERT INTO schema_version (version, description) VALUES (?, ?)", (99, "x"))
        with pytest.raises(ReleaserError) as info:
            backend.open()
        assert type(info.value) is ReleaserError
        assert "schema version 99" in str(info.value)
        assert info.value.hint is not None and "upgrade releaser" in info.value.hint

    def test_closed_store_refuses_use(self, store: Store) -> None:
        store.close()
        store.close()  # closing twice is harmless
        with pytest.raises(ReleaserError, match="closed"):
            store.get("release", "r")


class TestAuditListing:
    """What ``audit log`` reads without decoding events agrees with the decoded events."""

    def test_summaries_and_spliced_json_match_the_decoded_events(self, store: Store) -> None:
        import json

        from releaser.core.audit import event_json

        insert(store, "rollout", "svc", {"step": 0})
        odd = 'q"uote,"reason":"x" \u202e é \n'
        store.commit(
            [Write("rollout", "svc", {"step": 1, "why": odd}, 1)],
            draft(
                "rollout/svc",
                reason=odd,
                actor=odd,
                before={"reason": "nested", "at": "nested"},
                after=True,
                context={"subject": "nested"},
            ),
            also=[draft("other", "note"), draft("rollout/svc", "note", reason=None)],
        )
        events = list(store.events())
        summaries = store.event_summaries()
        assert summaries == [(e.seq, e.at, e.actor, e.action, e.subject, e.reason) for e in events]
        assert store.event_summaries(after_seq=1, subject="rollout/svc") == [
            s for s in summaries if s[0] > 1 and s[4] == "rollout/svc"
        ]
        assert [r.seq for r in store.raw_events(after_seq=2, subject="rollout/svc")] == [4]
        for raw, event in zip(store.raw_events(), events, strict=True):
            text = event_json(raw.seq, raw.prev_hash, raw.hash, raw.payload)
            assert text is not None and json.loads(text) == event.to_dict()


def _tokens(pairs: list[tuple[int, int]], **kw: Any) -> VariantStats:
    """Aggregates of requests that reported (prompt, completion) tokens."""
    return VariantStats.of(errors=[False] * len(pairs), tokens=pairs, **kw)


class TestTokenMetrics:
    """Token sums and the histogram of tokens per request (schema v6), on every backend."""

    def test_token_sums_and_bins_add_up_per_key(self, store: Store) -> None:
        a = _tokens([(100, 20), (0, 0), (2_000, 500)], latencies_ms=[5.0, 6.0, 7.0])
        b = _tokens([(150_000, 1)])
        plain = VariantStats.of(errors=[True, False])  # requests without tokens
        store.add_metrics(
            [
                MetricDelta("ro", 0, "candidate", a),
                MetricDelta("ro", 0, "candidate", plain),
                MetricDelta("ro", 0, "baseline", b),
            ]
        )
        store.add_metrics([MetricDelta("ro", 0, "candidate", b)])
        got = store.read_metrics("ro")
        candidate = got[(0, "candidate")]
        assert candidate == a.merge(plain).merge(b)
        assert candidate.requests == 6 and candidate.token_requests == 4
        assert (candidate.prompt_tokens, candidate.completion_tokens) == (152_100, 521)
        assert candidate.tokens_sumsq == 120.0**2 + 2_500.0**2 + 150_001.0**2
        assert candidate.tokens.counts[0] == 1 and candidate.tokens.counts[-1] == 1
        assert candidate.tokens_mean == (152_100 + 521) / 4
        assert got[(0, "baseline")] == b

    def test_every_token_bin_round_trips(self, store: Store) -> None:
        counts = tuple(range(1, LATENCY_BINS + 1))
        delta = VariantStats(
            requests=sum(counts),
            token_requests=sum(counts),
            prompt_tokens=10**12,
            tokens_sumsq=10**24 / sum(counts) * 2,
            tokens=LatencyHistogram(counts=counts),
        )
        store.add_metrics([MetricDelta("ro", 1, "baseline", delta)] * 2)
        got = store.read_metrics("ro")[(1, "baseline")]
        assert got.tokens.counts == tuple(2 * n for n in counts)
        assert got.prompt_tokens == 2 * 10**12 and got.latency.total == 0

    def test_a_batch_with_tokens_is_added_once(self, store: Store) -> None:
        delta = MetricDelta("ro", 0, "candidate", _tokens([(10, 5), (300, 40)]))
        assert store.add_metrics([delta], batch_id="tokens-1")
        assert not store.add_metrics([delta], batch_id="tokens-1")  # a re-send after a lost ack
        got = store.read_metrics("ro")[(0, "candidate")]
        assert got.token_requests == 2 and got.prompt_tokens == 310
        assert got.tokens.total == 2

    @pytest.mark.parametrize(
        ("bad", "match"),
        [
            (VariantStats.model_construct(prompt_tokens=-1), "prompt_tokens"),
            (VariantStats.model_construct(prompt_tokens=5), "no request reported tokens"),
            (
                VariantStats.model_construct(
                    requests=1, token_requests=1, completion_tokens=10, tokens_sumsq=1e9
                ),
                "token sums are not those of non-negative counts",
            ),
            (
                VariantStats.model_construct(
                    tokens=LatencyHistogram.model_construct(counts=(-1,) + (0,) * 101)
                ),
                "non-negative counts",
            ),
            (
                VariantStats.model_construct(
                    requests=1, token_requests=1, prompt_tokens=2**60, tokens_sumsq=2.0**120
                ),
                "a count above",
            ),
        ],
    )
    def test_bad_token_sums_write_nothing(self, store: Store, bad: Any, match: str) -> None:
        good = MetricDelta("ro", 0, "candidate", _tokens([(1, 1)]))
        store.add_metrics([good])
        before = store.read_metrics("ro")
        with pytest.raises(BadInput, match=match):
            store.add_metrics([good, MetricDelta("ro", 0, "baseline", bad)], batch_id="bad-1")
        assert store.read_metrics("ro") == before
        assert store.add_metrics([good], batch_id="bad-1")  # the refused batch kept no id

    def test_prune_removes_token_bins_and_keeps_the_sums(self, store: Store) -> None:
        delta = _tokens([(100, 20), (4_000, 900)], latencies_ms=[3.0, 9.0])
        store.add_metrics([MetricDelta("old", 0, "candidate", delta)])
        store.add_metrics([MetricDelta("new", 0, "candidate", delta)])
        store.prune([], draft("store", "store.prune"), histograms_of=["old"])
        old = store.read_metrics("old")[(0, "candidate")]
        assert not any(old.tokens.counts) and not any(old.latency.counts)
        assert (old.token_requests, old.prompt_tokens, old.tokens_sumsq) == (
            2,
            4_100,
            delta.tokens_sumsq,
        )
        assert store.read_metrics("new")[(0, "candidate")] == delta
