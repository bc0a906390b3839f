"""Fixtures for the store suites: each test gets a fresh store on every backend.

The ``backend`` and ``store`` fixtures come from ``tests/store_backends.py`` (shared
with the router suite): sqlite (a file in ``tmp_path``) and PostgreSQL (a fresh
schema per test, dropped afterwards; skipped unless ``RELEASER_TEST_POSTGRES_DSN`` is
set). Both offer ``open()`` and raw SQL (written with ``?`` placeholders) for
tampering and inspection. Here: event drafts and records with readable defaults.
"""

from __future__ import annotations

from typing import Any

from releaser.core.audit import EventDraft
from releaser.store.base import Store, Write
from releaser.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Migration
from tests.store_backends import (  # noqa: F401  (backend and store are fixtures)
    BACKENDS,
    POSTGRES_DSN_ENV,
    Backend,
    PostgresBackend,
    SqliteBackend,
    backend,
    make_backend,
    postgres_dsn,
    store,
    with_params,
)

AT = "2025-01-02T03:04:05Z"


def draft(subject: str = "rollout/svc", action: str = "advance", **kw: Any) -> EventDraft:
    """An audit event draft with fixed, readable defaults."""
    return EventDraft(
        actor=kw.pop("actor", "ci"), action=action, subject=subject, at=kw.pop("at", AT), **kw
    )


def insert(target: Store, kind: str, key: str, value: dict[str, Any]) -> None:
    """Create one record (version 1) with its audit event."""
    target.commit([Write(kind, key, value, 0)], draft(f"{kind}/{key}", "create"))


def shipped(where: Backend) -> tuple[Migration, ...]:
    """The migrations releaser ships for this backend."""
    return SQLITE_MIGRATIONS if where.name == "sqlite" else POSTGRES_MIGRATIONS
