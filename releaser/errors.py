"""Errors raised by releaser, each with a hint and a documented exit code.

Library code raises these and never prints or exits; the CLI entry point is
the one place that turns them into a message, a hint and an exit code.

Exception tree::

    ReleaserError                 exit 2 unless a subclass says otherwise
    ├── CheckFailed               exit 1  a gate, a verification or a check did not pass
    ├── BadInput                  exit 2  the user asked for something invalid
    │   ├── ConfigError           exit 2  releaser.yaml is wrong (every problem listed)
    │   ├── NotFound              exit 2  a release, rollout or record does not exist
    │   │   └── ArtifactNotFound  exit 2  a model, prompt, dataset or file is missing
    │   └── WorkspaceError        exit 2  not a git repo, dirty tree, no releaser.yaml
    ├── ExternalUnavailable       exit 3  the store, MLflow, DVC remote or GitHub is down
    └── StateConflict             exit 4  someone else changed the state first

This module imports nothing else from the package.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ArtifactNotFound",
    "BadInput",
    "CheckFailed",
    "ConfigError",
    "ConfigProblem",
    "EXIT_BAD_INPUT",
    "EXIT_CHECK_FAILED",
    "EXIT_CONFLICT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "ExternalUnavailable",
    "NotFound",
    "ReleaserError",
    "StateConflict",
    "WorkspaceError",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_CONFLICT = 4
EXIT_INTERRUPTED = 130


class ReleaserError(Exception):
    """Base of every error releaser raises on purpose."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class CheckFailed(ReleaserError):
    """A gate, a verification or another check ran and did not pass."""

    exit_code = EXIT_CHECK_FAILED


class BadInput(ReleaserError):
    """The user asked for something that cannot be done as asked."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file, located as precisely as possible."""

    file: str
    line: int | None
    path: str
    message: str
    hint: str | None = None

    def render(self) -> str:
        """``file:line: path: message (hint)`` on one line."""
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfigError(BadInput):
    """The configuration file has one or more problems; all of them are listed."""

    def __init__(self, problems: list[ConfigProblem], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in configuration"
        body = "\n".join(f"  {p.render()}" for p in self.problems)
        super().__init__(f"{head}:\n{body}" if body else head, hint=hint)

    def first(self) -> str:
        """The first problem on one line (for reports that cannot list them all)."""
        return self.problems[0].render() if self.problems else self.message


class NotFound(BadInput):
    """A release, rollout or other record asked for does not exist."""


class ArtifactNotFound(NotFound):
    """A model version, alias, prompt, dataset or file could not be found."""


class WorkspaceError(BadInput):
    """The workspace is not usable as it is: not a git repo, dirty tree, no config."""


class ExternalUnavailable(ReleaserError):
    """A system releaser depends on (store, MLflow, DVC remote, GitHub) is unreachable."""

    exit_code = EXIT_UNAVAILABLE


class StateConflict(ReleaserError):
    """The state changed between read and write; nothing was written."""

    exit_code = EXIT_CONFLICT
