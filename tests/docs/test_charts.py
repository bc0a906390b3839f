"""The handover charts: rollout names on the timeline stay readable."""

from __future__ import annotations

import re

from releaser.docs.charts import rollout_timeline_chart


def _rollout(rid: str, started: str, ended: str) -> dict[str, object]:
    return {
        "id": rid,
        "started_at": started,
        "status": "aborted",
        "steps": [{"percent": 0.0}, {"percent": 25.0}],
        "decisions": [{"step": 0, "action": "abort", "at": ended}],
    }


def _label_positions(svg: str, names: list[str]) -> dict[str, tuple[float, float]]:
    found = {}
    for name in names:
        match = re.search(
            r'<text[^>]*x="([\d.]+)"[^>]*y="([\d.]+)"[^>]*>' + re.escape(name) + "</text>", svg
        )
        assert match, name
        found[name] = (float(match.group(1)), float(match.group(2)))
    return found


def test_rollouts_started_close_together_get_their_names_stacked_not_overprinted() -> None:
    rollouts = [
        _rollout("case-triage-1", "2026-12-01T09:00:00Z", "2026-12-01T09:20:00Z"),
        _rollout("case-triage-2", "2026-12-01T09:02:00Z", "2026-12-01T09:25:00Z"),
        _rollout("case-triage-3", "2026-12-01T09:04:00Z", "2026-12-01T09:30:00Z"),
        # Started much later: its name has room at the first line.
        _rollout("case-triage-4", "2026-12-03T09:00:00Z", "2026-12-03T09:30:00Z"),
    ]
    svg = rollout_timeline_chart(rollouts)
    assert svg is not None
    names = [str(r["id"]) for r in rollouts]
    at = _label_positions(svg, names)
    heights = [at[n][1] for n in names[:3]]
    assert len(set(heights)) == 3 and heights == sorted(heights, reverse=True)
    assert at["case-triage-4"][1] == at["case-triage-1"][1]
