"""promptregistry: versioned prompt templates, aliases, rendering and a cached SDK.

Register prompts through ``PromptRegistry`` over a backend (MLflow's prompt
registry by default, or YAML files), promote and roll back aliases, and load
them at runtime with ``configure(...)`` + ``load(name, alias=...)``.

Names are imported on first use, so ``import promptregistry`` loads neither
pydantic models, Jinja2 nor MLflow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptregistry.backend import PromptBackend
    from promptregistry.backends import open_backend
    from promptregistry.change_signal import ChangeSignal, FileChangeSignal
    from promptregistry.diffing import MappingChanges, PromptDiff, ValueChange, diff
    from promptregistry.errors import (
        BackendUnavailable,
        InvalidPrompt,
        PromptNotFound,
        PromptRegistryError,
        RenderError,
    )
    from promptregistry.file_backend import FilePromptBackend
    from promptregistry.linting import LintIssue, lint
    from promptregistry.mlflow_backend import MlflowPromptBackend
    from promptregistry.model import (
        AliasChange,
        PromptSpec,
        PromptVersion,
        VariableType,
        content_hash,
        load_spec_file,
        validate_alias,
        validate_name,
    )
    from promptregistry.registry import PromptRegistry, RegisterResult, previous_target
    from promptregistry.rendering import render
    from promptregistry.sdk import Client, LoadedPrompt, configure, load

__all__ = [
    "AliasChange",
    "BackendUnavailable",
    "ChangeSignal",
    "Client",
    "FileChangeSignal",
    "FilePromptBackend",
    "InvalidPrompt",
    "LintIssue",
    "LoadedPrompt",
    "MappingChanges",
    "MlflowPromptBackend",
    "PromptBackend",
    "PromptDiff",
    "PromptNotFound",
    "PromptRegistry",
    "PromptRegistryError",
    "PromptSpec",
    "PromptVersion",
    "RegisterResult",
    "RenderError",
    "ValueChange",
    "VariableType",
    "configure",
    "content_hash",
    "diff",
    "lint",
    "load",
    "load_spec_file",
    "open_backend",
    "previous_target",
    "render",
    "validate_alias",
    "validate_name",
]

_WHERE = {
    "PromptBackend": "promptregistry.backend",
    "open_backend": "promptregistry.backends",
    "ChangeSignal": "promptregistry.change_signal",
    "FileChangeSignal": "promptregistry.change_signal",
    "MappingChanges": "promptregistry.diffing",
    "PromptDiff": "promptregistry.diffing",
    "ValueChange": "promptregistry.diffing",
    "diff": "promptregistry.diffing",
    "BackendUnavailable": "promptregistry.errors",
    "InvalidPrompt": "promptregistry.errors",
    "PromptNotFound": "promptregistry.errors",
    "PromptRegistryError": "promptregistry.errors",
    "RenderError": "promptregistry.errors",
    "FilePromptBackend": "promptregistry.file_backend",
    "LintIssue": "promptregistry.linting",
    "lint": "promptregistry.linting",
    "MlflowPromptBackend": "promptregistry.mlflow_backend",
    "AliasChange": "promptregistry.model",
    "PromptSpec": "promptregistry.model",
    "PromptVersion": "promptregistry.model",
    "VariableType": "promptregistry.model",
    "content_hash": "promptregistry.model",
    "load_spec_file": "promptregistry.model",
    "validate_alias": "promptregistry.model",
    "validate_name": "promptregistry.model",
    "PromptRegistry": "promptregistry.registry",
    "RegisterResult": "promptregistry.registry",
    "previous_target": "promptregistry.registry",
    "render": "promptregistry.rendering",
    "Client": "promptregistry.sdk",
    "LoadedPrompt": "promptregistry.sdk",
    "configure": "promptregistry.sdk",
    "load": "promptregistry.sdk",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, then cache it here."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'promptregistry' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
