"""The registry facade: lint-then-register, promote, roll back, history, diff.

``PromptRegistry`` wraps a backend and adds the rules that should not depend
on where prompts are stored:

- ``register`` lints first and refuses on errors; registering content equal to
  the latest version returns that version (``created=False``) instead of a copy.
- ``promote`` / ``rollback`` / ``delete_alias`` move aliases; after the backend
  write succeeds the ``on_alias_change`` hook is called (an audit sink), then
  the change signal is bumped so running SDK clients re-resolve aliases.
- ``rollback`` moves an alias back to its previous target, read from
  ``history_source`` when given (e.g. releaser's audit chain) and otherwise from
  the alias history the backend records itself.

The same ``AliasChange`` objects flow out through the hook and back in through
``history_source``, so an application can keep the authoritative history in
its own store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from promptregistry.backend import PromptBackend, unknown_alias
from promptregistry.change_signal import ChangeSignal
from promptregistry.diffing import PromptDiff, diff
from promptregistry.errors import InvalidPrompt, PromptNotFound
from promptregistry.linting import DEFAULT_MAX_CHARS, LintIssue, errors_only, lint
from promptregistry.model import AliasChange, PromptSpec, PromptVersion, validate_alias

__all__ = ["AliasHook", "HistorySource", "PromptRegistry", "RegisterResult", "previous_target"]

AliasHook = Callable[[AliasChange], None]
HistorySource = Callable[[str, str], Sequence[AliasChange]]


class RegisterResult(BaseModel):
    """The outcome of ``register``: the version, whether it is new, and lint warnings."""

    model_config = ConfigDict(frozen=True)

    version: PromptVersion
    created: bool
    warnings: list[LintIssue]

    @property
    def message(self) -> str:
        """One line for people: what happened."""
        v = self.version
        if self.created:
            return f"registered {v.name} v{v.version} ({v.content_hash[:12]})"
        return (
            f"{v.name} v{v.version} already has this content ({v.content_hash[:12]}); "
            "no new version was created"
        )


def previous_target(history: Sequence[AliasChange], current: int) -> int | None:
    """The version a rollback of an alias now at ``current`` should go back to, or None.

    The history is replayed as a stack of targets: a promotion pushes, a rollback
    pops, so rolling back twice walks back two promotions rather than toggling.
    When the alias was moved outside the recorded history (the last recorded
    target is not ``current``), the last recorded target is the answer.
    """
    stack: list[int | None] = []
    for change in history:
        if not change.changed:
            continue
        undoes_top = (
            change.action == "rollback"
            and len(stack) >= 2
            and stack[-1] == change.from_version
            and stack[-2] == change.to_version
        )
        if undoes_top:
            stack.pop()
            continue
        if not stack or stack[-1] != change.from_version:
            stack.append(change.from_version)
        stack.append(change.to_version)
    if not stack:
        return None
    if stack[-1] != current:
        return stack[-1]
    return stack[-2] if len(stack) >= 2 else None


class PromptRegistry:
    """Prompt operations over any ``PromptBackend``, with lint, hooks and a change signal."""

    def __init__(
        self,
        backend: PromptBackend,
        *,
        on_alias_change: AliasHook | None = None,
        signal: ChangeSignal | None = None,
        history_source: HistorySource | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        self.backend = backend
        self.on_alias_change = on_alias_change
        self.signal = signal
        self.history_source = history_source
        self.max_chars = max_chars

    def __repr__(self) -> str:
        return f"PromptRegistry({self.backend!r})"

    # versions

    def lint(self, spec: PromptSpec) -> list[LintIssue]:
        """Lint ``spec`` with this registry's size limit."""
        return lint(spec, max_chars=self.max_chars)

    def register(self, spec: PromptSpec) -> RegisterResult:
        """Lint ``spec``; refuse on errors; store it unless the latest version is identical."""
        issues = self.lint(spec)
        errors = errors_only(issues)
        if errors:
            problems = [i.render() for i in errors]
            body = "\n".join(f"  {p}" for p in problems)
            raise InvalidPrompt(
                f"prompt {spec.name!r} has {len(errors)} lint error(s); nothing was registered:"
                f"\n{body}",
                hint="fix the template or its declared variables and register again",
                problems=problems,
            )
        warnings = [i for i in issues if i.severity != "error"]
        try:
            latest: PromptVersion | None = self.backend.get(spec.name)
        except PromptNotFound:
            latest = None
        if latest is not None and latest.content_hash == spec.compute_hash():
            return RegisterResult(version=latest, created=False, warnings=warnings)
        return RegisterResult(version=self.backend.register(spec), created=True, warnings=warnings)

    def get(
        self, name: str, *, version: int | None = None, alias: str | None = None
    ) -> PromptVersion:
        """One version by number or alias; the latest when neither is given."""
        return self.backend.get(name, version=version, alias=alias)

    def list_names(self) -> list[str]:
        """Every prompt name."""
        return self.backend.list_names()

    def list_versions(self, name: str) -> list[int]:
        """Every version number of ``name``."""
        return self.backend.list_versions(name)

    def aliases(self, name: str) -> dict[str, int]:
        """Every alias of ``name`` and its version."""
        return self.backend.aliases(name)

    def diff(self, name: str, a: int | str, b: int | str) -> PromptDiff:
        """Compare two versions of ``name``, each given as a version number or an alias."""
        return diff(self._resolve(name, a), self._resolve(name, b))

    def _resolve(self, name: str, ref: int | str) -> PromptVersion:
        if isinstance(ref, int):
            return self.get(name, version=ref)
        if ref.isdigit():
            return self.get(name, version=int(ref))
        return self.get(name, alias=ref)

    # aliases

    def history(self, name: str, alias: str) -> list[AliasChange]:
        """Moves of ``alias``, oldest first, from ``history_source`` or else the backend."""
        if self.history_source is not None:
            return list(self.history_source(name, alias))
        return self.backend.alias_history(name, alias)

    def promote(
        self, name: str, version: int, to_alias: str, reason: str, actor: str
    ) -> AliasChange:
        """Point ``to_alias`` at ``version``; a no-op (``changed`` false) when it already is."""
        validate_alias(to_alias)
        self.backend.get(name, version=version)  # PromptNotFound listing versions if missing
        change = self.backend.set_alias(
            name, to_alias, version, reason=reason, actor=actor, action="promote"
        )
        self._announce(change)
        return change

    def rollback(self, name: str, alias: str, reason: str, actor: str) -> AliasChange:
        """Move ``alias`` back to the version it pointed to before its last promotion."""
        validate_alias(alias)
        aliases = self.backend.aliases(name)
        if alias not in aliases:
            raise unknown_alias(name, alias, aliases)
        current = aliases[alias]
        target = previous_target(self.history(name, alias), current)
        if target is None:
            raise PromptNotFound(
                f"alias {alias!r} of {name!r} (now v{current}) has no earlier version to roll "
                "back to",
                hint=f"promote a specific version instead: versions are "
                f"{', '.join(str(v) for v in self.backend.list_versions(name))}",
            )
        change = self.backend.set_alias(
            name, alias, target, reason=reason, actor=actor, action="rollback"
        )
        self._announce(change)
        return change

    def delete_alias(self, name: str, alias: str, reason: str, actor: str) -> AliasChange:
        """Remove ``alias`` (the versions stay)."""
        change = self.backend.delete_alias(name, alias, reason=reason, actor=actor)
        self._announce(change)
        return change

    def _announce(self, change: AliasChange) -> None:
        """Tell the hook, then the signal; the signal is bumped even if the hook fails."""
        if not change.changed:
            return
        try:
            if self.on_alias_change is not None:
                self.on_alias_change(change)
        finally:
            if self.signal is not None:
                self.signal.bump()
