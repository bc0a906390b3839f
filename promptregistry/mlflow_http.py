"""Fail fast against MLflow tracking servers: a TCP probe and bounded HTTP retries.

MLflow retries an HTTP request seven times with exponential back-off and waits
up to 120 s for each, so a call to a dead server blocks for minutes. Callers
probe the server once before creating a client, and run each call inside
:func:`bounded_http`, which caps retries and timeouts unless the user has set
MLflow's own variables. MLflow offers no per-client setting, so the variables
are set process-wide for the duration of a call, under a lock.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

__all__ = ["BOUNDED_HTTP_ENV", "PROBE_TIMEOUT_S", "bounded_http", "probe"]

PROBE_TIMEOUT_S = 3.0
"""How long to wait for a TCP connection to an HTTP tracking server before giving up."""

BOUNDED_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # MLflow draws a progress bar on stderr when it downloads artifacts; a library must not.
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

_ENV_LOCK = threading.RLock()


@contextmanager
def bounded_http() -> Iterator[None]:
    """Run MLflow calls with bounded HTTP retries unless the user chose their own."""
    with _ENV_LOCK:
        added = [k for k in BOUNDED_HTTP_ENV if k not in os.environ]
        for key in added:
            os.environ[key] = BOUNDED_HTTP_ENV[key]
        try:
            yield
        finally:
            for key in added:
                os.environ.pop(key, None)


def probe(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why nothing answers at an HTTP(S) ``uri``, or None when it answers (or is not HTTP)."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__
