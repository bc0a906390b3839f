"""Fixtures for the router tests: a real store on sqlite (and PostgreSQL when configured).

Route records are written the way the rollout engine will write them: one
``store.commit`` of a ``route`` record with compare-and-swap and an audit event. The
PostgreSQL backend is a fresh schema per test (dropped afterwards), as in the store suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from releaser.core.audit import EventDraft
from releaser.core.routing import ROUTE_KIND, GroupDef, ReleaseArtifacts, ServiceRoute
from releaser.errors import ExternalUnavailable
from releaser.store.base import Store, Write
from tests.store_backends import (  # noqa: F401  (backend and store are fixtures)
    Backend,
    backend,
    make_backend,
    store,
)

AT = "2025-01-02T03:04:05Z"
SEED = 2_718_281_828

StoreBackend = Backend
"""A test's store backend (``tests/store_backends.py``, shared with the store suite)."""


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    """A fresh sqlite backend only (for tests of pure routing behaviour)."""
    return make_backend("sqlite", tmp_path)


@pytest.fixture
def sqlite_store(sqlite_backend: Backend) -> Iterator[Store]:
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


def put_route(target: Store, route: ServiceRoute) -> int:
    """Create or replace the route record (CAS on its current version); returns the token."""
    current = target.get(ROUTE_KIND, route.service)
    expected = 0 if current is None else current.version
    event = target.commit(
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


class LostConfirmation:
    """Fault injection around a real store: the next write commits, then reports a failure.

    What a router sees when the connection drops after COMMIT reached the database.
    """

    def __init__(self, real: Store) -> None:
        self.store = real
        self.fail_next = True

    def add_metrics(self, batch, *, batch_id=None):  # type: ignore[no-untyped-def]
        added = self.store.add_metrics(batch, batch_id=batch_id)
        if self.fail_next:
            self.fail_next = False
            raise ExternalUnavailable("connection lost during COMMIT")
        return added
