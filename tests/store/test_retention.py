"""Retention: store prune removes old prediction caches and histograms, and nothing else.

A workspace on each store with releases written as ``release create`` writes them
(each with its audit entry), stored gate predictions of different ages, a service
state (stable, known-good, a live rollout) and rollouts with latency histograms.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from releaser.api.audit import verify_anchored
from releaser.api.retention import plan_prune, prune_store
from releaser.api.workspace import Workspace, open_workspace
from releaser.config.template import render_init_template
from releaser.core.audit import EventDraft
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.errors import StateConflict
from releaser.store.base import Delete, MetricDelta, Write

from .conftest import Backend

NOW = "2026-12-07T12:00:00.000000Z"
OLD = "2026-06-01T00:00:00.000000Z"  # 189 days before NOW
RECENT = "2026-11-30T00:00:00.000000Z"  # 7 days before NOW


def ev(action: str, at: str = NOW) -> EventDraft:
    return EventDraft(actor="tester", action=action, subject="store", at=at)


@pytest.fixture
def ws(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    root = tmp_path / "repo"
    root.mkdir()
    config = render_init_template("council-casework", "case-triage")
    config += "retention:\n  keep_releases: 2\n  rollout_histograms_days: 30\n"
    (root / "releaser.yaml").write_text(config, encoding="utf-8")
    monkeypatch.setenv("RELEASER_STORE", backend.url)
    workspace = open_workspace(root)
    store = workspace.store
    # Six releases r0..r5, oldest first; r0 stable, r1 known-good, r2 a live candidate.
    for i in range(6):
        value = {
            "id": f"r{i}",
            "created_at": f"2026-0{i + 1}-01T00:00:00Z",
            "content": {"service": "case-triage"},
        }
        store.commit([Write("release", f"r{i}", value, 0)], ev("release.create"))
    store.commit(
        [
            Write(
                "service",
                "case-triage",
                {"stable": "r0", "known_good": ["r1"], "active_rollout": "ro-live"},
                0,
            ),
            Write("rollout", "ro-live", {"baseline": "r0", "candidate": "r2"}, 0),
            Write("rollout", "ro-old", {"baseline": "r0", "candidate": "r1", "ended_at": OLD}, 0),
            Write(
                "rollout", "ro-new", {"baseline": "r1", "candidate": "r0", "ended_at": RECENT}, 0
            ),
        ],
        ev("rollout.start"),
    )
    big = {"values": ["yes"] * 500, "ok": [True] * 500, "latency_ms": [1.5] * 500, "errors": []}
    for i in range(6):
        store.commit([Write("gate_predictions", f"r{i}-md5-tag", big, 0)], ev("gate.run"))
    bins = LatencyHistogram.of([12.0, 40.0, 90.0])
    for rollout in ("ro-old", "ro-new", "ro-live"):
        stats = VariantStats(requests=3, latency=bins)
        store.add_metrics([MetricDelta(rollout, 0, "candidate", stats)])
    yield workspace
    workspace.close()


def _age(backend: Backend, key: str, at: str) -> None:
    backend.sql("UPDATE records SET updated_at = ? WHERE key = ?", (at, key))


def test_the_plan_keeps_what_gates_and_audits_need(ws, backend: Backend) -> None:
    for i in range(6):
        _age(backend, f"r{i}-md5-tag", OLD)
    _age(backend, "r3-md5-tag", RECENT)  # written a week ago: within 90 days
    plan = plan_prune(ws, now=NOW)
    # r0 stable, r1 known-good, r2 live, r4 and r5 the latest two, r3 recent: nothing
    # of theirs goes ... until r3 ages too.
    assert plan.predictions == []
    assert plan.kept_predictions == 6
    assert plan.kept_releases == {"case-triage": ["r0", "r1", "r2", "r4", "r5"]}
    assert [h["rollout_id"] for h in plan.histograms] == ["ro-old"]
    _age(backend, "r3-md5-tag", OLD)
    plan = plan_prune(ws, now=NOW)
    assert [(p["key"], p["release_id"]) for p in plan.predictions] == [("r3-md5-tag", "r3")]
    head = ws.store.audit_head()
    assert ws.store.get("gate_predictions", "r3-md5-tag") is not None  # a plan writes nothing
    assert ws.store.audit_head() == head


def test_prune_removes_in_one_audited_commit_and_the_audit_still_verifies(
    ws, backend: Backend
) -> None:
    _age(backend, "r3-md5-tag", OLD)
    before = ws.store.read_metrics("ro-old")
    done = prune_store(ws, now=NOW)
    assert done.applied and [p["key"] for p in done.predictions] == ["r3-md5-tag"]
    assert ws.store.get("gate_predictions", "r3-md5-tag") is None
    assert ws.store.get("release", "r3") is not None  # the release itself stays
    after = ws.store.read_metrics("ro-old")
    assert [s.requests for s in after.values()] == [s.requests for s in before.values()] == [3]
    assert not any(any(s.latency.counts) for s in after.values())
    assert any(any(s.latency.counts) for s in ws.store.read_metrics("ro-new").values())
    event = next(e for e in ws.store.events(after_seq=done.audit_seq - 1))
    assert event.action == "store.prune" and event.after["gate_predictions"] == ["r3-md5-tag"]
    assert event.after["latency_histograms_of"] == ["ro-old"]
    assert event.after["retention"]["keep_releases"] == 2
    assert verify_anchored(ws).ok
    again = prune_store(ws, now=NOW)  # converges: nothing left to remove, nothing written
    assert again.empty and not again.applied and ws.store.audit_head()[0] == done.audit_seq


def test_a_record_written_meanwhile_is_not_removed(ws, backend: Backend) -> None:
    record = ws.store.get("gate_predictions", "r3-md5-tag")
    assert record is not None
    ws.store.commit(
        [Write("gate_predictions", "r3-md5-tag", {"values": []}, record.version)], ev("gate.run")
    )
    with pytest.raises(StateConflict, match="gate_predictions/r3-md5-tag changed"):
        ws.store.prune(
            [Delete("release", "r5", 1), Delete("gate_predictions", "r3-md5-tag", 1)],
            ev("store.prune"),
            histograms_of=["ro-old"],
        )
    assert ws.store.get("release", "r5") is not None  # nothing of the prune happened
    assert any(any(s.latency.counts) for s in ws.store.read_metrics("ro-old").values())


def test_prune_removes_unit_sketches_with_the_histograms(ws, backend: Backend) -> None:
    from releaser.core.unit_sketch import UnitSketch, unit_salt
    from releaser.store.base import UnitDelta

    sketch = UnitSketch()
    for i in range(25):
        sketch.add(unit_salt(1, "ro-old"), f"user-{i}")
    units = (UnitDelta("staff", 25, sketch),)
    # ro-old's units; and a rollout that ended long ago with units but no histogram at all.
    ws.store.commit([Write("rollout", "ro-units", {"ended_at": OLD}, 0)], ev("rollout.start"))
    for rollout in ("ro-old", "ro-units", "ro-new"):
        ws.store.add_metrics(
            [MetricDelta(rollout, 0, "candidate", VariantStats(requests=25), units)]
        )
    plan = plan_prune(ws, now=NOW)
    assert [h["rollout_id"] for h in plan.histograms] == ["ro-old", "ro-units"]
    done = prune_store(ws, now=NOW)
    assert done.applied
    assert ws.store.read_units("ro-old") == {} and ws.store.read_units("ro-units") == {}
    assert ws.store.read_units("ro-new")[(0, "candidate", "staff")] == (25, sketch)  # recent
    assert ws.store.read_metrics("ro-units")[(0, "candidate")].requests == 25  # counts stay
    assert verify_anchored(ws).ok
