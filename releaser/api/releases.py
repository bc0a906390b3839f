"""Use cases for release bundles: create (resolve and pin), list, show, diff."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from releaser.api.context import current_actor, utc_now
from releaser.config import config_hash
from releaser.core.audit import EventDraft
from releaser.core.refs import DatasetRef, ModelRef, PromptRef
from releaser.core.release import (
    GATE_RECORD,
    RELEASE_RECORD,
    FieldChange,
    Release,
    ReleaseContent,
    diff_content,
    diff_values,
    gate_key,
)
from releaser.core.rollout import SERVICE_RECORD
from releaser.errors import BadInput, NotFound, ReleaserError, StateConflict, WorkspaceError
from releaser.store import bulk_decoding
from releaser.store.base import Write

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace

__all__ = [
    "CreateResult",
    "ReleaseDiff",
    "create_release",
    "diff_releases",
    "get_release",
    "get_service_release",
    "list_releases",
    "pinned_drift",
    "pinned_drift_warning",
    "release_summaries",
    "ReleaseSummary",
]

RELEASE_KIND = RELEASE_RECORD
MODEL_TAG = "releaser.release_id"
MIN_PREFIX = 4


@dataclass(frozen=True)
class CreateResult:
    """The release, whether this call created it, and warnings worth showing."""

    release: Release
    created: bool
    warnings: list[str] = field(default_factory=list)


def _resolve_content(
    ws: Workspace,
    service: str,
    *,
    allow_dirty: bool,
    prompt_versions: Mapping[str, int] | None = None,
) -> tuple[ReleaseContent, list[str]]:
    """Resolve every ref of ``service`` without writing anything."""
    from releaser.integrations.dvc_data import dataset_is_pushed, dataset_ref
    from releaser.integrations.git_repo import code_ref

    spec = ws.config.service(service)
    warnings: list[str] = []
    code = code_ref(ws.root)
    if code.dirty and not allow_dirty:
        raise WorkspaceError(
            f"the working tree at {ws.root} has uncommitted changes, so the release "
            "would not match any commit",
            hint="commit or stash the changes, or pass --allow-dirty to record a dirty release",
        )
    if code.dirty:
        warnings.append("the working tree is dirty: this release does not match a commit")

    datasets: list[DatasetRef] = []
    for ds in spec.datasets:
        ref = dataset_ref(ws.root, ds.path, rev=code.sha)
        if not dataset_is_pushed(ws.root, ref):
            warnings.append(
                f"dataset {ds.path} ({ref.md5}) is not in the DVC remote yet: run 'dvc push'"
            )
        datasets.append(ref)

    model: ModelRef | None = None
    if spec.model is not None:
        model = ws.models.resolve(
            spec.model.name, alias=spec.model.alias, version=spec.model.version
        )

    prompts: list[PromptRef] = []
    if spec.prompts or prompt_versions:
        from releaser.api.prompt_refs import resolve_prompt_refs

        prompts = resolve_prompt_refs(ws, spec.prompts, prompt_versions)
    judges: list[PromptRef] = []
    if spec.eval is not None and any(s.name == "judge" for s in spec.eval.scorers):
        from releaser.api.prompt_refs import resolve_judge_refs

        judges = resolve_judge_refs(ws, spec.eval.scorers)

    config = spec.model_dump(mode="json", by_alias=True)
    content = ReleaseContent(
        service=service,
        model=model,
        prompts=prompts,
        datasets=datasets,
        code=code,
        config=config,
        config_hash=config_hash(spec),
        judges=judges,
    )
    return content, warnings


def create_release(
    ws: Workspace,
    service: str,
    *,
    allow_dirty: bool = False,
    prompt_versions: Mapping[str, int] | None = None,
) -> CreateResult:
    """Resolve and pin ``service``'s model, prompts, data and code into a release.

    Idempotent: unchanged inputs give the same id, and a second call returns
    the existing release without writing anything. Nothing is written unless
    every ref resolves. The MLflow model version is tagged with the release id.
    ``prompt_versions`` pins the named prompts to those versions rather than their
    configured aliases (a prompt release), and judge prompts are pinned too.
    """
    content, warnings = _resolve_content(
        ws, service, allow_dirty=allow_dirty, prompt_versions=prompt_versions
    )
    actor = current_actor()
    release = Release.build(
        content, created_at=utc_now(), created_by=actor.name, created_context=actor.context
    )
    existing = ws.store.get(RELEASE_KIND, release.id)
    if existing is not None:
        return CreateResult(Release.model_validate(existing.value), False, warnings)
    event = EventDraft(
        actor=actor.name,
        action="release.create",
        subject=f"release:{release.id}",
        at=release.created_at,
        after={"release_id": release.id, "service": service, **_summary(release)},
        context=actor.context,
    )
    try:
        ws.store.commit(
            [Write(RELEASE_KIND, release.id, release.model_dump(mode="json"), 0)], event
        )
    except StateConflict:
        # Another process created the same release at the same moment: same content.
        raced = ws.store.get(RELEASE_KIND, release.id)
        if raced is None:
            raise
        return CreateResult(Release.model_validate(raced.value), False, warnings)
    if release.content.model is not None:
        try:
            ws.models.tag_version(release.content.model, MODEL_TAG, release.id)
        except Exception as exc:  # noqa: BLE001 - the tag mirrors state, it is not the record
            warnings.append(f"could not tag the MLflow model version: {exc}")
    return CreateResult(release, True, warnings)


def _summary(release: Release) -> dict[str, Any]:
    c = release.content
    return {
        "model": f"{c.model.name}/{c.model.version}" if c.model else None,
        "prompts": {p.name: p.version for p in c.prompts},
        "datasets": {d.path: d.md5 for d in c.datasets},
        "code": c.code.sha,
    }


def list_releases(ws: Workspace, service: str | None = None) -> list[Release]:
    """Releases in creation order, optionally of one service."""
    if service is not None:
        ws.config.service(service)  # unknown service: a clear error
    releases = [Release.model_validate(r.value) for r in ws.store.list(RELEASE_KIND)]
    if service is not None:
        releases = [r for r in releases if r.service == service]
    return sorted(releases, key=lambda r: (r.created_at, r.id))


@dataclass(frozen=True, slots=True)
class ReleaseSummary:
    """One line of ``release list``: what a release pins, its gate and where it stands.

    Built from the stored values without validating whole releases (a list of
    10,000 reads only these fields; ``release show`` gives everything).
    """

    id: str
    service: str
    model: dict[str, Any] | None
    prompts: list[dict[str, Any]]
    datasets: list[dict[str, Any]]
    code: dict[str, Any]
    created_at: str
    created_by: str
    gate: str | None
    stable: bool
    known_good: bool

    def to_dict(self) -> dict[str, Any]:
        """The documented ``release list --json`` shape of one release."""
        return {
            "id": self.id,
            "service": self.service,
            "model": self.model,
            "prompts": self.prompts,
            "datasets": self.datasets,
            "code": self.code,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "gate": self.gate,
            "stable": self.stable,
            "known_good": self.known_good,
        }


# What a summary leaves out: the pinned service config, signatures, and a gate
# report's evidence (its pass/fail is all a list shows).
_SUMMARY_OMITS = ("content.config", "content.model.signature", "created_context")
_GATE_OMITS = ("checks", "slices", "metrics", "baseline_metrics", "error_examples", "ms_per_row")


def release_summaries(ws: Workspace, service: str | None = None) -> list[ReleaseSummary]:
    """Releases in creation order, optionally of one service, as list lines.

    Three store reads whatever the count (releases, gate outcomes, service
    states), each with the database leaving out what a list does not show.
    """
    if service is not None:
        ws.config.service(service)  # unknown service: a clear error
    prefix = f"{service}/" if service is not None else ""
    gates = {
        r.key: ("passed" if r.value.get("passed") else "failed")
        for r in ws.store.list(GATE_RECORD, prefix=prefix, omit=_GATE_OMITS)
    }
    states = {r.key: r.value for r in ws.store.list(SERVICE_RECORD)}
    with bulk_decoding():  # thousands of small dicts, no cycles: see bulk_decoding
        return _summaries(ws, service, gates, states)


def _summaries(
    ws: Workspace, service: str | None, gates: dict[str, str], states: dict[str, Any]
) -> list[ReleaseSummary]:
    out = []
    for record in ws.store.list(RELEASE_KIND, omit=_SUMMARY_OMITS):
        value = record.value
        content = value["content"]
        name = content["service"]
        if service is not None and name != service:
            continue
        state = states.get(name, {})
        model = content.get("model")
        code = content["code"]
        out.append(
            ReleaseSummary(
                id=value["id"],
                service=name,
                model=({k: model.get(k) for k in ("name", "version", "alias")} if model else None),
                prompts=[
                    {k: p.get(k) for k in ("name", "version", "alias")}
                    for p in content.get("prompts", [])
                ],
                datasets=[
                    {k: d.get(k) for k in ("path", "md5")} for d in content.get("datasets", [])
                ],
                code={k: code.get(k) for k in ("sha", "branch", "dirty")},
                created_at=value["created_at"],
                created_by=value["created_by"],
                gate=gates.get(gate_key(name, value["id"])),
                stable=state.get("stable") == value["id"],
                known_good=value["id"] in state.get("known_good", []),
            )
        )
    out.sort(key=lambda r: (r.created_at, r.id))
    return out


def get_release(ws: Workspace, ref: str) -> Release:
    """A release by id or unique id prefix (at least 4 characters)."""
    ref = ref.strip()
    record = ws.store.get(RELEASE_KIND, ref)
    if record is not None:
        return Release.model_validate(record.value)
    if len(ref) < MIN_PREFIX:
        raise BadInput(
            f"release id prefix {ref!r} is too short",
            hint=f"give at least {MIN_PREFIX} characters; 'releaser release list' shows ids",
        )
    matches = ws.store.list(RELEASE_KIND, prefix=ref)
    if not matches:
        raise NotFound(
            f"no release with id {ref!r}", hint="'releaser release list' shows the releases"
        )
    if len(matches) > 1:
        ids = ", ".join(m.key for m in matches[:5])
        raise BadInput(
            f"release id prefix {ref!r} is ambiguous: {ids}", hint="give more characters"
        )
    return Release.model_validate(matches[0].value)


@dataclass(frozen=True)
class ReleaseDiff:
    """Differences between two releases, with prompt text diffs where prompts changed."""

    a: Release
    b: Release
    changes: list[FieldChange]
    prompt_text_diffs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The documented ``release diff --json`` shape."""
        return {
            "a": self.a.id,
            "b": self.b.id,
            "changes": [c.model_dump(mode="json") for c in self.changes],
            "prompt_text_diffs": self.prompt_text_diffs,
        }


def get_service_release(ws: Workspace, service: str, ref: str) -> Release:
    """:func:`get_release`, refusing a release of another service (BadInput with a hint)."""
    release = get_release(ws, ref)
    if release.service != service:
        raise BadInput(
            f"release {release.id} belongs to {release.service}, not {service}",
            hint=f"'releaser release list {service}' shows {service}'s releases",
        )
    return release


def diff_releases(ws: Workspace, a: str, b: str) -> ReleaseDiff:
    """What changed from release ``a`` to release ``b``: model, prompts, data, code, config."""
    ra, rb = get_release(ws, a), get_release(ws, b)
    # A dataset's rev is the commit its bytes are read at (the release's own); with the
    # same md5 the data is the same, and a rev change says nothing the code sha does not.
    same_data = {
        d.path
        for d in ra.content.datasets
        for e in rb.content.datasets
        if d.path == e.path and d.md5 == e.md5
    }
    changes = [
        c
        for c in diff_content(ra.content, rb.content)
        if not any(c.path == f"datasets[{path}].rev" for path in same_data)
    ]
    text_diffs: dict[str, str] = {}
    pa = {p.name: p for p in ra.content.prompts}
    pb = {p.name: p for p in rb.content.prompts}
    changed = [n for n in sorted(set(pa) & set(pb)) if pa[n].content_hash != pb[n].content_hash]
    if changed:
        from releaser.api.prompt_refs import prompt_text_diff

        for name in changed:
            text_diffs[name] = prompt_text_diff(ws, name, pa[name].version, pb[name].version)
    return ReleaseDiff(ra, rb, changes, text_diffs)


def pinned_drift(ws: Workspace, release: Release, key: str) -> list[FieldChange]:
    """How ``key`` of the service's section in releaser.yaml differs now from ``release``'s.

    A release pins its whole service section (rollout plan, eval thresholds,
    guardrails), so it is judged by the rules it was released with; this says
    what an edit since would have changed, field by field. Nothing when the file
    cannot be read (there is nothing to compare with).
    """
    try:
        current = ws.config.service(release.service).model_dump(mode="json", by_alias=True)
    except ReleaserError:
        return []
    pinned = release.content.config.get(key)
    now = current.get(key)
    if pinned == now:
        return []
    return diff_values({key: pinned}, {key: now})


def pinned_drift_warning(what: str, release_id: str, drift: list[FieldChange]) -> str | None:
    """One line for people naming the drift from :func:`pinned_drift`, or None."""
    if not drift:
        return None
    shown = "; ".join(
        f"{c.path}: {_short(c.before)} pinned, {_short(c.after)} in the file" for c in drift[:5]
    )
    more = f" (and {len(drift) - 5} more)" if len(drift) > 5 else ""
    return (
        f"releaser.yaml's {what} differs from the one release {release_id} pinned; the "
        f"pinned one is used: {shown}{more}. To use the new one, commit it and create a release"
    )


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # bake_minutes: 60, not 60.0
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."
