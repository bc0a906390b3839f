"""Where a test's state store lives: one fresh sqlite file or PostgreSQL schema per test.

Shared by the store, router and retention suites (their conftests import the fixtures
from here). A backend gives its ``url`` (for routers and child processes), ``open()``
(a store object; keyword arguments go to the backend class), ``sql()`` (raw SQL with
``?`` placeholders, committed: for tampering and inspection), ``unguard()`` (drop the
audit log's append-only triggers, as an attacker with the database could) and
``cleanup()``. PostgreSQL tests are skipped when no test server is configured.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.store.base import Store

__all__ = [
    "BACKENDS",
    "POSTGRES_DSN_ENV",
    "Backend",
    "PostgresBackend",
    "SqliteBackend",
    "backend",
    "make_backend",
    "postgres_dsn",
    "store",
    "with_params",
]

POSTGRES_DSN_ENV = "RELEASER_TEST_POSTGRES_DSN"


def postgres_dsn() -> str | None:
    """The test server's DSN, or ``None`` when PostgreSQL tests are to be skipped."""
    return os.environ.get(POSTGRES_DSN_ENV) or None


def with_params(dsn: str, **params: str) -> str:
    """``dsn`` (a URL) with extra query parameters appended."""
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{dsn}{'&' if '?' in dsn else '?'}{query}"


class SqliteBackend:
    """A sqlite store file in a temporary directory."""

    name = "sqlite"
    schema = ""
    admin_dsn = ""

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

    def __init__(self, dsn: str, prefix: str = "releaser_test") -> None:
        import psycopg

        self.admin_dsn = dsn
        self.schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
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
        """Drop the schema, and any a test made beside it (``<schema>_...``), with their tables."""
        import psycopg

        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT schema_name FROM information_schema.schemata "
                "WHERE schema_name = %s OR schema_name LIKE %s",
                (self.schema, f"{self.schema}\\_%"),
            ).fetchall()
            for (schema,) in rows:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


Backend = SqliteBackend | PostgresBackend


def make_backend(name: str, tmp_path: Path, *, prefix: str = "releaser_test") -> Backend:
    """A fresh backend by name; skips PostgreSQL when no test server is configured."""
    if name == "sqlite":
        return SqliteBackend(tmp_path / "state.db")
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_DSN_ENV} (e.g. postgresql://...)")
    return PostgresBackend(dsn, prefix)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty backend of each kind (no store opened yet)."""
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
