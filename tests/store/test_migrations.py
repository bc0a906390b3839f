"""Schema migrations: applied in order, once, atomically, by concurrent openers safely."""

from __future__ import annotations

import pytest

from releaser.core.audit import verify_chain
from releaser.core.stats_aggregates import VariantStats
from releaser.errors import ReleaserError
from releaser.store.base import MetricDelta, Write
from releaser.store.migrations import SQLITE_MIGRATIONS, Migration, pending_migrations

from . import _workers
from .conftest import Backend, draft, insert, shipped

METRICS_TABLES = ("rollout_metrics", "rollout_latency_bins", "metric_batches")


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
        assert versions(backend) == [m.version for m in shipped(backend)] == [1, 2, 3]
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
        try:
            insert(v1, "release", "r1", {"model": "m:3"})
            insert(v1, "rollout", "svc", {"step": 0})
            v1.commit([Write("rollout", "svc", {"step": 1}, 1)], draft("rollout/svc", "advance"))
            records_before = v1.list("release") + v1.list("rollout")
            events_before = list(v1.events())
            head_before = v1.audit_head()
        finally:
            v1.close()
        assert versions(backend) == [1]
        assert not any(table_exists(backend, t) for t in METRICS_TABLES)

        upgraded = backend.open()
        try:
            assert versions(backend) == [1, 2, 3]
            assert upgraded.list("release") + upgraded.list("rollout") == records_before
            assert list(upgraded.events()) == events_before
            assert upgraded.audit_head() == head_before
            result = verify_chain(upgraded.raw_events(), head=upgraded.audit_head())
            assert result.ok and result.count == 3, result.problem
            # The new tables work, and the old state keeps moving.
            delta = MetricDelta("svc", 1, "candidate", VariantStats(requests=3))
            assert upgraded.add_metrics([delta], batch_id="b-1")
            assert not upgraded.add_metrics([delta], batch_id="b-1")
            assert upgraded.read_metrics("svc") == {(1, "candidate"): VariantStats(requests=3)}
            upgraded.commit([Write("rollout", "svc", {"step": 2}, 2)], draft())
            assert verify_chain(upgraded.raw_events(), head=upgraded.audit_head()).count == 4
        finally:
            upgraded.close()
        backend.open().close()  # reopening applies nothing more
        assert versions(backend) == [1, 2, 3]

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
