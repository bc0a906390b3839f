"""Schema migrations: applied in order, once, atomically, by concurrent openers safely."""

from __future__ import annotations

import pytest

from releaser.core.audit import verify_chain
from releaser.errors import ReleaserError
from releaser.store.migrations import (
    POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
    Migration,
    pending_migrations,
)

from . import _workers
from .conftest import Backend, insert

EXTRA = Migration(
    2, "extra table", ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (42)")
)
BROKEN = Migration(2, "broken", ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"))


def shipped(backend: Backend) -> tuple[Migration, ...]:
    """The migrations releaser ships for this backend."""
    return SQLITE_MIGRATIONS if backend.name == "sqlite" else POSTGRES_MIGRATIONS


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
        assert versions(backend) == [m.version for m in shipped(backend)]
        for table in ("records", "audit_events", "audit_head", "schema_version"):
            assert table_exists(backend, table)

    def test_upgrade_applies_only_new_steps(self, backend: Backend) -> None:
        old = backend.open(migrations=shipped(backend))
        insert(old, "release", "r", {"v": 1})
        old.close()

        for _ in range(2):  # the second open must not apply step 2 again
            new = backend.open(migrations=(*shipped(backend), EXTRA))
            try:
                assert new.get("release", "r") is not None
                assert verify_chain(new.raw_events(), head=new.audit_head()).ok
            finally:
                new.close()
        assert versions(backend) == [1, 2]
        assert backend.sql("SELECT x FROM extra") == [(42,)]

        with pytest.raises(ReleaserError, match="schema version 2"):
            backend.open(migrations=shipped(backend))

    def test_failed_step_leaves_no_trace(self, backend: Backend) -> None:
        backend.open().close()
        with pytest.raises(ReleaserError):
            backend.open(migrations=(*shipped(backend), BROKEN))
        assert versions(backend) == [1]
        assert not table_exists(backend, "extra")
        # The store still opens with the migrations it had.
        backend.open().close()

    @pytest.mark.slow
    def test_concurrent_openers_migrate_once(self, backend: Backend) -> None:
        outcomes = _workers.run_processes(_workers.open_at_once, backend.url, 4)
        assert [status for _, status, _ in outcomes] == ["ok"] * 4, outcomes
        assert versions(backend) == [1]
        assert backend.sql("SELECT count(*) FROM audit_head") == [(1,)]


def test_versions_must_run_one_two_three() -> None:
    with pytest.raises(ValueError, match="1, 2, 3"):
        pending_migrations([EXTRA], 0, url="x")
    assert pending_migrations((*SQLITE_MIGRATIONS, EXTRA), 1, url="x") == [EXTRA]
    assert pending_migrations(SQLITE_MIGRATIONS, 1, url="x") == []
