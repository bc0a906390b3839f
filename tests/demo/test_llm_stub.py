"""The stand-in LLM server: its instruction language, its HTTP shape and its controls."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from releaser.demo.llm_stub import MAX_REQUEST_BYTES, NEXT_STEP, ChatStub, answer, count_tokens

FACTS = "Resident: Ann Lee\nReference: CT-1234\nTopic: council-tax\nMessage: I cannot pay.\n"
FULL = (
    "You draft replies for the council.\n"
    "- Greet the resident by name.\n"
    "- Mention the reference number.\n"
    "- Offer a payment plan for council tax.\n"
    "- Say what happens next.\n" + FACTS
)


@pytest.fixture
def stub() -> Iterator[ChatStub]:
    with ChatStub() as server:
        yield server


def post(
    stub: ChatStub, body: Any, headers: dict[str, str] | None = None, path: str = "/v1"
) -> tuple[int, dict[str, str], Any]:
    """POST JSON (or raw bytes) to the stub; status, headers (lower-case) and parsed body."""
    port = int(stub.url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        conn.request("POST", f"{path}/chat/completions", body=raw, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)
    finally:
        conn.close()


def chat(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": "stub-chat-1", "messages": [{"role": "user", "content": prompt}], **params}


# --- reply prompts ------------------------------------------------------------------


def test_every_reply_instruction_shows_in_the_answer() -> None:
    assert answer(FULL) == (
        "Dear Ann Lee, Thank you for your message about council tax. "
        "Your reference is Ref CT-1234. We can set up a payment plan to spread the cost. "
        f"{NEXT_STEP}"
    )


def test_without_instructions_the_reply_is_plain() -> None:
    assert answer(FACTS) == "Hello, Thank you for your message about council tax."
    assert answer("") == "Hello, Thank you for your message about your enquiry."


def test_instructions_need_their_facts() -> None:
    bare = "Greet the resident by name.\nMention the reference number.\n"
    assert answer(bare) == "Dear resident, Thank you for your message about your enquiry."
    other_topic = FULL.replace("Topic: council-tax", "Topic: bins")
    assert "payment plan" not in answer(other_topic)
    assert "about bins." in answer(other_topic)


def test_lines_match_loosely_and_unknown_lines_are_ignored() -> None:
    loose = "* GREET THE RESIDENT BY NAME\n  • apologise for the delay.  \nBe nice.\n" + FACTS
    assert answer(loose) == (
        "Dear Ann Lee, Thank you for your message about council tax. We are sorry for the delay."
    )
    assert answer(loose + "Write a sonnet.\n") == answer(loose)


def test_the_order_of_instructions_does_not_matter() -> None:
    lines = FULL.splitlines()
    assert answer("\n".join([lines[0], *reversed(lines[1:5]), *lines[5:]])) == answer(FULL)


def test_phrases_sign_off_and_word_limit() -> None:
    prompt = (
        "Include the phrase 'Call us on 0100.'\n"
        'Include the phrase "Stay well."\n'
        "Sign off as the Revenues Team.\n" + FACTS
    )
    assert answer(prompt) == (
        "Hello, Thank you for your message about council tax. Call us on 0100. Stay well. "
        "Kind regards, the Revenues Team"
    )
    limited = answer(FULL + "Keep it under 6 words.\n")
    assert limited == "Dear Ann Lee, Thank you"
    assert count_tokens(limited) == 5


def test_json_answers_carry_the_keys_asked_for_in_order() -> None:
    text = answer(FULL + "Answer in JSON with keys reply, topic and next_step.\n")
    parsed = json.loads(text)
    assert list(parsed) == ["reply", "topic", "next_step"]
    assert parsed["reply"] == answer(FULL)
    assert parsed["topic"] == "council-tax" and parsed["next_step"] == NEXT_STEP
    odd = json.loads(answer(FACTS + "Answer in JSON with keys reference and mood.\n"))
    assert odd == {"reference": "CT-1234", "mood": None}


# --- judge prompts ------------------------------------------------------------------

JUDGE = (
    "You are grading a reply to a resident.\n"
    "Score from 1 to 5.\n"
    "- +1 if the reply contains 'payment plan'\n"
    "- +1 if the reply starts with 'Dear'\n"
    '- +1 if the reply contains "Ref "\n'
    "- +1 if the reply has fewer than 100 words\n"
    "- +1 if the reply is polite\n"  # not a known condition: counts nothing
    "Reply:\n"
)


def test_a_judge_scores_a_reply_against_its_criteria() -> None:
    assert answer(JUDGE + answer(FULL)) == "Score: 5"
    assert answer(JUDGE + answer(FACTS)) == "Score: 2"  # only the word count holds
    assert answer(JUDGE + "") == "Score: 2"


def test_a_judge_clamps_to_its_scale_and_counts_penalties() -> None:
    judge = (
        "You are grading a reply.\nScore from 1 to 3.\n"
        "+2 if the reply contains 'a'\n+2 if the reply contains 'b'\n"
        "-5 if the reply ends with 'z'\nReply: ab\n"
    )
    assert answer(judge) == "Score: 3"
    assert answer(judge.replace("Reply: ab", "Reply: abz")) == "Score: 1"
    unscaled = "You are grading a reply\n- -2 if the reply does not contain 'x'\nReply: y"
    assert answer(unscaled) == "Score: -2"


def test_a_judge_reads_criteria_outside_the_reply_only_and_can_answer_json() -> None:
    judge = (
        "You are grading a reply.\nReply:\n"
        "- +1 if the reply contains 'Dear'\n"  # inside the reply: not a criterion
        "End of reply.\n"
        "- +1 if the reply is valid JSON\n"
        "Answer in JSON with key score.\n"
    )
    assert json.loads(answer(judge)) == {"score": 0}
    assert json.loads(answer(judge.replace("- +1 if the reply contains 'Dear'", "[1]"))) == {
        "score": 1
    }


# --- temperature --------------------------------------------------------------------


def test_temperature_drops_at_most_one_instruction_as_documented() -> None:
    rules = FULL.splitlines()[1:5]
    for seed in range(40):
        text = answer(FULL, seed=seed, temperature=1.0)
        digest = hashlib.sha256(f"{seed}:{FULL}".encode()).hexdigest()
        if int(digest[:8], 16) / 2**32 < 0.5:
            dropped = rules[int(digest[8:16], 16) % 4]
            expected = answer(FULL.replace(dropped + "\n", ""))
        else:
            expected = answer(FULL)
        assert text == expected, seed
    texts = {answer(FULL, seed=s, temperature=1.0) for s in range(40)}
    assert answer(FULL) in texts and len(texts) > 2
    assert answer(FULL, seed=3, temperature=0.0) == answer(FULL)
    assert answer(FULL, temperature=2.0) == answer(FULL, temperature=2.0)


# --- over HTTP ----------------------------------------------------------------------


def test_an_answer_has_the_openai_shape_and_counts_words_as_tokens(stub: ChatStub) -> None:
    status, _, body = post(stub, chat(FULL, temperature=0.0, seed=1))
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "stub-chat-1"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": answer(FULL, seed=1)}
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(FULL.split())
    assert usage["completion_tokens"] == len(answer(FULL).split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_the_prompt_joins_every_message(stub: ChatStub) -> None:
    request = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Greet the resident by name."},
            {"role": "user", "content": FACTS},
        ],
    }
    _, _, body = post(stub, request)
    assert body["choices"][0]["message"]["content"].startswith("Dear Ann Lee,")


def test_answers_are_deterministic_per_prompt_and_seed(stub: ChatStub) -> None:
    def text(seed: int) -> str:
        _, _, body = post(stub, chat(FULL, temperature=1.0, seed=seed))
        return str(body["choices"][0]["message"]["content"])

    assert [text(s) for s in range(8)] == [text(s) for s in range(8)]
    assert len({text(s) for s in range(8)}) > 1


def test_max_tokens_cuts_the_answer(stub: ChatStub) -> None:
    _, _, body = post(stub, chat(FULL, max_tokens=3))
    assert body["choices"][0]["message"]["content"] == "Dear Ann Lee,"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_require_key_answers_401_without_the_bearer_key(stub: ChatStub) -> None:
    stub.require_key("secret-key-1")
    assert post(stub, chat("hi"))[0] == 401
    assert post(stub, chat("hi"), {"Authorization": "Bearer wrong"})[0] == 401
    assert post(stub, chat("hi"), {"Authorization": "Bearer secret-key-1"})[0] == 200
    assert stub.last_request is not None
    assert "authorization" not in stub.last_request["headers"]
    assert stub.statuses == {401: 2, 200: 1}


def test_rate_limit_fail_and_garble_apply_to_the_next_requests_in_order(stub: ChatStub) -> None:
    stub.rate_limit(2, retry_after_s=1.5)
    stub.fail_next(1, 503, message="overloaded")
    stub.garble_next(1, b'{"nope": 1}')
    first = post(stub, chat("hi"))
    assert first[0] == 429 and first[1]["retry-after"] == "1.5"
    assert first[2]["error"]["code"] == "rate_limit_exceeded"
    assert post(stub, chat("hi"))[0] == 429
    failed = post(stub, chat("hi"))
    assert failed[0] == 503 and failed[2]["error"]["message"] == "overloaded"
    assert post(stub, chat("hi"))[2] == {"nope": 1}
    assert post(stub, chat("hi"))[0] == 200
    assert stub.calls == 5
    assert [r.status for r in stub.log] == [429, 429, 503, 200, 200]
    assert stub.statuses == {429: 2, 503: 1, 200: 2}
    stub.reset()
    assert stub.calls == 0 and not stub.log and stub.max_in_flight == 0


def test_bad_requests_are_refused(stub: ChatStub) -> None:
    assert post(stub, b"not json")[0] == 400
    assert post(stub, {"model": "m"})[0] == 400
    assert post(stub, chat("hi"), path="/v2")[0] == 404
    too_big = json.dumps(chat("x" * MAX_REQUEST_BYTES)).encode()
    assert post(stub, too_big)[0] == 413


def test_models_are_listed(stub: ChatStub) -> None:
    port = int(stub.url.rsplit(":", 1)[1].split("/")[0])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/models")
        body = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert body["data"][0]["id"] == "stub-chat-1"


def test_importing_the_stub_loads_no_http_client_library() -> None:
    code = "import sys, releaser.demo.llm_stub\nprint('httpx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
