"""Schema migrations: applied in order, once, atomically, by concurrent openers safely."""

from __future__ import annotations

import pytest

from releaser.core.audit import chain_hash, payload_writes, verify_chain
from releaser.core.canonical import canonical_json
from releaser.core.stats_aggregates import LATENCY_BINS, LatencyHistogram, VariantStats
from releaser.core.unit_sketch import UnitSketch, unit_salt
from releaser.errors import ReleaserError
from releaser.store.base import MetricDelta, UnitDelta, Write
from releaser.store.migrations import SQLITE_MIGRATIONS, Migration, pending_migrations

from . import _workers
from .conftest import AT, Backend, draft, insert, shipped

METRICS_TABLES = (
    "rollout_metrics",
    "rollout_latency_bins",
    "rollout_token_bins",
    "metric_batches",
    "rollout_unit_sketches",
)


def extra(backend: Backend) -> Migration:
    """A harmless step after the shipped ones."""
    version = len(shipped(backend)) + 1
    return Migration(
        version, "extra table", ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (42)")
    )


def broken(backend: Backend) -> Migration:
    """A step after the shipped ones that fails half-way."""
    version = len(shipped(backend)) + 1
    return Migration(version, "broken", ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"))


def old_write(
    backend: Backend, seq: int, kind: str, key: str, value: dict, *, version: int = 1
) -> None:
    """Write a record and its chained event with SQL, as a releaser of schema v1 did."""
    text = canonical_json(value)
    cast = "CAST(? AS jsonb)" if backend.name == "postgres" else "?"
    if version == 1:
        backend.sql(
            "INSERT INTO records (kind, key, version, value, updated_at) "
            f"VALUES (?, ?, 1, {cast}, ?)",
            (kind, key, text, AT),
        )
    else:
        backend.sql(
            f"UPDATE records SET version = ?, value = {cast} WHERE kind = ? AND key = ?",
            (version, text, kind, key),
        )
    prev = str(backend.sql("SELECT hash FROM audit_head WHERE id = 1")[0][0])
    payload = draft(f"{kind}/{key}", "write").payload()
    digest = chain_hash(seq, prev, payload)
    backend.sql(
        "INSERT INTO audit_events (seq, prev_hash, hash, payload, subject) VALUES (?, ?, ?, ?, ?)",
        (seq, prev, digest, payload, f"{kind}/{key}"),
    )
    backend.sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))


def table_exists(backend: Backend, name: str) -> bool:
    """Whether ``name`` is a table in the store's schema."""
    if backend.name == "sqlite":
        rows = backend.sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        return bool(rows)
    return backend.sql("SELECT to_regclass(?)", (name,))[0][0] is not None


def versions(backend: Backend) -> list[int]:
    """The schema versions recorded as applied."""
    return [int(r[0]) for r in backend.sql("SELECT version FROM schema_version ORDER BY version")]


class TestMigrations:
    def test_fresh_store_gets_every_table(self, backend: Backend) -> None:
        backend.open().close()
        assert versions(backend) == [m.version for m in shipped(backend)] == [1, 2, 3, 4, 5, 6, 7]
        for table in ("records", "audit_events", "audit_head", "schema_version", *METRICS_TABLES):
            assert table_exists(backend, table)

    def test_upgrade_applies_only_new_steps(self, backend: Backend) -> None:
        old = backend.open(migrations=shipped(backend))
        insert(old, "release", "r", {"v": 1})
        old.close()

        step = extra(backend)
        for _ in range(2):  # the second open must not apply the extra step again
            new = backend.open(migrations=(*shipped(backend), step))
            try:
                assert new.get("release", "r") is not None
                assert verify_chain(new.raw_events(), head=new.audit_head()).ok
            finally:
                new.close()
        assert versions(backend) == [*(m.version for m in shipped(backend)), step.version]
        assert backend.sql("SELECT x FROM extra") == [(42,)]

        with pytest.raises(ReleaserError, match=f"schema version {step.version}"):
            backend.open(migrations=shipped(backend))

    def test_v1_store_migrates_in_place(self, backend: Backend) -> None:
        v1 = backend.open(migrations=shipped(backend)[:1])
        v1.close()
        # What a releaser of schema v1 wrote: records and their chained events, no links.
        old_write(backend, 1, "release", "r1", {"model": "m:3", "score": 7.2e246})
        old_write(backend, 2, "rollout", "svc", {"step": 0})
        old_write(backend, 3, "rollout", "svc", {"step": 1}, version=2)
        assert versions(backend) == [1]
        assert not any(table_exists(backend, t) for t in METRICS_TABLES)

        upgraded = backend.open()
        try:
            assert versions(backend) == [1, 2, 3, 4, 5, 6, 7]
            assert upgraded.get("rollout", "svc").value == {"step": 1}
            assert upgraded.get("release", "r1").value["model"] == "m:3"
            # One new entry vouches for the records written before they named their entry.
            events = list(upgraded.events())
            assert [e.seq for e in events] == [1, 2, 3, 4]
            anchor = events[-1]
            assert anchor.action == "store.anchor" and anchor.after == {"records": 2}
            writes = payload_writes(next(r for r in upgraded.raw_events() if r.seq == 4).payload)
            assert writes is not None and set(writes) == {("release", "r1"), ("rollout", "svc")}
            assert writes[("rollout", "svc")][0] == 2
            assert {link[4] for link in upgraded.record_links()} == {4}
            result = verify_chain(upgraded.raw_events(), head=upgraded.audit_head())
            assert result.ok and result.count == 4, result.problem
            # The new tables work, and the old state keeps moving.
            delta = MetricDelta("svc", 1, "candidate", VariantStats(requests=3))
            assert upgraded.add_metrics([delta], batch_id="b-1")
            assert not upgraded.add_metrics([delta], batch_id="b-1")
            assert upgraded.read_metrics("svc") == {(1, "candidate"): VariantStats(requests=3)}
            upgraded.commit([Write("rollout", "svc", {"step": 2}, 2)], draft())
            assert verify_chain(upgraded.raw_events(), head=upgraded.audit_head()).count == 5
            assert {link[4] for link in upgraded.record_links() if link[0] == "rollout"} == {5}
        finally:
            upgraded.close()
        backend.open().close()  # reopening applies nothing more
        assert versions(backend) == [1, 2, 3, 4, 5, 6, 7]

    def test_v5_metrics_read_unchanged_after_the_token_columns_arrive(
        self, backend: Backend
    ) -> None:
        backend.open(migrations=shipped(backend)[:5]).close()
        # What a releaser of schema v5 wrote: aggregates and latency bins, no token columns.
        backend.sql(
            "INSERT INTO rollout_metrics (rollout_id, step, variant, requests, errors, slow, "
            "slow_threshold_ms, quality_count, quality_sum, quality_sumsq, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("svc-1", 0, "candidate", 40, 3, 2, 250.0, 10, 7.5, 6.25, AT),
        )
        for bin_, count in ((41, 30), (48, 8), (60, 2)):
            backend.sql(
                "INSERT INTO rollout_latency_bins (rollout_id, step, variant, bin, count) "
                "VALUES (?, ?, ?, ?, ?)",
                ("svc-1", 0, "candidate", bin_, count),
            )
        counts = [0] * LATENCY_BINS
        counts[41], counts[48], counts[60] = 30, 8, 2
        before = VariantStats(
            requests=40,
            errors=3,
            slow=2,
            slow_threshold_ms=250.0,
            latency=LatencyHistogram(counts=tuple(counts)),
            quality_count=10,
            quality_sum=7.5,
            quality_sumsq=6.25,
        )
        upgraded = backend.open()
        try:
            assert versions(backend) == [1, 2, 3, 4, 5, 6, 7]
            assert upgraded.read_metrics("svc-1") == {(0, "candidate"): before}
            stats = upgraded.read_metrics("svc-1")[(0, "candidate")]
            assert stats.token_requests == 0 and stats.tokens_mean is None
            # Token counts add onto the old row; everything else stays as it was.
            tokens = VariantStats.of(errors=[False, False], tokens=[(100, 20), (300, 80)])
            assert upgraded.add_metrics([MetricDelta("svc-1", 0, "candidate", tokens)])
            after = upgraded.read_metrics("svc-1")[(0, "candidate")]
            assert after == before.merge(tokens)
            assert (after.prompt_tokens, after.completion_tokens) == (400, 100)
            assert after.tokens_sumsq == 120.0**2 + 380.0**2
            assert after.prompt_tokens_sumsq == 100.0**2 + 300.0**2
            assert after.completion_tokens_sumsq == 20.0**2 + 80.0**2
        finally:
            upgraded.close()

    def test_v6_store_gains_unit_sketches_and_keeps_its_metrics(self, backend: Backend) -> None:
        old = backend.open(migrations=shipped(backend)[:6])
        try:
            assert old.add_metrics(
                [MetricDelta("svc-1", 0, "candidate", VariantStats(requests=4))], batch_id="b-1"
            )
        finally:
            old.close()
        assert not table_exists(backend, "rollout_unit_sketches")
        upgraded = backend.open()
        try:
            assert versions(backend) == [1, 2, 3, 4, 5, 6, 7]
            assert upgraded.read_units("svc-1") == {}  # counted before units were
            assert upgraded.read_metrics("svc-1")[(0, "candidate")].requests == 4
            sketch = UnitSketch()
            sketch.add(unit_salt(1, "svc-1"), "someone")
            delta = MetricDelta(
                "svc-1", 0, "candidate", VariantStats(requests=1), (UnitDelta("pilots", 1, sketch),)
            )
            assert not upgraded.add_metrics([delta], batch_id="b-1")  # the old id is kept
            assert upgraded.add_metrics([delta], batch_id="b-2")
            assert upgraded.read_units("svc-1") == {(0, "candidate", "pilots"): (1, sketch)}
            assert upgraded.read_metrics("svc-1")[(0, "candidate")].requests == 5
        finally:
            upgraded.close()

    def test_failed_step_leaves_no_trace(self, backend: Backend) -> None:
        backend.open().close()
        with pytest.raises(ReleaserError):
            backend.open(migrations=(*shipped(backend), broken(backend)))
        assert versions(backend) == [m.version for m in shipped(backend)]
        assert not table_exists(backend, "extra")
        # The store still opens with the migrations it had.
        backend.open().close()

    @pytest.mark.slow
    def test_concurrent_openers_migrate_once(self, backend: Backend) -> None:
        outcomes = _workers.run_processes(_workers.open_at_once, backend.url, 4)
        assert [status for _, status, _ in outcomes] == ["ok"] * 4, outcomes
        assert versions(backend) == [m.version for m in shipped(backend)]
        assert backend.sql("SELECT count(*) FROM audit_head") == [(1,)]


def test_versions_must_run_one_two_three() -> None:
    last = len(SQLITE_MIGRATIONS)
    skipping = Migration(last + 2, "skips one", ())
    following = Migration(last + 1, "follows", ())
    with pytest.raises(ValueError, match="1, 2, 3"):
        pending_migrations([following], 0, url="x")
    with pytest.raises(ValueError, match="1, 2, 3"):
        pending_migrations((*SQLITE_MIGRATIONS, skipping), 0, url="x")
    assert pending_migrations((*SQLITE_MIGRATIONS, following), last, url="x") == [following]
    assert pending_migrations(SQLITE_MIGRATIONS, last, url="x") == []
    assert pending_migrations(SQLITE_MIGRATIONS, 1, url="x") == list(SQLITE_MIGRATIONS[1:])
