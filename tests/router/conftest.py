"""Fixtures for the router tests: a real store on sqlite (and PostgreSQL when configured).

Route records are written the way the rollout engine will write them: one
``store.commit`` of a ``route`` record with compare-and-swap and an audit event. The
PostgreSQL backend is a fresh schema per test (dropped afterwards), as in the store suite.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.core.audit import EventDraft
from releaser.core.routing import ROUTE_KIND, GroupDef, ReleaseArtifacts, ServiceRoute
from releaser.store.base import Store, Write

POSTGRES_DSN_ENV = "RELEASER_TEST_POSTGRES_DSN"
AT = "2025-01-02T03:04:05Z"
SEED = 2_718_281_828


class StoreBackend:
    """Where a test's store lives: ``url`` for routers and child processes, ``open()``."""

    def __init__(
        self,
        name: str,
        url: str,
        cleanup: Callable[[], None] = lambda: None,
        *,
        schema: str = "",
        admin_dsn: str = "",
    ) -> None:
        self.name = name
        self.url = url
        self.cleanup = cleanup
        self.schema = schema  # PostgreSQL: the test's own schema
        self.admin_dsn = admin_dsn  # PostgreSQL: the server DSN without the search_path

    def open(self) -> Store:
        """A new store object on this backend."""
        from releaser.store import open_store

        return open_store(self.url)


def _postgres(dsn: str) -> StoreBackend:
    import psycopg

    schema = f"releaser_router_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    url = f"{dsn}{sep}options=-csearch_path%3D{schema}"

    def cleanup() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_away" CASCADE')

    return StoreBackend("postgres", url, cleanup, schema=schema, admin_dsn=dsn)


def make_backend(name: str, tmp_path: Path) -> StoreBackend:
    """A fresh backend by name; skips PostgreSQL when no test server is configured."""
    if name == "sqlite":
        return StoreBackend("sqlite", f"sqlite://{(tmp_path / 'state.db').as_posix()}")
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_DSN_ENV}")
    return _postgres(dsn)


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    """A fresh, empty backend on every store kind."""
    made = make_backend(request.param, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> StoreBackend:
    """A fresh sqlite backend only (for tests of pure routing behaviour)."""
    return make_backend("sqlite", tmp_path)


@pytest.fixture
def store(backend: StoreBackend) -> Iterator[Store]:
    """The test's own connection to ``backend`` (routers open their own)."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(sqlite_backend: StoreBackend) -> Iterator[Store]:
    """The test's own connection to a sqlite backend."""
    opened = sqlite_backend.open()
    try:
        yield opened
    finally:
        opened.close()


def make_route(service: str = "svc", **fields: Any) -> ServiceRoute:
    """A route with readable defaults: stable ``rel-stable``, no rollout unless given."""
    values: dict[str, Any] = {"service": service, "stable": "rel-stable", "seed": SEED}
    values.update(fields)
    return ServiceRoute(**values)


def rollout_route(
    service: str = "svc",
    *,
    percent: float = 5.0,
    step: int = 0,
    groups: dict[str, GroupDef] | None = None,
    artifacts: dict[str, ReleaseArtifacts] | None = None,
    rollout_id: str = "ro-1",
) -> ServiceRoute:
    """A route mid-rollout from ``rel-stable`` to ``rel-cand`` at ``percent``."""
    defs = groups or {}
    return make_route(
        service,
        candidate="rel-cand",
        rollout_id=rollout_id,
        step=step,
        step_name=f"step-{step}",
        percent=percent,
        groups=sorted(defs),
        group_defs=defs,
        artifacts=artifacts or {},
    )


def put_route(store: Store, route: ServiceRoute) -> int:
    """Create or replace the route record (CAS on its current version); returns the token."""
    current = store.get(ROUTE_KIND, route.service)
    expected = 0 if current is None else current.version
    event = store.commit(
        [Write(ROUTE_KIND, route.service, route.to_value(), expected)],
        EventDraft(actor="tests", action="route.set", subject=f"route/{route.service}", at=AT),
    )
    return event.seq


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes (a cap, not an assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
