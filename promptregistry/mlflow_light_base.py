"""What the light MLflow alias clients share: their Protocol, answers, errors and checks.

See :mod:`promptregistry.mlflow_aliases` for what the clients do and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "IS_PROMPT_TAG",
    "WORKSPACE",
    "AliasClient",
    "ModelVersionInfo",
    "NeedsMlflow",
    "RegisteredModelInfo",
    "RegistryUnreachable",
    "check_names",
    "check_tag",
]

IS_PROMPT_TAG = "mlflow.prompt.is_prompt"
"""The tag (value ``true``) that makes a registered model an MLflow prompt; MlflowClient's
model calls do not see prompts, and its prompt calls see nothing else."""

WORKSPACE = "default"
"""The workspace of every row in MLflow's single-tenant mode."""

_ALIAS = re.compile(r"^[\w\-]*$")
_VERSION_ALIAS = re.compile(r"^[vV]\d+$")
_TAG_KEY = re.compile(r"^[\w.\- /]+$")


class NeedsMlflow(Exception):
    """This call cannot be answered here exactly as MLflow would: repeat it with MlflowClient."""


class RegistryUnreachable(Exception):
    """Nothing answered at the registry (refused, reset, timed out); ``detail`` says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class RegisteredModelInfo:
    """What the alias paths read of a registered model (or prompt): its aliases and tags."""

    name: str
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_prompt(self) -> bool:
        """True for an MLflow prompt (a registered model tagged as one)."""
        return self.tags.get(IS_PROMPT_TAG) == "true"


@dataclass(frozen=True)
class ModelVersionInfo:
    """What a prompt read needs of one live model version: its text fields, tags and aliases."""

    name: str
    version: int
    description: str | None
    creation_timestamp: int | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


class AliasClient(Protocol):
    """Alias and tag calls on registered models; NeedsMlflow where MlflowClient must answer."""

    def model(self, name: str) -> RegisteredModelInfo:
        """The model's aliases and tags; NeedsMlflow when there is no such model.

        Prompts are registered models too (tagged :data:`IS_PROMPT_TAG`): callers
        that want one kind check the tag.
        """
        ...

    def model_version(self, name: str, version: int) -> ModelVersionInfo:
        """One live (not deleted) version with its tags and aliases; NeedsMlflow when missing."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``; NeedsMlflow when the version does not exist."""
        ...

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` (nothing to do when unset); NeedsMlflow for an unknown model."""
        ...

    def set_tag(self, name: str, key: str, value: str) -> None:
        """Set the model-level tag ``key``; NeedsMlflow for an unknown model."""
        ...

    def delete_tag(self, name: str, key: str) -> None:
        """Remove the model-level tag ``key`` (if set); NeedsMlflow for an unknown model."""
        ...


def _odd_path(text: str) -> bool:
    """True where MLflow's path check may refuse ``text`` (``..`` segments, a leading ``/``)."""
    return text.startswith("/") or ".." in text or "//" in text


def check_names(name: str, alias: str | None = None) -> None:
    """NeedsMlflow for a name or alias MLflow refuses (MLflow's own message is the one to show)."""
    if not name.strip() or "/" in name or ":" in name or _odd_path(name):
        raise NeedsMlflow(f"model name {name!r} is refused by MLflow")
    if alias is not None and (
        not alias
        or len(alias) > 255
        or not _ALIAS.match(alias)
        or alias.lower() == "latest"
        or _VERSION_ALIAS.match(alias)
    ):
        raise NeedsMlflow(f"alias {alias!r} is refused or reserved by MLflow")


def check_tag(key: str, value: str = "") -> None:
    """NeedsMlflow for a tag key or value MLflow may refuse (a narrower rule than MLflow's)."""
    if not _TAG_KEY.match(key) or _odd_path(key) or len(key) > 250 or len(value) > 5000:
        raise NeedsMlflow(f"tag {key[:40]!r} is left to MLflow's own checks")
