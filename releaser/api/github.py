"""GitHub mirrors of release state: deployments, gate statuses, PR comments, releases.

GitHub is not the source of truth: every function here returns one
:class:`~releaser.api.rollouts.SideEffect` and never raises. A failure
(GitHub down, 401, 403, rate limit) is a ``failed`` effect whose detail says
why and whose ``retry`` is the command that finishes it; the token never
appears in either. When GitHub is not configured (no ``github:`` section, or
no ``GITHUB_TOKEN`` / ``GITHUB_REPOSITORY``) each function is a silent
``skipped`` no-op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from releaser.store.redact import scrub

if TYPE_CHECKING:
    from releaser.api.workspace import Workspace
    from releaser.config.models import GithubSettings
    from releaser.core.effects import SideEffect, TrafficChange
    from releaser.integrations.github import GithubEnv

__all__ = [
    "GithubTarget",
    "comment_on_pr",
    "comment_marker",
    "deployment_environment",
    "github_active",
    "publish_gate",
    "publish_release",
    "release_diff_markdown",
    "release_tag",
    "sync_service",
]

MAX_DESCRIPTION = 140  # GitHub's limit for status descriptions
MAX_CHECK_SUMMARY = 65_000


def github_active(
    ws: Workspace, environ: Mapping[str, str] | None = None
) -> tuple[GithubSettings, GithubEnv] | None:
    """The settings and environment when GitHub is configured and reachable in principle."""
    settings = ws.config.github
    if settings is None:
        return None
    from releaser.integrations.github import GithubEnv

    env = GithubEnv.from_environ(environ)
    return (settings, env) if env is not None else None


def deployment_environment(settings: GithubSettings, service: str) -> str:
    """The GitHub environment name deployments of ``service`` go to."""
    return settings.environment.replace("{service}", service)


def comment_marker(service: str) -> str:
    """The hidden marker identifying the one releaser comment for ``service`` on a PR."""
    return f"<!-- releaser:{service} -->"


def release_tag(service: str, release_id: str) -> str:
    """The git tag of the GitHub Release for ``release_id``."""
    return f"{service}-{release_id}"


def _short(text: str, limit: int = MAX_DESCRIPTION) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _guarded(
    name: str,
    retry: str,
    env: GithubEnv,
    fn: Callable[[], SideEffect],
) -> SideEffect:
    """Run ``fn``; any failure becomes a ``failed`` effect scrubbed of the token."""
    from releaser.core.effects import SideEffect
    from releaser.errors import ReleaserError

    try:
        return fn()
    except ReleaserError as exc:
        detail = exc.message + (f" (hint: {exc.hint})" if exc.hint else "")
        return SideEffect(name, "failed", scrub(detail, [env.token]), retry)
    except Exception as exc:  # noqa: BLE001 - GitHub mirrors state; it never breaks a step
        return SideEffect(name, "failed", scrub(f"{type(exc).__name__}: {exc}", [env.token]), retry)


def _release_sha(ws: Workspace, release_id: str, env: GithubEnv) -> str:
    """The commit a release was built from (falling back to ``$GITHUB_SHA``)."""
    from releaser.api.releases import get_release
    from releaser.errors import NotFound

    try:
        return get_release(ws, release_id).content.code.sha
    except NotFound:
        if env.sha:
            return env.sha
        raise


# --- deployments -----------------------------------------------------------------------------


class GithubTarget:
    """Effect target mirroring a service's rollout as GitHub Deployments with statuses.

    One deployment per release and environment (found by its payload before one
    is created, so re-runs reuse it); each traffic change adds the matching
    status unless it is already the latest: ``in_progress`` at each step with
    the traffic share, ``success`` on promotion or when a release is stable,
    ``failure`` on rollback (and ``success`` again on the release rolled back
    to), ``inactive`` on abort.
    """

    name = "github deployment"

    def __init__(self, ws: Workspace, environ: Mapping[str, str] | None = None) -> None:
        self.ws = ws
        self.environ = environ

    def apply(self, change: TrafficChange) -> SideEffect:
        """Bring the deployments of ``change.service`` in line with ``change``."""
        from releaser.core.effects import SideEffect

        active = github_active(self.ws, self.environ)
        if active is None or not active[0].deployments:
            return SideEffect(self.name, "skipped", "GitHub is not configured")
        settings, env = active
        retry = f"releaser github sync {change.service}"
        return _guarded(self.name, retry, env, lambda: self._apply(settings, env, change))

    def _apply(self, settings: GithubSettings, env: GithubEnv, change: TrafficChange) -> SideEffect:
        from releaser.core.effects import SideEffect

        host = self.ws.github(env)
        environment = deployment_environment(settings, change.service)
        marks = _marks(change)
        if not marks:
            return SideEffect(self.name, "skipped", f"nothing to mirror for {change.status}")
        done: list[str] = []
        unchanged = True
        for release_id, state, description in marks:
            outcome = host.mirror_deployment(
                environment=environment,
                service=change.service,
                release_id=release_id,
                ref=partial(_release_sha, self.ws, release_id, env),
                state=state,
                description=_short(description),
                target_url=env.run_url(),
            )
            unchanged = unchanged and outcome == "unchanged"
            done.append(f"{release_id} {state}")
        detail = f"{environment}: " + ", ".join(done)
        return SideEffect(self.name, "unchanged" if unchanged else "done", detail)


def _marks(change: TrafficChange) -> list[tuple[str, str, str]]:
    """(release id, deployment state, description) to record for one traffic change."""
    cand, stable = change.candidate, change.stable
    pct = f"{change.percent:g}%" if change.percent is not None else "?"
    reason = f": {change.reason}" if change.reason else ""
    if change.status == "in_progress" and cand:
        return [(cand, "in_progress", f"step {change.step}: {pct} of traffic")]
    if change.status == "paused" and cand:
        return [(cand, "in_progress", f"paused at step {change.step}: {pct} of traffic")]
    if change.status == "promoted" and cand:
        return [(cand, "success", "promoted: 100% of traffic")]
    if change.status == "aborted" and cand:
        return [(cand, "inactive", f"aborted{reason}")]
    if change.status == "rolled_back":
        marks: list[tuple[str, str, str]] = []
        if cand:
            marks.append((cand, "failure", f"rolled back to {stable or 'nothing'}{reason}"))
        if stable:
            marks.append((stable, "success", f"stable again after rollback of {cand}"))
        return marks
    if change.status == "stable" and stable:
        return [(stable, "success", "stable: 100% of traffic")]
    return []


# --- gates -----------------------------------------------------------------------------------


def _gate_sha(env: GithubEnv, sha: str | None) -> str | None:
    if sha:
        return sha
    pr = env.event().get("pull_request")
    if isinstance(pr, dict):
        head = pr.get("head")
        if isinstance(head, dict) and isinstance(head.get("sha"), str):
            return str(head["sha"])
    return env.sha


def publish_gate(
    ws: Workspace,
    *,
    service: str,
    release_id: str,
    passed: bool,
    summary_md: str,
    sha: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SideEffect:
    """Publish a gate's outcome on a commit as a status or a check run (``github.gate_status``).

    The commit is ``sha``, else the pull request's head, else ``$GITHUB_SHA``.
    A commit status carries a one-line description and links to the workflow
    run; a check run carries ``summary_md`` in full.
    """
    from releaser.core.effects import SideEffect

    name = "github gate"
    active = github_active(ws, environ)
    if active is None:
        return SideEffect(name, "skipped", "GitHub is not configured")
    settings, env = active
    commit = _gate_sha(env, sha)
    if commit is None:
        return SideEffect(name, "skipped", "no commit to report on (GITHUB_SHA is unset)")
    verdict = "passed" if passed else "failed"
    context = f"releaser/gate/{service}"
    description = _short(f"gate {verdict} for release {release_id}")

    def publish() -> SideEffect:
        check_run = settings.gate_status == "check_run"
        ws.github(env).publish_result(
            commit,
            context=context,
            passed=passed,
            description=description,
            summary=summary_md[:MAX_CHECK_SUMMARY],
            check_run=check_run,
            target_url=env.run_url(),
        )
        kind = "check run" if check_run else "status"
        return SideEffect(name, "done", f"{kind} {context} {verdict} on {commit[:12]}")

    retry = f"releaser gate run {service} --release {release_id}"
    return _guarded(name, retry, env, publish)


# --- pull request comments -------------------------------------------------------------------


def comment_on_pr(
    ws: Workspace,
    *,
    service: str,
    body_md: str,
    pr_number: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> SideEffect:
    """Create, or edit in place, the one comment for ``service`` on the pull request.

    The comment carries a hidden marker per service, so a re-run edits it
    rather than adding another. The pull request is ``pr_number``, else the one
    in ``$GITHUB_REF`` (refs/pull/N/merge) or the event payload; outside a pull
    request this is skipped.
    """
    from releaser.core.effects import SideEffect
    from releaser.integrations.github import pr_number_from_env

    name = "github comment"
    active = github_active(ws, environ)
    if active is None or not active[0].pr_comments:
        return SideEffect(name, "skipped", "GitHub PR comments are not configured")
    _settings, env = active
    number = pr_number if pr_number is not None else pr_number_from_env(env)
    if number is None:
        return SideEffect(name, "skipped", "not a pull request")
    marker = comment_marker(service)
    body = f"{marker}\n{body_md.rstrip()}\n"

    def comment() -> SideEffect:
        outcome, cid = ws.github(env).upsert_comment(number, marker=marker, body=body)
        if outcome == "unchanged":
            return SideEffect(name, "unchanged", f"comment {cid} on #{number} is up to date")
        verb = "commented on" if outcome == "created" else "edited comment on"
        return SideEffect(name, "done", f"{verb} #{number} (comment {cid})")

    retry = f"releaser github comment {service} --pr {number} --file REPORT.md"
    return _guarded(name, retry, env, comment)


def _cell(value: object, limit: int = 60) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`{text if len(text) <= limit else text[: limit - 1] + '…'}`"


def release_diff_markdown(
    ws: Workspace, service: str, release_id: str, *, max_rows: int = 30
) -> str:
    """Markdown of what ``release_id`` changes against the service's stable release.

    For the PR comment under the gate report; NotFound if the release is unknown.
    """
    from releaser.api.releases import diff_releases, get_release
    from releaser.api.state import service_state

    release = get_release(ws, release_id)
    stable = service_state(ws, service).stable
    head = f"### What release `{release.id}` changes against production"
    if stable is None:
        return f"{head}\n\nNothing is in production yet: this would be the first release.\n"
    if stable == release.id:
        return f"{head}\n\nNothing: this release is the one in production.\n"
    diff = diff_releases(ws, stable, release.id)
    lines = [head, "", f"Compared with `{stable}` (stable).", ""]
    if not diff.changes:
        lines.append("Same model, prompts, data, code and configuration.")
    else:
        lines += ["| what | production | this release |", "| --- | --- | --- |"]
        for change in diff.changes[:max_rows]:
            lines.append(f"| `{change.path}` | {_cell(change.before)} | {_cell(change.after)} |")
        if len(diff.changes) > max_rows:
            lines.append(f"\n…and {len(diff.changes) - max_rows} more changes.")
    for name, text in sorted(diff.prompt_text_diffs.items()):
        lines += ["", f"<details><summary>prompt {name}</summary>", "", "```diff"]
        lines += [text.rstrip()[:6000], "```", "", "</details>"]
    return "\n".join(lines) + "\n"


# --- releases --------------------------------------------------------------------------------


def publish_release(
    ws: Workspace,
    *,
    service: str,
    release_id: str,
    pack_path: Path,
    environ: Mapping[str, str] | None = None,
) -> SideEffect:
    """Create (or find by tag) the GitHub Release of ``release_id`` with the pack attached.

    Idempotent: the tag ``SERVICE-RELEASE_ID`` identifies the release and the
    pack is uploaded only when no asset of that name is there yet.
    """
    from releaser.core.effects import SideEffect

    name = "github release"
    active = github_active(ws, environ)
    if active is None or not active[0].release_on_production:
        return SideEffect(name, "skipped", "GitHub releases are not configured")
    _settings, env = active
    pack = Path(pack_path)
    tag = release_tag(service, release_id)

    def publish() -> SideEffect:
        data = pack.read_bytes()
        outcome, url = ws.github(env).ensure_release(
            tag=tag,
            target=lambda: _release_sha(ws, release_id, env),
            name=f"{service} {release_id}",
            body=f"Release `{release_id}` of **{service}**, promoted to production by "
            f"releaser.\n\nThe handover pack `{pack.name}` is attached.\n",
            asset_name=pack.name,
            asset=data,
            content_type="application/zip",
        )
        if outcome == "unchanged":
            return SideEffect(name, "unchanged", f"{tag} already has {pack.name}")
        return SideEffect(name, "done", f"{outcome} {tag} with {pack.name}: {url}")

    retry = f"releaser github sync {service} --pack {pack}"
    return _guarded(name, retry, env, publish)


# --- re-mirroring ----------------------------------------------------------------------------


def sync_service(
    ws: Workspace,
    service: str,
    *,
    pack_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[SideEffect]:
    """Mirror ``service``'s current state to GitHub again (the command failures point to).

    The deployment of the live rollout (or of the stable release) gets the
    status matching the state in the store; with ``pack_path`` the stable
    release's GitHub Release is created or completed with the pack. Raises
    NotFound for an unknown service; GitHub failures come back as effects.
    """
    from releaser.api.context import utc_now
    from releaser.api.state import rollout_record, service_state, traffic_change
    from releaser.core.effects import ChangeStatus, SideEffect, TrafficChange
    from releaser.errors import NotFound

    ws.config.service(service)
    if github_active(ws, environ) is None:
        return [SideEffect("github", "skipped", "GitHub is not configured")]
    state = service_state(ws, service)
    now = utc_now()
    changes: list[TrafficChange] = []
    last = state.active_rollout or (f"{service}-{state.rollouts}" if state.rollouts else None)
    rollout = None
    if last is not None:
        try:
            rollout = rollout_record(ws, last)[0]
        except NotFound:
            rollout = None

    def stable_change(status: ChangeStatus, candidate: str | None) -> TrafficChange:
        return TrafficChange(
            service, "github.sync", status, state.stable, candidate, None, None, None, "", now
        )

    if rollout is not None and (
        not rollout.final
        or rollout.status == "rolled_back"
        or (rollout.status == "promoted" and rollout.candidate == state.stable)
    ):
        changes.append(traffic_change(service, "github.sync", state.stable, rollout, None, "", now))
    elif rollout is not None and rollout.status == "promoted":
        # Promoted, then rolled back outside a rollout: the candidate is no longer live.
        changes.append(stable_change("rolled_back", rollout.candidate))
    elif state.stable is not None:
        if rollout is not None:  # aborted
            changes.append(
                traffic_change(service, "github.sync", state.stable, rollout, None, "", now)
            )
        changes.append(stable_change("stable", None))
    target = GithubTarget(ws, environ)
    effects: list[SideEffect] = [target.apply(change) for change in changes]
    if pack_path is not None:
        if state.stable is None:
            effects.append(SideEffect("github release", "skipped", "no stable release yet"))
        else:
            effects.append(
                publish_release(
                    ws,
                    service=service,
                    release_id=state.stable,
                    pack_path=pack_path,
                    environ=environ,
                )
            )
    if not effects:
        effects.append(SideEffect("github", "unchanged", f"{service} has no release yet"))
    return effects
