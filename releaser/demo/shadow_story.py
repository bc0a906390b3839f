"""The shadow chapter of the demo: a candidate judged on mirrored requests before any user.

The team adds a shadow step to the plan and rolls the better model out again. Its
endpoint was deployed with a stale text-cleaning step, so for about one case in five it
files the case under another queue: the eval gate, which scores the registered model, cannot
see that; only the deployed endpoint does it. Behind the gateway (uvicorn in a thread, real
HTTP on loopback) every user is answered by the stable endpoint, half the requests are
also sent to the candidate's endpoint, and ``rollout advance`` rolls the candidate back on
its agreement with the stable answers. Library code: it reports through ``report``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

__all__ = ["SHADOW_STEP", "ShadowStory", "add_shadow_step", "run_shadow_story"]

Report = Callable[[str], None]
SERVICE = "case-triage"
QUEUES = ("housing", "benefits", "council-tax", "planning", "waste", "noise")
SHADOW_STEP = (
    "        - name: shadow\n"
    "          percent: 0\n"
    "          min_samples: 200\n"
    "          shadow: {percent: 50, path: queue, min_agreement: 0.95}\n"
)
"""The step the team puts first: half the requests mirrored, queues compared, 95% needed."""


@dataclass(frozen=True)
class ShadowStory:
    """What the shadow chapter measured."""

    requests: int
    served_by_candidate: int
    """User responses that came from the candidate (0: it served nobody)."""
    mirrored: int
    compared: int
    agreement: float | None
    decision: str
    reasons: list[str]


def _queue(text: str, *, stale: bool) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    queue = QUEUES[digest[0] % len(QUEUES)]
    if stale and digest[1] % 5 == 0:  # about one case in five filed elsewhere
        queue = QUEUES[(digest[0] + 1) % len(QUEUES)]
    return queue


def _endpoint(name: str, *, stale: bool) -> tuple[ThreadingHTTPServer, list[int]]:
    """A model endpoint stand-in answering ``{"queue": ...}``; counts mirrored requests."""
    from releaser.demo.serve_story import JsonHandler, serve_in_thread

    mirrored = [0]

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            text = json.loads(self.rfile.read(length) or b"{}").get("text", "")
            if self.headers.get("x-releaser-shadow") == "1":
                mirrored[0] += 1
            self.answer(
                json.dumps({"queue": _queue(text, stale=stale), "served_by": name}).encode()
            )

    return serve_in_thread(Handler), mirrored


def add_shadow_step(root: Path) -> None:
    """Put the shadow step first in the service's plan and commit (what the team does)."""
    cfg = root / "releaser.yaml"
    text = cfg.read_text(encoding="utf-8")
    first = "        - name: internal\n"
    if SHADOW_STEP not in text:
        cfg.write_text(text.replace(first, SHADOW_STEP + first, 1), encoding="utf-8")
        subprocess.run(
            ["git", "commit", "-qam", "Rollout plan: a shadow step before the first users"],
            cwd=root,
            check=True,
        )


def run_shadow_story(
    root: Path, release_id: str, stable_id: str, report: Report, *, requests: int = 1000
) -> ShadowStory:
    """Start ``release_id`` at its shadow step behind the gateway, then let advance judge it."""
    from releaser.api.rollout_status import rollout_status
    from releaser.api.rollouts import advance_rollout, start_rollout
    from releaser.api.workspace import open_workspace
    from releaser.demo.serve_story import serving
    from releaser.router import Router
    from releaser.serve import Gateway, StaticUpstreams

    stable_server, _ = _endpoint("stable", stale=False)
    candidate_server, mirrored = _endpoint("candidate", stale=True)
    ws = open_workspace(root)
    router = Router(ws.store_url, refresh_interval_ms=20)
    stack = ExitStack()
    try:
        start_rollout(ws, SERVICE, release_id, now="2026-03-30T09:00:00.000000Z")
        report(f"rollout of {release_id} started at its shadow step: it serves no user yet")
        urls = {
            stable_id: f"http://127.0.0.1:{stable_server.server_address[1]}",
            release_id: f"http://127.0.0.1:{candidate_server.server_address[1]}",
        }
        gateway = Gateway(SERVICE, router, StaticUpstreams(None, releases=urls, by_role=False))
        port = stack.enter_context(serving(gateway))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        from_candidate = 0
        for i in range(requests):
            body = json.dumps({"text": f"case {i}: a question about my account"})
            conn.request("POST", "/triage", body, {"X-User-Id": f"user-{i}"})
            answer = json.loads(conn.getresponse().read())
            from_candidate += answer["served_by"] == "candidate"
        conn.close()
        while gateway.shadow_in_flight:
            time.sleep(0.01)  # the last mirrored calls finish in the background
        router.flush()
        shadow = rollout_status(ws, SERVICE).to_dict()["shadow"] or {}
        agreement = shadow.get("agreement")
        report(
            f"  {requests} user requests: {from_candidate} answered by the candidate; "
            f"{mirrored[0]} also sent to it in the background (marked X-Releaser-Shadow: 1)"
        )
        shown = "n/a" if agreement is None else f"{100 * agreement:.1f}%"
        report(
            f"  rollout status: {shadow.get('compared')} answers compared, agreement {shown} "
            f"(at least {100 * float(shadow.get('min_agreement') or 0):.0f}% needed)"
        )
        result = advance_rollout(ws, SERVICE, now="2026-03-30T09:10:00.000000Z")
        decision = result.decision
        report(f"rollout advance: {decision.action}")
        for reason in decision.reasons:
            report(f"  {reason}")
        return ShadowStory(
            requests=requests,
            served_by_candidate=from_candidate,
            mirrored=int(shadow.get("mirrored") or 0),
            compared=int(shadow.get("compared") or 0),
            agreement=agreement,
            decision=decision.action,
            reasons=list(decision.reasons),
        )
    finally:
        stack.close()
        router.close()
        ws.close()
        for endpoint in (stable_server, candidate_server):
            endpoint.shutdown()
            endpoint.server_close()
