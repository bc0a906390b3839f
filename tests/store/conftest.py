"""Fixtures for the store suites: each test gets a fresh store on every backend.

The ``backend`` fixture is parametrised over sqlite (a file in ``tmp_path``)
and PostgreSQL (a fresh schema per test, dropped afterwards; skipped unless
``RELEASER_TEST_POSTGRES_DSN`` is set). Both offer ``open()`` and raw SQL
(written with ``?`` placeholders) for tampering and inspection.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.core.audit import EventDraft
from releaser.store.base import Store, Write
from releaser.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Migration

POSTGRES_DSN_ENV = "RELEASER_TEST_POSTGRES_DSN"
AT = "2025-01-02T03:04:05Z"


def postgres_dsn() -> str | None:
    """The test server's DSN, or ``None`` when Postgres tests are to be skipped."""
    return os.environ.get(POSTGRES_DSN_ENV) or None


def with_params(dsn: str, **params: str) -> str:
    """``dsn`` (a URL) with extra query parameters appended."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


def draft(subject: str = "rollout/svc", action: str = "advance", **kw: Any) -> EventDraft:
    """An audit event draft with fixed, readable defaults."""
    return EventDraft(
        actor=kw.pop("actor", "ci"), action=action, subject=subject, at=kw.pop("at", AT), **kw
    )


def insert(store: Store, kind: str, key: str, value: dict[str, Any]) -> None:
    """Create one record (version 1) with its audit event."""
    store.commit([Write(kind, key, value, 0)], draft(f"{kind}/{key}", "create"))


class SqliteBackend:
    """A sqlite store file in a temporary directory."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite://{path.as_posix()}"

    def open(self, **kwargs: Any) -> Store:
        """A new store object on this backend (kwargs go to the backend class)."""
        from releaser.store.sqlite import SqliteStore

        return SqliteStore(self.path, **kwargs)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run raw SQL on its own connection, committed; returns rows if any."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            rows = conn.execute(statement, params).fetchall()
        finally:
            conn.close()
        return [tuple(r) for r in rows]

    def unguard(self) -> None:
        """Drop the triggers that keep audit events append-only, as an attacker with
        write access to the database file could."""
        self.sql("DROP TRIGGER IF EXISTS audit_events_no_update")
        self.sql("DROP TRIGGER IF EXISTS audit_events_no_delete")

    def cleanup(self) -> None:
        """Nothing to do: tmp_path goes away by itself."""


class PostgresBackend:
    """A fresh schema in the test database; the store's search_path points at it."""

    name = "postgres"

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.admin_dsn = dsn
        self.schema = f"releaser_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self.url = with_params(dsn, options=f"-csearch_path%3D{self.schema}")

    def open(self, **kwargs: Any) -> Store:
        """A new store object on this backend (kwargs go to the backend class)."""
        from releaser.store.postgres import PostgresStore

        return PostgresStore(self.url, **kwargs)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run raw SQL (``?`` placeholders) in the test schema, committed."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement.replace("?", "%s"), params)
            return list(cur.fetchall()) if cur.description else []

    def unguard(self) -> None:
        """Drop the triggers that keep audit events append-only (an owner of the table can)."""
        self.sql("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        self.sql("DROP TRIGGER IF EXISTS audit_events_no_truncate ON audit_events")

    def cleanup(self) -> None:
        """Drop the schema and everything in it."""
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


Backend = SqliteBackend | PostgresBackend


def make_backend(name: str, tmp_path: Path) -> Backend:
    """A fresh backend by name; skips Postgres when no test server is configured."""
    if name == "sqlite":
        return SqliteBackend(tmp_path / "state.db")
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_DSN_ENV} (e.g. postgresql://...)")
    return PostgresBackend(dsn)


def shipped(backend: Backend) -> tuple[Migration, ...]:
    """The migrations releaser ships for this backend."""
    return SQLITE_MIGRATIONS if backend.name == "sqlite" else POSTGRES_MIGRATIONS


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty backend (no store opened yet)."""
    made = make_backend(request.param, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    """An open store on a fresh backend, closed afterwards."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()
