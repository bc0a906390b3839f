"""Errors raised by promptregistry, each with a hint the user can act on.

Library code raises these and never prints or exits. Applications (such as
releaser's CLI) map them to messages and exit codes in one place.

Exception tree::

    PromptRegistryError            base of everything raised on purpose
    ├── InvalidPrompt              bad name or alias, lint failure, bad template or spec file,
    │                              a stored version that no longer matches its hash
    ├── PromptNotFound             unknown name, version or alias (the message lists what exists)
    ├── RenderError                missing / unexpected / mistyped variable, sandbox violation
    └── BackendUnavailable         the MLflow registry or the prompt directory cannot be reached

This module imports nothing else from the package.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BackendUnavailable",
    "InvalidPrompt",
    "PromptNotFound",
    "PromptRegistryError",
    "RenderError",
]


class PromptRegistryError(Exception):
    """Base of every error promptregistry raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidPrompt(PromptRegistryError):
    """A name, alias, spec or template is not acceptable; nothing was written."""

    def __init__(
        self, message: str, *, hint: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems)


class PromptNotFound(PromptRegistryError):
    """A prompt name, version or alias does not exist; ``available`` lists what does."""

    def __init__(
        self, message: str, *, hint: str | None = None, available: Sequence[str] = ()
    ) -> None:
        super().__init__(message, hint=hint)
        self.available = list(available)


class RenderError(PromptRegistryError):
    """A template could not be rendered with the variables given."""


class BackendUnavailable(PromptRegistryError):
    """The backend (MLflow registry, prompt directory) cannot be reached or read."""
