"""Who is acting and from where: the actor and CI context recorded in the audit chain."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Actor", "current_actor", "utc_now"]


@dataclass(frozen=True)
class Actor:
    """The person or workflow behind a change, and the CI run it came from."""

    name: str
    context: dict[str, Any] = field(default_factory=dict)


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with microseconds and a ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_actor(env: Mapping[str, str] | None = None) -> Actor:
    """The actor from ``RELEASER_ACTOR``, GitHub Actions' variables, or the OS user.

    In GitHub Actions the actor is ``github:<GITHUB_ACTOR>`` and the context
    holds the run URL, workflow, ref and sha, so each audit event points at the
    run that made it; ``RELEASER_ACTOR`` does not replace it there (it is kept as
    ``claimed_actor``). Elsewhere ``RELEASER_ACTOR`` names the actor (a claim: what
    needs proof, an approval, is signed).
    """
    env = os.environ if env is None else env
    context: dict[str, Any] = {}
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repo = env.get("GITHUB_REPOSITORY", "")
        run_id = env.get("GITHUB_RUN_ID", "")
        if repo and run_id:
            url = f"{server}/{repo}/actions/runs/{run_id}"
            attempt = env.get("GITHUB_RUN_ATTEMPT")
            context["run_url"] = f"{url}/attempts/{attempt}" if attempt else url
        for key, var in (
            ("workflow", "GITHUB_WORKFLOW"),
            ("ref", "GITHUB_REF"),
            ("sha", "GITHUB_SHA"),
            ("event", "GITHUB_EVENT_NAME"),
            ("repository", "GITHUB_REPOSITORY"),
        ):
            if env.get(var):
                context[key] = env[var]
        context["ci"] = "github-actions"
        name = f"github:{env.get('GITHUB_ACTOR') or 'unknown'}"
    else:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        name = f"{user}@{socket.gethostname()}"
    explicit = env.get("RELEASER_ACTOR")
    if explicit and explicit != name:
        if context.get("ci") == "github-actions":
            # GitHub says who started the run; a variable any step can set does not
            # replace it. What it claimed is kept beside the proven name.
            context["claimed_actor"] = explicit
        else:
            context["os_actor"] = name
            name = explicit
    return Actor(name=name, context=context)
