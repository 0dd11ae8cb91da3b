"""Asking the model for a fix, against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from immunity.models.fixes import AiFix
from immunity.models.settings import Settings
from immunity.tasks.heal.llm import (
    LlmMalformed,
    LlmRefused,
    LlmUnavailable,
    ask_for_fix,
    make_client,
)
from immunity.tasks.heal.prompt import build_messages
from tests.standins.openai_server import OpenAIStandin, Reply
from tests.tasks.heal.test_prompt import make_context

API_KEY = "sk-test-KEY0123456789abcdefSECRET"
TIMEOUT_S = 0.5
GOOD: dict[str, Any] = {
    "root_cause": "charge() divides by the quantity, which can be 0.",
    "diff": "diff --git a/app/payments.py b/app/payments.py\n",
    "explanation": "Guard the zero quantity.",
    "confidence": 0.8,
    "risk_level": "low",
    "risk_reasons": ["one line"],
    "files_touched": ["app/payments.py"],
}
MESSAGES = [{"role": "system", "content": "rules"}, {"role": "user", "content": "data"}]


@pytest.fixture
def llm() -> Iterator[OpenAIStandin]:
    with OpenAIStandin(api_key=API_KEY) as standin:
        yield standin


def client_for(base_url: str, *, max_retries: int = 0, key: str = API_KEY) -> OpenAI:
    settings = Settings(
        llm_api_key=key,
        llm_base_url=base_url,
        llm_timeout_s=TIMEOUT_S,
        llm_max_retries=max_retries,
    )
    client = make_client(settings)
    assert client is not None
    return client


def ask(llm: OpenAIStandin, *, max_retries: int = 0, key: str = API_KEY) -> AiFix:
    with client_for(llm.base_url, max_retries=max_retries, key=key) as client:
        return ask_for_fix(client, model="gpt-test", messages=MESSAGES)


def test_no_key_means_no_client() -> None:
    assert make_client(Settings(llm_api_key=None)) is None
    assert make_client(Settings(llm_api_key="")) is None


def test_a_structured_reply_parses_and_the_server_got_the_built_messages(
    llm: OpenAIStandin,
) -> None:
    messages = build_messages(make_context(), with_source=True)
    llm.reply_json(GOOD)

    with client_for(llm.base_url) as client:
        fix = ask_for_fix(client, model="gpt-test", messages=messages)

    assert fix == AiFix.model_validate(GOOD)
    [body] = llm.requests
    assert body["messages"] == messages
    assert body["model"] == "gpt-test"
    assert body["temperature"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "AiFix"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert llm.request_headers[0]["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    "reply",
    [
        Reply.of_content("Sure! Here is the fix: ..."),
        Reply.of_json({**GOOD, "confidence": 1.5}),
        Reply.of_json({key: value for key, value in GOOD.items() if key != "diff"}),
        Reply.of_json({**GOOD, "risk_level": "apocalyptic"}),
        Reply.of_content('{"root_cause": "cut her', finish_reason="length"),
        Reply.of_content(""),
        Reply.of_raw("<html><body>Proxy login</body></html>"),
        Reply.of_raw('{"status": "ok"}', content_type="application/json"),
    ],
    ids=["prose", "off-bounds", "missing-field", "bad-enum", "length", "empty", "html", "json"],
)
def test_an_answer_that_is_not_an_aifix_is_malformed(llm: OpenAIStandin, reply: Reply) -> None:
    llm.reply(reply)

    with pytest.raises(LlmMalformed):
        ask(llm, max_retries=2)
    assert len(llm.requests) == 1  # a bad answer is not retried


def test_a_refusal_and_the_content_filter_are_refusals(llm: OpenAIStandin) -> None:
    llm.reply_refusal("I can't help with editing workflow files.")
    llm.reply_content("", finish_reason="content_filter")

    with pytest.raises(LlmRefused, match="I can't help with editing workflow files"):
        ask(llm)
    with pytest.raises(LlmRefused, match="content filter"):
        ask(llm)


@pytest.mark.parametrize("max_retries", [0, 1])
def test_a_reply_slower_than_the_timeout_is_unavailable_after_bounded_retries(
    llm: OpenAIStandin, max_retries: int
) -> None:
    for _ in range(max_retries + 1):
        llm.reply_delay(10)
        llm.reply_json(GOOD)

    started = time.monotonic()
    with pytest.raises(LlmUnavailable, match="did not answer"):
        ask(llm, max_retries=max_retries)
    elapsed = time.monotonic() - started

    assert len(llm.requests) == 1 + max_retries
    # Each attempt waits the timeout; the SDK's first backoff is at most 0.5 s.
    assert TIMEOUT_S * (1 + max_retries) <= elapsed < TIMEOUT_S * (1 + max_retries) + 0.5 + 1.0
    started = time.monotonic()
    llm.close()  # replies still waiting out their delay do not hold it up
    assert time.monotonic() - started < 1.0


def test_a_server_error_then_a_good_reply_succeeds_on_the_retry(llm: OpenAIStandin) -> None:
    llm.reply_error(500, "The server had an error while processing your request.")
    llm.reply_json(GOOD)

    assert ask(llm, max_retries=1) == AiFix.model_validate(GOOD)
    assert [h["x-stainless-retry-count"] for h in llm.request_headers] == ["0", "1"]


def test_a_responder_answers_from_the_prompt_once_the_script_is_used(llm: OpenAIStandin) -> None:
    def responder(body: dict[str, Any]) -> Reply:
        user = body["messages"][1]["content"]
        return Reply.of_json({**GOOD, "root_cause": f"the user said {user!r}"})

    llm.responder = responder
    llm.reply_error(503, "Overloaded.", headers={"retry-after-ms": "10"})

    assert ask(llm, max_retries=1).root_cause == "the user said 'data'"
    assert len(llm.requests) == 2 and llm.pending == 0


@pytest.mark.parametrize("status", [429, 500, 503])
def test_errors_that_persist_are_unavailable_after_the_sdks_retries(
    llm: OpenAIStandin, status: int
) -> None:
    for _ in range(3):
        # OpenAI sends the wait with a 429; the SDK honours it, so the test stays fast.
        llm.reply_error(status, "Try again later.", headers={"retry-after-ms": "10"})

    with pytest.raises(LlmUnavailable, match=f"HTTP {status}") as raised:
        ask(llm, max_retries=2)

    assert raised.value.status_code == status
    assert len(llm.requests) == 3
    assert "after 2 retries" in str(raised.value)


@pytest.mark.parametrize("wrong", ["sk-wrong-0123456789abcdefWRONG", "proxy-key-0123456789abcdef"])
def test_a_wrong_key_is_unavailable_at_once_and_never_repeated(
    llm: OpenAIStandin, wrong: str
) -> None:
    with pytest.raises(LlmUnavailable, match="HTTP 401") as raised:
        ask(llm, max_retries=2, key=wrong)

    assert raised.value.status_code == 401
    assert len(llm.requests) == 1  # 401 is not retried
    # The stand-in echoed the key in its error body; the message must not repeat it.
    assert_key_absent(raised.value, wrong)


def test_an_unreachable_endpoint_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with client_for(f"http://127.0.0.1:{port}/v1") as client:
        with pytest.raises(LlmUnavailable, match="unreachable"):
            ask_for_fix(client, model="gpt-test", messages=MESSAGES)


@pytest.mark.parametrize(
    "reply",
    [
        Reply.of_error(400, f"Invalid request with key {API_KEY}"),
        Reply.of_error(500, f"upstream rejected {API_KEY}", headers={"x-should-retry": "false"}),
        Reply.of_refusal(f"I will not use {API_KEY}"),
        Reply.of_content(f"{API_KEY} is not JSON"),
    ],
    ids=["400", "500", "refusal", "malformed"],
)
def test_the_api_key_never_appears_in_an_error(llm: OpenAIStandin, reply: Reply) -> None:
    llm.reply(reply)

    with pytest.raises((LlmUnavailable, LlmRefused, LlmMalformed)) as raised:
        ask(llm)

    assert_key_absent(raised.value, API_KEY)


def assert_key_absent(error: BaseException, key: str) -> None:
    shown = "".join(traceback.format_exception(error))
    assert key not in shown
    assert key[8:24] not in shown  # nor a long piece of it
    assert "\n" not in str(error)  # one line
