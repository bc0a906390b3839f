"""The intent journal: what a committed change still owes the world outside the store.

Every change of traffic or of an alias writes, in its one store transaction,
the new state, its audit event and one ``effect`` record for each thing
outside the store it must move, each ``pending``; an alias move also gets an
audit event of its own (``model.alias``, ``prompt.alias``) in that
transaction, so the log holds every move, in order, before anything moved.
Only then is anything outside touched. :func:`settle` applies what is owed
and marks it ``done`` in one more commit (audited as ``effects.applied``).
Whatever finds pending effects finishes them, or names the command that does:
a process killed at any point leaves the store consistent and the outside
world one re-run away from it.

There is one record per thing outside, so a newer intent replaces an older one
that never landed: aliases and targets are set to a state, never stepped, and
the newest intent is the state owed. Keys::

    model:NAME@ALIAS     an MLflow model alias         version, from
    prompt:NAME@ALIAS    a prompt alias                version, from, move
    targets:SERVICE      deploy targets and GitHub     change (a TrafficChange)

Each value also holds ``status`` (``pending`` or ``done``), ``service`` (the
service whose change owes it; ``None`` for a prompt moved on its own),
``cause`` (the audit action that owed it), ``reason``, ``actor``, ``at``,
``error`` (the last failure, if any) and, for a prompt alias moved by hand
over a release's pin, ``override``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.core.audit import EventDraft
from releaser.core.effects import SideEffect, TrafficChange
from releaser.core.release import RELEASE_RECORD, Release
from releaser.core.rollout import SERVICE_RECORD
from releaser.errors import ConfigError, StateConflict
from releaser.store.base import Record, Write

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "EFFECT_KIND",
    "MODEL_ALIAS_ACTION",
    "PRODUCTION_ALIAS",
    "PROMPT_ALIAS_ACTION",
    "Intents",
    "model_key",
    "owed",
    "planned",
    "prompt_key",
    "release_pins",
    "settle",
    "targets_key",
]

EFFECT_KIND = "effect"
PRODUCTION_ALIAS = "production"
"""The MLflow model alias and prompt alias releaser points at the stable release."""
MODEL_ALIAS_ACTION = "model.alias"
PROMPT_ALIAS_ACTION = "prompt.alias"
APPLIED_ACTION = "effects.applied"
_MARK_ATTEMPTS = 3
_LAND_ATTEMPTS = 5


def model_key(name: str, alias: str) -> str:
    """The journal key of an MLflow model alias."""
    return f"model:{name}@{alias}"


def prompt_key(name: str, alias: str) -> str:
    """The journal key of a prompt alias."""
    return f"prompt:{name}@{alias}"


def targets_key(service: str) -> str:
    """The journal key of a service's deploy targets and GitHub mirror."""
    return f"targets:{service}"


def _label(value: dict[str, Any]) -> str:
    kind = value["effect"]
    if kind == "model":
        return f"MLflow alias {value['name']}@{value['alias']}"
    if kind == "prompt":
        return f"prompt alias {value['name']}@{value['alias']}"
    return "deploy targets"


def _detail(value: dict[str, Any]) -> str:
    if value["effect"] == "targets":
        change = value["change"]
        return f"{change['action']}: {change['status']}, stable {change['stable']}"
    before = value.get("from")
    return f"{'(unset)' if before is None else f'v{before}'} -> v{value['version']}"


def _retry(value: dict[str, Any]) -> str:
    if value.get("service"):
        return f"releaser reconcile {value['service']}"
    return (
        f"releaser prompt promote {value['name']} {value['version']} --to {value['alias']} "
        "--reason 'finish the recorded move'"
    )


@dataclass
class Intents:
    """What one transition owes: journal writes, the audit events of its alias moves."""

    writes: list[Write] = field(default_factory=list)
    events: list[EventDraft] = field(default_factory=list)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)

    def planned(self) -> list[SideEffect]:
        """The effects these intents owe, as a dry run shows them."""
        return [_planned(v) for v in self.values.values()]

    def alias(
        self,
        effect: str,
        name: str,
        version: int,
        rec: Record | None,
        start: int | None,
        *,
        service: str | None,
        cause: str,
        reason: str,
        at: str,
        move: str = "promote",
        alias: str = PRODUCTION_ALIAS,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Owe a move of ``name@alias`` from ``start`` to ``version``.

        ``rec`` is the alias's journal record as the caller read it (None: none
        yet); the commit is a compare-and-swap on it. Nothing is owed when the
        journal already sends the alias to ``version`` (done, or owed and not yet
        landed: :func:`settle` finishes it) and ``start`` is there too.
        """
        key = model_key(name, alias) if effect == "model" else prompt_key(name, alias)
        sent = rec is not None and rec.value.get("version") == version
        if start == version and (rec is None or (sent and rec.value.get("override") is None)):
            return
        actor = current_actor()
        value: dict[str, Any] = {
            "effect": effect,
            "name": name,
            "alias": alias,
            "version": version,
            "from": start,
            "move": move,
            "service": service,
            "status": "pending",
            "cause": cause,
            "reason": reason,
            "actor": actor.name,
            "at": at,
            "error": None,
            "override": None,
            **(extra or {}),
        }
        self.writes.append(Write(EFFECT_KIND, key, value, rec.version if rec else 0))
        self.values[key] = value
        self.events.append(
            EventDraft(
                actor=actor.name,
                action=MODEL_ALIAS_ACTION if effect == "model" else PROMPT_ALIAS_ACTION,
                subject=f"{effect}:{name}",
                at=at,
                before={"alias": alias, "version": start},
                after={"alias": alias, "version": version},
                reason=reason,
                context={**actor.context, "move": move, "cause": cause, **(extra or {})},
            )
        )

    def release_aliases(
        self,
        ws: Workspace,
        release: Release,
        *,
        replaced: Release | None,
        cause: str,
        reason: str,
        at: str,
        move: str,
    ) -> None:
        """Owe the ``production`` aliases of ``release``'s model and prompts."""
        m = release.content.model
        if m is not None:
            old = replaced.content.model if replaced is not None else None
            fallback = old.version if old is not None and old.name == m.name else None
            rec = ws.store.get(EFFECT_KIND, model_key(m.name, PRODUCTION_ALIAS))
            self.alias(
                "model",
                m.name,
                m.version,
                rec,
                _believed(rec, fallback),
                service=release.service,
                cause=cause,
                reason=reason,
                at=at,
                move=move,
            )
        pins = {p.name: p.version for p in replaced.content.prompts} if replaced else {}
        for p in release.content.prompts:
            rec = ws.store.get(EFFECT_KIND, prompt_key(p.name, PRODUCTION_ALIAS))
            self.alias(
                "prompt",
                p.name,
                p.version,
                rec,
                _believed(rec, pins.get(p.name)),
                service=release.service,
                cause=cause,
                reason=reason,
                at=at,
                move=move,
                extra={"release": release.id},
            )

    def targets(self, ws: Workspace, change: TrafficChange) -> None:
        """Owe ``change`` to the service's deploy targets and GitHub, if it has any."""
        from releaser.api.effects import targets_configured

        try:
            wanted = targets_configured(ws, change.service)
        except ConfigError:
            wanted = True  # releaser.yaml is broken: the targets wait for the file
        if not wanted:
            return
        key = targets_key(change.service)
        rec = ws.store.get(EFFECT_KIND, key)
        value = {
            "effect": "targets",
            "service": change.service,
            "change": change.to_dict(),
            "status": "pending",
            "cause": change.action,
            "reason": change.reason,
            "actor": current_actor().name,
            "at": change.at,
            "error": None,
        }
        self.writes.append(Write(EFFECT_KIND, key, value, rec.version if rec else 0))
        self.values[key] = value


def _believed(rec: Record | None, fallback: int | None) -> int | None:
    """Where the journal last sent an alias; ``fallback`` when it never did."""
    if rec is None:
        return fallback
    version = rec.value.get("version")
    return int(version) if version is not None else None


def release_pins(ws: Workspace, name: str) -> list[tuple[str, str, int]]:
    """(service, release id, version) for each stable release that pins prompt ``name``.

    Their ``production`` alias is the release's to move: a promotion or a
    rollback of the service sets it.
    """
    pins = []
    for rec in ws.store.list(SERVICE_RECORD):
        stable = rec.value.get("stable")
        found = ws.store.get(RELEASE_RECORD, stable) if isinstance(stable, str) else None
        if found is None:
            continue
        for p in Release.model_validate(found.value).content.prompts:
            if p.name == name:
                pins.append((rec.key, found.key, p.version))
    return pins


def owed(ws: Workspace, *, service: str | None = None, keys: Iterable[str] = ()) -> list[Record]:
    """Pending journal records of ``service`` (or with one of ``keys``), in key order."""
    wanted = set(keys)
    return [
        rec
        for rec in ws.store.list(EFFECT_KIND)
        if rec.value.get("status") == "pending"
        and ((service is not None and rec.value.get("service") == service) or rec.key in wanted)
    ]


def _planned(value: dict[str, Any]) -> SideEffect:
    return SideEffect(_label(value), "planned", _detail(value), _retry(value))


def planned(records: Sequence[Record]) -> list[SideEffect]:
    """How owed records read in a dry run or a status: what applying them will do."""
    return [_planned(r.value) for r in records]


def settle(
    ws: Workspace, *, service: str | None = None, keys: Iterable[str] = ()
) -> list[SideEffect]:
    """Apply every effect owed by ``service`` (or under ``keys``) and mark those that landed.

    Idempotent, and safe to race: each record is read again just before it is
    applied and just after, and whenever another process recorded a newer move
    of the same thing meanwhile, that newer move is what gets applied, so a
    slow settle never leaves an older state in place of a newer one. Never
    raises for an effect that fails: it stays pending, with its error, and is
    reported with the command that finishes it.
    """
    records = owed(ws, service=service, keys=keys)
    if not records:
        return []
    results: list[SideEffect] = []
    outcomes: list[tuple[Record, list[SideEffect]]] = []
    for listed in records:
        landed = _land(ws, listed.key)
        if landed is not None:
            results += landed[1]
            outcomes.append(landed)
    _mark(ws, outcomes, f"service:{service}" if service else f"effect:{records[0].key}")
    return results


def _land(ws: Workspace, key: str) -> tuple[Record, list[SideEffect]] | None:
    """Apply the newest intent under ``key``, if it is still owed; (record applied, outcomes).

    The record is read before and after applying: if it changed meanwhile (another
    process recorded a newer move, which it may already have applied), the newer
    one is applied on top, until a pass sees no change.
    """
    rec = ws.store.get(EFFECT_KIND, key)
    if rec is None or rec.value.get("status") != "pending":
        return None  # landed (or replaced and landed) by another process meanwhile
    effects: list[SideEffect] = []
    for _attempt in range(_LAND_ATTEMPTS):
        effects = _apply(ws, rec.value)
        after = ws.store.get(EFFECT_KIND, key)
        if after is None or after.version == rec.version:
            break
        rec = after
    return rec, effects


def _apply(ws: Workspace, value: dict[str, Any]) -> list[SideEffect]:
    """Apply one owed effect; each outcome a SideEffect, never raising."""
    label, retry = _label(value), _retry(value)
    kind = value["effect"]
    if kind == "targets":
        from releaser.api.effects import apply_targets

        effects = apply_targets(ws, TrafficChange.from_dict(value["change"]))
        # A failed target is finished through the journal (which then marks it done),
        # unless what it waits for is a fix to releaser.yaml.
        return [
            replace(e, retry=retry)
            if e.status == "failed" and not (e.retry or "").startswith("fix ")
            else e
            for e in effects
        ]
    name, alias, version = value["name"], value["alias"], int(value["version"])
    try:
        if kind == "model":
            current = ws.models.get_alias(name, alias)
            if current == version:
                return [SideEffect(label, "unchanged", f"already v{version}")]
            ws.models.set_alias(name, alias, version)
            before = "(unset)" if current is None else f"v{current}"
            return [SideEffect(label, "done", f"{before} -> v{version}")]
        change = ws.prompts.backend.set_alias(
            name,
            alias,
            version,
            reason=value.get("reason") or "",
            actor=value.get("actor") or "",
            action=value.get("move") or "promote",
        )
    except Exception as exc:  # noqa: BLE001 - reported per effect; the change is committed
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return [SideEffect(label, "failed", str(message), retry)]
    if not change.changed:
        return [SideEffect(label, "unchanged", f"already v{version}")]
    before = "(unset)" if change.from_version is None else f"v{change.from_version}"
    return [SideEffect(label, "done", f"{before} -> v{version}")]


def _mark(ws: Workspace, outcomes: list[tuple[Record, list[SideEffect]]], subject: str) -> None:
    """Mark what landed ``done`` (and note what failed), in one audited commit.

    A record another process changed meanwhile (it finished or replaced the
    effect) is left alone; the commit is retried without it.
    """
    now = utc_now()
    for _attempt in range(_MARK_ATTEMPTS):
        writes: list[Write] = []
        report: list[dict[str, Any]] = []
        for rec, effects in outcomes:
            if rec.value.get("status") != "pending":
                continue  # another process marked it; what we applied was the same state
            failed = [e for e in effects if e.status == "failed"]
            error = "; ".join(f"{e.name}: {e.detail}" for e in failed) or None
            if error is None:
                value = {**rec.value, "status": "done", "error": None, "done_at": now}
            elif error != rec.value.get("error"):
                value = {**rec.value, "error": error}
            else:
                continue  # failed again the same way: nothing new to record
            writes.append(Write(EFFECT_KIND, rec.key, value, rec.version))
            report.append(
                {
                    "key": rec.key,
                    "status": "done" if error is None else "pending",
                    "effects": [
                        {"name": e.name, "status": e.status, "detail": e.detail} for e in effects
                    ],
                }
            )
        if not writes:
            return
        try:
            ws.store.commit(
                writes,
                EventDraft(
                    actor=current_actor().name,
                    action=APPLIED_ACTION,
                    subject=subject,
                    at=now,
                    after={"effects": report},
                ),
            )
            return
        except StateConflict:
            # A record changed between applying it and marking it: what was applied may
            # be older than what is recorded now, so the newest is applied again.
            again = []
            for rec, effects in outcomes:
                cur = ws.store.get(EFFECT_KIND, rec.key)
                if cur is not None and cur.version == rec.version:
                    again.append((rec, effects))
                elif cur is not None:
                    again.append((cur, _apply(ws, cur.value)))
            outcomes = [(r, e) for r, e in again if r.value.get("status") == "pending"]
