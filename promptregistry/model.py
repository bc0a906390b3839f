"""The data model: what you register (PromptSpec), what is stored (PromptVersion), alias moves.

Also the naming rules shared by every backend and the content hash that
identifies a prompt's behaviour (template + variables + parameters).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from promptregistry.errors import InvalidPrompt

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_SPEC_BYTES",
    "AliasAction",
    "AliasChange",
    "PromptSpec",
    "PromptVersion",
    "VariableType",
    "alias_problem",
    "canonical_json",
    "content_hash",
    "load_spec_file",
    "name_problem",
    "spec_from_mapping",
    "validate_alias",
    "validate_name",
]

MAX_NAME_LENGTH = 128
# A spec file is a template and a few fields: 1 MiB is far beyond a real one, and a read
# of anything larger (or of /dev/zero) stops there instead of filling memory.
MAX_SPEC_BYTES = 1024 * 1024
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
VARIABLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
# Used with fullmatch: with match, '$' also accepts one trailing line feed
# ("production\n" would pass as an alias).
_NAME_RE = re.compile(NAME_PATTERN)
_ALIAS_RE = re.compile(ALIAS_PATTERN)
_VARIABLE_RE = re.compile(VARIABLE_PATTERN)
# MLflow reserves these alias names ("latest", and "v3"-style names that look like versions);
# refusing them everywhere keeps both backends interchangeable.
_RESERVED_ALIAS_RE = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)

VariableType = Literal["str", "int", "float", "bool", "list", "dict"]
AliasAction = Literal["promote", "rollback", "delete"]


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid prompt name, or ``None`` when it is valid."""
    if not isinstance(name, str):
        return f"prompt name must be a string, not {type(name).__name__}"
    if not name:
        return "prompt name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"prompt name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
    shown = repr(name)
    if "/" in name or "\\" in name:
        return f"prompt name {shown} contains a path separator ('/' or '\\')"
    if ".." in name:
        return f"prompt name {shown} contains '..'"
    for char in name:
        if unicodedata.category(char)[0] == "C":
            return f"prompt name {shown} contains a control character (U+{ord(char):04X})"
        if char.isspace():
            return f"prompt name {shown} contains a space"
    if not _NAME_RE.fullmatch(name):
        if not name[0].isascii() or not name[0].isalnum():
            return f"prompt name {shown} must start with a letter or a digit"
        bad = next(c for c in name if not (c.isascii() and (c.isalnum() or c in "._-")))
        return (
            f"prompt name {shown} contains {bad!r}; only letters, digits, '.', '_' and '-' "
            "are allowed"
        )
    return None


def validate_name(name: str) -> str:
    """Return ``name`` when it is a valid prompt name; raise InvalidPrompt naming the problem."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidPrompt(
            problem,
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def alias_problem(alias: object) -> str | None:
    """Why ``alias`` is not a valid alias name, or ``None`` when it is valid."""
    if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias):
        return (
            f"alias {alias!r} is not valid: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter"
        )
    if _RESERVED_ALIAS_RE.fullmatch(alias):
        return f"alias {alias!r} is reserved ('latest' and 'v<number>' name versions)"
    return None


def validate_alias(alias: str) -> str:
    """Return ``alias`` when it is a valid alias name; raise InvalidPrompt otherwise."""
    problem = alias_problem(alias)
    if problem is not None:
        raise InvalidPrompt(problem, hint="for example: production, staging, canary")
    return alias


def canonical_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept, NaN and infinities refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def content_hash(template: str, variables: dict[str, str], parameters: dict[str, JsonValue]) -> str:
    """Hex SHA-256 of the canonical JSON of template, variables and parameters."""
    payload = {"template": template, "variables": variables, "parameters": parameters}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


class PromptSpec(BaseModel):
    """What you register: a named template, its declared variables and model parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    template: str
    variables: dict[str, VariableType] = Field(default_factory=dict)
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    commit_message: str | None = None
    author: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        problem = name_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name

    @field_validator("variables")
    @classmethod
    def _check_variables(cls, variables: dict[str, str]) -> dict[str, str]:
        for var in variables:
            if not _VARIABLE_RE.fullmatch(var):
                raise ValueError(
                    f"variable name {var!r} is not valid: use letters, digits and '_', "
                    "starting with a letter"
                )
        return variables

    @field_validator("parameters")
    @classmethod
    def _check_parameters(cls, parameters: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if not _finite(parameters):
            raise ValueError("parameters must be finite JSON values (no NaN or infinity)")
        return parameters

    def compute_hash(self) -> str:
        """The content hash this spec's template, variables and parameters give."""
        return content_hash(self.template, dict(self.variables), self.parameters)


class PromptVersion(PromptSpec):
    """One stored, immutable version of a prompt (``aliases`` is a snapshot at read time)."""

    version: int = Field(ge=1)
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    aliases: list[str] = Field(default_factory=list)

    def spec(self) -> PromptSpec:
        """The PromptSpec part of this version (for re-registering or comparing)."""
        return PromptSpec.model_validate(self.model_dump(include=set(PromptSpec.model_fields)))

    @property
    def uri(self) -> str:
        """``prompts:/<name>/<version>``, the MLflow-style reference to this version."""
        return f"prompts:/{self.name}/{self.version}"


class AliasChange(BaseModel):
    """One alias move: who moved which alias of which prompt, from what to what, when and why.

    ``from_version`` is ``None`` when the alias did not exist before; ``to_version`` is
    ``None`` when the alias was deleted. A change with ``from_version == to_version`` is a
    no-op (``changed`` is false): nothing was written and no hook was called.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    reason: str
    actor: str
    at: datetime
    action: AliasAction = "promote"

    @property
    def changed(self) -> bool:
        """Whether this change actually moved the alias."""
        return self.from_version != self.to_version


def _problems(error: ValidationError) -> list[str]:
    out = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        msg = str(item["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return out


def spec_from_mapping(data: object, *, source: str = "spec") -> PromptSpec:
    """Build a PromptSpec from a parsed mapping; InvalidPrompt lists every problem found."""
    if not isinstance(data, dict):
        raise InvalidPrompt(
            f"{source}: expected a mapping with name, template, variables, ...; "
            f"got {type(data).__name__}",
            hint="see the spec file format: name, template, variables, parameters, metadata",
        )
    template = data.get("template")
    if template is not None and not isinstance(template, str):
        raise InvalidPrompt(
            f"{source}: template must be text, got {type(template).__name__}",
            hint="in YAML, write the template as a block scalar ('template: |') or quote it; "
            "an unquoted '{{ x }}' is read as a mapping",
        )
    try:
        return PromptSpec.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc)
        body = "\n".join(f"  {p}" for p in problems)
        raise InvalidPrompt(
            f"{source}: {len(problems)} problem(s):\n{body}",
            hint="fix the fields listed above",
            problems=problems,
        ) from None


def _read_spec_text(path: Path) -> str:
    """The text of a spec file: a regular file of at most MAX_SPEC_BYTES, in UTF-8."""
    import os
    import stat

    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidPrompt(
            f"cannot read prompt spec {path}: {exc.strerror or exc}", hint="check the path"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidPrompt(
                f"prompt spec {path} is not a regular file",
                hint="give the path of a YAML spec file (devices, pipes and folders are refused)",
            )
        os.set_blocking(fd, True)
        data = b""
        while len(data) <= MAX_SPEC_BYTES:
            chunk = os.read(fd, MAX_SPEC_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_SPEC_BYTES:
        raise InvalidPrompt(
            f"prompt spec {path} is larger than {MAX_SPEC_BYTES // 1024} KiB",
            hint="a spec holds one template and a few fields; check that this is the right file",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidPrompt(
            f"prompt spec {path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x})",
            hint="save the spec as UTF-8; a binary file is not a prompt spec",
        ) from None


def load_spec_file(path: str | Path) -> PromptSpec:
    """Read a YAML spec file (name, template, variables, parameters, metadata, ...)."""
    import yaml

    path = Path(path)
    text = _read_spec_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidPrompt(
            f"{where}: not valid YAML: {problem}",
            hint="quote templates or use a block scalar ('template: |')",
        ) from None
    return spec_from_mapping(data, source=str(path))
