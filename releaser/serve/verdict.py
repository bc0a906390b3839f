"""Releaser's verdict on a rollout step, over HTTP, for an Argo Rollouts ``web`` analysis.

``POST /v1/rollouts/<service>/verdict`` takes the decision ``releaser rollout advance``
takes (:func:`releaser.api.rollouts.advance_if_live`: the same analysis, the same store
transaction and audit event) and answers it as JSON::

    {"service": "case-triage", "rollout": "case-triage-2", "step": 1, "step_name": "canary-5",
     "decision": "advance", "reasons": ["..."], "at": "2030-01-01T00:00:00Z", "written": true}

``decision`` is ``advance`` or ``promote`` (Argo's analysis succeeds and it moves to the next
``setWeight``, or finishes), ``rollback`` (the analysis fails and Argo aborts), ``hold`` or
``none`` (neither: the measurement is inconclusive and Argo asks again after its
``interval``). ``written`` says whether the store's audit chain moved during the call.

Argo asks once per ``interval`` for as long as its analysis step lasts, so a verdict must be
safe to repeat. The request body names the step Argo is at (``{"step": 1, "release":
"<id>"}``, written into the AnalysisTemplate by ``releaser k8s render``), and releaser
decides only when its own rollout is at that step:

- releaser is at that step: the decision is taken and recorded (a hold that changes nothing
  writes nothing, as ``rollout advance``);
- releaser already moved past it (an earlier poll advanced it, or a CI cron did): the answer
  is ``advance`` (``promote`` or ``rollback`` if the rollout has ended that way) and nothing
  is written, so a repeated poll never judges the next step;
- releaser is behind Argo, is paused, has no rollout, or rolls out another release: ``hold``
  or ``none``, with the reason, and nothing is written.

Without a step (a plain ``POST``) the verdict is ``rollout advance`` itself. ``GET`` answers
the same shape from ``rollout status``'s preview and never writes.

The store work runs in a worker thread, one verdict at a time, bounded by
``VerdictEndpoint.timeout_s`` (504 past it; a late call waits for the one still running).
A service other than the gateway's gets 404; errors are JSON ``{"error": ...}`` with no
secret in them (store URLs are printed redacted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from releaser.errors import BadInput, ExternalUnavailable, NotFound, ReleaserError, StateConflict

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = ["PATH_PREFIX", "Verdict", "VerdictEndpoint", "judge", "preview"]

logger = logging.getLogger("releaser.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PATH_PREFIX = "/v1/rollouts/"
MAX_BODY_BYTES = 4_096  # {"step": N, "release": "<64 hex>"} fits many times over
BODY_TIMEOUT_S = 5.0
DecisionName = Literal["advance", "promote", "hold", "rollback", "none"]
_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


@dataclass(frozen=True)
class Verdict:
    """What releaser decided for a rollout step, in the endpoint's JSON shape."""

    service: str
    rollout: str | None
    step: int | None
    step_name: str | None
    decision: DecisionName
    reasons: list[str] = field(default_factory=list)
    at: str = ""
    written: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape."""
        return asdict(self)


def _same_release(asked: str | None, candidate: str) -> bool:
    return asked is None or candidate.startswith(asked) or asked.startswith(candidate)


def judge(
    ws: Workspace,
    service: str,
    *,
    step: int | None = None,
    release: str | None = None,
    now: str | None = None,
) -> Verdict:
    """Decide Argo's analysis of ``step`` as ``rollout advance`` does, recording it the same way.

    Without ``step``, exactly :func:`releaser.api.rollouts.advance_if_live`. NotFound for a
    service not in releaser.yaml.
    """
    from releaser.api.context import utc_now
    from releaser.api.rollouts import advance_if_live
    from releaser.api.state import rollout_record, service_state

    now = now or utc_now()
    ws.config.service(service)
    state = service_state(ws, service)
    if state.active_rollout is None:
        return _ended(ws, service, state.rollouts, release, now)
    rollout, _ = rollout_record(ws, state.active_rollout)
    here = Verdict(service, rollout.id, rollout.step, rollout.current.name, "hold", at=now)
    if not _same_release(release, rollout.candidate):
        return _with(
            here,
            "none",
            f"Argo rolls out release {release} but releaser's live rollout is of "
            f"{rollout.candidate}; render the manifests again and apply them",
        )
    if step is not None and rollout.step > step:
        return _with(
            here,
            "advance",
            f"releaser already advanced past step {step} "
            f"({rollout.steps[step].name}); now at {rollout.current.name}",
        )
    if step is not None and rollout.step < step:
        return _with(
            here,
            "hold",
            f"Argo is at step {step} but releaser is at step {rollout.step} "
            f"({rollout.current.name}); releaser decides that step first",
        )
    head = ws.store.audit_head()[0]
    result = advance_if_live(ws, service, now=now)
    written = ws.store.audit_head()[0] != head
    if isinstance(result, str):  # paused (or ended between the two reads)
        why = f"the rollout of {service} is {result}; 'releaser rollout resume' continues it"
        return _with(here, "none", why, written)
    d = result.decision
    return Verdict(
        service, rollout.id, rollout.step, rollout.current.name, d.action, d.reasons, now, written
    )


def _with(v: Verdict, decision: DecisionName, reason: str, written: bool = False) -> Verdict:
    return Verdict(v.service, v.rollout, v.step, v.step_name, decision, [reason], v.at, written)


def _ended(ws: Workspace, service: str, number: int, release: str | None, now: str) -> Verdict:
    """The verdict once no rollout is live: how the last one of ``release`` ended, if it did."""
    from releaser.api.state import ROLLOUT_KIND
    from releaser.core.rollout import Rollout

    rec = ws.store.get(ROLLOUT_KIND, f"{service}-{number}") if number else None
    last = Rollout.model_validate(rec.value) if rec is not None else None
    if last is None or not _same_release(release, last.candidate):
        return Verdict(
            service, None, None, None, "none", [f"{service} has no rollout in progress"], now
        )
    ended: dict[str, DecisionName] = {
        "promoted": "promote",
        "rolled_back": "rollback",
        "aborted": "rollback",
    }
    decision = ended.get(last.status, "none")
    why = f"rollout {last.id} of {last.candidate} ended: {last.status}" + (
        f" at {last.ended_at}" if last.ended_at else ""
    )
    return Verdict(service, last.id, last.step, last.current.name, decision, [why], now)


def preview(ws: Workspace, service: str, *, now: str | None = None) -> Verdict:
    """What a verdict would say now, from ``rollout status`` (never writes)."""
    from releaser.api.context import utc_now
    from releaser.api.rollout_status import rollout_status

    now = now or utc_now()
    ws.config.service(service)
    rep = rollout_status(ws, service, now=now)
    r = rep.rollout
    if r is None or rep.state.active_rollout is None:
        number = rep.state.rollouts
        return _ended(ws, service, number, None, now)
    if rep.preview is None:
        why = f"rollout {r.id} is {r.status}" + (f"; {rep.problems[0]}" if rep.problems else "")
        return Verdict(service, r.id, r.step, r.current.name, "none", [why], now)
    p = rep.preview
    return Verdict(service, r.id, r.step, r.current.name, p.action, p.reasons, now)


def _redact(text: str) -> str:
    return _PASSWORD.sub(r"\1***@", text)


class _HttpError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hint = hint


class VerdictEndpoint:
    """The ASGI handler of ``/v1/rollouts/<service>/verdict`` for one workspace's service."""

    def __init__(self, ws: Workspace, service: str, *, timeout_s: float = 20.0) -> None:
        self.ws = ws
        self.service = service
        self.timeout_s = timeout_s
        # Released when the worker thread ends, not when a timed-out request does, so a
        # verdict never runs beside one still writing.
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request under the verdict path."""
        try:
            status, body = await self._answer(scope, receive)
        except _HttpError as exc:
            status = exc.status
            body = {"error": _redact(exc.message)}
            if exc.hint:
                body["hint"] = _redact(exc.hint)
        payload = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        path: str = scope["path"]
        service, sep, rest = path[len(PATH_PREFIX) :].partition("/")
        if not sep or rest != "verdict":
            raise _HttpError(404, f"no such endpoint: {path[:200]}")
        service = unquote(service)
        if service != self.service:
            raise _HttpError(
                404,
                f"this gateway does not serve {service[:100]!r}",
                hint=f"it serves {self.service!r}; ask the gateway of that service",
            )
        method = scope["method"]
        if method == "GET":
            verdict = await self._run(lambda: preview(self.ws, self.service))
        elif method == "POST":
            step, release = _arguments(await _read_body(receive))
            verdict = await self._run(
                lambda: judge(self.ws, self.service, step=step, release=release)
            )
        else:
            raise _HttpError(405, f"{method} is not allowed here; use POST (or GET to preview)")
        return 200, verdict.to_dict()

    async def _run(self, work: Callable[[], Verdict]) -> Verdict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise _HttpError(504, "an earlier verdict is still running; ask again") from None
        task = asyncio.ensure_future(asyncio.to_thread(work))
        task.add_done_callback(lambda _: self._lock.release())
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            raise _HttpError(
                504, f"no verdict within {self.timeout_s:g} s; the store is slow, ask again"
            ) from None
        except (NotFound, BadInput) as exc:
            status = 404 if isinstance(exc, NotFound) else 400
            raise _HttpError(status, exc.message, exc.hint) from None
        except StateConflict as exc:
            raise _HttpError(409, exc.message, exc.hint) from None
        except ExternalUnavailable as exc:
            raise _HttpError(503, exc.message, exc.hint) from None
        except ReleaserError as exc:
            raise _HttpError(409, exc.message, exc.hint) from None
        except Exception:
            logger.exception("releaser gateway: the verdict for %r failed", self.service)
            raise _HttpError(500, "the verdict failed; see the gateway's log") from None


async def _read_body(receive: Receive) -> bytes:
    """The request body, up to MAX_BODY_BYTES and BODY_TIMEOUT_S."""
    parts: list[bytes] = []
    size = 0
    more = True
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _HttpError(400, "the client went away")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _HttpError(413, f"request body over {MAX_BODY_BYTES} bytes")
                parts.append(chunk)
                more = bool(message.get("more_body", False))
    except TimeoutError:
        raise _HttpError(408, "request body not received in time") from None
    return b"".join(parts)


def _arguments(body: bytes) -> tuple[int | None, str | None]:
    """``step`` and ``release`` from a JSON object body (both optional; empty body: none)."""
    if not body.strip():
        return None, None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise _HttpError(400, "the body is not JSON", hint='send {"step": 0}') from None
    if not isinstance(value, dict):
        raise _HttpError(400, "the body must be a JSON object", hint='send {"step": 0}')
    step = value.get("step")
    if isinstance(step, str) and step.isdigit() and len(step) < 6:
        step = int(step)  # Argo substitutes args as text
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise _HttpError(400, "step must be a step index (0, 1, ...)", hint='send {"step": 0}')
    release = value.get("release")
    if release is not None and (
        not isinstance(release, str) or not re.fullmatch(r"[0-9a-f]{4,64}", release)
    ):
        raise _HttpError(400, "release must be a release id (4-64 hex characters)")
    return step, release or None
