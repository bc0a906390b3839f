"""Compare two prompt versions: a unified diff of templates plus variable/parameter changes."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from promptregistry.model import PromptVersion

__all__ = ["MappingChanges", "PromptDiff", "ValueChange", "diff", "diff_mappings"]


class ValueChange(BaseModel):
    """A key present on both sides with different values."""

    model_config = ConfigDict(frozen=True)

    old: JsonValue
    new: JsonValue


class MappingChanges(BaseModel):
    """Keys added, removed and changed between two mappings."""

    model_config = ConfigDict(frozen=True)

    added: dict[str, JsonValue] = Field(default_factory=dict)
    removed: dict[str, JsonValue] = Field(default_factory=dict)
    changed: dict[str, ValueChange] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when nothing was added, removed or changed."""
        return not (self.added or self.removed or self.changed)


def diff_mappings(old: Mapping[str, JsonValue], new: Mapping[str, JsonValue]) -> MappingChanges:
    """What changed from ``old`` to ``new``, key by key."""
    return MappingChanges(
        added={k: new[k] for k in sorted(set(new) - set(old))},
        removed={k: old[k] for k in sorted(set(old) - set(new))},
        changed={
            k: ValueChange(old=old[k], new=new[k])
            for k in sorted(set(old) & set(new))
            if old[k] != new[k]
        },
    )


class PromptDiff(BaseModel):
    """The differences between version ``a`` and version ``b`` of a prompt (or two prompts)."""

    model_config = ConfigDict(frozen=True)

    a: str
    b: str
    a_hash: str
    b_hash: str
    template_diff: str
    variables: MappingChanges
    parameters: MappingChanges
    metadata: MappingChanges

    @property
    def same_content(self) -> bool:
        """True when template, variables and parameters are identical (same content hash)."""
        return self.a_hash == self.b_hash

    def render_text(self) -> str:
        """A plain-text report: the template diff, then variable/parameter/metadata changes."""
        lines = [f"--- {self.a} ({self.a_hash[:12]})", f"+++ {self.b} ({self.b_hash[:12]})"]
        if self.same_content:
            lines.append("same content (template, variables and parameters are identical)")
        if self.template_diff:
            lines.append("template:")
            lines.extend("  " + line for line in self.template_diff.splitlines())
        else:
            lines.append("template: unchanged")
        for title, changes in (
            ("variables", self.variables),
            ("parameters", self.parameters),
            ("metadata", self.metadata),
        ):
            if changes.empty:
                lines.append(f"{title}: unchanged")
                continue
            lines.append(f"{title}:")
            lines.extend(f"  + {k}: {_show(v)}" for k, v in changes.added.items())
            lines.extend(f"  - {k}: {_show(v)}" for k, v in changes.removed.items())
            lines.extend(
                f"  ~ {k}: {_show(c.old)} -> {_show(c.new)}" for k, c in changes.changed.items()
            )
        return "\n".join(lines) + "\n"


def _show(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _label(version: PromptVersion) -> str:
    return f"{version.name} v{version.version}"


def diff(a: PromptVersion, b: PromptVersion) -> PromptDiff:
    """Compare ``a`` (old) with ``b`` (new)."""
    la, lb = _label(a), _label(b)
    lines = difflib.unified_diff(
        a.template.splitlines(), b.template.splitlines(), fromfile=la, tofile=lb, lineterm=""
    )
    template_diff = "".join(line + "\n" for line in lines)
    return PromptDiff(
        a=la,
        b=lb,
        a_hash=a.content_hash,
        b_hash=b.content_hash,
        template_diff=template_diff,
        variables=diff_mappings(dict(a.variables), dict(b.variables)),
        parameters=diff_mappings(a.parameters, b.parameters),
        metadata=diff_mappings(dict(a.metadata), dict(b.metadata)),
    )
