"""Prompts through ``promptregistry``, with every alias move in releaser's audit chain.

The prompt registry is the source of truth for prompt versions and aliases;
releaser's store records each alias move (who, when, from, to, why) as an
audit event plus a ``prompt_alias`` record, and serves that history back to
the registry so ``rollback`` knows where an alias was before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor
from releaser.api.workspace import Workspace, open_workspace
from releaser.core.audit import EventDraft
from releaser.core.refs import PromptRef
from releaser.errors import (
    ArtifactNotFound,
    BadInput,
    ExternalUnavailable,
    ReleaserError,
    StateConflict,
)
from releaser.store.base import Store, Write

if TYPE_CHECKING:
    from promptregistry import AliasChange, PromptDiff, PromptRegistry, PromptVersion
    from releaser.config.service import PromptSpec as PromptEntry

__all__ = [
    "PROMPT_ALIAS_KIND",
    "RegisteredPrompt",
    "StoreChangeSignal",
    "alias_history",
    "configure_prompts",
    "diff_prompt",
    "get_prompt",
    "history_rows",
    "list_prompts",
    "open_prompt_registry",
    "parse_prompt_ref",
    "prompt_errors",
    "prompt_text_diff",
    "promote_prompt",
    "register_prompt",
    "resolve_prompt_refs",
    "rollback_prompt",
]

PROMPT_ALIAS_KIND = "prompt_alias"
ALIAS_ACTION = "prompt.alias"


@contextmanager
def prompt_errors() -> Iterator[None]:
    """Turn promptregistry's errors into releaser's, keeping message and hint."""
    from promptregistry import (
        BackendUnavailable,
        InvalidPrompt,
        PromptNotFound,
        PromptRegistryError,
        RenderError,
    )

    try:
        yield
    except PromptNotFound as exc:
        raise ArtifactNotFound(exc.message, hint=exc.hint) from exc
    except BackendUnavailable as exc:
        raise ExternalUnavailable(exc.message, hint=exc.hint) from exc
    except (InvalidPrompt, RenderError) as exc:
        raise BadInput(exc.message, hint=exc.hint) from exc
    except PromptRegistryError as exc:
        raise ReleaserError(exc.message, hint=exc.hint) from exc


class StoreChangeSignal:
    """A change signal read from the releaser store: any committed transition changes it.

    Every alias move commits an audit event, so readers polling ``token()``
    learn of it without a call to the prompt backend; ``bump`` has nothing to do.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def token(self) -> int:
        """The store's change token."""
        return self._store.change_token()

    def bump(self) -> None:
        """Nothing: the audit event written with every move already changed the token."""


def _subject(name: str) -> str:
    return f"prompt:{name}"


def _record_alias_move(store: Store, change: AliasChange) -> None:
    """Write the ``prompt_alias`` record and its audit event in one transaction."""
    key = f"{change.name}@{change.alias}"
    actor = current_actor()
    for _attempt in range(3):
        current = store.get(PROMPT_ALIAS_KIND, key)
        write = Write(
            PROMPT_ALIAS_KIND,
            key,
            {"name": change.name, "alias": change.alias, "version": change.to_version},
            current.version if current else 0,
        )
        event = EventDraft(
            actor=change.actor,
            action=ALIAS_ACTION,
            subject=_subject(change.name),
            at=change.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            before={"alias": change.alias, "version": change.from_version},
            after={"alias": change.alias, "version": change.to_version},
            reason=change.reason,
            context={**actor.context, "move": change.action},
        )
        try:
            store.commit([write], event)
            return
        except StateConflict:
            continue  # another process recorded a move of the same alias: re-read
    raise StateConflict(
        f"could not record the move of {key} in the audit log after 3 attempts",
        hint="the alias was moved in the prompt registry; run the command again to record it",
    )


def alias_history(store: Store, name: str, alias: str) -> list[AliasChange]:
    """Every recorded move of ``name@alias``, oldest first, from the audit chain."""
    from promptregistry import AliasChange

    out: list[AliasChange] = []
    for ev in store.events(subject=_subject(name)):
        if ev.action != ALIAS_ACTION or not isinstance(ev.after, dict):
            continue
        if ev.after.get("alias") != alias:
            continue
        before = ev.before if isinstance(ev.before, dict) else {}
        out.append(
            AliasChange(
                name=name,
                alias=alias,
                from_version=before.get("version"),
                to_version=ev.after.get("version"),
                reason=ev.reason or "",
                actor=ev.actor,
                at=datetime.strptime(ev.at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
                action=ev.context.get("move", "promote"),
            )
        )
    return out


def open_prompt_registry(ws: Workspace) -> PromptRegistry:
    """The workspace's prompt registry, auditing every alias move in the store."""
    from promptregistry import FilePromptBackend, MlflowPromptBackend, PromptRegistry

    settings = ws.settings.prompts
    backend: Any
    with prompt_errors():
        if settings.backend == "file":
            # ``path`` is the folder holding <name>/<version>.yaml (default: prompts/).
            folder = (ws.root / settings.path).resolve()
            backend = FilePromptBackend(folder.parent, folder=folder.name)
        else:
            tracking_uri, _ = ws.mlflow_uris()
            mlflow = ws.settings.mlflow
            registry_uri = mlflow.registry_uri if mlflow else None
            backend = MlflowPromptBackend(tracking_uri, registry_uri=registry_uri)
    store = ws.store
    return PromptRegistry(
        backend,
        on_alias_change=lambda change: _record_alias_move(store, change),
        signal=StoreChangeSignal(store),
        history_source=lambda name, alias: alias_history(store, name, alias),
    )


def resolve_prompt_refs(ws: Workspace, prompts: Sequence[PromptEntry]) -> list[PromptRef]:
    """Pin each configured prompt (name + alias) to its version and content hash."""
    refs = []
    with prompt_errors():
        for entry in prompts:
            pv = ws.prompts.get(entry.name, alias=entry.alias)
            refs.append(
                PromptRef(
                    name=pv.name,
                    version=pv.version,
                    alias=entry.alias,
                    content_hash=pv.content_hash,
                )
            )
    return refs


def parse_prompt_ref(text: str) -> tuple[str, str | None, int | None]:
    """``name``, ``name@alias`` or ``name/version`` -> (name, alias, version)."""
    if "@" in text:
        name, alias = text.split("@", 1)
        return name, alias, None
    if "/" in text:
        name, version = text.rsplit("/", 1)
        if not version.isdigit():
            raise BadInput(
                f"{text!r}: the version after '/' must be a number",
                hint="use NAME, NAME@ALIAS or NAME/VERSION",
            )
        return name, None, int(version)
    return text, None, None


@dataclass(frozen=True)
class RegisteredPrompt:
    """The version a register call produced, whether it is new, and lint warnings."""

    version: PromptVersion
    created: bool
    warnings: list[str]


def register_prompt(ws: Workspace, file: Path) -> RegisteredPrompt:
    """Lint and register a prompt spec file; identical content returns the existing version."""
    from promptregistry import load_spec_file

    with prompt_errors():
        spec = load_spec_file(file)
        if spec.author is None:
            spec = spec.model_copy(update={"author": current_actor().name})
        result = ws.prompts.register(spec)
    return RegisteredPrompt(result.version, result.created, [w.render() for w in result.warnings])


def list_prompts(ws: Workspace) -> list[dict[str, Any]]:
    """Every prompt with its latest version and aliases."""
    out = []
    with prompt_errors():
        reg = ws.prompts
        for name in reg.list_names():
            versions = reg.list_versions(name)
            out.append(
                {
                    "name": name,
                    "latest": max(versions) if versions else None,
                    "versions": len(versions),
                    "aliases": reg.aliases(name),
                }
            )
    return out


def get_prompt(ws: Workspace, ref: str) -> PromptVersion:
    """A prompt version by ``name``, ``name@alias`` or ``name/version``."""
    name, alias, version = parse_prompt_ref(ref)
    with prompt_errors():
        return ws.prompts.get(name, version=version, alias=alias)


def diff_prompt(ws: Workspace, name: str, a: str, b: str) -> PromptDiff:
    """Diff two versions (numbers or aliases) of a prompt."""
    with prompt_errors():
        return ws.prompts.diff(name, _version_or_alias(a), _version_or_alias(b))


def prompt_text_diff(ws: Workspace, name: str, a: int, b: int) -> str:
    """The rendered diff text between two versions of a prompt (for ``release diff``)."""
    with prompt_errors():
        return ws.prompts.diff(name, a, b).render_text()


def _version_or_alias(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def promote_prompt(ws: Workspace, name: str, version: int, alias: str, reason: str) -> AliasChange:
    """Point ``alias`` at ``version``; the move is audited with ``reason``."""
    _need_reason(reason)
    with prompt_errors():
        return ws.prompts.promote(name, version, alias, reason, current_actor().name)


def rollback_prompt(ws: Workspace, name: str, alias: str, reason: str) -> AliasChange:
    """Move ``alias`` back to where it pointed before its last move; audited."""
    _need_reason(reason)
    with prompt_errors():
        return ws.prompts.rollback(name, alias, reason, current_actor().name)


def _need_reason(reason: str) -> None:
    if not reason.strip():
        raise BadInput("a reason is required", hint="pass --reason 'why this change is made'")


def history_rows(ws: Workspace, name: str) -> list[dict[str, Any]]:
    """Every recorded alias move of ``name`` (all aliases), oldest first."""
    rows = []
    for ev in ws.store.events(subject=_subject(name)):
        if ev.action != ALIAS_ACTION:
            continue
        before = ev.before if isinstance(ev.before, dict) else {}
        after = ev.after if isinstance(ev.after, dict) else {}
        rows.append(
            {
                "seq": ev.seq,
                "at": ev.at,
                "actor": ev.actor,
                "alias": after.get("alias"),
                "from": before.get("version"),
                "to": after.get("version"),
                "move": ev.context.get("move", "promote"),
                "reason": ev.reason,
            }
        )
    return rows


def configure_prompts(
    path: Path | str | None = None, *, check_interval_ms: int = 250, ttl_s: float = 30
) -> Any:
    """Configure ``promptregistry.load`` for this workspace's backend and store.

    Alias moves made through releaser (``releaser prompt promote``/``rollback``)
    commit an audit event, which changes the store's change token; the SDK
    checks that token at most every ``check_interval_ms``, so a running process
    sees a promotion or rollback within about that time, with no backend call
    per ``load()``. Returns the configured ``promptregistry.Client``.
    """
    import promptregistry

    ws = open_workspace(path, settings_only=True)
    return promptregistry.configure(
        backend=ws.prompts.backend,
        signal=StoreChangeSignal(ws.store),
        check_interval_ms=check_interval_ms,
        ttl_s=ttl_s,
    )
