"""Keep secrets out of generated documents: token-like env values and store passwords.

Runbooks and handover packs are written to disk, zipped and mailed around, so
everything they contain passes through :class:`Redactor` first. It replaces
the values of environment variables whose names look like credentials
(``GITHUB_TOKEN``, ``DB_PASSWORD``, ``AWS_SECRET_ACCESS_KEY``...) and the
password of the store DSN with ``***``, wherever they appear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from releaser.store.redact import REDACTED, redact_url, scrub

__all__ = ["SECRET_NAME", "Redactor", "secret_values"]

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|_KEY$|^KEY$|"
    r"CREDENTIAL|AUTH(?!OR)|COOKIE|DSN|SIGNATURE",
    re.IGNORECASE,
)
"""Environment variable names whose values are treated as secrets."""

MIN_SECRET_LENGTH = 4
"""Shorter values (``1``, ``yes``) are too common to replace safely, and too short to matter."""

_KV_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _dsn_passwords(url: str) -> list[str]:
    """The password(s) written in a store URL or key/value DSN, raw and URL-decoded."""
    found: list[str] = []
    if "://" in url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        if password:
            found += [password, unquote(password)]
        for match in re.finditer(r"[?&]password=([^&#]*)", url, re.IGNORECASE):
            found += [match.group(1), unquote(match.group(1))]
    else:
        for match in _KV_PASSWORD.finditer(url):
            value = match.group(1)
            found += [value, value.strip("'")]
    return found


def secret_values(env: Mapping[str, str], store_urls: list[str]) -> list[str]:
    """Values to redact: token-like env vars, DSN passwords in env vars and in the store URLs."""
    values: list[str] = []
    for name, value in env.items():
        if not value:
            continue
        if SECRET_NAME.search(name):
            values.append(value)
        if "password" in value.lower() or ("://" in value and "@" in value):
            values += _dsn_passwords(value)
    for url in store_urls:
        values += _dsn_passwords(url)
    unique = {v for v in values if len(v) >= MIN_SECRET_LENGTH}
    # Longest first, so a secret containing another is replaced whole.
    return sorted(unique, key=lambda v: (-len(v), v))


@dataclass(frozen=True)
class Redactor:
    """Replaces every known secret value in text, and passwords in URLs, with ``***``."""

    secrets: tuple[str, ...]

    @classmethod
    def from_environment(cls, store_url: str, env: Mapping[str, str] | None = None) -> Redactor:
        """A redactor for the current environment and the workspace's store URL."""
        env = os.environ if env is None else env
        return cls(tuple(secret_values(env, [store_url])))

    def text(self, text: str) -> str:
        """``text`` with secrets replaced."""
        return scrub(text, list(self.secrets))

    def url(self, url: str) -> str:
        """A URL safe to print: its password and any known secret replaced."""
        return self.text(redact_url(url))

    def value(self, value: Any) -> Any:
        """A JSON-ready value with every string in it redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def bytes_clean(self, data: bytes) -> bool:
        """True when no secret appears in ``data`` (a last check before writing files)."""
        return not any(s.encode() in data for s in self.secrets if s != REDACTED)
