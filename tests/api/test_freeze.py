"""Change freezes: the pure windows, releaser.yaml's validation, and the refusals and holds
on a real workspace (real store, real releases, real gate; the clock passed explicitly)."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, timedelta

import pytest

from releaser.api.audit import audit_log, verify_audit
from releaser.api.freeze import (
    FREEZE_KIND,
    ChangeFrozen,
    freeze_service,
    freezes_now,
    unfreeze_service,
)
from releaser.api.prompts import promote_prompt
from releaser.api.rollback import rollback
from releaser.api.rollout_status import rollout_status
from releaser.api.rollouts import (
    abort_rollout,
    advance_if_live,
    advance_rollout,
    pause_rollout,
    promote_rollout,
    resume_rollout,
    service_state,
    start_rollout,
)
from releaser.api.workspace import Workspace, open_workspace
from releaser.config import parse_config
from releaser.config.template import render_init_template
from releaser.core.freeze import (
    DatesWindow,
    ManualFreeze,
    WeeklyWindow,
    active_freezes,
    parse_until,
    parse_weekly_point,
)
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.demo.workspace import ExampleWorkspace
from releaser.errors import EXIT_BAD_INPUT, BadInput, ConfigError
from releaser.store.base import MetricDelta
from tests.conftest import stable_and_candidate

SERVICE = "case-triage"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
LONDON = "Europe/London"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the pure windows ---------------------------------------------------------------------

WEEKEND = WeeklyWindow(
    "weekend", parse_weekly_point("Fri 16:00"), parse_weekly_point("Mon 08:00"), LONDON
)


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-03-06T15:59:00Z", None),  # Friday 15:59 GMT
        ("2026-03-06T16:00:00Z", "2026-03-09T08:00:00Z"),
        ("2026-03-08T23:00:00Z", "2026-03-09T08:00:00Z"),  # Sunday night
        ("2026-03-09T07:59:59Z", "2026-03-09T08:00:00Z"),
        ("2026-03-09T08:00:00Z", None),  # Monday 08:00: open again
        ("2026-07-03T14:59:00Z", None),  # Friday 15:59 BST
        ("2026-07-03T15:00:00Z", "2026-07-06T07:00:00Z"),  # 16:00 BST to 08:00 BST
        # The clocks go back on Sunday 25 October: it starts in BST and ends in GMT.
        ("2026-10-23T15:00:00Z", "2026-10-26T08:00:00Z"),
    ],
)
def test_a_weekly_window_follows_the_local_clock(now: str, until: str | None) -> None:
    found = WEEKEND.active(_at(now))
    assert (found.until if found else None) == until


def test_a_window_inside_one_day_does_not_wrap() -> None:
    window = WeeklyWindow(
        "release-board", parse_weekly_point("Wed 10:00"), parse_weekly_point("wednesday 12:30")
    )
    assert window.active(_at("2026-03-04T09:59:00Z")) is None
    assert window.active(_at("2026-03-04T11:00:00Z")).until == "2026-03-04T12:30:00Z"  # type: ignore[union-attr]
    assert window.active(_at("2026-03-05T11:00:00Z")) is None


def test_dates_freeze_whole_local_days_and_end_after_the_run() -> None:
    xmas = DatesWindow(
        "christmas", frozenset({date(2026, 12, 25), date(2026, 12, 26)}), LONDON, "holidays"
    )
    assert xmas.active(_at("2026-12-24T23:59:59Z")) is None
    found = xmas.active(_at("2026-12-25T00:00:00Z"))
    assert found is not None and found.until == "2026-12-27T00:00:00Z"
    assert (
        found.describe() == "change freeze 'christmas' (dates) until 2026-12-27T00:00:00Z: holidays"
    )
    assert xmas.active(_at("2026-12-27T00:00:00Z")) is None


def test_manual_freeze_comes_first_and_ends_at_its_time() -> None:
    manual = ManualFreeze(until="2026-03-07T10:00:00Z", reason="incident 42", by="ops")
    now = _at("2026-03-06T17:00:00Z")
    found = active_freezes([WEEKEND], manual, now)
    assert [(f.name, f.kind) for f in found] == [("manual", "manual"), ("weekend", "weekly")]
    assert found[0].reason == "incident 42 (set by ops)"
    assert active_freezes([], manual, _at("2026-03-07T10:00:00Z")) == []
    with pytest.raises(BadInput, match="aware"):
        active_freezes([], manual, datetime(2026, 3, 6))


def test_until_takes_iso_or_a_duration_and_refuses_the_past() -> None:
    now = _at("2026-03-02T09:00:00Z")
    assert parse_until("2h", now) == now + timedelta(hours=2)
    assert parse_until("3d", now) == now + timedelta(days=3)
    assert parse_until("2026-03-02T12:00:00+01:00", now) == _at("2026-03-02T11:00:00Z")
    with pytest.raises(BadInput, match="not in the future"):
        parse_until("2026-03-02T08:59:59Z", now)
    with pytest.raises(BadInput, match="more than 366 days"):
        parse_until("400d", now)
    with pytest.raises(BadInput, match="not an ISO 8601 time"):
        parse_until("next week", now)
    with pytest.raises(BadInput, match="not a weekday and a time"):
        parse_weekly_point("Fry 16:00")
    with pytest.raises(BadInput, match="not a weekday and a time"):
        parse_weekly_point("Fri 25:00")


# --- releaser.yaml -----------------------------------------------------------------------


def _config(freezes: str) -> str:
    return render_init_template("council-casework", SERVICE) + "\nfreezes:\n" + freezes


def test_freeze_windows_validate() -> None:
    cfg = parse_config(
        _config(
            "  - {name: weekend, from: 'Fri 16:00', to: 'Mon 08:00', timezone: Europe/London}\n"
            "  - {name: christmas, dates: [2026-12-25, 2026-12-26], services: [case-triage]}\n"
        )
    )
    assert [w.name for w in cfg.freezes] == ["weekend", "christmas"]
    assert isinstance(cfg.freezes[0].window(), WeeklyWindow)
    assert cfg.freezes[1].window() == DatesWindow(
        "christmas", frozenset({date(2026, 12, 25), date(2026, 12, 26)})
    )


@pytest.mark.parametrize(
    ("window", "where", "says"),
    [
        (
            "{name: w, from: 'Fri 16:00', to: 'Mon 08:00', timezone: Mars/Olympus}",
            "freezes[0].timezone",
            "unknown time zone",
        ),
        (
            "{name: w, from: 'Fryday 16:00', to: 'Mon 08:00'}",
            "freezes[0].from",
            "not a weekday and a time",
        ),
        ("{name: w, from: 'Fri 16:00'}", "freezes[0].to", "needs 'to' too"),
        ("{name: w, from: 'Fri 16:00', to: 'Fri 16:00'}", "freezes[0].to", "ends when it starts"),
        (
            "{name: w, from: 'Fri 16:00', to: 'Mon 08:00', dates: [2026-12-25]}",
            "freezes[0].dates",
            "not both",
        ),
        ("{name: w}", "freezes[0].dates", "needs from/to or dates"),
        (
            "{name: w, dates: [2026-12-25], services: [case-triag]}",
            "freezes[0].services[0]",
            "no service 'case-triag'",
        ),
        ("{name: w, dates: [2026-12-45]}", "", "not a valid date or time: day is out of range"),
    ],
)
def test_a_bad_window_is_named_by_its_field(window: str, where: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config(f"  - {window}\n"))
    problems = [p.render() for p in caught.value.problems]
    assert any(where in p and says in p for p in problems), problems
    assert all(p.startswith("releaser.yaml:") and p.split(":")[1].isdigit() for p in problems)


def test_two_windows_of_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"freezes\[1\].name: the freeze 'w' is listed twice"):
        parse_config(
            _config("  - {name: w, dates: [2026-12-25]}\n  - {name: w, dates: [2026-12-26]}\n")
        )


# --- on a workspace -----------------------------------------------------------------------


@pytest.fixture
def frozen_ws(release_ws: ExampleWorkspace):
    """(workspace, r1 stable, r2 gated, not started)."""
    root = release_ws.root
    ws, r1, r2 = stable_and_candidate(root, SERVICE, _iso(T0))
    yield ws, r1, r2
    ws.close()


def _metrics(ws: Workspace, rollout_id: str, step: int, candidate_errors: float) -> None:
    n = 5000
    latency = LatencyHistogram.of([150.0] * n)
    ws.store.add_metrics(
        [
            MetricDelta(
                rollout_id,
                step,
                "baseline",
                VariantStats(requests=n, errors=n // 100, latency=latency),
            ),
            MetricDelta(
                rollout_id,
                step,
                "candidate",
                VariantStats(requests=n, errors=int(n * candidate_errors), latency=latency),
            ),
        ]
    )


def test_freeze_refuses_a_start_writes_nothing_and_unfreeze_lets_it(frozen_ws) -> None:
    ws, _r1, r2 = frozen_ws
    at = _iso(T0 + timedelta(minutes=5))
    done = freeze_service(ws, SERVICE, until="2h", reason="incident 42", now=at)
    assert done.changed and done.freeze is not None
    assert done.freeze["until"] == "2026-03-02T11:05:00Z"
    again = freeze_service(ws, SERVICE, until="2026-03-02T11:05:00Z", reason="incident 42", now=at)
    assert not again.changed, "the same freeze again writes nothing"
    events = [e.action for e in audit_log(ws)]
    assert events.count("freeze.set") == 1
    before = len(events)
    with pytest.raises(ChangeFrozen) as refused:
        start_rollout(ws, SERVICE, r2, now=_iso(T0 + timedelta(minutes=10)))
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert (
        "change freeze 'manual' (manual) until 2026-03-02T11:05:00Z: incident 42"
        in refused.value.message
    )
    assert "unfreeze" in (refused.value.hint or "")
    assert service_state(ws, SERVICE).active_rollout is None
    assert len(audit_log(ws)) == before
    # After its end the freeze is over without anyone lifting it.
    assert freezes_now(ws, SERVICE, "2026-03-02T11:05:00Z") == []
    lifted = unfreeze_service(
        ws, SERVICE, reason="incident closed", now=_iso(T0 + timedelta(minutes=20))
    )
    assert (
        lifted.changed
        and lifted.freeze is not None
        and lifted.freeze["lifted"]["reason"] == "incident closed"
    )
    assert not unfreeze_service(
        ws, SERVICE, reason="again", now=_iso(T0 + timedelta(minutes=21))
    ).changed
    started = start_rollout(ws, SERVICE, r2, now=_iso(T0 + timedelta(minutes=30)))
    assert started.rollout.step == 0
    actions = [e.action for e in audit_log(ws)]
    assert actions.count("freeze.lift") == 1 and "rollout.start" in actions
    assert verify_audit(ws).ok


def test_a_bad_freeze_writes_nothing(frozen_ws) -> None:
    ws, *_ = frozen_ws
    before = len(audit_log(ws))
    with pytest.raises(BadInput, match="not in the future"):
        freeze_service(ws, SERVICE, until="2026-03-01T00:00:00Z", reason="x", now=_iso(T0))
    with pytest.raises(BadInput, match="a reason is required"):
        freeze_service(ws, SERVICE, until="2h", reason="  ", now=_iso(T0))
    with pytest.raises(BadInput, match="no service 'case-triag'"):
        freeze_service(ws, "case-triag", until="2h", reason="x", now=_iso(T0))
    assert ws.store.get(FREEZE_KIND, SERVICE) is None
    assert len(audit_log(ws)) == before


def test_advance_holds_during_a_freeze_and_recovery_still_works(frozen_ws) -> None:
    ws, r1, r2 = frozen_ws
    t = T0 + timedelta(hours=1)
    rollout_id = start_rollout(ws, SERVICE, r2, now=_iso(t)).rollout.id
    _metrics(ws, rollout_id, 0, 0.01)
    t += timedelta(hours=3)
    freeze_service(ws, SERVICE, until="1d", reason="council elections", now=_iso(t))
    held = advance_rollout(ws, SERVICE, now=_iso(t + timedelta(minutes=1)))
    assert held.decision.action == "hold" and not held.transitioned
    assert held.frozen is not None and held.frozen.name == "manual"
    assert held.decision.reasons[0].startswith("held by change freeze 'manual'")
    assert "would advance to the next step" in held.decision.reasons[0]
    assert held.rollout.step == 0
    live = advance_if_live(ws, SERVICE, now=_iso(t + timedelta(minutes=2)))
    assert not isinstance(live, str) and live.decision.action == "hold"
    status = rollout_status(ws, SERVICE, now=_iso(t + timedelta(minutes=3))).to_dict()
    assert status["freezes"]["in_force"][0]["name"] == "manual"
    assert status["freezes"]["manual"]["reason"] == "council elections"
    with pytest.raises(ChangeFrozen, match="cannot promote the rollout"):
        promote_rollout(ws, SERVICE, reason="skip", now=_iso(t + timedelta(minutes=4)))
    # Pause and resume work during a freeze; so does an automatic rollback.
    pause_rollout(ws, SERVICE, reason="look", now=_iso(t + timedelta(minutes=5)))
    resume_rollout(ws, SERVICE, reason="ok", now=_iso(t + timedelta(minutes=6)))
    _metrics(ws, rollout_id, 0, 0.08)
    back = advance_rollout(ws, SERVICE, now=_iso(t + timedelta(hours=1)))
    assert back.decision.action == "rollback" and back.transitioned and back.frozen is None
    assert service_state(ws, SERVICE).stable == r1
    assert verify_audit(ws).ok


def test_rollback_and_abort_work_during_a_freeze_and_advance_resumes_after(frozen_ws) -> None:
    ws, r1, r2 = frozen_ws
    t = T0 + timedelta(hours=1)
    start_rollout(ws, SERVICE, r2, now=_iso(t))
    freeze_service(ws, SERVICE, until="1d", reason="elections", now=_iso(t))
    abort_rollout(ws, SERVICE, reason="not now", now=_iso(t + timedelta(minutes=1)))
    unfreeze_service(ws, SERVICE, reason="over", now=_iso(t + timedelta(minutes=2)))
    rollout_id = start_rollout(ws, SERVICE, r2, now=_iso(t + timedelta(minutes=3))).rollout.id
    _metrics(ws, rollout_id, 0, 0.01)
    assert advance_rollout(ws, SERVICE, now=_iso(t + timedelta(hours=3))).rollout.step == 1
    freeze_service(ws, SERVICE, until="1d", reason="elections", now=_iso(t + timedelta(hours=4)))
    res = rollback(ws, SERVICE, reason="complaint", now=_iso(t + timedelta(hours=5)))
    assert res.switched and service_state(ws, SERVICE).stable == r1


def test_a_window_in_releaser_yaml_refuses_by_name(frozen_ws) -> None:
    ws, _r1, r2 = frozen_ws
    root = ws.root
    cfg = root / "releaser.yaml"
    cfg.write_text(
        cfg.read_text() + "\nfreezes:\n  - name: weekend\n    from: Fri 16:00\n    to: Mon 08:00\n"
        "    timezone: Europe/London\n    reason: nobody on call\n"
    )
    subprocess.run(["git", "commit", "-qam", "weekend freeze"], cwd=root, check=True)
    ws.close()
    fresh = open_workspace(root)
    try:
        saturday = _iso(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))
        with pytest.raises(ChangeFrozen) as refused:
            start_rollout(fresh, SERVICE, r2, now=saturday)
        assert "change freeze 'weekend' (weekly) until 2026-03-09T08:00:00Z: nobody on call" in str(
            refused.value
        )
        assert "releaser.yaml" in (refused.value.hint or "")
        monday = _iso(datetime(2026, 3, 9, 8, 0, tzinfo=UTC))
        assert start_rollout(fresh, SERVICE, r2, now=monday).rollout.step == 0
    finally:
        fresh.close()


def test_the_runbook_lists_the_windows_and_the_manual_freeze(frozen_ws) -> None:
    from releaser.docs.runbook import render_runbook

    ws, *_ = frozen_ws
    root = ws.root
    cfg = root / "releaser.yaml"
    cfg.write_text(
        cfg.read_text() + "\nfreezes:\n"
        "  - {name: weekend, from: 'Fri 16:00', to: 'Mon 08:00', timezone: Europe/London,"
        " reason: nobody on call}\n"
        "  - {name: christmas, dates: [2026-12-25, 2026-12-26]}\n"
        "  - {name: other, dates: [2026-12-31], services: [case-triage]}\n"
    )
    subprocess.run(["git", "commit", "-qam", "freezes"], cwd=root, check=True)
    ws.close()
    fresh = open_workspace(root)
    try:
        freeze_service(fresh, SERVICE, until="2h", reason="elections", now=_iso(T0))
        text = render_runbook(fresh, SERVICE)
    finally:
        fresh.close()
    assert "## Change freezes" in text and "**Rollback, pause and abort always work**" in text
    weekend = "| weekend | Fri 16:00 to Mon 08:00, every week | Europe/London | nobody on call |"
    assert weekend in text
    assert "| christmas | 2026-12-25, 2026-12-26 | UTC |  |" in text
    assert "| manual (`releaser freeze`) | until 2026-03-02T11:00:00Z" in text
    assert "releaser freeze case-triage --until 2h" in text


def test_prompt_promotion_to_production_is_refused_during_a_freeze(frozen_ws) -> None:
    ws, *_ = frozen_ws
    freeze_service(ws, SERVICE, until="2h", reason="elections")  # the real clock: now + 2 h
    with pytest.raises(ChangeFrozen, match="cannot move prompt case-triage-system@production"):
        promote_prompt(ws, "case-triage-system", 1, "production", "ship it")
    moved = promote_prompt(ws, "case-triage-system", 1, "staging", "try it")
    assert moved.to_version == 1
