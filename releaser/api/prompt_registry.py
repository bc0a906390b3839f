"""The workspace's prompt registry, wired to releaser's store: every alias move made
through it is audited and journalled, and the alias history is read back from the
audit chain.

:class:`~releaser.api.workspace.Workspace` opens it on first use; the commands that
move aliases live in :mod:`releaser.api.prompts`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from releaser.api import journal
from releaser.api.prompt_refs import prompt_errors
from releaser.errors import StateConflict
from releaser.store.base import Store

if TYPE_CHECKING:
    from promptregistry import AliasChange, PromptRegistry
    from releaser.api.workspace import Workspace

__all__ = [
    "ALIAS_ACTION",
    "StoreChangeSignal",
    "alias_history",
    "open_prompt_registry",
    "subject",
]

ALIAS_ACTION = journal.PROMPT_ALIAS_ACTION


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


def subject(name: str) -> str:
    """The audit subject of a prompt's alias moves."""
    return f"prompt:{name}"


def _record_alias_move(store: Store, change: AliasChange) -> None:
    """Record a move made through the registry directly (library use) after it happened.

    releaser's own commands record a move before making it (:func:`promote_prompt`);
    code that calls ``ws.prompts.promote`` itself still gets the move audited and
    journalled (as done) here.
    """
    key = journal.prompt_key(change.name, change.alias)
    at = change.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for _attempt in range(3):
        intents = journal.Intents()
        if change.to_version is None:
            return  # a deleted alias owes nothing; the backend keeps its own history
        intents.alias(
            "prompt",
            change.name,
            change.to_version,
            store.get(journal.EFFECT_KIND, key),
            change.from_version,
            service=None,
            cause=f"prompt.{change.action}",
            reason=change.reason,
            at=at,
            move=change.action,
            alias=change.alias,
        )
        if not intents.writes:
            return
        write = intents.writes[0]
        write.value.update(status="done", done_at=at)
        try:
            store.commit(intents.writes, intents.events[0])
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
    for ev in store.events(subject=subject(name)):
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
