"""Release bundles: immutable, content-addressed sets of pinned artifact refs.

A release's id is a hash of its canonical content (service, refs, service
config), so the same inputs always give the same id. Who created it and when
are recorded beside the content, not in it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from releaser.core.canonical import content_hash
from releaser.core.refs import CodeRef, DatasetRef, ModelRef, PromptRef

__all__ = [
    "GATE_RECORD",
    "RELEASE_ID_LENGTH",
    "RELEASE_RECORD",
    "FieldChange",
    "Release",
    "ReleaseContent",
    "diff_content",
    "diff_values",
    "gate_key",
    "release_id",
]

RELEASE_RECORD = "release"
"""The store kind under which releases are kept, by id."""
GATE_RECORD = "gate"
"""The store kind of a release's gate report (its evidence), keyed by :func:`gate_key`."""
RELEASE_ID_LENGTH = 16
"""Hex characters of the content hash kept as the id (64 bits: collisions are negligible)."""


class ReleaseContent(BaseModel):
    """Everything a release pins; the id is the hash of exactly this."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    model: ModelRef | None = None
    prompts: list[PromptRef] = Field(default_factory=list)
    datasets: list[DatasetRef] = Field(default_factory=list)
    code: CodeRef
    config: dict[str, Any] = Field(description="The service's configuration as validated.")
    config_hash: str
    judges: list[PromptRef] = Field(
        default_factory=list, description="The judge prompts the eval gate scores with."
    )

    def canonical(self) -> dict[str, Any]:
        """The JSON-ready dict the id is computed from."""
        data = self.model_dump(mode="json")
        if not data["judges"]:
            del data["judges"]  # a release without judges keeps the id it always had
        return data


def gate_key(service: str, release_id: str) -> str:
    """The key of a release's gate report."""
    return f"{service}/{release_id}"


def release_id(content: ReleaseContent) -> str:
    """The content-derived id of a release."""
    return content_hash(content.canonical())[:RELEASE_ID_LENGTH]


class Release(BaseModel):
    """An immutable release bundle as stored: content plus provenance."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    content: ReleaseContent
    bucketing_seed: int = Field(description="Seed rollouts of this release hash units with.")
    created_at: str
    created_by: str
    created_context: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def build(
        cls,
        content: ReleaseContent,
        *,
        created_at: str,
        created_by: str,
        created_context: dict[str, Any] | None = None,
    ) -> Release:
        """Seal ``content`` into a release, deriving its id and bucketing seed."""
        rid = release_id(content)
        return cls(
            id=rid,
            content=content,
            bucketing_seed=int(rid[:8], 16),
            created_at=created_at,
            created_by=created_by,
            created_context=dict(created_context or {}),
        )

    @property
    def service(self) -> str:
        """The service this release belongs to."""
        return self.content.service

    def verify_id(self) -> bool:
        """True when the stored id still matches the content (nothing was edited)."""
        return release_id(self.content) == self.id


class FieldChange(BaseModel):
    """One difference between two releases, at a dotted path."""

    model_config = ConfigDict(frozen=True)

    path: str
    before: Any = None
    after: Any = None


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        if not value and prefix:
            out[prefix] = {}
        for key in sorted(value):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        # Lists of refs are keyed by their natural name so a reorder is not a change.
        for i, item in enumerate(value):
            name = item.get("name") or item.get("path") or str(i)
            _flatten(item, f"{prefix}[{name}]", out)
    else:
        out[prefix] = value


def diff_content(a: ReleaseContent, b: ReleaseContent) -> list[FieldChange]:
    """Field-by-field changes from ``a`` to ``b``, sorted by path."""
    return diff_values(a.canonical(), b.canonical())


def diff_values(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[FieldChange]:
    """Field-by-field changes from JSON-ready ``a`` to ``b``, sorted by dotted path."""
    fa: dict[str, Any] = {}
    fb: dict[str, Any] = {}
    _flatten(a, prefix, fa)
    _flatten(b, prefix, fb)
    changes = []
    for path in sorted(set(fa) | set(fb)):
        if fa.get(path) != fb.get(path) or (path in fa) != (path in fb):
            changes.append(FieldChange(path=path, before=fa.get(path), after=fb.get(path)))
    return changes
