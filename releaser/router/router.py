"""The in-process router: which release does this unit get, in about a microsecond.

``Router(store)`` loads every ``route`` record into an immutable :class:`Snapshot` and
starts one daemon thread that follows the store: on PostgreSQL it waits on LISTEN/NOTIFY
(``store.wait_for_change``, on the store's one connection: a router holds one server
connection, so a fleet needs ``max_connections`` above its size), on sqlite it polls
``change_token()`` every ``refresh_interval_ms``; on a change it reloads and swaps the
snapshot reference. The same thread flushes the metrics that :meth:`Router.record` counts
every ``flush_interval_ms``.

The request path (:meth:`Router.assign`, :meth:`Router.record`) does no I/O and never
waits on the store: ``assign`` reads one attribute holding a dict of precompiled closures.
If the store becomes unreachable the router keeps serving its last snapshot, logs one
warning per outage and one on recovery, and keeps metric counts until a flush succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from releaser.core.routing import ServiceRoute
from releaser.errors import (
    ArtifactNotFound,
    BadInput,
    ExternalUnavailable,
    NotFound,
    ReleaserError,
)
from releaser.router.metrics_buffer import BufferCounts, MetricsBuffer
from releaser.router.snapshot import Assignment, Snapshot, load_snapshot
from releaser.store import open_store
from releaser.store.base import Store

if TYPE_CHECKING:
    from promptregistry import Client, LoadedPrompt

__all__ = ["Router"]

logger = logging.getLogger("releaser.router")

# Longest single wait on the store, so close() never waits longer than this for the thread.
_MAX_WAIT_S = 0.25
_JOIN_TIMEOUT_S = 10.0


class _Outage:
    """Logs a warning when a kind of background work starts failing and when it recovers."""

    def __init__(self, what: str, url: str) -> None:
        self.what = what
        self.url = url
        self.failing = False
        self.last_error: str | None = None

    def failed(self, exc: BaseException, consequence: str) -> None:
        self.last_error = str(exc) or type(exc).__name__
        if not self.failing:
            self.failing = True
            logger.warning(
                "releaser router: %s failed on %s (%s); %s",
                self.what,
                self.url,
                self.last_error,
                consequence,
            )

    def ok(self) -> None:
        if self.failing:
            self.failing = False
            self.last_error = None
            logger.warning("releaser router: %s on %s works again", self.what, self.url)


class Router:
    """Routes units of each service to a release from an in-process snapshot of the store.

    ``store`` is a store URL (the router opens and closes its own connection) or an open
    :class:`~releaser.store.base.Store`, which the router's background thread then uses and
    does not close. Raises :class:`~releaser.errors.ExternalUnavailable` if the store cannot
    be read at construction. Use as a context manager, or call :meth:`close`.

    Create routers after any ``fork`` (e.g. in each worker process): a forked child has no
    background thread and would serve its parent's snapshot forever.
    """

    def __init__(
        self,
        store: str | Store,
        *,
        refresh_interval_ms: int = 50,
        flush_interval_ms: int = 500,
        prompt_backend: str | None = None,
    ) -> None:
        if not refresh_interval_ms > 0 or not flush_interval_ms > 0:
            raise BadInput(
                "refresh_interval_ms and flush_interval_ms must be positive, got "
                f"{refresh_interval_ms} and {flush_interval_ms}",
                hint="the defaults are 50 and 500",
            )
        self._refresh_s = refresh_interval_ms / 1000
        self._flush_s = flush_interval_ms / 1000
        self._prompt_backend = prompt_backend
        self._prompt_client: Client | None = None
        self._prompt_lock = threading.Lock()
        self._owns_store = isinstance(store, str)
        self._store: Store = open_store(store) if isinstance(store, str) else store
        self._url = self._store.url
        try:
            snapshot = load_snapshot(self._store, self._store.change_token())
        except BaseException as exc:
            if self._owns_store:
                self._store.close()
            if isinstance(exc, ReleaserError) or not isinstance(exc, Exception):
                raise
            raise ExternalUnavailable(
                f"cannot read routes from the state store {self._url}: {exc}",
                hint="check that the store is reachable, then start the router again",
            ) from exc
        self._snapshot: Snapshot = snapshot
        # The request path reads only this attribute: one immutable dict of closures.
        self._table = snapshot.table
        self._warned_problems: set[tuple[str, str]] = set()
        self._report_problems(snapshot)
        self._metrics = MetricsBuffer()
        self._refresh_outage = _Outage("following route changes", self._url)
        self._flush_outage = _Outage("flushing metrics", self._url)
        # sqlite's wait_for_change polls every few ms; polling ourselves at the configured
        # interval costs far less CPU (and GIL) for the same sub-second freshness.
        self._waits = callable(getattr(self._store, "wait_for_change", None)) and not (
            self._url.startswith("sqlite:")
        )
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._follow, name=f"releaser-router[{self._url}]", daemon=True
        )
        self._thread.start()

    # -- request path ---------------------------------------------------------

    def assign(
        self, service: str, unit_id: str | None, attributes: Mapping[str, str] | None = None
    ) -> Assignment:
        """The release ``unit_id`` gets for ``service``: no I/O, never fails for a bad id.

        Mid-rollout, units in the step's groups or whose bucket falls under the step's
        percentage get the candidate, everyone else the baseline; a missing, empty or
        non-str unit id gets the baseline. Raises :class:`~releaser.errors.NotFound` for a
        service the store has no route for (a programming error).
        """
        try:
            decide = self._table[service]
        except KeyError:
            raise self._unknown_service(service) from None
        return decide(unit_id, attributes)

    def record(
        self,
        assignment: Assignment,
        *,
        latency_ms: float | None = None,
        error: bool = False,
        score: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        unit_id: str | None = None,
    ) -> None:
        """Count one served request of a baseline or candidate assignment (stable: ignored).

        No I/O and no exception for bad values: a quality ``score`` outside [0, 1] is
        clamped, a non-number is ignored; both are counted (see :meth:`metrics_counts`).
        ``prompt_tokens`` and ``completion_tokens`` are the request's token usage (an LLM
        call's ``usage``); the token guardrails read them. Either may be left out (it counts
        as 0); a count that is not a whole number in [0, 10**9] is ignored and counted in
        ``rejected_values``, and that request's tokens are not counted.
        ``unit_id`` is the id the request was assigned on: given, the unit is counted in the
        distinct-unit sketch of its cohort group (hashed under the rollout's salt; the id
        itself is never kept), which ``releaser explain cohort`` reads. Left out, the
        request counts but no unit does.
        The counts reach the store at the next flush (none after :meth:`close`).
        ``assignment`` is the :class:`Assignment` that :meth:`assign` returned; None or
        another object without its fields raises TypeError saying so.
        """
        try:
            self._metrics.add(
                assignment, latency_ms, error, score, prompt_tokens, completion_tokens, unit_id
            )
        except AttributeError:
            # Checked only on failure: a try costs nothing on the request path.
            if isinstance(assignment, Assignment):
                raise
            raise TypeError(
                f"Router.record() takes the Assignment that assign() returned for the "
                f"request, not {'None' if assignment is None else type(assignment).__name__}: "
                f"a = router.assign(service, unit_id); ...; router.record(a, latency_ms=...)"
            ) from None

    def shadow(self, service: str) -> Assignment | None:
        """In a shadow step, the assignment to :meth:`record` mirrored calls on; else None.

        A service that mirrors requests itself (rather than through ``releaser serve``)
        sends a share of them to the candidate too, and records each mirrored call with
        ``record(router.shadow(service), latency_ms=..., error=..., score=agreement)``,
        where ``agreement`` is 1.0 when the answers agree and 0.0 when not (None when not
        compared). The analysis reads those scores as agreement, not as quality.
        """
        compiled = self._snapshot.routes.get(service)
        return None if compiled is None else compiled.shadow

    # -- prompts ----------------------------------------------------------------

    def prompt(
        self,
        service: str,
        name: str,
        unit_id: str | None,
        attributes: Mapping[str, str] | None = None,
    ) -> LoadedPrompt:
        """The version of prompt ``name`` that the release assigned to ``unit_id`` serves.

        Loaded through a promptregistry client on ``prompt_backend`` (versions never
        change, so each is fetched once). Raises NotFound if that release has no such
        prompt, BadInput if the router has no prompt backend.
        """
        snapshot = self._snapshot
        decide = snapshot.table.get(service)
        if decide is None:
            raise self._unknown_service(service)
        assignment = decide(unit_id, attributes)
        route = snapshot.routes[service].route
        release = assignment.release_id
        artifacts = route.artifacts.get(release) if release is not None else None
        version = artifacts.prompts.get(name) if artifacts is not None else None
        if version is None:
            known = ", ".join(sorted(artifacts.prompts)) if artifacts is not None else ""
            raise NotFound(
                f"release {release} of service {service!r} ({assignment.variant}) has no "
                f"prompt {name!r}; its prompts: {known or 'none'}",
                hint="check the prompt name against the service's releaser.yaml",
            )
        client = self._prompts()
        return _load_prompt(client, name, version)

    def _prompts(self) -> Client:
        client = self._prompt_client
        if client is not None:
            return client
        if self._prompt_backend is None:
            raise BadInput(
                "this router has no prompt backend",
                hint="pass prompt_backend='file:///path' or an MLflow tracking URI to Router()",
            )
        with self._prompt_lock:
            if self._prompt_client is None:
                from promptregistry import Client, PromptRegistryError, open_backend

                try:
                    backend = open_backend(self._prompt_backend)
                except PromptRegistryError as exc:
                    raise BadInput(exc.message, hint=exc.hint) from exc
                self._prompt_client = Client(backend)
            return self._prompt_client

    # -- status -----------------------------------------------------------------

    @property
    def snapshot_version(self) -> int:
        """The store change token the current snapshot was loaded at."""
        return self._snapshot.token

    @property
    def store_url(self) -> str:
        """The store this router follows (password redacted)."""
        return self._url

    @property
    def store_reachable(self) -> bool:
        """False while the background thread cannot read the store (serving the last snapshot)."""
        return not self._refresh_outage.failing

    def routes(self) -> dict[str, ServiceRoute]:
        """Every service's route as the current snapshot holds it."""
        return {service: c.route for service, c in self._snapshot.routes.items()}

    def problems(self) -> dict[str, str]:
        """Route records the current snapshot could not use, by service, and why."""
        return dict(self._snapshot.problems)

    def metrics_counts(self) -> BufferCounts:
        """What :meth:`record` has counted, clamped, rejected and dropped so far."""
        return self._metrics.counts()

    # -- flushing and lifecycle -------------------------------------------------

    def flush(self) -> int:
        """Write the counted metrics to the store now; returns the number of deltas written.

        Raises the store's error (the counts are kept for the next flush).
        """
        written = self._flush_once()
        self._flush_outage.ok()
        return written

    def close(self) -> None:
        """Stop the background thread, flush the metrics, close the store if the router opened it.

        Idempotent. A final flush that fails is logged, not raised.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=_JOIN_TIMEOUT_S)
        try:
            self._flush_once()
        except Exception as exc:
            lost = self._metrics.counts().pending_requests
            logger.warning(
                "releaser router: final metrics flush to %s failed (%s); "
                "the counts of %d requests were not written",
                self._url,
                exc,
                lost,
            )
        if self._owns_store:
            self._store.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Router({self._url!r}, services={len(self._table)}, "
            f"snapshot_version={self._snapshot.token})"
        )

    # -- internals ----------------------------------------------------------------

    def _unknown_service(self, service: object) -> NotFound:
        known = ", ".join(sorted(self._table)) or "none"
        return NotFound(
            f"the router has no route for service {service!r}; known services: {known}",
            hint="check the service name; a service gets a route with its first rollout",
        )

    def _flush_once(self) -> int:
        try:
            return self._metrics.flush(self._store)
        except BadInput as exc:
            # The store refused the batch as invalid: retrying cannot help.
            dropped = self._metrics.drop_pending()
            logger.warning(
                "releaser router: the store refused metrics (%s); dropped %d requests' counts",
                exc,
                dropped,
            )
            return 0

    def _follow(self) -> None:
        """Background thread: follow route changes and flush metrics until stopped."""
        store = self._store
        next_flush = time.monotonic() + self._flush_s
        while not self._stop.is_set():
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + self._flush_s
                try:
                    self._flush_once()
                    self._flush_outage.ok()
                except Exception as exc:
                    self._flush_outage.failed(exc, "keeping the counts for the next flush")
            try:
                budget = min(max(0.0, next_flush - time.monotonic()), _MAX_WAIT_S)
                current = self._snapshot.token
                if self._waits:
                    token = store.wait_for_change(current, budget)
                else:
                    if self._stop.wait(min(self._refresh_s, budget)):
                        break
                    token = store.change_token()
                if token != current:
                    self._reload(store, token)
                self._refresh_outage.ok()
            except Exception as exc:
                self._refresh_outage.failed(exc, "serving the last snapshot")
                self._stop.wait(max(self._refresh_s, 0.1))

    def _reload(self, store: Store, token: int) -> None:
        snapshot = load_snapshot(store, token, self._snapshot)
        self._snapshot = snapshot
        self._table = snapshot.table
        self._report_problems(snapshot)

    def _report_problems(self, snapshot: Snapshot) -> None:
        for service, problem in snapshot.problems.items():
            if (service, problem) not in self._warned_problems:
                self._warned_problems.add((service, problem))
                logger.warning("releaser router: ignoring the route of %r: %s", service, problem)


def _load_prompt(client: Client, name: str, version: int) -> LoadedPrompt:
    """Load a pinned prompt version, with promptregistry's errors as releaser's."""
    from promptregistry import BackendUnavailable, PromptNotFound, PromptRegistryError

    try:
        return client.load(name, version=version)
    except PromptNotFound as exc:
        raise ArtifactNotFound(exc.message, hint=exc.hint) from exc
    except BackendUnavailable as exc:
        raise ExternalUnavailable(exc.message, hint=exc.hint) from exc
    except PromptRegistryError as exc:
        raise ReleaserError(exc.message, hint=exc.hint) from exc
