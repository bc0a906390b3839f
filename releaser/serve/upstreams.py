"""Where the gateway sends a request: the upstream URL of an assignment.

An :class:`Upstreams` answers ``url_for(assignment)`` without I/O on the request path.
:class:`StaticUpstreams` reads the ``deploy.upstreams`` URLs of ``releaser.yaml`` by
release id (``releaser serve`` pins the deprecated role form to release ids at start,
:func:`releaser.serve.upstreams_of`); the docker target provides one that follows the
containers it runs (:class:`releaser.integrations.docker_target.ContainerUpstreams`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from releaser.router.snapshot import Assignment

if TYPE_CHECKING:
    from releaser.config.deploy import UpstreamUrls

__all__ = ["StaticUpstreams", "Upstreams"]


@runtime_checkable
class Upstreams(Protocol):
    """Maps an assignment to the base URL of the endpoint serving its release."""

    def url_for(self, assignment: Assignment) -> str | None:
        """The base URL (no trailing slash), or None when nothing serves that release."""
        ...

    def close(self) -> None:
        """Release whatever the mapping holds (threads, clients)."""
        ...


class StaticUpstreams:
    """Fixed URLs by release id (an id or a prefix of one), else by role when ``by_role``.

    With ``pin_roles`` a role URL is claimed by the first release seen in that role and
    answers for no other release afterwards (an endpoint serves one release), so a
    promotion moves the new stable release's traffic to the URL that served it as the
    candidate. ``releaser serve`` builds one of those for the deprecated role form, or one
    with ``by_role=False`` (:func:`releaser.serve.upstreams_of`): then a release not listed
    has no endpoint, so it is never labelled. ``baseline`` always answers requests before
    the service's first release (no route, no label).
    """

    def __init__(
        self,
        baseline: str | None,
        candidate: str | None = None,
        releases: dict[str, str] | None = None,
        *,
        by_role: bool = True,
        pin_roles: bool = False,
    ) -> None:
        self.baseline = baseline.rstrip("/") if baseline else None
        self.candidate = candidate.rstrip("/") if candidate else None
        self.releases = {k: v.rstrip("/") for k, v in (releases or {}).items()}
        self.by_role = by_role
        self.pin_roles = pin_roles
        # Full release id -> URL (or None), filled on first sight of an id, so the request
        # path does one dict look-up rather than a prefix scan.
        self._resolved: dict[str, str | None] = {}
        self._claimed: dict[str, str] = {}  # role URL -> the release pinned to it

    @classmethod
    def from_config(cls, urls: UpstreamUrls) -> StaticUpstreams:
        """The mapping of a service's ``deploy.upstreams``, by role too (as written)."""
        return cls(urls.baseline, urls.candidate, dict(urls.releases))

    def url_for(self, assignment: Assignment) -> str | None:
        """The release's own URL if listed, else (``by_role``) the candidate or baseline URL."""
        release = assignment.release_id
        if release is None:
            return self.baseline
        try:
            return self._resolved[release]
        except KeyError:
            pass
        url = self.releases.get(release)
        if url is None:
            url = next((u for k, u in self.releases.items() if release.startswith(k)), None)
        if url is None and self.by_role:
            role_url = self.candidate if assignment.variant == "candidate" else self.baseline
            if not self.pin_roles:
                return role_url  # by role: not cached, the role may change
            if role_url is None or role_url in self._claimed:
                return None  # not cached either: it may be seen in another role
            self._claimed[role_url] = release
            url = role_url
        if len(self._resolved) < 1024:  # bounded: route changes bring few new ids
            self._resolved[release] = url
        return url

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return (
            f"StaticUpstreams(baseline={self.baseline!r}, candidate={self.candidate!r}, "
            f"releases={self.releases!r}, by_role={self.by_role!r})"
        )
