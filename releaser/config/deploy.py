"""The optional ``deploy:`` part of a service: where its releases run and how traffic reaches them.

Three targets: ``none`` (the gateway proxies to upstreams you run yourself), ``docker``
(releaser builds and runs one model-server container per release through a Docker Engine
API) and ``kubernetes`` (``releaser k8s render`` writes manifests an existing engine uses to
split traffic). The deploy section is excluded from a service's config hash: where a
release runs does not change what it is. ``limits:`` bounds what the gateway accepts from
clients (:class:`GatewayLimits`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from releaser.config._common import MAX_TIMEOUT_S, RepoPath, _Model, problem

__all__ = [
    "AnalysisSpec",
    "ContainerSpec",
    "DeploySpec",
    "EndpointRole",
    "GatewayLimits",
    "KubernetesSpec",
    "UpstreamUrls",
]

_HEADER_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_COOKIE_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


def _check_url(value: str) -> str:
    if not _URL.match(value):
        raise problem(
            f"{value!r} is not an http(s) base URL",
            hint="write e.g. http://127.0.0.1:8001 (no query or fragment)",
        )
    return value.rstrip("/")


_RELEASE_KEY = re.compile(r"^[0-9a-f]{4,64}$")

EndpointRole = Literal["stable", "candidate"]
"""The side of a route an endpoint is looked up for."""


class UpstreamUrls(_Model):
    """Model endpoints the gateway proxies to: by release id, or (deprecated) by role.

    ``releases`` maps a release id, or a prefix of one (at least 4 hex characters, as the
    CLI accepts), to the URL of the endpoint serving that release: the mapping stays true
    when a promotion swaps the roles. ``baseline``/``candidate`` (the role form) are read
    only while the service's stable release is still its first one (no promotion has
    happened), because after a promotion the ``baseline`` endpoint still serves the old
    release; see :meth:`endpoint_for`.
    """

    baseline: str | None = Field(
        default=None,
        description="Deprecated role form: URL of the endpoint serving the service's first "
        "stable release; read only until the first promotion (use 'releases').",
    )
    candidate: str | None = Field(
        default=None,
        description="Deprecated role form: URL of the endpoint serving the live candidate; "
        "read only until the first promotion (use 'releases').",
    )
    releases: dict[str, str] = Field(
        default_factory=dict,
        description="Release id (or a unique prefix of at least 4 hex characters) -> URL of "
        "the endpoint serving that release; takes precedence over baseline/candidate.",
    )

    @field_validator("baseline", "candidate")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)

    @field_validator("releases")
    @classmethod
    def _release_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _RELEASE_KEY.match(key):
                raise problem(
                    f"release key {key!r} is not a release id",
                    hint="write the release id, or its first 4 or more characters, in "
                    "lower-case hex (see 'releaser release list')",
                )
        keys = sorted(value)
        for shorter, longer in zip(keys, keys[1:], strict=False):
            if longer.startswith(shorter):
                raise problem(
                    f"release keys {shorter!r} and {longer!r} overlap (one is a prefix of "
                    "the other), so a release could match both",
                    hint="keep one key per release",
                )
        return {release: _check_url(url) for release, url in value.items()}

    @model_validator(mode="after")
    def _some_url(self) -> UpstreamUrls:
        if self.candidate is not None and self.baseline is None:
            raise problem(
                "upstreams has a candidate URL but no baseline URL",
                hint="list both releases under 'releases:' instead",
            )
        if self.baseline is None and not self.releases:
            raise problem(
                "upstreams names no endpoint",
                hint="add releases: {<release id>: http://127.0.0.1:8001} (one entry per "
                "release an endpoint serves)",
            )
        return self

    @property
    def by_role(self) -> bool:
        """Whether the deprecated role form (baseline/candidate) is given."""
        return self.baseline is not None

    def release_key(self, release_id: str) -> str | None:
        """The ``releases`` key that names ``release_id`` (the id or a prefix of it), or None."""
        if release_id in self.releases:
            return release_id
        for key in self.releases:
            if release_id.startswith(key):
                return key
        return None

    def endpoint_for(
        self, release_id: str, role: EndpointRole, *, roles_trusted: bool
    ) -> str | None:
        """The URL of the endpoint serving ``release_id``, or None when none is known.

        A ``releases`` entry wins. Otherwise the role form answers only when
        ``roles_trusted`` (the service's stable release is still its first one, so no
        promotion has moved a release away from the endpoint it was deployed on):
        ``baseline`` for the stable side, ``candidate`` for the candidate side.
        """
        key = self.release_key(release_id)
        if key is not None:
            return self.releases[key]
        if not roles_trusted:
            return None
        return self.baseline if role == "stable" else self.candidate


class ContainerSpec(_Model):
    """How the docker target builds and runs one model-server container per release."""

    context: RepoPath | None = Field(
        default=None,
        description="Build context (a folder with a Dockerfile) for the model server; default: "
        "releaser's stand-in model server on the base image.",
    )
    base_image: str = Field(
        default="localhost/releaser-base:busybox",
        min_length=1,
        description="Image the stand-in model server is built on (built from local files, "
        "no registry needed).",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Port the server listens on.")
    health_path: str = Field(
        default="/healthz", pattern=r"^/", description="Path that answers 200 when it is ready."
    )
    health_timeout_s: float = Field(
        default=30,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="How long to wait for health before giving up.",
    )
    engine: str | None = Field(
        default=None,
        description="Docker Engine API URL, e.g. unix:///run/podman/podman.sock; "
        "default: $DOCKER_HOST.",
    )


class AnalysisSpec(_Model):
    """How Argo Rollouts asks releaser for its verdict on each step (``releaser k8s render``)."""

    provider: Literal["web", "job"] = Field(
        default="web",
        description="web: Argo POSTs the verdict endpoint of 'releaser serve'; job: Argo runs "
        "'releaser rollout advance' in a Job (for clusters where the gateway does not run).",
    )
    verdict_url: str | None = Field(
        default=None,
        description="Base URL of 'releaser serve' as the Argo controller reaches it "
        "(provider web; default http://<service>-releaser.<namespace>.svc.cluster.local:8000).",
    )
    interval_s: int = Field(
        default=60, ge=10, le=3_600, description="Seconds between two asks in one step."
    )
    max_hold_minutes: int | None = Field(
        default=None,
        ge=1,
        le=43_200,
        description="How long one step may hold before Argo pauses the rollout for a person "
        "(default: twice the longest bake time plus an hour).",
    )
    releaser_image: str | None = Field(
        default=None,
        description="Image with releaser and the repository's releaser.yaml (provider job).",
    )
    store_secret: str | None = Field(
        default=None,
        pattern=_DNS_LABEL,
        description="Secret holding the store DSN (provider job; default "
        "'<service>-releaser-store').",
    )
    store_secret_key: str = Field(
        default="dsn", min_length=1, description="Key of the DSN in store_secret."
    )

    @field_validator("verdict_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)


class KubernetesSpec(_Model):
    """What ``releaser k8s render`` writes: names, image and the serving details.

    Settings left unset are filled by ``releaser k8s render`` with a default it names in a
    warning (``--strict`` refuses them instead).
    """

    namespace: str | None = Field(
        default=None, pattern=_DNS_LABEL, description="Namespace (default: 'default')."
    )
    image: str | None = Field(
        default=None,
        description="Model-server image; '{release}' is replaced by the release id "
        "(default: '<service>:{release}').",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Container port.")
    # Kubernetes holds replicas in a 32-bit integer.
    replicas: int = Field(default=2, ge=1, le=2**31 - 1, description="Pods of the Rollout.")
    gateway: str | None = Field(
        default=None,
        pattern=_DNS_LABEL,
        description="Gateway API Gateway the HTTPRoute attaches to (default: 'releaser-gateway').",
    )
    hostnames: list[str] = Field(default_factory=list, description="HTTPRoute hostnames.")
    model_format: str = Field(
        default="mlflow", min_length=1, description="KServe model format of the predictor."
    )
    storage_uri: str | None = Field(
        default=None,
        description="KServe storageUri of the model; '{release}' is replaced by the release id "
        "(default: the artifact location the release pinned, if KServe can load it).",
    )
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec,
        description="How Argo asks releaser's verdict on each step.",
    )


class GatewayLimits(_Model):
    """What ``releaser serve`` accepts from clients before it refuses or cuts them off.

    Every read of a request is bounded in size and time, so one client (or a thousand
    slow ones) cannot exhaust the gateway's memory, file descriptors or workers.
    """

    max_header_bytes: int = Field(
        default=16_384,
        ge=1_024,
        le=1_048_576,
        description="Largest request line plus headers, in bytes; past it: 431.",
    )
    max_body_bytes: int = Field(
        default=10_485_760,
        ge=0,
        le=2**40,
        description="Largest request body, in bytes (10 MiB); past it: 413. Bodies are "
        "streamed to the upstream, not held in memory.",
    )
    header_timeout_s: float = Field(
        default=10,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Time a client has to send the request line and headers, seconds; "
        "past it: 408 and the connection is closed (an idle keep-alive connection is "
        "closed without a response).",
    )
    body_timeout_s: float = Field(
        default=60,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Time a client has to send the whole request body, seconds; past it: "
        "408 and the connection is closed.",
    )
    keep_alive_s: float = Field(
        default=5,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="How long an idle keep-alive connection is kept open, seconds.",
    )
    max_concurrent_requests: int = Field(
        default=100,
        ge=1,
        le=1_000_000,
        description="Requests proxied at once; past it: 503 with Retry-After "
        "(/healthz and /metrics are always answered).",
    )
    max_connections: int = Field(
        default=500,
        ge=1,
        le=1_000_000,
        description="Open client connections; one past it gets 503 with Retry-After and "
        "is closed at once. Capped at half the process's open-file limit, so upstream "
        "connections and the store always have file descriptors left.",
    )
    retry_after_s: int = Field(
        default=1,
        ge=0,
        le=86_400,
        description="Seconds sent in Retry-After with a 503 for too many requests.",
    )


class DeploySpec(_Model):
    """Where a service's releases run and how requests find them."""

    target: Literal["none", "docker", "kubernetes"] = Field(
        default="none",
        description="none: endpoints you run (give upstreams); docker: releaser runs a "
        "container per release; kubernetes: rendered manifests split traffic.",
    )
    upstreams: UpstreamUrls | None = Field(
        default=None, description="Endpoints for the gateway (target none)."
    )
    container: ContainerSpec = Field(
        default_factory=ContainerSpec, description="Container settings (target docker)."
    )
    kubernetes: KubernetesSpec = Field(
        default_factory=KubernetesSpec, description="Manifest settings (target kubernetes)."
    )
    unit_header: str = Field(
        default="X-User-Id",
        pattern=_HEADER_PATTERN,
        description="Request header holding the unit (user or session) id.",
    )
    unit_cookie: str | None = Field(
        default=None,
        pattern=_COOKIE_PATTERN,
        description="Cookie holding the unit id, read when the header is absent.",
    )
    attribute_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Unit attribute -> request header carrying it, for group rules, "
        "e.g. {email: X-User-Email}.",
    )
    timeout_s: float = Field(
        default=30,
        gt=0,
        le=MAX_TIMEOUT_S,
        description="Upstream read timeout, seconds: the longest wait for the response head "
        "or for each read of its body; past it: 504.",
    )
    connect_timeout_s: float = Field(
        default=2, gt=0, le=MAX_TIMEOUT_S, description="Upstream connect timeout."
    )
    limits: GatewayLimits = Field(
        default_factory=GatewayLimits,
        description="Sizes and times the gateway accepts from clients (releaser serve).",
    )

    @field_validator("attribute_headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for attribute, header in value.items():
            if not re.match(_HEADER_PATTERN, header):
                raise problem(f"{header!r} (for {attribute!r}) is not a valid header name")
        return value

    @model_validator(mode="after")
    def _upstreams_fit(self) -> DeploySpec:
        if self.target == "none" and self.upstreams is None:
            raise problem(
                "target 'none' needs 'upstreams' (the endpoints the gateway proxies to)",
                hint="add upstreams: {releases: {<release id>: http://127.0.0.1:8001}}, "
                "or set target: docker",
            )
        return self

    @property
    def served_by_gateway(self) -> bool:
        """Whether ``releaser serve`` proxies to the endpoints listed here (target ``none``)."""
        return self.target == "none" and self.upstreams is not None
