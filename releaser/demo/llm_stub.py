"""A local OpenAI-compatible chat-completions server whose "model" follows written rules.

No LLM can be reached or downloaded where the tests, the demo and the bench run, so this
stand-in answers ``POST /v1/chat/completions`` (and lists its model at ``GET /v1/models``)
with answers that are deterministic functions of the prompt text and the seed. Prompt
versions therefore differ in measurable ways: an instruction a version lacks is missing
from every answer. It is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 in a thread
(``ChatStub``), or a process: ``python -m releaser.demo.llm_stub --port 8011``.

The prompt
    The contents of all messages, joined with newlines. It is read line by line; each
    line is stripped, and a leading bullet (``-``, ``*`` or ``•`` then a space) is
    dropped. Lines are matched case-insensitively; a final full stop is optional. Lines
    that match no rule are ignored. A prompt is a *judge prompt* when a line starts with
    ``You are grading a reply``; otherwise it is a *reply prompt*.

Reply prompts: facts
    ``Resident: <name>``, ``Reference: <id>``, ``Topic: <topic>`` (the first of each
    counts; absent facts are empty).

Reply prompts: instructions, and what each does
    ``Greet the resident by name.``
        the reply starts ``Dear <name>,`` (``Dear resident,`` without a name);
        without the instruction it starts ``Hello,``.
    ``Apologise for the delay.``
        adds ``We are sorry for the delay.``
    ``Mention the reference number.``
        adds ``Your reference is Ref <id>.`` (only when there is a reference).
    ``Offer a payment plan for council tax.``
        adds ``We can set up a payment plan to spread the cost.`` only when the topic is
        ``council-tax``.
    ``Say what happens next.``
        adds the next-step sentence (below).
    ``Include the phrase '<text>'.`` (or with double quotes)
        adds ``<text>`` as a sentence of its own; several may be given, in prompt order.
    ``Sign off as <name>.``
        ends the reply with ``Kind regards, <name>`` (the first such line counts).
    ``Keep it under <N> words.``
        keeps only the first N-1 words of the reply (applied last, to the reply text;
        the smallest N counts).
    ``Answer in JSON with keys <k1>, <k2> and <k3>.`` (any number of keys, separated by
    commas and/or ``and``)
        the answer is a JSON object with those keys, in that order: ``reply`` (the reply
        text), ``next_step`` (the next-step sentence), ``topic``, ``reference``, ``resident``
        (the facts); any other key is ``null``. Serialised with ``json.dumps`` defaults;
        the first such line counts.

    The reply text is, in this order and whatever the order of the instructions: the
    greeting; ``Thank you for your message about <topic words>.`` (the topic with ``-``
    read as a space; ``your enquiry`` without a topic); the apology; the reference; the
    payment plan; the phrases; the next step; the sign-off. Sentences are joined by one
    space. The next-step sentence is ``We will reply within 10 working days.``

Judge prompts
    The reply graded is the text after a line ``Reply:`` (or after ``Reply:`` on the same
    line), up to a line ``End of reply`` or the end of the prompt; it is stripped. Rule
    lines are read outside the reply only:

    ``Score from <A> to <B>.``
        the score starts at A and is clamped to [A, B] (without it: starts at 0, no clamp).
    ``+<N> if <condition>`` / ``-<N> if <condition>`` (a criterion; usually bulleted)
        adds (subtracts) N points when the condition holds of the reply:
        ``the reply contains '<text>'``, ``the reply does not contain '<text>'``,
        ``the reply starts with '<text>'``, ``the reply ends with '<text>'`` (text
        comparisons ignore case; double quotes also work), ``the reply is valid JSON``,
        ``the reply has fewer than <N> words``. A criterion with another condition counts
        nothing.
    ``Answer in JSON ...`` (any line starting so)
        the answer is ``{"score": <n>}``; otherwise it is ``Score: <n>``.

Temperature
    At temperature 0 (or none given) every recognised instruction (criterion, for a judge)
    is followed. Above 0, let ``h = sha256(f"{seed}:{prompt}")`` in hex, where ``seed`` is
    the request's ``seed`` or ``-`` when none was sent. If ``int(h[:8], 16) / 2**32 <
    min(1, temperature / 2)``, one of them is ignored: the one at index
    ``int(h[8:16], 16) % count`` in prompt order. So an answer is fixed by (prompt, seed,
    temperature), and different seeds give different samples.

``max_tokens``
    An answer longer than ``max_tokens`` tokens keeps its first ``max_tokens`` words and
    has ``finish_reason: "length"``.

Usage
    Tokens are counted as whitespace-separated words (``len(text.split())``):
    ``prompt_tokens`` over the prompt (all message contents joined with newlines),
    ``completion_tokens`` over the answer.

Controls (``ChatStub``)
    Every chat request first waits ``delay_s`` seconds (0 by default). Then
    ``require_key(key)`` answers 401 to a request without ``Authorization: Bearer <key>``.
    Then queued answers are used up, one per request, in the order they were queued:
    ``rate_limit(n, retry_after_s)`` queues n answers 429 with ``Retry-After``;
    ``fail_next(n, status, message)`` queues n answers with that status and an error body
    carrying ``message``; ``garble_next(n, body)`` queues n answers 200 with ``body`` as
    it is. Otherwise the request is answered as above (400 if it is not JSON with a
    ``messages`` list). Bodies over 1 MiB are refused (413).

Counters
    ``calls``, ``statuses`` (a Counter by status), ``in_flight``/``max_in_flight``,
    ``connections`` (TCP connections accepted), ``log`` (answer time, prompt and status
    of the last 10,000 requests) and ``last_request`` (its JSON body and headers, without
    the ``Authorization`` header); ``reset()`` zeroes them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "MAX_REQUEST_BYTES",
    "NEXT_STEP",
    "ChatStub",
    "StubRequest",
    "answer",
    "count_tokens",
    "main",
]

MAX_REQUEST_BYTES = 1024 * 1024
NEXT_STEP = "We will reply within 10 working days."
_LOG_LIMIT = 10_000
_BULLET = re.compile(r"^[-*\u2022]\s+")
_QUOTED = r"""(?:'(?P<s>[^']*)'|"(?P<d>[^"]*)")"""
_INCLUDE = re.compile(rf"^include the phrase {_QUOTED}$", re.I)
_SIGN_OFF = re.compile(r"^sign off as (?P<name>.+)$", re.I)
_UNDER = re.compile(r"^keep it under (?P<n>\d+) words$", re.I)
_JSON_KEYS = re.compile(r"^answer in json with keys? (?P<keys>.+)$", re.I)
_SCALE = re.compile(r"^score from (?P<a>-?\d+) to (?P<b>-?\d+)$", re.I)
_CRITERION = re.compile(r"^(?P<sign>[+-])(?P<n>\d+) if (?P<cond>.+)$", re.I)
_CONTAINS = re.compile(rf"^the reply contains {_QUOTED}$", re.I)
_LACKS = re.compile(rf"^the reply does not contain {_QUOTED}$", re.I)
_STARTS = re.compile(rf"^the reply starts with {_QUOTED}$", re.I)
_ENDS = re.compile(rf"^the reply ends with {_QUOTED}$", re.I)
_FEWER = re.compile(r"^the reply has fewer than (?P<n>\d+) words$", re.I)
_FIXED = {
    "greet the resident by name": "greet",
    "apologise for the delay": "apologise",
    "mention the reference number": "reference",
    "offer a payment plan for council tax": "payment_plan",
    "say what happens next": "next_step",
}


def count_tokens(text: str) -> int:
    """Tokens as the stub counts them: whitespace-separated words."""
    return len(text.split())


def _clean(line: str) -> str:
    line = _BULLET.sub("", line.strip()).strip()
    return line[:-1].rstrip() if line.endswith(".") else line


def _quoted(match: re.Match[str]) -> str:
    return match.group("s") if match.group("s") is not None else match.group("d")


def _dropped(prompt: str, seed: int | None, temperature: float, count: int) -> int | None:
    """The index of the rule ignored at this temperature, or None (see the module doc)."""
    if temperature <= 0 or count == 0:
        return None
    digest = hashlib.sha256(f"{'-' if seed is None else seed}:{prompt}".encode()).hexdigest()
    if int(digest[:8], 16) / 2**32 >= min(1.0, temperature / 2):
        return None
    return int(digest[8:16], 16) % count


@dataclass(frozen=True)
class _Rule:
    kind: str
    value: Any = None


def _reply_rules(lines: list[str]) -> tuple[dict[str, str], list[_Rule]]:
    facts: dict[str, str] = {}
    rules: list[_Rule] = []
    for raw in lines:
        line = _clean(raw)
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() in ("resident", "reference", "topic"):
            facts.setdefault(head.strip().lower(), rest.strip())
            continue
        lower = line.lower()
        if lower in _FIXED:
            rules.append(_Rule(_FIXED[lower]))
        elif m := _INCLUDE.match(line):
            rules.append(_Rule("phrase", _quoted(m)))
        elif m := _SIGN_OFF.match(line):
            rules.append(_Rule("sign_off", m.group("name").strip()))
        elif m := _UNDER.match(line):
            rules.append(_Rule("under", int(m.group("n"))))
        elif m := _JSON_KEYS.match(line):
            keys = [k.strip() for k in re.split(r",|\band\b", m.group("keys")) if k.strip()]
            rules.append(_Rule("json", tuple(keys)))
    return facts, rules


def _reply(lines: list[str], prompt: str, seed: int | None, temperature: float) -> str:
    facts, rules = _reply_rules(lines)
    drop = _dropped(prompt, seed, temperature, len(rules))
    if drop is not None:
        rules = rules[:drop] + rules[drop + 1 :]
    kinds = {r.kind for r in rules}
    name, ref, topic = facts.get("resident", ""), facts.get("reference", ""), facts.get("topic", "")
    parts = [f"Dear {name or 'resident'}," if "greet" in kinds else "Hello,"]
    about = topic.replace("-", " ").strip() or "your enquiry"
    parts.append(f"Thank you for your message about {about}.")
    if "apologise" in kinds:
        parts.append("We are sorry for the delay.")
    if "reference" in kinds and ref:
        parts.append(f"Your reference is Ref {ref}.")
    if "payment_plan" in kinds and topic.lower() == "council-tax":
        parts.append("We can set up a payment plan to spread the cost.")
    parts.extend(r.value for r in rules if r.kind == "phrase")
    if "next_step" in kinds:
        parts.append(NEXT_STEP)
    sign_offs = [r.value for r in rules if r.kind == "sign_off"]
    if sign_offs:
        parts.append(f"Kind regards, {sign_offs[0]}")
    text = " ".join(p for p in parts if p)
    limits = [r.value for r in rules if r.kind == "under"]
    if limits:
        text = " ".join(text.split()[: max(0, min(limits) - 1)])
    json_rules = [r for r in rules if r.kind == "json"]
    if not json_rules:
        return text
    values = {
        "reply": text,
        "next_step": NEXT_STEP,
        "topic": topic,
        "reference": ref,
        "resident": name,
    }
    return json.dumps({k: values.get(k) for k in json_rules[0].value})


def _holds(condition: str, reply: str) -> bool | None:
    """Whether ``condition`` holds of ``reply``; None when it is not a known condition."""
    condition = _clean(condition)
    low = reply.lower()
    if m := _CONTAINS.match(condition):
        return _quoted(m).lower() in low
    if m := _LACKS.match(condition):
        return _quoted(m).lower() not in low
    if m := _STARTS.match(condition):
        return low.startswith(_quoted(m).lower())
    if m := _ENDS.match(condition):
        return low.endswith(_quoted(m).lower())
    if m := _FEWER.match(condition):
        return count_tokens(reply) < int(m.group("n"))
    if condition.lower() == "the reply is valid json":
        try:
            json.loads(reply)
        except ValueError:
            return False
        return True
    return None


def _judge(lines: list[str], prompt: str, seed: int | None, temperature: float) -> str:
    outside: list[str] = []
    reply_lines: list[str] = []
    state = "before"
    for raw in lines:
        stripped = raw.strip()
        if state == "before" and stripped.lower().startswith("reply:"):
            state = "reply"
            rest = stripped[len("reply:") :].strip()
            if rest:
                reply_lines.append(rest)
            continue
        if state == "reply" and _clean(stripped).lower() == "end of reply":
            state = "after"
            continue
        (reply_lines if state == "reply" else outside).append(raw)
    reply = "\n".join(reply_lines).strip()
    low, high, as_json = 0, None, False
    criteria: list[tuple[int, bool]] = []
    for raw in outside:
        line = _clean(raw)
        if m := _SCALE.match(line):
            low, high = int(m.group("a")), int(m.group("b"))
        elif m := _CRITERION.match(line):
            holds = _holds(m.group("cond"), reply)
            if holds is not None:
                points = int(m.group("n")) * (1 if m.group("sign") == "+" else -1)
                criteria.append((points, holds))
        elif line.lower().startswith("answer in json"):
            as_json = True
    drop = _dropped(prompt, seed, temperature, len(criteria))
    if drop is not None:
        criteria = criteria[:drop] + criteria[drop + 1 :]
    score = low + sum(points for points, holds in criteria if holds)
    if high is not None:
        score = max(low, min(high, score))
    return json.dumps({"score": score}) if as_json else f"Score: {score}"


def answer(prompt: str, *, seed: int | None = None, temperature: float | None = None) -> str:
    """The stub model's answer to ``prompt`` (rules in the module docstring)."""
    lines = prompt.splitlines()
    heat = float(temperature or 0.0)
    if any(_clean(line).lower().startswith("you are grading a reply") for line in lines):
        return _judge(lines, prompt, seed, heat)
    return _reply(lines, prompt, seed, heat)


@dataclass(frozen=True)
class StubRequest:
    """One chat request as the stub saw it."""

    at: float
    """``time.monotonic()`` when its answer was decided, just before it was sent."""
    prompt: str
    status: int


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops connections when 16 calls start at once; a dropped one
    # surfaces a second later as a reset, which is not the endpoint behaviour under test.
    request_queue_size = 256
    daemon_threads = True


class ChatStub:
    """The stand-in server, running in a daemon thread; use as a context manager or ``close``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, model: str = "stub-chat-1"):
        self.model = model
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._key: str | None = None
        self._overrides: deque[tuple[int, dict[str, str], bytes]] = deque()
        self.reset()
        self.server = _Server((host, port), self._handler())
        self.url = f"http://{host}:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self._thread.daemon = True
        self._thread.start()

    def __enter__(self) -> ChatStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Zero the counters and forget queued failures (the key and delay stay)."""
        with self._lock:
            self.calls = 0
            self.statuses: Counter[int] = Counter()
            self.in_flight = 0
            self.max_in_flight = 0
            self.connections = 0
            self.log: deque[StubRequest] = deque(maxlen=_LOG_LIMIT)
            self.last_request: dict[str, Any] | None = None
            self._overrides.clear()

    def require_key(self, key: str | None) -> None:
        """Answer 401 unless ``Authorization: Bearer <key>`` is sent (None: no key needed)."""
        self._key = key

    def rate_limit(self, n: int, retry_after_s: float = 1.0) -> None:
        """Answer the next ``n`` requests 429 with ``Retry-After: <retry_after_s>``."""
        value = f"{retry_after_s:g}"
        body = _error_body("rate limit reached (stub)", "rate_limit_exceeded")
        self._queue(n, 429, {"retry-after": value}, body)

    def fail_next(self, n: int, status: int = 500, message: str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` and an OpenAI-style error body."""
        text = message if message is not None else f"stub failure {status}"
        self._queue(n, status, {}, _error_body(text, "server_error"))

    def garble_next(self, n: int, body: str | bytes = b'{"id": "not-a-completion"}') -> None:
        """Answer the next ``n`` requests 200 with ``body`` as it is (not a completion)."""
        raw = body.encode() if isinstance(body, str) else body
        self._queue(n, 200, {}, raw)

    def _queue(self, n: int, status: int, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self._overrides.extend((status, headers, body) for _ in range(n))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with stub._lock:
                    stub.connections += 1

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    models = {"object": "list", "data": [{"id": stub.model, "object": "model"}]}
                    self._send(200, json.dumps(models).encode())
                else:
                    self._send(404, _error_body(f"no route {self.path}", "not_found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_REQUEST_BYTES:
                    # Drained (not kept) so the client reads the 413 rather than a reset.
                    remaining = min(length, 64 * MAX_REQUEST_BYTES)
                    while remaining > 0:
                        chunk = self.rfile.read(min(remaining, 1 << 16))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                    self.close_connection = True
                    self._send(413, _error_body("request body too large", "invalid_request"))
                    return
                raw = self.rfile.read(length) if length else b""
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, _error_body(f"no route {self.path}", "not_found"))
                    return
                with stub._lock:
                    stub.calls += 1
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                try:
                    status, body, headers, prompt = self._chat(raw)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1
                with stub._lock:
                    stub.statuses[status] += 1
                    stub.log.append(StubRequest(time.monotonic(), prompt, status))
                self._send(status, body, headers)

            def _chat(self, raw: bytes) -> tuple[int, bytes, dict[str, str], str]:
                arrived = time.monotonic()
                try:
                    request = json.loads(raw)
                except ValueError:
                    request = None
                ok = isinstance(request, dict) and isinstance(request.get("messages"), list)
                messages = request.get("messages", []) if isinstance(request, dict) else []
                prompt = "\n".join(
                    str(m.get("content", "")) for m in messages if isinstance(m, dict)
                )
                with stub._lock:
                    stub.last_request = {
                        "json": request,
                        "headers": {
                            k.lower(): v
                            for k, v in self.headers.items()
                            if k.lower() != "authorization"
                        },
                    }
                wait = stub.delay_s - (time.monotonic() - arrived)
                if wait > 0:
                    time.sleep(wait)
                if stub._key is not None:
                    if self.headers.get("authorization") != f"Bearer {stub._key}":
                        body = _error_body("missing or wrong API key", "invalid_api_key")
                        return 401, body, {}, prompt
                with stub._lock:
                    override = stub._overrides.popleft() if stub._overrides else None
                if override is not None:
                    status, headers, body = override
                    return status, body, headers, prompt
                if not ok or not isinstance(request, dict):
                    body = _error_body("the body must be JSON with a messages list", "invalid")
                    return 400, body, {}, prompt
                return 200, _completion(stub, request, prompt), {}, prompt

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _error_body(message: str, code: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": code, "code": code}}).encode()


def _completion(stub: ChatStub, request: dict[str, Any], prompt: str) -> bytes:
    seed = request.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    temperature = request.get("temperature")
    heat = float(temperature) if isinstance(temperature, int | float) else 0.0
    text = answer(prompt, seed=seed, temperature=heat)
    finish = "stop"
    max_tokens = request.get("max_tokens")
    if isinstance(max_tokens, int) and count_tokens(text) > max_tokens > 0:
        text = " ".join(text.split()[:max_tokens])
        finish = "length"
    with stub._lock:
        number = stub.calls
    prompt_tokens, completion_tokens = count_tokens(prompt), count_tokens(text)
    document = {
        "id": f"chatcmpl-stub-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(request.get("model") or stub.model),
        "system_fingerprint": "releaser-stub",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return json.dumps(document).encode()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the stub in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible stand-in server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--model", default="stub-chat-1")
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    stub = ChatStub(host=args.host, port=args.port, model=args.model)
    stub.delay_s = args.delay_s
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stub.close()


if __name__ == "__main__":
    main()
