"""Prompts through ``promptregistry``, with every alias move in releaser's audit chain.

The prompt registry is the source of truth for prompt versions and aliases.
``promote_prompt`` and ``rollback_prompt`` record each move (who, when, from,
to, why) in the journal and the audit chain first, with compare-and-swap on
the alias, and only then move it in the backend (:mod:`releaser.api.journal`):
a move that dies half-way is finished by the next command on that alias, and
two racing moves cannot both win. The same history is served back to the
registry so ``rollback`` knows where an alias was before.

A ``production`` alias that a service's stable release pins belongs to that
release: moving it by hand is refused, with the release route as the hint,
unless the move is a deliberate, recorded override (see :func:`promote_prompt`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from releaser.api import journal
from releaser.api.context import current_actor, utc_now
from releaser.api.prompt_refs import prompt_errors, prompt_text_diff, resolve_prompt_refs
from releaser.api.prompt_registry import (
    ALIAS_ACTION,
    StoreChangeSignal,
    alias_history,
    open_prompt_registry,
)
from releaser.api.prompt_registry import subject as _subject
from releaser.api.workspace import Workspace, open_workspace
from releaser.core.audit import EventDraft
from releaser.errors import (
    ArtifactNotFound,
    BadInput,
    ExternalUnavailable,
    StateConflict,
)
from releaser.store.base import Write

if TYPE_CHECKING:
    from promptregistry import AliasChange, PromptDiff, PromptVersion

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
"""Records written before the journal; moves now live under ``effect/prompt:NAME@ALIAS``."""


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


PROMPT_VERSION_KIND = "prompt_version"
"""Store records of registered prompt versions, ``NAME/VERSION``: their audit trail."""


def register_prompt(ws: Workspace, file: Path) -> RegisteredPrompt:
    """Lint and register a prompt spec file; identical content returns the existing version.

    Each version is audited once (``prompt.register``: name, version, content hash,
    who): the registry assigns the number, so the record follows the registration;
    registering is idempotent, so a re-run after a kill in between writes the record
    it owes, and a version registered before this existed gets one the same way.
    """
    from promptregistry import load_spec_file

    with prompt_errors():
        spec = load_spec_file(file)
        actor = current_actor()
        if spec.author is None:
            spec = spec.model_copy(update={"author": actor.name})
        result = ws.prompts.register(spec)
    pv = result.version
    key = f"{pv.name}/{pv.version}"
    if ws.store.get(PROMPT_VERSION_KIND, key) is None:
        value = {
            "name": pv.name,
            "version": pv.version,
            "content_hash": pv.content_hash,
            "registered_by": actor.name,
            "created": result.created,
        }
        try:
            ws.store.commit(
                [Write(PROMPT_VERSION_KIND, key, value, 0)],
                EventDraft(
                    actor=actor.name,
                    action="prompt.register",
                    subject=f"prompt/{pv.name}",
                    at=utc_now(),
                    after={"version": pv.version, "content_hash": pv.content_hash},
                    context=actor.context,
                ),
            )
        except StateConflict:
            pass  # another run audited this version first
    return RegisteredPrompt(pv, result.created, [w.render() for w in result.warnings])


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


def _version_or_alias(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def promote_prompt(
    ws: Workspace,
    name: str,
    version: int,
    alias: str,
    reason: str,
    *,
    expect_current: int | None = None,
    override: bool = False,
) -> AliasChange:
    """Point ``alias`` at ``version``: recorded and audited first, then moved.

    ``expect_current`` makes the move conditional on where the alias points now
    (StateConflict otherwise). A ``production`` alias pinned by a service's
    stable release is refused (BadInput, naming the release route) unless
    ``override``: then the move is recorded as a deliberate override, which
    ``reconcile`` reports and leaves, until the service's next promotion or
    rollback sets the alias again.
    """
    _need_reason(reason)
    from releaser.api.freeze import refuse_prompt_if_frozen

    refuse_prompt_if_frozen(ws, name, alias, utc_now())
    return _move(
        ws, name, alias, reason, "promote", lambda _current: version, expect_current, override
    )


def rollback_prompt(
    ws: Workspace,
    name: str,
    alias: str,
    reason: str,
    *,
    expect_current: int | None = None,
    override: bool = False,
) -> AliasChange:
    """Move ``alias`` back to where it pointed before its last move; audited first.

    ``expect_current`` and ``override`` as for :func:`promote_prompt`.
    """
    _need_reason(reason)
    from promptregistry import previous_target

    def target(current: int | None) -> int:
        if current is None:
            raise ArtifactNotFound(
                f"{name} has no alias {alias!r} to roll back",
                hint=f"'releaser prompt show {name}' lists its aliases",
            )
        found = previous_target(alias_history(ws.store, name, alias), current)
        if found is None:
            raise ArtifactNotFound(
                f"alias {alias!r} of {name!r} (now v{current}) has no earlier version to roll "
                "back to",
                hint=f"promote a specific version instead: 'releaser prompt promote {name} "
                f"VERSION --to {alias} --reason ...'",
            )
        return found

    return _move(ws, name, alias, reason, "rollback", target, expect_current, override)


def _move(
    ws: Workspace,
    name: str,
    alias: str,
    reason: str,
    move: Literal["promote", "rollback"],
    target: Callable[[int | None], int],
    expect_current: int | None,
    override: bool,
) -> AliasChange:
    """Intent before effect for one prompt alias: settle, check, record (CAS), move, mark."""
    from promptregistry import AliasChange, validate_alias

    key = journal.prompt_key(name, alias)
    with prompt_errors():
        validate_alias(alias)
        # A move of this alias that is still owed lands first. Another command may record
        # one right after: then the backend does not show it yet, so settle again rather
        # than start from a version the journal has already moved past.
        for _attempt in range(3):
            journal.settle(ws, keys=[key])
            rec = ws.store.get(journal.EFFECT_KIND, key)
            if rec is None or rec.value.get("status") != "pending":
                break
        else:
            raise StateConflict(
                f"{name}@{alias} keeps being moved by other commands; nothing of this one "
                "was recorded or moved",
                hint=f"'releaser prompt history {name}' shows the moves; run again when it is "
                "quiet",
            )
        current = ws.prompts.aliases(name).get(alias)
        if expect_current is not None and current != expect_current:
            where = "unset" if current is None else f"v{current}"
            raise StateConflict(
                f"{name}@{alias} is {where}, not v{expect_current} as expected; nothing moved",
                hint=f"'releaser prompt history {name}' shows who moved it; run again with "
                "the version it has now if the move still applies",
            )
        version = target(current)
        ws.prompts.get(name, version=version)  # PromptNotFound, listing versions, if missing
    actor = current_actor()
    now = datetime.now(UTC)
    at = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    change = AliasChange(
        name=name,
        alias=alias,
        from_version=current,
        to_version=version,
        reason=reason,
        actor=actor.name,
        at=now,
        action=move,
    )
    if not change.changed:
        return change
    extra = _override(ws, name, alias, version, current, override, reason, actor.name, at)
    intents = journal.Intents()
    intents.alias(
        "prompt",
        name,
        version,
        rec,
        current,
        service=None,
        cause=f"prompt.{move}",
        reason=reason,
        at=at,
        move=move,
        alias=alias,
        extra=extra,
    )
    try:
        ws.store.commit(intents.writes, intents.events[0], also=intents.events[1:])
    except StateConflict as exc:
        raise StateConflict(
            f"{name}@{alias} was moved by another command at the same time; nothing of this "
            "one was recorded or moved",
            hint=f"'releaser prompt history {name}' shows the move that won; run again if "
            "this one still applies",
        ) from exc
    failed = [e for e in journal.settle(ws, keys=[key]) if e.status == "failed"]
    if failed:
        raise ExternalUnavailable(
            f"the move of {name}@{alias} to v{version} is recorded but the prompt backend "
            f"did not take it: {failed[0].detail}",
            hint="run the same command again to finish it (it is owed, and any later "
            "command on this alias finishes it first)",
        )
    return change


def _override(
    ws: Workspace,
    name: str,
    alias: str,
    version: int,
    current: int | None,
    override: bool,
    reason: str,
    actor: str,
    at: str,
) -> dict[str, Any] | None:
    """Refuse a hand move of a release-pinned alias, or describe it as a recorded override."""
    if alias != journal.PRODUCTION_ALIAS:
        return None
    pins = [pin for pin in journal.release_pins(ws, name) if pin[2] != version]
    if not pins:
        return None
    service, release, pinned = pins[0]
    if not override:
        raise BadInput(
            f"{name}@{alias} belongs to the stable release {release} of {service}, which pins "
            f"v{pinned}; moving it by hand would serve v{version} under a release that says "
            f"v{pinned}",
            hint=f"ship v{version} as a release: point the service's prompt at it, then "
            f"'releaser release create {service}', 'releaser gate {service} --release ID' and "
            f"'releaser rollout start {service} --release ID'; or pass --override to move it "
            "anyway as a recorded override that reconcile reports and leaves",
        )
    return {
        "override": {
            "service": service,
            "release": release,
            "pinned": pinned,
            "by": actor,
            "reason": reason,
            "at": at,
            "from": current,
        }
    }


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
