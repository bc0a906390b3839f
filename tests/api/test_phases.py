"""Phase gates on the example service: approvals, checklist evidence, time in phase, advance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from releaser.api.audit import audit_log
from releaser.api.phases import (
    advance_phase,
    approvals,
    approve,
    check_phase,
    phase_status,
    record_evidence,
)
from releaser.api.workspace import Workspace
from releaser.errors import BadInput, CheckFailed

if TYPE_CHECKING:
    from conftest import OwnerKeys

pytestmark = pytest.mark.slow
SERVICE = "case-triage"


@pytest.fixture
def phased(keyed_release: tuple[Path, str]) -> tuple[Path, str]:
    """The shared gated release whose owners sign (``tests/api/conftest.py``)."""
    return keyed_release


@pytest.fixture
def ws(keyed_ws: Workspace) -> Workspace:
    return keyed_ws


def _items(check) -> dict[str, tuple[bool, str]]:
    return {f"{i['kind']}:{i['id']}": (i["met"], i["detail"]) for i in check.items}


def test_self_approval_is_refused(ws, phased, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEASER_ACTOR", "tester")  # who created the release
    with pytest.raises(BadInput, match="tester created release .* may not approve it") as err:
        approve(ws, SERVICE, phased[1], "ml-lead", "looks good")
    assert err.value.hint is not None and "no self-approval" in err.value.hint
    assert approvals(ws, SERVICE, phased[1]) == []


def test_the_same_person_approving_twice_counts_once(
    ws, phased, owner_keys: OwnerKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = phased[1]
    monkeypatch.setenv("RELEASER_ACTOR", "priya")
    key = owner_keys.key("priya")
    first = approve(ws, SERVICE, rid, "service-owner", "read the eval report", key=key)
    second = approve(ws, SERVICE, rid, "service-owner", "again", key=key)
    assert second == first
    assert [a.approver for a in approvals(ws, SERVICE, rid)] == ["priya.shah@example.org"]
    events = [e for e in audit_log(ws) if e.action == "phase.approve"]
    assert len(events) == 1 and events[0].reason == "read the eval report"
    assert events[0].actor == "priya.shah@example.org" and events[0].after["signed"] is True
    # The production rule for service-owner needs one person; a second role is separate.
    items = _items(check_phase(ws, SERVICE, "production"))
    assert items["approval:service-owner"] == (True, "1 of 1 approval: priya.shah@example.org")
    assert items["approval:data-protection"] == (False, "0 of 1 approval")
    with pytest.raises(BadInput, match="role 'ops-leed'") as err:
        approve(ws, SERVICE, rid, "ops-leed", "", key=key)
    assert err.value.hint is not None and "ops-lead" in err.value.hint


def test_gate_check_lists_every_missing_item_precisely(ws, phased) -> None:
    check = check_phase(ws, SERVICE, "production")
    assert not check.ready and check.current == "poc" and check.release_id == phased[1]
    assert check.missing == [
        "phase:order",
        "approval:service-owner",
        "approval:data-protection",
        "checklist:dpia",
        "checklist:model-card",
        "checklist:runbook",
        "checklist:on-call",
        "min_days:min_days_in_previous",
    ]
    items = _items(check)
    assert items["phase:order"][1] == "case-triage is in poc; it enters pilot first"
    assert items["eval_gate:eval"][0] is True
    assert items["checklist:dpia"][1].startswith("Data protection impact assessment signed off")
    assert "of 14 days in poc" in items["min_days:min_days_in_previous"][1]


def test_advance_through_pilot_to_production(
    ws, phased, owner_keys: OwnerKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = phased[1]
    with pytest.raises(CheckFailed, match="cannot enter pilot: approval ml-lead: 0 of 1"):
        advance_phase(ws, SERVICE)
    assert phase_status(ws, SERVICE).phase == "poc"
    monkeypatch.setenv("RELEASER_ACTOR", "tom")
    approve(ws, SERVICE, rid, "ml-lead", "eval report reviewed", key=owner_keys.key("tom"))
    status = advance_phase(ws, SERVICE)
    assert status.phase == "pilot" and [h["phase"] for h in status.history] == ["poc", "pilot"]
    assert status.history[-1]["by"] == "tom" and status.history[-1]["release_id"] == rid

    for who, role in (("priya", "service-owner"), ("alex", "data-protection")):
        monkeypatch.setenv("RELEASER_ACTOR", who)
        approve(ws, SERVICE, rid, role, "", key=owner_keys.key(who))
    for item in ("dpia", "model-card", "runbook", "on-call"):
        record_evidence(ws, SERVICE, item, f"https://docs.example.org/{item}")
    entered = datetime.fromisoformat(status.entered_at.replace("Z", "+00:00"))
    early = (entered + timedelta(days=3)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    check = check_phase(ws, SERVICE, "production", now=early)
    assert check.missing == ["min_days:min_days_in_previous"]
    assert _items(check)["min_days:min_days_in_previous"][1] == "3.0 of 14 days in pilot"
    late = (entered + timedelta(days=15)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert advance_phase(ws, SERVICE, now=late).phase == "production"
    actions = [e.action for e in audit_log(ws) if e.action.startswith("phase.")]
    assert actions.count("phase.advance") == 2 and actions.count("phase.evidence") == 4


def test_evidence_for_an_unknown_item_is_refused(ws) -> None:
    with pytest.raises(BadInput, match="no checklist item 'dpai'") as err:
        record_evidence(ws, SERVICE, "dpai", "x")
    assert err.value.hint is not None and "dpia" in err.value.hint
    with pytest.raises(BadInput, match="no phase 'prod'"):
        check_phase(ws, SERVICE, "prod")
