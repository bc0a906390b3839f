"""Posting one body to one webhook: the HTTP part of notifications.

The standard library's client, not httpx: it loads in a tenth of the time, and a
rollback's notification should cost little more than the request. Nothing here
raises: how each post went comes back as a :class:`Delivery`, safe to print (no
URL, no token).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import urllib.request

    from releaser.config.alerting import Webhook

__all__ = ["MAX_TEXT", "Delivery", "hook_secrets", "post", "shorten"]

MAX_TEXT = 500
_BACKOFF_S = 0.25
_MAX_ANSWER = 65_536
"""Bytes of a webhook's answer read (and dropped)."""


@dataclass(frozen=True)
class Delivery:
    """How posting one event to one webhook went (no URL, no token: safe to print)."""

    webhook: str
    event: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``notify test --json``, the audit event)."""
        return {
            "webhook": self.webhook,
            "event": self.event,
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "error": self.error,
        }


def shorten(text: str) -> str:
    """``text`` cut to :data:`MAX_TEXT` characters."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def hook_secrets(hooks: Sequence[Webhook]) -> list[str]:
    """The webhooks' URLs and tokens, as set: what a payload and an error must not show."""
    found = []
    for h in hooks:
        for name in (h.url_env, h.token_env):
            if name and os.environ.get(name):
                found.append(os.environ[name])
        if h.url:
            found.append(h.url)
    return found


def _opener() -> urllib.request.OpenerDirector:
    """No proxies from the environment and no redirects: the payload goes where configured
    (a webhook that redirects is answered as it stands, its body not sent elsewhere)."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


def post(hook: Webhook, body: bytes, deadline: float, secrets: Sequence[str]) -> Delivery:
    """POST ``body`` until it lands, the retries run out or ``deadline`` passes.

    The standard library's client, not httpx: it loads in a tenth of the time, and
    a rollback's notification should cost little more than the request. It is imported
    here, with a webhook to tell: a rollback without one does not pay for it.
    """
    import http.client
    import urllib.error
    import urllib.request

    def fail(attempts: int, error: str, status: int | None = None) -> Delivery:
        for s in secrets:
            error = error.replace(s, "***")
        return Delivery(hook.name, "", False, attempts, status, shorten(error))

    url = hook.url or os.environ.get(hook.url_env or "", "")
    if not url:
        return fail(0, f"the environment variable {hook.url_env} (the URL) is not set")
    headers = {"Content-Type": "application/json", "User-Agent": "releaser-notify"}
    if hook.header and hook.token_env:
        token = os.environ.get(hook.token_env)
        if not token:
            return fail(0, f"the environment variable {hook.token_env} (the token) is not set")
        headers[hook.header] = token
    opener = _opener()
    error, status, attempts = "", None, 0
    for attempt in range(hook.retries + 1):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        attempts = attempt + 1
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=left) as answer:
                answer.read(_MAX_ANSWER)
                status = int(answer.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            exc.close()
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            error, status = f"{type(exc).__name__}: {exc}", None
        if status is not None and 200 <= status < 300:
            return Delivery(hook.name, "", True, attempts, status)
        if status is not None:
            error = f"HTTP {status}"
            if status != 429 and status < 500:
                break  # the webhook refuses this request: sending it again will not help
        pause = min(_BACKOFF_S * 2**attempt, deadline - time.monotonic())
        if pause <= 0 or attempt == hook.retries:
            break
        time.sleep(pause)
    if not error:
        error = f"no answer within {hook.timeout_s:g} s"
    elif deadline - time.monotonic() <= 0:
        error += f" (gave up after {hook.timeout_s:g} s)"
    return fail(attempts, error, status)
