"""A client for OpenAI-compatible chat-completions endpoints, for gates that call an LLM.

One request is ``POST {base_url}/chat/completions`` with JSON
``{"model", "messages", ...extra, "temperature", "max_tokens", "seed"}`` (the last three
only when set) and, when ``api_key_env`` names a variable, ``Authorization: Bearer <key>``.
The key is read from the environment at call time and never kept: it appears in no
exception message, repr, log line or cache row (text that echoes it is redacted).

Retries. An attempt that gets 429, a 5xx status, a timeout or a connection error is
retried, at most ``max_retries`` times. Before retry ``n`` (from 0) the client waits
``d = min(max_backoff_s, backoff_s * 2**n)`` times a jitter factor in [0.5, 1] (bounded,
drawn from a ``random.Random`` that ``run_chats`` seeds with ``settings.seed or 0``). A
``Retry-After`` header (seconds or an HTTP date) replaces that wait: the client never
retries sooner than told, and adds up to 10% on top so that callers told the same moment
do not return together. A ``Retry-After`` longer than ``max_backoff_s`` ends the call at
once (kind ``rate_limited``) rather than hanging the gate. Any other 4xx is not retried.

Validation. A 200 answer must be a JSON object with a string
``choices[0].message.content`` and integer ``usage.prompt_tokens`` and
``usage.completion_tokens``; anything else is a ``protocol`` error naming what is missing
(budgets need the token counts, so they are not optional). Answers are read up to
``MAX_ANSWER_BYTES``.

Timing. ``timeout_s`` bounds each attempt as a whole (connect, send, wait, read);
``latency_ms`` is the wall time of the attempt that succeeded, so waits spent backing off
from a rate limit are not charged to the prompt.

Concurrency and caching. ``run_chats`` runs every call under one
``asyncio.Semaphore(concurrency)`` on one ``httpx.AsyncClient`` (HTTP keep-alive); a call
keeps its slot while it backs off, which eases the load on a rate-limited endpoint.
``ChatCache`` keeps successful answers in sqlite under ``cache_key``: the sha256 of the
canonical JSON of the rendered prompt, the model, the parameters (temperature, max_tokens,
seed, extra) and the sample index. With ``samples > 1`` the seed sent for sample ``s`` is
``seed + s`` (``s`` when no seed is set), so the samples are distinct, reproducible draws.

httpx is imported inside the functions that use it, so importing this module stays light.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from releaser.errors import EXIT_BAD_INPUT, BadInput, ExternalUnavailable

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CHAT_ERROR_KINDS",
    "MAX_ANSWER_BYTES",
    "ChatAnswer",
    "ChatCache",
    "ChatError",
    "ChatSettings",
    "cache_key",
    "complete",
    "run_chats",
]

logger = logging.getLogger("releaser.llm")

MAX_ANSWER_BYTES = 4 * 1024 * 1024
CHAT_ERROR_KINDS = frozenset(
    {"rate_limited", "timeout", "server", "client", "protocol", "connect", "not_called"}
)
"""``not_called``: skipped after ``stop_after_errors`` calls in a row failed."""
_RESERVED = frozenset({"model", "messages", "temperature", "max_tokens", "seed", "stream"})
_REDACTED = "[redacted]"
_SNIPPET = 200
T = TypeVar("T")
Messages = Sequence[Mapping[str, str]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ChatSettings:
    """Where and how to call a chat-completions endpoint (no secret: the key's variable name)."""

    base_url: str
    model: str
    api_key_env: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Further request parameters sent as given (e.g. ``top_p``); JSON values only."""
    timeout_s: float = 30.0
    max_retries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise BadInput(f"base_url must start with http:// or https://: {self.base_url!r}")
        if not self.model:
            raise BadInput("model must not be empty")
        clash = sorted(set(self.extra) & _RESERVED)
        if clash:
            raise BadInput(
                f"extra parameters may not set {', '.join(clash)}",
                hint="use the settings' own fields; streaming is not supported",
            )
        if not (self.timeout_s > 0 and math.isfinite(self.timeout_s)):
            raise BadInput(f"timeout_s must be a positive number of seconds: {self.timeout_s}")
        if self.max_retries < 0:
            raise BadInput(f"max_retries must be 0 or more: {self.max_retries}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise BadInput("backoff_s and max_backoff_s must be 0 or more")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise BadInput(f"max_tokens must be 1 or more: {self.max_tokens}")
        # A private read-only copy: the caller's dict may change, the settings may not.
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @property
    def url(self) -> str:
        """The chat-completions URL."""
        return self.base_url.rstrip("/") + "/chat/completions"

    def parameters(self) -> dict[str, Any]:
        """The sampling parameters sent with every request (only those that are set)."""
        params: dict[str, Any] = dict(self.extra)
        if self.temperature is not None:
            params["temperature"] = float(self.temperature)
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.seed is not None:
            params["seed"] = self.seed
        return params


@dataclass(frozen=True)
class ChatAnswer:
    """One answer: its text, token usage, latency, and how it was obtained."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    """Wall time of the attempt that succeeded (the cached value for a cached answer)."""
    attempts: int
    """HTTP attempts this call made: 1 without retries, 0 when served from the cache."""
    cached: bool = False

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class ChatError(ExternalUnavailable):
    """A chat call failed; ``kind`` is one of ``CHAT_ERROR_KINDS``. Never holds the API key."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 0,
        hint: str | None = None,
    ) -> None:
        if kind not in CHAT_ERROR_KINDS:
            raise ValueError(f"unknown chat error kind: {kind!r}")
        super().__init__(message, hint=hint)
        self.kind = kind
        self.status = status
        self.attempts = attempts
        if kind == "client":
            self.exit_code = EXIT_BAD_INPUT

    def __repr__(self) -> str:
        return (
            f"ChatError(kind={self.kind!r}, status={self.status!r}, "
            f"attempts={self.attempts!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable (a gate may run rows in worker processes) without the keyword-only args lost.
        return (_rebuild_error, (self.kind, self.message, self.status, self.attempts, self.hint))


def _rebuild_error(
    kind: str, message: str, status: int | None, attempts: int, hint: str | None
) -> ChatError:
    return ChatError(kind, message, status=status, attempts=attempts, hint=hint)


def _api_key(settings: ChatSettings) -> str | None:
    """The key from the named environment variable, read now; a clear error when unset."""
    if not settings.api_key_env:
        return None
    key = os.environ.get(settings.api_key_env, "")
    if not key:
        raise ChatError(
            "client",
            f"the environment variable {settings.api_key_env} (the API key) is not set",
            hint=f"export {settings.api_key_env}=<your key> before running the gate",
        )
    return key


def _redact(text: str, key: str | None) -> str:
    """``text`` with every occurrence of the key replaced (keys under 4 characters are not)."""
    if key and len(key) >= 4 and key in text:
        return text.replace(key, _REDACTED)
    return text


def _snippet(body: bytes) -> str:
    """A short one-line account of an error body: the OpenAI error message when there is one."""
    text = body[: 4 * _SNIPPET].decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    text = " ".join(text.split())
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "")


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _parse_answer(body: bytes) -> tuple[str, int, int]:
    """Text and token counts of a chat-completions answer; ``ValueError`` names what is wrong."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("the answer has no choices (a non-empty list)")
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    if not isinstance(message, dict):
        raise ValueError("the answer has no choices[0].message")
    content = message.get("content")
    if not isinstance(content, str):
        raise ValueError("the answer has no string choices[0].message.content")
    usage = data.get("usage")
    if not isinstance(usage, dict):
        raise ValueError("the answer has no usage (token counts)")
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"the answer has no usage.{name} (a whole number)")
        counts.append(value)
    return content, counts[0], counts[1]


class _Retry(Exception):
    """An attempt failed in a way worth retrying; carries the error to give if none is left."""

    def __init__(self, error: ChatError, wait_s: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait_s = wait_s


async def _attempt(
    client: httpx.AsyncClient,
    settings: ChatSettings,
    payload: bytes,
    key: str | None,
    attempt: int,
) -> tuple[str, int, int, float]:
    """One HTTP attempt: the answer, or ``_Retry``/``ChatError`` (messages redacted)."""
    import asyncio

    import httpx

    headers = {"content-type": "application/json", "accept": "application/json"}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    started = time.perf_counter()
    try:
        async with asyncio.timeout(settings.timeout_s):
            async with client.stream("POST", settings.url, content=payload, headers=headers) as r:
                status = r.status_code
                retry_after = r.headers.get("retry-after")
                chunks: list[bytes] = []
                size = 0
                async for chunk in r.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise ChatError(
                            "protocol",
                            f"the answer from {settings.url} is larger than "
                            f"{MAX_ANSWER_BYTES} bytes",
                            status=status,
                            attempts=attempt,
                        )
                    chunks.append(chunk)
    except TimeoutError:
        error = ChatError(
            "timeout",
            f"no answer from {settings.url} within {settings.timeout_s:g} s",
            attempts=attempt,
            hint="raise timeout_s, lower concurrency, or check the endpoint",
        )
        raise _Retry(error, None) from None
    except httpx.TimeoutException as exc:
        error = ChatError(
            "timeout",
            f"no answer from {settings.url} within {settings.timeout_s:g} s ({type(exc).__name__})",
            attempts=attempt,
            hint="raise timeout_s, lower concurrency, or check the endpoint",
        )
        raise _Retry(error, None) from None
    except httpx.TransportError as exc:
        detail = _redact(" ".join(str(exc).split())[:_SNIPPET], key)
        error = ChatError(
            "connect",
            f"could not talk to {settings.url}: {type(exc).__name__}"
            + (f": {detail}" if detail else ""),
            attempts=attempt,
            hint="check base_url and that the endpoint is running",
        )
        raise _Retry(error, None) from None
    latency_ms = (time.perf_counter() - started) * 1000.0
    body = b"".join(chunks)
    if status == 200:
        try:
            text, prompt_tokens, completion_tokens = _parse_answer(body)
        except ValueError as exc:
            raise ChatError(
                "protocol",
                f"{settings.url} did not answer in the chat-completions shape: {exc}",
                status=status,
                attempts=attempt,
                hint="base_url must point at an OpenAI-compatible API (ending in /v1)",
            ) from None
        return _redact(text, key), prompt_tokens, completion_tokens, latency_ms
    said = _redact(_snippet(body), key)
    text = f"{settings.url} answered {status}" + (f": {said}" if said else "")
    if status == 429:
        wait = _retry_after(retry_after, time.time())
        error = ChatError(
            "rate_limited",
            text,
            status=status,
            attempts=attempt,
            hint="lower concurrency, or raise max_retries / max_backoff_s",
        )
        raise _Retry(error, wait)
    if status >= 500:
        wait = _retry_after(retry_after, time.time())
        raise _Retry(ChatError("server", text, status=status, attempts=attempt), wait)
    hint = "check api_key_env and the key" if status in (401, 403) else None
    hint = hint or ("check base_url and model" if status == 404 else None)
    raise ChatError("client", text, status=status, attempts=attempt, hint=hint)


async def complete(
    client: httpx.AsyncClient,
    settings: ChatSettings,
    messages: Messages,
    *,
    rng: random.Random | None = None,
) -> ChatAnswer:
    """One chat completion, retried on 429/5xx/timeouts/connection errors; or ``ChatError``."""
    import asyncio

    key = _api_key(settings)
    body: dict[str, Any] = {"model": settings.model, "messages": [dict(m) for m in messages]}
    body.update(settings.parameters())
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    jitter = rng if rng is not None else random.Random(settings.seed or 0)
    attempt = 0
    while True:
        attempt += 1
        try:
            text, prompt_tokens, completion_tokens, latency_ms = await _attempt(
                client, settings, payload, key, attempt
            )
        except _Retry as retry:
            error = retry.error
            retries_done = attempt - 1
            if retries_done >= settings.max_retries:
                error.message = f"{error.message} (after {attempt} attempts)"
                error.args = (error.message,)
                raise error from None
            if retry.wait_s is not None:
                if retry.wait_s > settings.max_backoff_s:
                    error.message = (
                        f"{error.message}; it asked to wait {retry.wait_s:g} s, "
                        f"more than max_backoff_s ({settings.max_backoff_s:g} s)"
                    )
                    error.args = (error.message,)
                    raise error from None
                wait = retry.wait_s * (1.0 + 0.1 * jitter.random())
            else:
                ceiling = min(settings.max_backoff_s, settings.backoff_s * 2.0**retries_done)
                wait = ceiling * (0.5 + 0.5 * jitter.random())
            logger.info(
                "chat call %s: %s; retry %d of %d in %.2f s",
                error.kind,
                error.message,
                attempt,
                settings.max_retries,
                wait,
            )
            await asyncio.sleep(wait)
            continue
        return ChatAnswer(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            attempts=attempt,
        )


def cache_key(settings: ChatSettings, prompt: str, sample: int = 0) -> str:
    """The cache key of one call: sha256 of canonical JSON of prompt, model, parameters, sample."""
    document = {
        "v": 1,
        "prompt": prompt,
        "model": settings.model,
        "parameters": settings.parameters(),
        "sample": sample,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ChatCache:
    """Successful answers in a sqlite file, by ``cache_key``; stores no prompt and no key."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS chat_answers ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
                " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                " latency_ms REAL NOT NULL, attempts INTEGER NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise BadInput(
                f"the LLM answer cache {self.path} cannot be used: {exc}",
                hint="delete the file; it only holds answers that can be fetched again",
            ) from exc

    def __repr__(self) -> str:
        return f"ChatCache({str(self.path)!r})"

    def __enter__(self) -> ChatCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM chat_answers").fetchone()
        return int(count)

    def get(self, key: str) -> ChatAnswer | None:
        """The cached answer for ``key`` (``cached=True``, ``attempts=0``), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, latency_ms"
                " FROM chat_answers WHERE key = ?",
                (key,),
            ).fetchone()
        if row is None:
            return None
        text, prompt_tokens, completion_tokens, latency_ms = row
        return ChatAnswer(text, prompt_tokens, completion_tokens, latency_ms, 0, cached=True)

    def put(self, key: str, model: str, answer: ChatAnswer) -> None:
        """Keep ``answer`` under ``key`` (a later answer for the same key replaces it)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO chat_answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    answer.text,
                    answer.prompt_tokens,
                    answer.completion_tokens,
                    answer.latency_ms,
                    answer.attempts,
                ),
            )

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()


def _run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from synchronous code, even under a running loop."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    # Called from async code (a notebook, an ASGI app): a loop of our own, in a thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, factory()).result()


def run_chats(
    settings: ChatSettings,
    prompts: Sequence[str],
    *,
    concurrency: int,
    cache: ChatCache | None = None,
    samples: int = 1,
    progress: Progress | None = None,
    stop_after_errors: int | None = None,
) -> list[ChatAnswer | ChatError]:
    """Answer every prompt (sent as one user message), ``samples`` times each, in input order.

    The result has ``len(prompts) * samples`` entries: prompt 0's samples, then prompt 1's,
    and so on. A call that fails is a ``ChatError`` in its place; only a missing API key
    variable (every call would fail alike) is raised. ``progress(done, total)`` is called
    after each call, cached ones included. After ``stop_after_errors`` calls in a row
    (in the order they finish) failed, the calls not started yet are not made: each is
    a ``ChatError`` of kind ``not_called`` (an endpoint that is down costs that many
    calls' retries, not every row's).
    """
    if concurrency < 1:
        raise BadInput(f"concurrency must be 1 or more: {concurrency}")
    if samples < 1:
        raise BadInput(f"samples must be 1 or more: {samples}")
    _api_key(settings)
    jobs = [(index, sample) for index in range(len(prompts)) for sample in range(samples)]
    total = len(jobs)
    results: list[ChatAnswer | ChatError | None] = [None] * total
    keys = [cache_key(settings, prompts[i], s) for i, s in jobs] if cache is not None else []
    done = 0
    todo: list[int] = []
    for position in range(total):
        hit = cache.get(keys[position]) if cache is not None else None
        if hit is None:
            todo.append(position)
            continue
        results[position] = hit
        done += 1
        if progress is not None:
            progress(done, total)

    async def fetch_all() -> None:
        import asyncio

        import httpx

        nonlocal done
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        semaphore = asyncio.Semaphore(concurrency)
        jitter = random.Random(settings.seed or 0)
        failing = 0

        async def one(position: int) -> None:
            nonlocal done, failing
            index, sample = jobs[position]
            call = settings
            if samples > 1:
                # Each sample its own seed (the configured one, else 0, plus its index), so
                # an endpoint that honours seeds gives k distinct, repeatable answers.
                call = dataclasses.replace(settings, seed=(settings.seed or 0) + sample)
            messages = [{"role": "user", "content": prompts[index]}]
            async with semaphore:
                answer: ChatAnswer | ChatError
                if stop_after_errors is not None and failing >= stop_after_errors:
                    answer = ChatError(
                        "not_called", f"not called: {failing} calls in a row failed before it"
                    )
                else:
                    try:
                        answer = await complete(client, call, messages, rng=jitter)
                    except ChatError as error:
                        answer = error
                        failing += 1
                    else:
                        failing = 0
            if cache is not None and isinstance(answer, ChatAnswer):
                cache.put(keys[position], settings.model, answer)
            results[position] = answer
            done += 1
            if progress is not None:
                progress(done, total)

        async with httpx.AsyncClient(limits=limits, timeout=settings.timeout_s) as client:
            await asyncio.gather(*(one(position) for position in todo))

    if todo:
        _run_sync(fetch_all)
    return [r for r in results if r is not None]
