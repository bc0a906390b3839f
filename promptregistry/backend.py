"""The PromptBackend Protocol every storage backend implements, and shared helpers.

Two real backends implement it: ``MlflowPromptBackend`` (MLflow's prompt
registry, the default) and ``FilePromptBackend`` (YAML files in a directory,
git-friendly). One conformance suite in the tests runs against both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

from promptregistry.errors import PromptNotFound, PromptRegistryError
from promptregistry.model import AliasAction, AliasChange, PromptSpec, PromptVersion

__all__ = [
    "PromptBackend",
    "check_selector",
    "redact_uri",
    "unknown_alias",
    "unknown_name",
    "unknown_version",
]


@runtime_checkable
class PromptBackend(Protocol):
    """Where prompt versions and aliases live.

    Versions are numbered from 1 per name and never change once written.
    Aliases are mutable pointers to versions; each move is recorded in the
    backend's own alias history (``alias_history``) as an ``AliasChange``.
    Unknown names, versions and aliases raise ``PromptNotFound`` listing what
    exists; bad names raise ``InvalidPrompt`` before anything is written;
    unreachable storage raises ``BackendUnavailable``.
    """

    @property
    def url(self) -> str:
        """Where this backend stores prompts (credentials redacted), for messages."""
        ...

    def register(self, spec: PromptSpec) -> PromptVersion:
        """Store ``spec`` as the next version of ``spec.name`` and return that version."""
        ...

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> PromptVersion:
        """One version: by number, by alias, or the latest when neither is given."""
        ...

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str = "",
        actor: str = "",
        action: AliasAction = "promote",
    ) -> AliasChange:
        """Point ``alias`` at ``version``, record the move in the history and return it."""
        ...

    def delete_alias(
        self, name: str, alias: str, *, reason: str = "", actor: str = ""
    ) -> AliasChange:
        """Remove ``alias``, record the removal and return it."""
        ...

    def list_names(self) -> list[str]:
        """Every prompt name, sorted."""
        ...

    def list_versions(self, name: str) -> list[int]:
        """Every version number of ``name``, ascending."""
        ...

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and the version it points to."""
        ...

    def alias_history(self, name: str, alias: str) -> list[AliasChange]:
        """The recorded moves of ``alias`` (oldest first) made through this backend."""
        ...


def check_selector(version: int | None, alias: str | None) -> None:
    """Refuse asking for a version and an alias at the same time."""
    if version is not None and alias is not None:
        raise PromptRegistryError(
            f"asked for version {version} and alias {alias!r} at once",
            hint="give a version or an alias, not both",
        )
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise PromptRegistryError(f"version must be an integer, got {version!r}")


def _listing(items: Iterable[str], limit: int = 25) -> str:
    items = list(items)
    if not items:
        return "none"
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def unknown_name(name: str, names: Iterable[str], where: str) -> PromptNotFound:
    """PromptNotFound for a missing prompt, listing the prompts that exist."""
    names = sorted(names)
    return PromptNotFound(
        f"prompt {name!r} not found in {where}; prompts: {_listing(names)}",
        hint="check the name, or register the prompt first",
        available=names,
    )


def unknown_version(name: str, version: int, versions: Iterable[int]) -> PromptNotFound:
    """PromptNotFound for a missing version, listing the versions that exist."""
    shown = [str(v) for v in sorted(versions)]
    return PromptNotFound(
        f"prompt {name!r} has no version {version}; versions: {_listing(shown)}",
        hint="use one of the versions listed, or register the spec to make a new one",
        available=shown,
    )


def unknown_alias(name: str, alias: str, aliases: Mapping[str, int]) -> PromptNotFound:
    """PromptNotFound for a missing alias, listing the aliases that exist and their targets."""
    shown = [f"{a} -> v{v}" for a, v in sorted(aliases.items())]
    return PromptNotFound(
        f"prompt {name!r} has no alias {alias!r}; aliases: {_listing(shown)}",
        hint="promote a version to create the alias",
        available=sorted(aliases),
    )


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):[^@/]*@")
# https://TOKEN@host: over HTTP a lone userinfo is as often a token as a user name.
_HTTP_LONE_USER = re.compile(r"(?P<scheme>https?://)[^:/@?#]+@", re.IGNORECASE)
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&](?:[A-Za-z_]*token|password|secret|api[_-]?key|key|sig|signature)=)[^&#]*",
    re.IGNORECASE,
)


def redact_uri(uri: str) -> str:
    """``uri`` with any password, token-like user or secret query value replaced by ``***``."""
    shown = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", uri)
    shown = _HTTP_LONE_USER.sub(lambda m: f"{m['scheme']}***@", shown)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}***", shown)
