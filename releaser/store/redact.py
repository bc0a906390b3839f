"""Store locations that are safe to print: passwords in URLs and DSNs replaced by ``***``."""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact_url", "scrub"]

REDACTED = "***"

# key/value DSN (libpq style): password=secret or password='se cret' (with \' escapes)
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# URL query: ?password=secret or &password=secret
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (URL userinfo, query or key/value DSN),
    and an HTTP URL's whole userinfo (its user is often a token)."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return _KV_PASSWORD.sub(rf"\g<1>{REDACTED}", url)
    start = scheme_end + 3
    # Split userinfo the way libpq does: it ends at the first '@' before any '/'.
    end = start
    while end < len(url) and url[end] not in "@/":
        end += 1
    redacted = url
    if end < len(url) and url[end] == "@":
        userinfo = url[start:end]
        user, colon, _password = userinfo.partition(":")
        if url[:scheme_end].lower() in ("http", "https"):
            # Over HTTP the user is as often a token as a name (https://TOKEN@host).
            redacted = f"{url[:start]}{REDACTED}{url[end:]}"
        elif colon:
            redacted = f"{url[:start]}{user}:{REDACTED}{url[end:]}"
    return _QUERY_PASSWORD.sub(rf"\g<1>{REDACTED}", redacted)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with each non-empty secret replaced by ``***`` (for driver error messages)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
