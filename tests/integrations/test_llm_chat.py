"""The chat-completions client against the real stand-in server over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from releaser.demo.llm_stub import ChatStub, answer, count_tokens
from releaser.errors import BadInput
from releaser.integrations.llm_chat import (
    ChatAnswer,
    ChatCache,
    ChatError,
    ChatSettings,
    _retry_after,
    cache_key,
    run_chats,
)

KEY = "sk-test-5f0c9a1e7b2d4c6e8a0b1c3d5e7f9a2b"
KEY_ENV = "RELEASER_TEST_LLM_KEY"
REPLY = (
    "Greet the resident by name.\n"
    "Mention the reference number.\n"
    "Resident: Ann Lee\n"
    "Reference: CT-{i}\n"
    "Topic: council-tax\n"
)


@pytest.fixture
def stub() -> Iterator[ChatStub]:
    with ChatStub() as server:
        yield server


def settings(stub: ChatStub, **changes: object) -> ChatSettings:
    """Fast retries: a test that means to wait says so."""
    values: dict[str, object] = {
        "base_url": stub.url,
        "model": "stub-chat-1",
        "temperature": 0.0,
        "backoff_s": 0.01,
        "max_backoff_s": 5.0,
        "timeout_s": 10.0,
    }
    values.update(changes)
    return ChatSettings(**values)  # type: ignore[arg-type]


def prompts(n: int) -> list[str]:
    return [REPLY.format(i=i) for i in range(n)]


def answers_only(results: list[ChatAnswer | ChatError]) -> list[ChatAnswer]:
    assert all(isinstance(r, ChatAnswer) for r in results), results
    return [r for r in results if isinstance(r, ChatAnswer)]


def test_answers_come_back_in_input_order_with_usage_and_latency(stub: ChatStub) -> None:
    asked = prompts(12)
    got = answers_only(run_chats(settings(stub), asked, concurrency=5))
    assert [a.text for a in got] == [answer(p) for p in asked]
    assert got[3].text.startswith("Dear Ann Lee,") and "Ref CT-3" in got[3].text
    for prompt, one in zip(asked, got, strict=True):
        assert one.prompt_tokens == count_tokens(prompt)
        assert one.completion_tokens == count_tokens(one.text)
        assert one.latency_ms > 0 and one.attempts == 1 and not one.cached
    sent = stub.last_request
    assert sent is not None
    assert sent["json"]["model"] == "stub-chat-1"
    assert sent["json"]["temperature"] == 0.0
    assert "seed" not in sent["json"] and "max_tokens" not in sent["json"]
    assert sent["json"]["messages"][0]["role"] == "user"


def test_concurrency_is_respected_on_keep_alive_connections(stub: ChatStub) -> None:
    stub.delay_s = 0.5
    got = answers_only(run_chats(settings(stub), prompts(8), concurrency=4))
    assert len(got) == 8
    assert stub.max_in_flight == 4
    # One client, HTTP keep-alive: at most one connection per slot, not one per call.
    assert stub.connections <= 4


@pytest.mark.slow
def test_a_429_storm_ends_with_every_answer_and_honours_retry_after(stub: ChatStub) -> None:
    stub.rate_limit(20, retry_after_s=1)
    asked = prompts(30)
    got = answers_only(run_chats(settings(stub, max_retries=4), asked, concurrency=16))
    assert [a.text for a in got] == [answer(p) for p in asked]
    assert stub.statuses[429] == 20 and stub.statuses[200] == 30
    assert sum(a.attempts for a in got) == 50
    # Causal: no prompt was asked again sooner than the Retry-After it was given.
    by_prompt: dict[str, list[tuple[float, int]]] = {}
    for seen in stub.log:
        by_prompt.setdefault(seen.prompt, []).append((seen.at, seen.status))
    retried = 0
    for seen_list in by_prompt.values():
        for (at, status), (next_at, _) in zip(seen_list, seen_list[1:], strict=False):
            assert status == 429
            assert next_at - at >= 1.0
            retried += 1
    assert retried == 20


def test_server_errors_are_retried_then_surfaced_after_max_retries(stub: ChatStub) -> None:
    stub.fail_next(2, 500)
    (recovered,) = answers_only(run_chats(settings(stub, max_retries=4), ["hi"], concurrency=1))
    assert recovered.attempts == 3 and stub.calls == 3

    stub.reset()
    stub.fail_next(10, 503)
    (failed,) = run_chats(settings(stub, max_retries=2), ["hi"], concurrency=1)
    assert isinstance(failed, ChatError)
    assert (failed.kind, failed.status, failed.attempts) == ("server", 503, 3)
    assert stub.calls == 3
    assert "503" in failed.message and "after 3 attempts" in failed.message


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_client_errors_are_not_retried(stub: ChatStub, status: int) -> None:
    stub.fail_next(5, status, message="you sent something wrong")
    (failed,) = run_chats(settings(stub, max_retries=4), ["hi"], concurrency=1)
    assert isinstance(failed, ChatError)
    assert (failed.kind, failed.status, failed.attempts) == ("client", status, 1)
    assert stub.calls == 1
    assert "you sent something wrong" in failed.message


def test_a_slow_answer_times_out_each_attempt(stub: ChatStub) -> None:
    stub.delay_s = 3.0
    (failed,) = run_chats(settings(stub, timeout_s=0.2, max_retries=1), ["hi"], concurrency=1)
    assert isinstance(failed, ChatError)
    assert (failed.kind, failed.attempts) == ("timeout", 2)
    assert stub.calls <= 2  # a request the client gave up on may not have arrived yet
    assert "0.2 s" in failed.message


def test_a_refused_connection_is_retried_then_a_connect_error(stub: ChatStub) -> None:
    url = stub.url
    stub.close()  # nothing listens on that port any more
    dead = ChatSettings(base_url=url, model="m", max_retries=2, backoff_s=0.01)
    (failed,) = run_chats(dead, ["hi"], concurrency=1)
    assert isinstance(failed, ChatError)
    assert (failed.kind, failed.attempts) == ("connect", 3)


def test_after_enough_failures_in_a_row_the_rest_are_not_called(stub: ChatStub) -> None:
    stub.fail_next(5, status=503)
    answers = run_chats(
        settings(stub, max_retries=0), prompts(20), concurrency=1, stop_after_errors=5
    )
    kinds = [a.kind if isinstance(a, ChatError) else "ok" for a in answers]
    assert kinds == ["server"] * 5 + ["not_called"] * 15
    assert stub.calls == 5  # the endpoint is asked nothing more
    stub.fail_next(2, status=503)
    again = run_chats(settings(stub, max_retries=0), prompts(6), concurrency=1, stop_after_errors=5)
    assert [isinstance(a, ChatError) for a in again] == [True, True, False, False, False, False]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"<html>hello</html>", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": "x"}', "no choices"),
        (b'{"choices": [{"text": "old completions API"}]}', "choices[0].message"),
        (
            b'{"choices": [{"message": {"role": "assistant", "content": null}}]}',
            "choices[0].message.content",
        ),
        (b'{"choices": [{"message": {"content": "hi"}}]}', "no usage"),
        (
            b'{"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 3}}',
            "usage.completion_tokens",
        ),
    ],
)
def test_a_body_that_is_not_a_completion_is_a_protocol_error(
    stub: ChatStub, body: bytes, named: str
) -> None:
    stub.garble_next(1, body)
    (failed,) = run_chats(settings(stub), ["hi"], concurrency=1)
    assert isinstance(failed, ChatError)
    assert failed.kind == "protocol" and failed.status == 200
    assert named in failed.message
    assert stub.calls == 1  # a broken protocol is not retried


def test_a_retry_after_longer_than_max_backoff_ends_the_call_at_once(stub: ChatStub) -> None:
    stub.rate_limit(1, retry_after_s=120)
    (failed,) = run_chats(settings(stub, max_backoff_s=5.0), ["hi"], concurrency=1)
    assert isinstance(failed, ChatError)
    assert (failed.kind, failed.status, failed.attempts) == ("rate_limited", 429, 1)
    assert "120 s" in failed.message and stub.calls == 1


def test_retry_after_values() -> None:
    assert _retry_after("2", 0.0) == 2.0
    assert _retry_after("0.5", 0.0) == 0.5
    assert _retry_after("-3", 0.0) == 0.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert _retry_after("soon", 0.0) is None
    assert _retry_after(None, 0.0) is None


def test_the_cache_answers_a_second_run_without_http_and_misses_on_a_change(
    stub: ChatStub, tmp_path: Path
) -> None:
    asked = prompts(6)
    with ChatCache(tmp_path / "cache" / "llm.sqlite") as cache:
        stub.fail_next(1, 400)  # the first call fails: failures are not cached
        first = run_chats(settings(stub), asked, concurrency=3, cache=cache)
        assert sum(isinstance(r, ChatError) for r in first) == 1
        assert len(cache) == 5
        calls = stub.calls

        again = run_chats(settings(stub), asked, concurrency=3, cache=cache)
        assert stub.calls == calls + 1  # only the failed one was asked again
        cached = [r for r in again if isinstance(r, ChatAnswer) and r.cached]
        assert len(cached) == 5 and all(a.attempts == 0 for a in cached)
        fresh = {a.text: a for a in first if isinstance(a, ChatAnswer)}
        for hit in cached:
            assert hit.completion_tokens == fresh[hit.text].completion_tokens
            assert hit.latency_ms == fresh[hit.text].latency_ms

        calls = stub.calls
        third = answers_only(run_chats(settings(stub), asked, concurrency=3, cache=cache))
        assert stub.calls == calls and all(a.cached for a in third)

        # A changed parameter, model or sample index is another key.
        answers_only(run_chats(settings(stub, max_tokens=50), asked, concurrency=3, cache=cache))
        assert stub.calls == calls + 6
    base = settings(stub)
    assert (
        len(
            {
                cache_key(base, "p"),
                cache_key(base, "p", sample=1),
                cache_key(settings(stub, temperature=0.7), "p"),
                cache_key(settings(stub, seed=1), "p"),
                cache_key(settings(stub, model="other"), "p"),
                cache_key(settings(stub, extra={"top_p": 0.9}), "p"),
                cache_key(base, "p "),
            }
        )
        == 7
    )
    # The key ignores what does not change an answer (retries, timeouts, the key's variable).
    assert cache_key(base, "p") == cache_key(
        settings(stub, max_retries=0, timeout_s=1.0, api_key_env=KEY_ENV), "p"
    )


def test_samples_are_distinct_reproducible_draws(stub: ChatStub) -> None:
    asked = [
        "Greet the resident by name.\nApologise for the delay.\nSay what happens next.\n"
        f"Resident: R{i}\n"
        for i in range(10)
    ]
    warm = settings(stub, temperature=1.0, seed=7)
    first = answers_only(run_chats(warm, asked, concurrency=4, samples=3))
    second = answers_only(run_chats(warm, asked, concurrency=4, samples=3))
    assert [a.text for a in first] == [a.text for a in second]
    assert len(first) == 30
    # Prompt i's sample s was sent with seed 7 + s.
    for position, got in enumerate(first):
        i, s = divmod(position, 3)
        assert got.text == answer(asked[i], seed=7 + s, temperature=1.0)
    assert any(len({first[3 * i + s].text for s in range(3)}) > 1 for i in range(10))
    # The same prompt and seed at temperature 0: always the whole instruction set.
    cold = answers_only(run_chats(settings(stub, seed=7), asked[:1], concurrency=1, samples=3))
    assert len({a.text for a in cold}) == 1


def test_progress_counts_every_call_cached_or_not(stub: ChatStub, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    with ChatCache(tmp_path / "c.sqlite") as cache:
        run_chats(settings(stub), prompts(2), concurrency=2, cache=cache)
        run_chats(
            settings(stub),
            prompts(3),
            concurrency=2,
            cache=cache,
            progress=lambda d, t: seen.append((d, t)),
        )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_run_chats_works_when_called_under_a_running_loop(stub: ChatStub) -> None:
    async def inside() -> list[ChatAnswer | ChatError]:
        return run_chats(settings(stub), prompts(2), concurrency=2)

    assert len(answers_only(asyncio.run(inside()))) == 2


def test_the_api_key_is_sent_and_never_appears_in_any_output(
    stub: ChatStub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    stub.require_key(KEY)
    keyed = settings(stub, api_key_env=KEY_ENV, max_retries=1)
    texts: list[str] = [repr(keyed), str(keyed)]
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's, httpcore's
    cache_dir = tmp_path / "cache"
    with ChatCache(cache_dir / "llm.sqlite") as cache:
        texts.append(repr(cache))
        good = answers_only(run_chats(keyed, prompts(3), concurrency=2, cache=cache))
        # A prompt that makes the model echo the key: redacted before it is kept or shown.
        echo = "Greet the resident by name.\nResident: " + KEY + "\n"
        (echoed,) = answers_only(run_chats(keyed, [echo], concurrency=1, cache=cache))
        assert echoed.text.startswith("Dear [redacted],")
        results: list[ChatAnswer | ChatError] = [*good, echoed]
        stub.rate_limit(5, retry_after_s=0.05)
        results += run_chats(keyed, ["rate limited"], concurrency=1, cache=cache)
        stub.reset()
        stub.fail_next(5, 503, message=f"upstream said: bad token Bearer {KEY}")
        results += run_chats(keyed, ["server error"], concurrency=1, cache=cache)
        stub.reset()
        stub.fail_next(1, 400, message=f"invalid key {KEY} for this model")
        results += run_chats(keyed, ["client error"], concurrency=1, cache=cache)
        stub.garble_next(1, json.dumps({"echo": KEY}))
        results += run_chats(keyed, ["protocol"], concurrency=1, cache=cache)
        stub.delay_s = 1.0
        quick = settings(stub, api_key_env=KEY_ENV, timeout_s=0.1, max_retries=0)
        results += run_chats(quick, ["t"], concurrency=1)
        stub.delay_s = 0.0
        monkeypatch.setenv(KEY_ENV, KEY[::-1])  # a wrong key: 401
        results += run_chats(keyed, ["wrong key"], concurrency=1, cache=cache)
        monkeypatch.setenv(KEY_ENV, KEY)
    errors = [r for r in results if isinstance(r, ChatError)]
    assert {e.kind for e in errors} == {"rate_limited", "server", "client", "protocol", "timeout"}
    assert any(e.message.count("[redacted]") for e in errors)
    for result in results:
        texts += [repr(result), str(result)]
        if isinstance(result, ChatError):
            texts += [result.message, result.hint or "", repr(pickle.loads(pickle.dumps(result)))]
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ChatError) as missing:
        run_chats(keyed, ["x"], concurrency=1)
    assert missing.value.kind == "client" and KEY_ENV in missing.value.message
    texts += [str(missing.value), repr(missing.value), missing.value.hint or ""]
    texts += [record.getMessage() for record in caplog.records] + [caplog.text]
    assert any("retry" in record.getMessage() for record in caplog.records)
    for text in texts:
        assert KEY not in text
    files = list(cache_dir.iterdir())
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path.name


def test_a_missing_key_variable_fails_before_any_call(
    stub: ChatStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ChatError) as caught:
        run_chats(settings(stub, api_key_env=KEY_ENV), ["hi"], concurrency=1)
    assert caught.value.kind == "client" and caught.value.exit_code == 2
    assert stub.calls == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"base_url": "127.0.0.1:8011/v1"},
        {"model": ""},
        {"extra": {"messages": []}},
        {"extra": {"stream": True}},
        {"timeout_s": 0},
        {"max_retries": -1},
        {"max_tokens": 0},
    ],
)
def test_settings_refuse_what_cannot_work(changes: dict[str, object]) -> None:
    values: dict[str, object] = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    values.update(changes)
    with pytest.raises(BadInput):
        ChatSettings(**values)  # type: ignore[arg-type]


def test_settings_keep_their_own_copy_of_extra() -> None:
    extra = {"top_p": 0.9}
    frozen = ChatSettings(base_url="http://h/v1/", model="m", extra=extra)
    extra["top_p"] = 0.1
    assert frozen.parameters() == {"top_p": 0.9}
    assert frozen.url == "http://h/v1/chat/completions"
    assert hash(frozen) == hash(ChatSettings(base_url="http://h/v1/", model="m"))


def test_no_prompts_make_no_calls(stub: ChatStub) -> None:
    assert run_chats(settings(stub), [], concurrency=4) == []
    assert stub.calls == 0 and stub.connections == 0


def test_run_chats_refuses_a_bad_concurrency(stub: ChatStub) -> None:
    with pytest.raises(BadInput):
        run_chats(settings(stub), ["x"], concurrency=0)
    with pytest.raises(BadInput):
        run_chats(settings(stub), ["x"], concurrency=1, samples=0)


def test_importing_the_client_loads_no_httpx() -> None:
    code = (
        "import sys, releaser.integrations.llm_chat\n"
        "print('httpx' in sys.modules, 'releaser.demo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"]
