"""The Router against a real store: routing, stickiness, following changes, outages, prompts."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from releaser.core.bucketing import bucket
from releaser.core.routing import GroupDef, ReleaseArtifacts
from releaser.errors import BadInput, ExternalUnavailable, NotFound
from releaser.router import Assignment, Router
from releaser.store.base import Store

from .conftest import SEED, StoreBackend, make_route, put_route, rollout_route, wait_until

IDS = [f"user-{i:07d}" for i in range(100_000)]

# A separate process commits a route change (the rollout engine on a CI runner, say).
CHILD_WRITER = """
import sys
from releaser.core.audit import EventDraft
from releaser.store import open_store
from releaser.store.base import Write

url, service, value = sys.argv[1], sys.argv[2], sys.argv[3]
import json
store = open_store(url)
current = store.get("route", service)
store.commit(
    [Write("route", service, json.loads(value), 0 if current is None else current.version)],
    EventDraft(actor="other-process", action="route.set", subject="route/" + service,
               at="2025-01-02T03:04:05Z"),
)
store.close()
"""


def fast_router(store: str | Store) -> Router:
    """A router that polls and flushes often, so tests wait less."""
    return Router(store, refresh_interval_ms=10, flush_interval_ms=50)


def commit_from_another_process(url: str, service: str, value: dict[str, object]) -> None:
    subprocess.run(
        [sys.executable, "-c", CHILD_WRITER, url, service, json.dumps(value)],
        check=True,
        timeout=120,
    )


# -- routing -------------------------------------------------------------------


def test_no_rollout_serves_the_stable_release(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, make_route("svc"))
    with Router(sqlite_backend.url) as router:
        got = {router.assign("svc", unit) for unit in IDS[:1000]}
    assert got == {Assignment("svc", "rel-stable", "stable", None, None)}


def test_five_percent_step_gives_five_percent_of_units(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, rollout_route(percent=5))
    with Router(sqlite_backend.url) as router:
        variants = [router.assign("svc", unit).variant for unit in IDS]
    share = variants.count("candidate") / len(IDS) * 100
    assert abs(share - 5.0) <= 0.5, share
    assert set(variants) == {"candidate", "baseline"}
    candidate = next(
        router.assign("svc", u) for u in IDS if router.assign("svc", u).variant == "candidate"
    )
    assert candidate == Assignment("svc", "rel-cand", "candidate", 0, "ro-1")
    assert router.assign("svc", "x").release_id in ("rel-stable", "rel-cand")


def test_groups_come_first_whatever_the_bucket(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    groups = {
        "pilots": GroupDef(allow=["pilot-1"]),
        "staff": GroupDef(rules=[("email", "ends_with", "@example.org")]),
    }
    put_route(sqlite_store, rollout_route(percent=5, groups=groups))
    outside = [u for u in IDS[:2000] if bucket(SEED, u) >= 500]
    assert bucket(SEED, "pilot-1") >= 500  # the allow-list, not the bucket, admits it
    with Router(sqlite_backend.url) as router:
        assert router.assign("svc", "pilot-1").variant == "candidate"
        staff = {"email": "someone@example.org"}
        assert {router.assign("svc", u, staff).variant for u in outside} == {"candidate"}
        others = {"email": "someone@example.com"}
        assert {router.assign("svc", u, others).variant for u in outside} == {"baseline"}
        assert {router.assign("svc", u).variant for u in outside} == {"baseline"}


def test_malformed_attributes_match_no_group_and_keep_the_bucket(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    groups = {
        "pro": GroupDef(rules=[("plan", "equals", "5")]),
        "staff": GroupDef(rules=[("email", "ends_with", "@example.org")]),
    }
    put_route(sqlite_store, rollout_route(percent=25, groups=groups))
    inside = [u for u in IDS[:400] if bucket(SEED, u) < 2500]
    outside = [u for u in IDS[:400] if bucket(SEED, u) >= 2500]
    malformed: list[object] = [{"plan": 5}, {"email": 7}, ["email"], "plan=5", {"plan": ["5"]}]
    with Router(sqlite_backend.url) as router:
        assert router.assign("svc", outside[0], {"plan": "5"}).variant == "candidate"
        for attributes in malformed:
            got = {router.assign("svc", u, attributes).variant for u in outside}  # type: ignore[arg-type]
            assert got == {"baseline"}, attributes
            got = {router.assign("svc", u, attributes).variant for u in inside}  # type: ignore[arg-type]
            assert got == {"candidate"}, attributes


def test_missing_unit_id_gets_the_baseline(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, rollout_route(percent=100))
    with Router(sqlite_backend.url) as router:
        baseline = Assignment("svc", "rel-stable", "baseline", 0, "ro-1")
        assert router.assign("svc", None) == baseline
        assert router.assign("svc", "") == baseline
        assert router.assign("svc", 1234) == baseline  # type: ignore[arg-type]
        assert router.assign("svc", "anyone").variant == "candidate"


def test_unknown_service_is_not_found_and_lists_the_known_ones(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, make_route("case-triage"))
    put_route(sqlite_store, make_route("summariser"))
    with Router(sqlite_backend.url) as router:
        with pytest.raises(NotFound, match="known services: case-triage, summariser"):
            router.assign("case-triag", "u1")


def test_assignment_is_sticky_across_calls_and_router_instances(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, rollout_route(percent=30))
    units = IDS[:20_000]
    with Router(sqlite_backend.url) as first:
        once = [first.assign("svc", u) for u in units]
        again = [first.assign("svc", u) for u in units]
    with Router(sqlite_backend.url) as second:
        other = [second.assign("svc", u) for u in units]
    assert once == again == other


# -- following the store -----------------------------------------------------------


def test_widening_the_step_keeps_every_candidate(backend: StoreBackend, store: Store) -> None:
    put_route(store, rollout_route(percent=5))
    units = IDS[:20_000]
    with fast_router(backend.url) as router:
        before = {u for u in units if router.assign("svc", u).variant == "candidate"}
        put_route(store, rollout_route(percent=25, step=1))
        assert wait_until(lambda: router.routes()["svc"].percent == 25)
        after = {u for u in units if router.assign("svc", u).variant == "candidate"}
        assert router.assign("svc", next(iter(before))).step == 1
    assert before and before <= after
    assert len(after) > 4 * len(before)


def test_a_change_committed_by_another_process_is_seen(backend: StoreBackend, store: Store) -> None:
    put_route(store, make_route("svc", stable="rel-1"))
    with Router(backend.url) as router:
        version = router.snapshot_version
        assert router.assign("svc", "u1").release_id == "rel-1"
        commit_from_another_process(
            backend.url, "svc", make_route("svc", stable="rel-2").to_value()
        )
        assert wait_until(lambda: router.assign("svc", "u1").release_id == "rel-2")
        assert router.snapshot_version > version
        # A service created by another process appears too.
        commit_from_another_process(backend.url, "new-svc", make_route("new-svc").to_value())
        assert wait_until(lambda: "new-svc" in router.routes())
        assert router.assign("new-svc", "u1").variant == "stable"


def test_store_unreachable_at_construction(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the store's directory should be")
    with pytest.raises(ExternalUnavailable):
        Router(f"sqlite://{(blocker / 'state.db').as_posix()}")
    with pytest.raises(ExternalUnavailable):
        Router("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2")


def test_bad_intervals_are_refused(sqlite_backend: StoreBackend) -> None:
    with pytest.raises(BadInput, match="must be positive"):
        Router(sqlite_backend.url, refresh_interval_ms=0)


def test_deleted_store_file_keeps_serving_the_last_snapshot(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, rollout_route(percent=5))
    with fast_router(sqlite_backend.url) as router:
        expected = [router.assign("svc", u) for u in IDS[:5000]]
        path = Path(sqlite_backend.url.removeprefix("sqlite://"))
        for leftover in path.parent.glob(path.name + "*"):
            leftover.unlink()
        assert not path.exists()
        wait_until(lambda: False, timeout_s=0.3)  # let the thread poll a few times
        assert [router.assign("svc", u) for u in IDS[:5000]] == expected


def test_closed_store_keeps_serving_and_warns_once(
    sqlite_backend: StoreBackend, sqlite_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    put_route(sqlite_store, rollout_route(percent=5))
    caplog.set_level(logging.WARNING, logger="releaser.router")
    own = sqlite_backend.open()
    router = fast_router(own)  # the router follows the store object it was given
    try:
        expected = [router.assign("svc", u) for u in IDS[:5000]]
        router.record(expected[0], latency_ms=5.0)
        own.close()  # the store goes away under the running router
        assert wait_until(lambda: not router.store_reachable)
        wait_until(lambda: False, timeout_s=0.3)  # several more failed polls
        assert [router.assign("svc", u) for u in IDS[:5000]] == expected
        router.record(expected[0], latency_ms=5.0)  # the request path still never raises
        outages = [r for r in caplog.records if "following route changes failed" in r.message]
        assert len(outages) == 1
        assert "serving the last snapshot" in outages[0].message
    finally:
        router.close()
    assert any("final metrics flush" in r.message for r in caplog.records)


@pytest.mark.postgres
def test_postgres_outage_and_recovery(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import psycopg

    from .conftest import make_backend

    backend = make_backend("postgres", tmp_path)
    caplog.set_level(logging.WARNING, logger="releaser.router")
    try:
        writer = backend.open()
        put_route(writer, make_route("svc", stable="rel-1"))
        schema, admin = backend.schema, backend.admin_dsn
        with fast_router(backend.url) as router:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_away"')
            assert wait_until(lambda: not router.store_reachable)
            wait_until(lambda: False, timeout_s=0.5)  # several more failed waits
            assert router.assign("svc", "u1").release_id == "rel-1"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'ALTER SCHEMA "{schema}_away" RENAME TO "{schema}"')
            assert wait_until(lambda: router.store_reachable)
            put_route(writer, make_route("svc", stable="rel-2"))
            assert wait_until(lambda: router.assign("svc", "u1").release_id == "rel-2")
        messages = [r.message for r in caplog.records]
        assert sum("following route changes failed" in m for m in messages) == 1
        assert sum("following route changes on" in m and "works again" in m for m in messages) == 1
    finally:
        writer.close()
        backend.cleanup()


@pytest.mark.postgres
def test_routers_on_postgres_hold_one_connection_each(tmp_path: Path) -> None:
    # A fleet of routers shares one server: with a LISTEN connection beside the store's
    # own, each router held two, and 50 of them filled the default max_connections (100).
    import uuid

    import psycopg

    from tests.store_backends import with_params

    from .conftest import make_backend

    backend = make_backend("postgres", tmp_path)
    app = f"releaser_router_{uuid.uuid4().hex[:12]}"
    writer = backend.open()
    routers: list[Router] = []
    try:
        put_route(writer, rollout_route("svc", percent=100.0))
        routers = [
            Router(with_params(backend.url, application_name=f"{app}_{i}")) for i in range(5)
        ]
        assert all(r.assign("svc", "u1").variant == "candidate" for r in routers)
        wait_until(lambda: False, timeout_s=0.5)  # each follow thread is listening by now
        with psycopg.connect(backend.admin_dsn, autocommit=True) as admin:
            held = dict(
                admin.execute(
                    "SELECT application_name, count(*) FROM pg_stat_activity "
                    "WHERE application_name LIKE %s GROUP BY 1",
                    (f"{app}_%",),
                ).fetchall()
            )
        assert held == {f"{app}_{i}": 1 for i in range(5)}
        # ... and each still follows a change through that one connection (a rollback).
        put_route(writer, make_route("svc", stable="rel-stable"))
        assert all(
            wait_until(lambda r=r: r.assign("svc", "u1").variant == "stable") for r in routers
        )
    finally:
        for r in routers:
            r.close()
        writer.close()
        backend.cleanup()


# -- status and lifecycle ----------------------------------------------------------


def test_routes_and_snapshot_version_for_status_displays(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    token = put_route(sqlite_store, rollout_route("b", percent=5))
    put_route(sqlite_store, make_route("a"))
    with Router(sqlite_backend.url) as router:
        assert router.snapshot_version == token + 1
        routes = router.routes()
        assert sorted(routes) == ["a", "b"]
        assert routes["b"].percent == 5 and routes["b"].candidate == "rel-cand"
        assert router.problems() == {}
        assert "services=2" in repr(router)
    router.close()  # idempotent


def test_record_of_something_not_an_assignment_says_what_it_takes(
    sqlite_backend: StoreBackend, sqlite_store: Store
) -> None:
    put_route(sqlite_store, rollout_route(percent=5))
    with Router(sqlite_backend.url) as router:
        for wrong in (None, "svc", {"variant": "candidate"}):
            with pytest.raises(TypeError, match=r"takes the Assignment that assign\(\) returned"):
                router.record(wrong, latency_ms=5.0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not None"):
            router.record(None)  # type: ignore[arg-type]
        candidate = next(
            a for a in (router.assign("svc", u) for u in IDS) if a.variant == "candidate"
        )
        router.record(candidate, latency_ms=5.0)  # the real thing is still counted
        assert router.metrics_counts().pending_requests == 1


# -- prompts -----------------------------------------------------------------------


def test_prompt_follows_the_assigned_release(
    sqlite_backend: StoreBackend, sqlite_store: Store, tmp_path: Path
) -> None:
    from promptregistry import FilePromptBackend, PromptSpec

    prompts = FilePromptBackend(tmp_path / "prompts")
    v1 = prompts.register(
        PromptSpec(name="triage", template="Old: {{ text }}", variables={"text": "str"})
    )
    v2 = prompts.register(
        PromptSpec(name="triage", template="New: {{ text }}", variables={"text": "str"})
    )
    artifacts = {
        "rel-stable": ReleaseArtifacts(prompts={"triage": v1.version}),
        "rel-cand": ReleaseArtifacts(prompts={"triage": v2.version}),
    }
    groups = {"staff": GroupDef(rules=[("email", "ends_with", "@example.org")])}
    put_route(sqlite_store, rollout_route(percent=0, groups=groups, artifacts=artifacts))
    staff = {"email": "a@example.org"}
    with Router(sqlite_backend.url, prompt_backend=(tmp_path / "prompts").as_uri()) as router:
        candidate = router.prompt("svc", "triage", "u1", staff)
        baseline = router.prompt("svc", "triage", "u1")
        assert (candidate.version, baseline.version) == (2, 1)
        assert candidate.render(text="hi") == "New: hi"
        assert baseline.render(text="hi") == "Old: hi"
        assert router.prompt("svc", "triage", "u1") is baseline  # cached
        with pytest.raises(NotFound, match="has no prompt 'summary'; its prompts: triage"):
            router.prompt("svc", "summary", "u1")
        with pytest.raises(NotFound, match="known services: svc"):
            router.prompt("other", "triage", "u1")


def test_prompt_needs_a_backend(sqlite_backend: StoreBackend, sqlite_store: Store) -> None:
    artifacts = {"rel-stable": ReleaseArtifacts(prompts={"triage": 1})}
    put_route(sqlite_store, make_route("svc", artifacts=artifacts))
    with Router(sqlite_backend.url) as router:
        with pytest.raises(BadInput, match="no prompt backend"):
            router.prompt("svc", "triage", "u1")


# -- package -----------------------------------------------------------------------


def test_public_names_resolve() -> None:
    import releaser.router as package

    assert {"Router", "Assignment"} <= set(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None, name


def test_importing_the_router_loads_no_heavy_or_optional_packages() -> None:
    code = (
        "import sys, releaser.router\n"
        "heavy = ('mlflow', 'dvc', 'git', 'jinja2', 'pandas', 'psycopg', 'promptregistry.sdk')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
