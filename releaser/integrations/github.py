"""The GitHub REST API through github3.py: the few calls releaser mirrors its state with.

:class:`GitHost` is the seam: the operations releaser needs, in GitHub's
terms. :class:`Github3Host` implements it with github3.py against
``$GITHUB_API_URL`` (github.com, GitHub Enterprise, or a local stand-in), with
the token from ``$GITHUB_TOKEN``. Every failure (unreachable, 401, 403, rate
limit, any other answer) becomes one :class:`GithubUnavailable` whose message
never contains the token.

github3 is imported inside functions: ``import releaser.cli`` stays light.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from releaser.errors import ExternalUnavailable
from releaser.store.redact import scrub

__all__ = [
    "DEFAULT_API_URL",
    "GitHost",
    "Github3Host",
    "GithubEnv",
    "GithubUnavailable",
    "Outcome",
    "ReleaseInfo",
    "pr_number_from_env",
]

DEFAULT_API_URL = "https://api.github.com"
MAX_SCAN = 500  # deployments looked through to find a release's existing one
_PR_REF = re.compile(r"^refs/pull/(\d+)/(?:merge|head)$")
T = TypeVar("T")


class GithubUnavailable(ExternalUnavailable):
    """GitHub could not be reached or refused a call (message free of the token)."""


@dataclass(frozen=True)
class GithubEnv:
    """Where to reach GitHub and the Actions context, read from the standard variables."""

    token: str = field(repr=False)
    repository: str
    api_url: str = DEFAULT_API_URL
    sha: str | None = None
    ref: str | None = None
    event_path: str | None = None
    server_url: str = "https://github.com"
    run_id: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> GithubEnv | None:
        """The settings from ``GITHUB_*`` variables; None without a token and a repository."""
        env = os.environ if environ is None else environ
        token = env.get("GITHUB_TOKEN", "").strip()
        repository = env.get("GITHUB_REPOSITORY", "").strip()
        if not token or "/" not in repository:
            return None
        return cls(
            token=token,
            repository=repository,
            api_url=(env.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/"),
            sha=env.get("GITHUB_SHA") or None,
            ref=env.get("GITHUB_REF") or None,
            event_path=env.get("GITHUB_EVENT_PATH") or None,
            server_url=(env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/"),
            run_id=env.get("GITHUB_RUN_ID") or None,
        )

    def event(self) -> dict[str, Any]:
        """The webhook payload of the running workflow (empty outside Actions or unreadable)."""
        if not self.event_path:
            return {}
        try:
            data = json.loads(Path(self.event_path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def run_url(self) -> str | None:
        """Link to the running workflow run, when inside Actions."""
        if not self.run_id:
            return None
        return f"{self.server_url}/{self.repository}/actions/runs/{self.run_id}"


def pr_number_from_env(env: GithubEnv) -> int | None:
    """The pull request number: from ``GITHUB_REF`` (refs/pull/N/merge) or the event payload."""
    if env.ref:
        m = _PR_REF.match(env.ref)
        if m:
            return int(m.group(1))
    event = env.event()
    for key in ("pull_request", "issue"):
        obj = event.get(key)
        if isinstance(obj, dict) and isinstance(obj.get("number"), int):
            if key == "issue" and "pull_request" not in obj:
                continue
            return int(obj["number"])
    number = event.get("number")
    return number if isinstance(number, int) and "pull_request" in event else None


@dataclass(frozen=True)
class ReleaseInfo:
    """A GitHub Release: its id, tag, page and the names of its assets."""

    id: int
    tag: str
    html_url: str
    assets: list[str]


Outcome = Literal["created", "edited", "completed", "added", "unchanged"]
"""What an idempotent GitHub call did."""


class GitHost(Protocol):
    """The GitHub operations releaser needs, each idempotent; GithubUnavailable on failure."""

    def mirror_deployment(
        self,
        *,
        environment: str,
        service: str,
        release_id: str,
        ref: Callable[[], str],
        state: str,
        description: str,
        target_url: str | None,
    ) -> Outcome:
        """Give the release's deployment (created from ``ref()`` if none) this latest status."""
        ...

    def publish_result(
        self,
        sha: str,
        *,
        context: str,
        passed: bool,
        description: str,
        summary: str,
        check_run: bool,
        target_url: str | None,
    ) -> None:
        """Report a pass or fail on a commit, as a commit status or a check run."""
        ...

    def upsert_comment(self, pr_number: int, *, marker: str, body: str) -> tuple[Outcome, int]:
        """Create, or edit in place, the pull request comment carrying ``marker``."""
        ...

    def ensure_release(
        self,
        *,
        tag: str,
        target: Callable[[], str],
        name: str,
        body: str,
        asset_name: str,
        asset: bytes,
        content_type: str,
    ) -> tuple[Outcome, str]:
        """The release for ``tag`` (created on ``target()`` if none) with the asset attached."""
        ...


def _describe(exc: BaseException, api_url: str) -> tuple[str, str]:
    """(message, hint) for a failed GitHub call, naming the cause in words."""
    import github3.exceptions as gx
    import requests

    if isinstance(exc, gx.TransportError | requests.RequestException):
        return (
            f"GitHub is unreachable at {api_url} ({type(exc).__name__})",
            "check GITHUB_API_URL and the network, then retry",
        )
    if isinstance(exc, gx.GitHubError):
        code = exc.code
        headers = exc.response.headers if exc.response is not None else {}
        msg = str(exc.msg or "").strip()
        # Primary limit: 403/429 with no requests remaining; secondary: 403 with Retry-After.
        limited = headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers
        if code == 429 or (code == 403 and limited):
            when = ""
            reset = headers.get("X-RateLimit-Reset")
            retry_after = headers.get("Retry-After")
            if reset and reset.isdigit():
                at = datetime.fromtimestamp(int(reset), tz=UTC).strftime("%H:%M UTC")
                when = f"; the limit resets at {at}"
            elif retry_after and retry_after.isdigit():
                when = f"; retry after {retry_after} s"
            return f"GitHub rate limit reached ({code}){when}", "retry once the limit resets"
        if code == 401:
            return (
                "GitHub rejected the token (401 Bad credentials)",
                "check that GITHUB_TOKEN is set to a valid token",
            )
        if code == 403:
            return (
                f"GitHub refused the call (403{': ' + msg if msg else ''})",
                "give the workflow job the permission it needs (deployments, statuses, "
                "checks, pull-requests or contents: write)",
            )
        return f"GitHub answered {code}{': ' + msg if msg else ''}", "retry later"
    return f"GitHub call failed ({type(exc).__name__}: {exc})", "retry later"


class Github3Host:
    """:class:`GitHost` over github3.py for one repository."""

    def __init__(self, env: GithubEnv) -> None:
        self.env = env
        self._repo: Any = None
        self._deployments: dict[int, Any] = {}
        self._comments: dict[int, Any] = {}
        self._releases: dict[int, Any] = {}

    # --- plumbing ------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn``; any failure becomes GithubUnavailable, scrubbed of the token."""
        try:
            return fn()
        except GithubUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - github3/requests raise many types
            message, hint = _describe(exc, self.env.api_url)
            raise GithubUnavailable(
                scrub(message, [self.env.token]), hint=scrub(hint, [self.env.token])
            ) from None

    def _repository(self) -> Any:
        if self._repo is None:

            def connect() -> Any:
                import github3

                gh = github3.GitHub(token=self.env.token)
                gh.session.base_url = self.env.api_url
                owner, name = self.env.repository.split("/", 1)
                return gh.repository(owner, name)

            self._repo = self._call(connect)
        return self._repo

    # --- deployments ---------------------------------------------------------------------

    def _find_deployment(self, *, environment: str, service: str, release_id: str) -> int | None:
        """The id of the deployment of ``release_id`` to ``environment``, if one exists."""
        repo = self._repository()

        def find() -> int | None:
            from github3.repos.deployment import Deployment

            # Newest first, filtered by environment on the server; a release's deployment
            # older than the newest MAX_SCAN in its environment gets a fresh one.
            url = repo._build_url("deployments", base_url=repo._api)
            found = repo._iter(MAX_SCAN, url, Deployment, params={"environment": environment})
            for dep in found:
                payload = dep.payload if isinstance(dep.payload, dict) else {}
                if (
                    dep.environment == environment
                    and payload.get("release_id") == release_id
                    and payload.get("service") == service
                ):
                    self._deployments[dep.id] = dep
                    return int(dep.id)
            return None

        return self._call(find)

    def _create_deployment(
        self, *, ref: str, environment: str, payload: dict[str, Any], description: str
    ) -> int:
        """Create a deployment of ``ref``; its id."""
        repo = self._repository()
        dep = self._call(
            lambda: repo.create_deployment(
                ref,
                required_contexts=[],
                payload=payload,
                auto_merge=False,
                description=description,
                environment=environment,
            )
        )
        if dep is None:
            raise GithubUnavailable("GitHub did not create the deployment", hint="retry later")
        self._deployments[dep.id] = dep
        return int(dep.id)

    def _deployment(self, deployment_id: int) -> Any:
        if deployment_id not in self._deployments:
            repo = self._repository()
            self._deployments[deployment_id] = self._call(lambda: repo.deployment(deployment_id))
        return self._deployments[deployment_id]

    def _latest_deployment_status(self, deployment_id: int) -> tuple[str, str] | None:
        """(state, description) of the newest status of a deployment, if any."""
        dep = self._deployment(deployment_id)
        statuses = self._call(lambda: list(dep.statuses(number=1)))
        if not statuses:
            return None
        return str(statuses[0].state), str(statuses[0].description or "")

    def _create_deployment_status(
        self, deployment_id: int, *, state: str, description: str, target_url: str | None
    ) -> None:
        """Add a status to a deployment."""
        dep = self._deployment(deployment_id)
        self._call(lambda: dep.create_status(state, target_url=target_url, description=description))

    # --- gates ---------------------------------------------------------------------------

    def _create_commit_status(
        self, sha: str, *, state: str, context: str, description: str, target_url: str | None
    ) -> None:
        """Set the commit status ``context`` on ``sha``."""
        repo = self._repository()
        self._call(
            lambda: repo.create_status(
                sha, state, target_url=target_url, description=description, context=context
            )
        )

    def _create_check_run(
        self, sha: str, *, name: str, conclusion: str, title: str, summary: str
    ) -> None:
        """Create a completed check run on ``sha``.

        github3 only allows this with GitHub App authentication; the Actions
        ``GITHUB_TOKEN`` is an installation token that may create check runs, so
        the undecorated method is called.
        """
        import github3.repos.repo as repo_mod

        repo = self._repository()
        create = repo_mod.Repository.create_check_run.__wrapped__
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._call(
            lambda: create(
                repo,
                name,
                sha,
                status="completed",
                conclusion=conclusion,
                completed_at=now,
                output={"title": title, "summary": summary},
            )
        )

    # --- comments ------------------------------------------------------------------------

    def _find_comment(self, pr_number: int, marker: str) -> tuple[int, str] | None:
        """(id, body) of the first comment on the pull request containing ``marker``."""
        repo = self._repository()

        def find() -> tuple[int, str] | None:
            issue = repo.issue(pr_number)
            for comment in issue.comments():
                if marker in (comment.body or ""):
                    self._comments[comment.id] = comment
                    return int(comment.id), str(comment.body)
            return None

        return self._call(find)

    def _create_comment(self, pr_number: int, body: str) -> int:
        """Comment on the pull request; the comment id."""
        repo = self._repository()

        def create() -> int:
            comment = repo.issue(pr_number).create_comment(body)
            self._comments[comment.id] = comment
            return int(comment.id)

        return self._call(create)

    def _edit_comment(self, comment_id: int, body: str) -> None:
        """Replace the body of a comment (one found or created by this host)."""
        comment = self._comments[comment_id]
        self._call(lambda: comment.edit(body))

    # --- releases ------------------------------------------------------------------------

    def _info(self, rel: Any, assets: list[str]) -> ReleaseInfo:
        self._releases[rel.id] = rel
        return ReleaseInfo(int(rel.id), str(rel.tag_name), str(rel.html_url), assets)

    def _find_release(self, tag: str) -> ReleaseInfo | None:
        """The release for ``tag``, if there is one."""
        import github3.exceptions as gx

        repo = self._repository()

        def find() -> ReleaseInfo | None:
            try:
                rel = repo.release_from_tag(tag)
            except gx.NotFoundError:
                return None
            if rel is None:
                return None
            return self._info(rel, [a.name for a in rel.assets()])

        return self._call(find)

    def _create_release(self, *, tag: str, target: str, name: str, body: str) -> ReleaseInfo:
        """Create a release (and its tag on ``target``)."""
        repo = self._repository()
        rel = self._call(
            lambda: repo.create_release(
                tag, target_commitish=target, name=name, body=body, draft=False, prerelease=False
            )
        )
        return self._info(rel, [])

    def _upload_asset(self, release_id: int, *, name: str, data: bytes, content_type: str) -> None:
        """Attach a file to a release found or created by this host."""
        rel = self._releases[release_id]
        self._call(lambda: rel.upload_asset(content_type, name, data))

    # --- the GitHost operations ----------------------------------------------------------

    def mirror_deployment(
        self,
        *,
        environment: str,
        service: str,
        release_id: str,
        ref: Callable[[], str],
        state: str,
        description: str,
        target_url: str | None,
    ) -> Outcome:
        """Give the release's deployment (created from ``ref()`` if none) this latest status."""
        dep_id = self._find_deployment(
            environment=environment, service=service, release_id=release_id
        )
        if dep_id is None:
            dep_id = self._create_deployment(
                ref=ref(),
                environment=environment,
                payload={"service": service, "release_id": release_id},
                description=f"{service} release {release_id}",
            )
        elif self._latest_deployment_status(dep_id) == (state, description):
            return "unchanged"
        self._create_deployment_status(
            dep_id, state=state, description=description, target_url=target_url
        )
        return "added"

    def publish_result(
        self,
        sha: str,
        *,
        context: str,
        passed: bool,
        description: str,
        summary: str,
        check_run: bool,
        target_url: str | None,
    ) -> None:
        """Report a pass or fail on a commit, as a commit status or a check run."""
        if check_run:
            self._create_check_run(
                sha,
                name=context,
                conclusion="success" if passed else "failure",
                title=description,
                summary=summary,
            )
        else:
            self._create_commit_status(
                sha,
                state="success" if passed else "failure",
                context=context,
                description=description,
                target_url=target_url,
            )

    def upsert_comment(self, pr_number: int, *, marker: str, body: str) -> tuple[Outcome, int]:
        """Create, or edit in place, the pull request comment carrying ``marker``."""
        found = self._find_comment(pr_number, marker)
        if found is None:
            return "created", self._create_comment(pr_number, body)
        cid, old = found
        if old == body:
            return "unchanged", cid
        self._edit_comment(cid, body)
        return "edited", cid

    def ensure_release(
        self,
        *,
        tag: str,
        target: Callable[[], str],
        name: str,
        body: str,
        asset_name: str,
        asset: bytes,
        content_type: str,
    ) -> tuple[Outcome, str]:
        """The release for ``tag`` (created on ``target()`` if none) with the asset attached."""
        info = self._find_release(tag)
        outcome: Outcome = "completed"
        if info is None:
            info = self._create_release(tag=tag, target=target(), name=name, body=body)
            outcome = "created"
        if asset_name in info.assets:
            return "unchanged", info.html_url
        self._upload_asset(info.id, name=asset_name, data=asset, content_type=content_type)
        return outcome, info.html_url
