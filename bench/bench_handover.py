"""Handover pack speed: a service with 50 releases and 10,000 audit events, in at most 5 s.

Run: ``python bench/bench_handover.py``. Builds a workspace whose sqlite store
holds 50 releases of one service, a rollout between each consecutive pair
(with decisions, and router metrics for the latest ones) and audit events up
to 10,000, then times ``build_handover`` (every document, the charts, the
audit export and its verification, the zip and the HTML page) and
``write_runbook``. Setting up the store is not timed. Prints figures and
PASS/FAIL; exits 1 if the target is missed.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from releaser.api.workspace import open_workspace
from releaser.config.template import render_init_template
from releaser.core.audit import EventDraft
from releaser.core.refs import CodeRef, DatasetRef, ModelRef, PromptRef
from releaser.core.release import Release, ReleaseContent
from releaser.core.stats_aggregates import LatencyHistogram, VariantStats
from releaser.store.base import MetricDelta, Write

SERVICE = "case-triage"
RELEASES = 50
EVENTS = 10_000
TARGET_S = 5.0
T0 = "2026-01-01T00:00:00.000000Z"


def _at(minutes: int) -> str:
    day, rest = divmod(minutes, 24 * 60)
    hour, minute = divmod(rest, 60)
    return f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{hour:02d}:{minute:02d}:00.000000Z"


def _release(i: int, config: dict[str, object]) -> Release:
    content = ReleaseContent(
        service=SERVICE,
        model=ModelRef(
            name=SERVICE,
            version=i + 1,
            run_id=f"{i:032x}",
            source=f"mlflow-artifacts:/runs/{i}/model",
            model_uri=f"models:/{SERVICE}/{i + 1}",
        ),
        prompts=[PromptRef(name="case-triage-system", version=1 + i // 5, content_hash="a" * 64)],
        datasets=[
            DatasetRef(path="data/golden.csv", md5=f"{i:032x}", rev=f"{i:040x}", remote="local")
        ],
        code=CodeRef(sha=f"{i:040x}", branch="main", dirty=False),
        config=config,
        config_hash=f"{i:064x}",
    )
    return Release.build(content, created_at=_at(i * 60 * 24), created_by="bench")


def build_state(root: Path) -> None:
    """The workspace and its store: 50 releases, 49 rollouts, 10k audit events (untimed)."""
    text = render_init_template("council-casework", SERVICE).replace(
        "backend: mlflow", "backend: file"
    )
    (root / "releaser.yaml").write_text(text, encoding="utf-8")
    ws = open_workspace(root)
    store = ws.store
    config = ws.config.service(SERVICE).model_dump(mode="json", by_alias=True)
    releases = [_release(i, config) for i in range(RELEASES)]
    writes = [Write("release", r.id, r.model_dump(mode="json"), 0) for r in releases]
    rng = random.Random(7)
    steps = [s.model_dump(mode="json") for s in ws.config.service(SERVICE).rollout.steps]
    plans = [
        {
            "name": s["name"],
            "groups": s["groups"],
            "percent": s["percent"],
            "bake_s": s["bake_minutes"] * 60,
            "min_samples": s["min_samples"],
        }
        for s in steps
    ]
    for i in range(1, RELEASES):
        start = i * 60 * 24
        rid = f"{SERVICE}-{i}"
        decisions = [
            {"at": _at(start), "step": 0, "action": "start", "reasons": [], "actor": "bench"}
        ]
        for step in range(len(plans) - 1):
            decisions.append(
                {
                    "at": _at(start + 60 * (step + 1)),
                    "step": step,
                    "action": "advance",
                    "reasons": ["healthy"],
                    "actor": "ci",
                }
            )
        decisions.append(
            {
                "at": _at(start + 300),
                "step": len(plans) - 1,
                "action": "promote",
                "reasons": ["healthy"],
                "actor": "ci",
            }
        )
        rollout = {
            "id": rid,
            "service": SERVICE,
            "baseline": releases[i - 1].id,
            "candidate": releases[i].id,
            "seed": 1,
            "steps": plans,
            "step": len(plans) - 1,
            "status": "promoted",
            "alpha": 0.01,
            "guardrails": {},
            "comparisons": [],
            "started_at": _at(start),
            "step_started_at": _at(start + 240),
            "paused_at": None,
            "paused_s_in_step": 0.0,
            "ended_at": _at(start + 300),
            "decisions": decisions,
            "forced": False,
        }
        writes.append(Write("rollout", rid, rollout, 0))
    state = {
        "service": SERVICE,
        "stable": releases[-1].id,
        "active_rollout": None,
        "known_good": [r.id for r in releases],
        "rollouts": RELEASES - 1,
        "analysis": {},
        "last_rollback": None,
        "pending_effects": [],
    }
    writes.append(Write("service", SERVICE, state, 0))
    store.commit(
        writes, EventDraft(actor="bench", action="bench.seed", subject=f"service:{SERVICE}", at=T0)
    )
    for n in range(EVENTS - 1):
        store.commit(
            [],
            EventDraft(
                actor="ci",
                action="rollout.check",
                subject=f"rollout:{SERVICE}-{1 + n % 49}",
                at=_at(n),
                after={"decision": "hold", "n": n},
                reason="bake time not reached",
            ),
        )
    batch = []
    for i in range(RELEASES - 6, RELEASES):
        for step in range(len(plans)):
            for variant, rate in (("baseline", 0.01), ("candidate", 0.012)):
                lat = [rng.lognormvariate(5.5, 0.4) for _ in range(300)]
                errs = [rng.random() < rate for _ in range(300)]
                stats = VariantStats(
                    requests=300, errors=sum(errs), latency=LatencyHistogram.of(lat)
                )
                batch.append(MetricDelta(f"{SERVICE}-{i}", step, variant, stats))
    store.add_metrics(batch)
    ws.close()


def main() -> int:
    """Time the pack and the runbook; print figures; exit 1 over the target."""
    from releaser.docs import build_handover, write_runbook

    with tempfile.TemporaryDirectory(prefix="releaser-bench-handover-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        build_state(root)
        setup = time.perf_counter() - t
        ws = open_workspace(root)
        try:
            head, _ = ws.store.audit_head()
            t = time.perf_counter()
            pack = build_handover(ws, SERVICE, root / "dist")
            first = time.perf_counter() - t
            t = time.perf_counter()
            build_handover(ws, SERVICE, root / "dist")
            second = time.perf_counter() - t
            t = time.perf_counter()
            write_runbook(ws, SERVICE)
            runbook = time.perf_counter() - t
        finally:
            ws.close()
        size = sum(p.stat().st_size for p in pack.folder.rglob("*") if p.is_file())
        print(
            f"state: {RELEASES} releases, {RELEASES - 1} rollouts, {head} audit events "
            f"(set up in {setup:.1f} s, not timed)"
        )
        print(f"handover pack, first in this process (imports jinja2, matplotlib): {first:.2f} s")
        print(f"handover pack, again: {second:.2f} s")
        print(f"runbook alone: {runbook * 1000:.0f} ms")
        print(
            f"pack: {len(pack.files)} files, {size / 1e6:.1f} MB, zip "
            f"{pack.zip_path.stat().st_size / 1e6:.1f} MB, page "
            f"{pack.html_path.stat().st_size / 1e6:.1f} MB"
        )
    ok = first <= TARGET_S
    print(
        f"{'PASS' if ok else 'FAIL'}: handover pack in {first:.2f} s (target <= {TARGET_S:.0f} s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
