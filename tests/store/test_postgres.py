"""What only the PostgreSQL store does: NOTIFY, reconnecting, search_path problems."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from releaser.errors import ExternalUnavailable, ReleaserError, StateConflict
from releaser.store import open_store
from releaser.store.base import Store, Write

from .conftest import PostgresBackend, draft, postgres_dsn, with_params

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg() -> Iterator[PostgresBackend]:
    """A fresh schema on the test server (skipped without one)."""
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("PostgreSQL tests need RELEASER_TEST_POSTGRES_DSN")
    backend = PostgresBackend(dsn)
    try:
        yield backend
    finally:
        backend.cleanup()


@pytest.fixture
def pg_store(pg: PostgresBackend) -> Iterator[Store]:
    """An open store in the fresh schema."""
    store = pg.open()
    try:
        yield store
    finally:
        store.close()


def test_commit_notifies_listeners_with_schema_and_seq(
    pg: PostgresBackend, pg_store: Store
) -> None:
    import psycopg

    from releaser.store.postgres import NOTIFY_CHANNEL

    with psycopg.connect(pg.url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        pg_store.commit([Write("release", "r", {}, 0)], draft())
        with pytest.raises(StateConflict):
            pg_store.commit([Write("release", "r", {}, 0)], draft())
        pg_store.commit([], draft())
        # Other tests share the database and channel; keep only this schema's story.
        ours: list[str] = []
        deadline = time.monotonic() + 5
        while len(ours) < 2 and time.monotonic() < deadline:
            for n in listener.notifies(timeout=0.5, stop_after=1):
                if n.payload.startswith(f"{pg.schema}:"):
                    ours.append(n.payload)
        assert ours == [f"{pg.schema}:1", f"{pg.schema}:2"]
        late = [n.payload for n in listener.notifies(timeout=0.2)]
        assert [p for p in late if p.startswith(f"{pg.schema}:")] == []


def test_lost_connection_is_unavailable_then_recovers() -> None:
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("PostgreSQL tests need RELEASER_TEST_POSTGRES_DSN")
    import psycopg

    schema = f"releaser_test_{uuid.uuid4().hex[:12]}"
    app = f"releaser_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            store = open_store(
                with_params(dsn, options=f"-csearch_path%3D{schema}", application_name=app)
            )
            try:
                store.commit([Write("release", "r", {}, 0)], draft())
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app,),
                )
                with pytest.raises(ExternalUnavailable) as info:
                    store.get("release", "r")
                assert info.value.hint
                # The next call opens a fresh connection.
                assert store.get("release", "r") is not None
            finally:
                store.close()
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_missing_schema_is_explained() -> None:
    dsn = postgres_dsn()
    if dsn is None:
        pytest.skip("PostgreSQL tests need RELEASER_TEST_POSTGRES_DSN")
    url = with_params(dsn, options="-csearch_path%3Dno_such_schema_here")
    with pytest.raises(ReleaserError) as info:
        open_store(url)
    assert info.value.hint and "search_path" in info.value.hint


def test_tables_live_in_the_search_path_schema(pg: PostgresBackend, pg_store: Store) -> None:
    rows = pg.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? "
        "ORDER BY table_name",
        (pg.schema,),
    )
    assert [r[0] for r in rows] == [
        "audit_events",
        "audit_head",
        "metric_batches",
        "records",
        "rollout_latency_bins",
        "rollout_metrics",
        "rollout_token_bins",
        "rollout_unit_sketches",
        "schema_version",
    ]


def test_wait_ignores_commits_in_other_schemas(pg: PostgresBackend, pg_store: Store) -> None:
    # Every schema in the database notifies on the same channel.
    neighbour = PostgresBackend(pg.admin_dsn)
    try:
        other = neighbour.open()
        try:
            token = pg_store.change_token()
            woke: list[int] = []
            waiter = threading.Thread(
                target=lambda: woke.append(pg_store.wait_for_change(token, 1))
            )
            waiter.start()
            time.sleep(0.1)
            for _ in range(3):
                other.commit([], draft())
            waiter.join(timeout=30)
            assert woke == [token]
            assert other.change_token() == 3
        finally:
            other.close()
    finally:
        neighbour.cleanup()


def test_a_waiter_whose_connection_dies_fails_then_recovers(pg: PostgresBackend) -> None:
    import psycopg

    app = f"releaser_test_{uuid.uuid4().hex[:12]}"
    store = open_store(with_params(pg.url, application_name=app))
    try:
        token = store.change_token()
        assert store.wait_for_change(token, 0.05) == token  # listening
        with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (app,),
            )
            assert wait_until(lambda: _connections(admin, app) == 0)
        with pytest.raises(ExternalUnavailable) as info:
            store.wait_for_change(token, 0.2)
        assert info.value.hint and "PostgreSQL is running" in info.value.hint
        # The next wait listens on a fresh connection and sees a commit.
        woke: list[int] = []
        waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(token, 10)))
        waiter.start()
        time.sleep(0.2)
        event = store.commit([], draft())
        waiter.join(timeout=30)
        assert woke == [event.seq]
    finally:
        store.close()


def _connections(admin: Any, app: str) -> int:
    """Connections open on the server under ``application_name`` ``app``."""
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
    ).fetchone()
    return int(row[0])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes (a cap, not an assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_waiting_store_holds_one_connection(pg: PostgresBackend) -> None:
    # A router holds one store; a dedicated LISTEN connection beside the store's own made
    # it two, and 50 routers then filled PostgreSQL's default max_connections (100).
    import psycopg

    app = f"releaser_test_{uuid.uuid4().hex[:12]}"
    store = open_store(with_params(pg.url, application_name=app))
    other = pg.open()
    try:
        token = store.change_token()
        assert store.wait_for_change(token, 0.05) == token  # listening from here on
        woke: list[int] = []
        waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(token, 30)))
        waiter.start()
        with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
            assert _connections(admin, app) == 1
            event = other.commit([Write("release", "r", {}, 0)], draft())
            waiter.join(timeout=30)
            # The 30 s wait returned the new token: the one connection heard the NOTIFY
            # (or its once-a-second re-read saw the commit).
            assert woke == [event.seq]
            assert _connections(admin, app) == 1
    finally:
        other.close()
        store.close()


def test_calls_on_the_store_go_on_while_a_thread_waits(pg: PostgresBackend) -> None:
    # The waiter sleeps on the shared connection's socket without holding it: other calls
    # of the same store run meanwhile, and the waiter still wakes on their commit.
    store = pg.open()
    try:
        token = store.change_token()
        woke: list[int] = []
        waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(token, 30)))
        waiter.start()
        time.sleep(0.2)  # let the waiter block first; the result is right either way
        assert store.get("release", "r") is None
        for _ in range(20):
            assert store.change_token() == token
        event = store.commit([Write("release", "r", {}, 0)], draft())
        waiter.join(timeout=30)
        assert woke == [event.seq]
        assert store.get("release", "r") is not None
    finally:
        store.close()


def test_waits_survive_many_notifications_from_other_schemas(pg: PostgresBackend) -> None:
    # Notifications of other schemas wake the waiter, which re-reads its own token and
    # waits on: none of them ends the wait, and the commit of its own schema does.
    neighbour = PostgresBackend(pg.admin_dsn)
    store = pg.open()
    try:
        other = neighbour.open()
        mine = pg.open()
        try:
            token = store.change_token()
            woke: list[int] = []
            waiter = threading.Thread(target=lambda: woke.append(store.wait_for_change(token, 30)))
            waiter.start()
            time.sleep(0.2)
            for _ in range(50):
                other.commit([], draft())
            assert waiter.is_alive() and woke == []
            event = mine.commit([], draft())
            waiter.join(timeout=30)
            assert woke == [event.seq]
        finally:
            other.close()
            mine.close()
    finally:
        store.close()
        neighbour.cleanup()
