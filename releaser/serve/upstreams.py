"""Where the gateway sends a request: the upstream URL of an assignment.

An :class:`Upstreams` answers ``url_for(assignment)`` without I/O on the request path.
:class:`StaticUpstreams` reads the ``deploy.upstreams`` URLs of ``releaser.yaml`` (by
release id first, then by variant); the docker target provides one that follows the
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
    """Fixed URLs: by release id when listed, else by variant (stable goes to baseline)."""

    def __init__(
        self,
        baseline: str,
        candidate: str | None = None,
        releases: dict[str, str] | None = None,
    ) -> None:
        self.baseline = baseline.rstrip("/")
        self.candidate = candidate.rstrip("/") if candidate else None
        self.releases = {k: v.rstrip("/") for k, v in (releases or {}).items()}

    @classmethod
    def from_config(cls, urls: UpstreamUrls) -> StaticUpstreams:
        """The mapping of a service's ``deploy.upstreams``."""
        return cls(urls.baseline, urls.candidate, dict(urls.releases))

    def url_for(self, assignment: Assignment) -> str | None:
        """The release's own URL if listed, else the candidate or baseline URL."""
        if self.releases and assignment.release_id in self.releases:
            return self.releases[assignment.release_id]
        if assignment.variant == "candidate":
            return self.candidate
        return self.baseline

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"StaticUpstreams(baseline={self.baseline!r}, candidate={self.candidate!r})"
