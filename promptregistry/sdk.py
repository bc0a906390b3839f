"""The runtime SDK: ``load()`` a prompt by alias or version from an in-process cache.

The hot path of ``Client.load`` is one dict lookup, one ``time.monotonic_ns()``
and two integer comparisons: no backend call, no lock, no file access. At most
every ``check_interval_ms`` one caller reads the change signal's token; when it
changed, alias entries are marked stale. Stale alias entries (and entries older
than ``ttl_s``, which catches alias moves made outside promptregistry) are
re-resolved in a background thread while callers keep getting the last known
version, so a slow or dead backend never blocks a request once a prompt has
been loaded. Entries pinned to a version are immutable and never refetched.
Only the first load of a key calls the backend in the caller's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promptregistry.backend import PromptBackend
from promptregistry.change_signal import ChangeSignal
from promptregistry.errors import PromptRegistryError
from promptregistry.model import PromptVersion
from promptregistry.rendering import check_variables, compile_template, render_compiled

if TYPE_CHECKING:
    from jinja2 import Template

__all__ = ["Client", "LoadedPrompt", "configure", "default_client", "load"]

logger = logging.getLogger("promptregistry")

_FOREVER = 2**63 - 1
_Key = tuple[str, str | None, int | None]
_monotonic_ns = time.monotonic_ns


@dataclass(frozen=True, slots=True)
class LoadedPrompt:
    """A resolved prompt version, ready to render; ``alias`` is what it was loaded by."""

    name: str
    version: int
    content_hash: str
    alias: str | None
    prompt: PromptVersion = field(repr=False)
    _template: Template = field(repr=False, compare=False)

    @classmethod
    def from_version(cls, prompt: PromptVersion, alias: str | None = None) -> LoadedPrompt:
        """Wrap ``prompt``, compiling its template once."""
        return cls(
            name=prompt.name,
            version=prompt.version,
            content_hash=prompt.content_hash,
            alias=alias,
            prompt=prompt,
            _template=compile_template(prompt),
        )

    @property
    def parameters(self) -> dict[str, Any]:
        """The model parameters stored with this version (temperature, ...)."""
        return self.prompt.parameters

    def render(self, /, **variables: Any) -> str:
        """Render with exactly the declared variables (RenderError otherwise)."""
        check_variables(self.prompt, variables)
        return render_compiled(self.prompt, self._template, variables)


class Client:
    """A prompt cache over one backend; several clients (registries) can coexist."""

    def __init__(
        self,
        backend: PromptBackend,
        *,
        signal: ChangeSignal | None = None,
        check_interval_ms: float = 250,
        ttl_s: float = 30,
    ) -> None:
        self.backend = backend
        self.signal = signal
        self._interval_ns = int(check_interval_ms * 1_000_000)
        self._ttl_ns = int(ttl_s * 1_000_000_000)
        self._retry_ns = min(self._ttl_ns, max(self._interval_ns, 1_000_000_000))
        self._cache: dict[_Key, tuple[LoadedPrompt, int]] = {}
        # with no signal there is nothing to check: aliases refresh on ttl only
        self._next_check_ns = 0 if signal is not None else _FOREVER
        self._token: object = None
        self._generation = 0
        self._lock = threading.Lock()
        self._refreshing: set[_Key] = set()
        self._warned: set[_Key] = set()
        self._signal_failing = False

    def __repr__(self) -> str:
        return f"Client({self.backend!r}, signal={self.signal!r})"

    def load(
        self, name: str, *, alias: str | None = None, version: int | None = None
    ) -> LoadedPrompt:
        """The prompt ``name`` by alias, by version, or latest; cached (see the module doc)."""
        key = (name, alias, version)
        entry = self._cache.get(key)
        if entry is not None:
            now = _monotonic_ns()
            if now < entry[1] and now < self._next_check_ns:
                return entry[0]
        return self._load_slow(key)

    def _load_slow(self, key: _Key) -> LoadedPrompt:
        now = _monotonic_ns()
        with self._lock:
            if now >= self._next_check_ns:
                self._check_signal(now)
            entry = self._cache.get(key)
            if entry is None:
                generation = -1
            elif now < entry[1] or key in self._refreshing:
                return entry[0]
            else:
                self._refreshing.add(key)
                generation = self._generation
        if entry is None:
            return self._first_load(key)
        threading.Thread(
            target=self._refresh,
            args=(key, entry[0], generation),
            name=f"promptregistry-refresh-{key[0]}",
            daemon=True,
        ).start()
        return entry[0]

    def _check_signal(self, now: int) -> None:
        """Read the token (lock held); on change, mark every alias entry stale."""
        assert self.signal is not None
        self._next_check_ns = now + self._interval_ns
        try:
            token = self.signal.token()
        except Exception as exc:  # a broken signal must not break requests; aliases then
            if not self._signal_failing:  # refresh on ttl only, and we say so once
                logger.warning("promptregistry: cannot read change signal %r: %s", self.signal, exc)
            self._signal_failing = True
            return
        self._signal_failing = False
        if token == self._token:
            return
        self._token = token
        self._generation += 1
        for key, (loaded, _deadline) in list(self._cache.items()):
            if key[2] is None:  # alias or latest; version entries never change
                self._cache[key] = (loaded, 0)

    def _deadline(self, key: _Key, now: int) -> int:
        return _FOREVER if key[2] is not None else now + self._ttl_ns

    def _fetch(self, key: _Key) -> LoadedPrompt:
        name, alias, version = key
        return LoadedPrompt.from_version(
            self.backend.get(name, version=version, alias=alias), alias
        )

    def _first_load(self, key: _Key) -> LoadedPrompt:
        with self._lock:
            generation = self._generation
        loaded = self._fetch(key)  # errors propagate: there is nothing to fall back on
        with self._lock:
            current = self._cache.get(key)
            if current is not None:
                return current[0]  # another thread loaded it meanwhile
            stale = generation != self._generation
            self._cache[key] = (loaded, 0 if stale else self._deadline(key, _monotonic_ns()))
        return loaded

    def _refresh(self, key: _Key, old: LoadedPrompt, generation: int) -> None:
        """Re-resolve ``key`` in the background; on failure keep serving ``old``."""
        try:
            try:
                fresh = self._fetch(key)
            except Exception as exc:
                with self._lock:
                    self._cache[key] = (old, _monotonic_ns() + self._retry_ns)
                    first_failure = key not in self._warned
                    self._warned.add(key)
                if first_failure:
                    logger.warning(
                        "promptregistry: cannot refresh %s (%s); serving last known version %d",
                        _describe(key),
                        exc,
                        old.version,
                    )
                return
            if fresh.version == old.version and fresh.content_hash == old.content_hash:
                fresh = old  # keep the same object (and compiled template)
            with self._lock:
                stale = generation != self._generation  # the signal moved while we fetched
                self._cache[key] = (fresh, 0 if stale else self._deadline(key, _monotonic_ns()))
                recovered = key in self._warned
                self._warned.discard(key)
            if recovered:
                logger.info("promptregistry: %s refreshed again", _describe(key))
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def cached(self) -> dict[tuple[str, str | None, int | None], int]:
        """What the cache holds: key -> version (for diagnostics)."""
        return {key: loaded.version for key, (loaded, _) in list(self._cache.items())}


def _describe(key: _Key) -> str:
    name, alias, version = key
    if alias is not None:
        return f"{name}@{alias}"
    return f"{name} v{version}" if version is not None else f"{name} (latest)"


_default: Client | None = None


def configure(
    *,
    backend: PromptBackend | str,
    signal: ChangeSignal | None = None,
    check_interval_ms: float = 250,
    ttl_s: float = 30,
) -> Client:
    """Set up the default client used by ``promptregistry.load``; returns it.

    ``backend`` is a backend object or a URI (see ``open_backend``).
    """
    global _default
    if isinstance(backend, str):
        from promptregistry.backends import open_backend

        backend = open_backend(backend)
    _default = Client(backend, signal=signal, check_interval_ms=check_interval_ms, ttl_s=ttl_s)
    return _default


def default_client() -> Client:
    """The client ``configure`` set up; PromptRegistryError when there is none."""
    client = _default
    if client is None:
        raise PromptRegistryError(
            "promptregistry is not configured",
            hint="call promptregistry.configure(backend=...) once at start-up",
        )
    return client


def load(name: str, *, alias: str | None = None, version: int | None = None) -> LoadedPrompt:
    """Load ``name`` by alias or version (latest when neither) through the default client."""
    client = _default
    if client is None:
        client = default_client()
    return client.load(name, alias=alias, version=version)
