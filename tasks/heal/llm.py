"""Asking an OpenAI-compatible endpoint for a fix, with every way it can fail on one tree.

    LlmError
    ├── LlmUnavailable   no answer: transport error, timeout, 5xx or 429 after the SDK's
    │                    bounded retries, credentials refused (401/403), any other error status
    ├── LlmRefused       the model declined: `message.refusal` set, or the content filter cut it
    └── LlmMalformed     an answer that is not an AiFix: not JSON, off the schema, cut at the
                         length limit, or not a chat completion at all

Messages are one line and never hold the API key (an endpoint may echo it back in its error);
the SDK's exception is not chained, since its request and body can carry what ours leave out.
Retries are the SDK's alone (`max_retries`, with its backoff); nothing here loops.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import ValidationError

from immunity.models.errors import ImmunityError, RefusedError, UnavailableError
from immunity.models.fixes import AiFix
from immunity.tasks.shared.scrub import scrub_url

if TYPE_CHECKING:
    import openai
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

    from immunity.models.settings import Settings

__all__ = [
    "DEFAULT_BASE_URL",
    "LlmError",
    "LlmMalformed",
    "LlmRefused",
    "LlmUnavailable",
    "ask_for_fix",
    "make_client",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_MAX_DETAIL_CHARS = 300
# OpenAI-style keys (`sk-…`, `sk-proj-…`), also in the masked form OpenAI echoes in a 401.
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}")


class LlmError(ImmunityError):
    """The model gave no usable fix."""


class LlmUnavailable(LlmError, UnavailableError):
    """The endpoint did not answer: unreachable, too slow, overloaded, or refusing the key."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LlmRefused(LlmError, RefusedError):
    """The model answered that it will not help (a refusal or the content filter)."""


class LlmMalformed(LlmError):
    """The answer cannot be read as an AiFix."""


def make_client(settings: Settings) -> OpenAI | None:
    """Return a client for the configured endpoint, or None when no API key is set."""
    if settings.llm_api_key is None or not settings.llm_api_key.get_secret_value():
        return None
    from openai import OpenAI  # the SDK costs ~0.7 s to import: only where a key is set

    return OpenAI(
        api_key=settings.llm_api_key.get_secret_value(),
        base_url=settings.llm_base_url or DEFAULT_BASE_URL,
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )


def ask_for_fix(client: OpenAI, *, model: str, messages: list[dict[str, str]]) -> AiFix:
    """Return the model's fix parsed into AiFix; raise an LlmError subclass when there is none."""
    import openai

    key = client.api_key if isinstance(client.api_key, str) else ""
    try:
        # The raw form keeps the HTTP exchange (errors the SDK retries) apart from reading the
        # answer: for a 200 whose body is not a chat completion, openai 3.52's parser fails with
        # AttributeError or TypeError, which must not be taken for a bug of ours.
        raw = client.chat.completions.with_raw_response.parse(
            model=model,
            messages=_as_params(messages),
            response_format=AiFix,
            temperature=0,
        )
    except openai.APITimeoutError:
        raise LlmUnavailable(
            f"the LLM did not answer within {client.timeout}s "
            f"({client.max_retries + 1} attempt(s)) at {_where(client)}"
        ) from None
    except openai.APIConnectionError as error:
        cause = error.__cause__ or error
        raise LlmUnavailable(
            f"the LLM endpoint {_where(client)} is unreachable "
            f"({client.max_retries + 1} attempt(s)): "
            + _detail(f"{type(cause).__name__}: {cause}", key)
        ) from None
    except openai.APIStatusError as error:
        raise LlmUnavailable(_status_message(error, key), status_code=error.status_code) from None
    except openai.OpenAIError as error:
        raise LlmError(_detail(f"{type(error).__name__}: {error}", key)) from None

    try:
        completion = raw.parse()
    except openai.LengthFinishReasonError:
        raise LlmMalformed("the answer was cut at the length limit") from None
    except openai.ContentFilterFinishReasonError:
        raise LlmRefused("the answer was withheld by the endpoint's content filter") from None
    except ValidationError as error:
        raise LlmMalformed(_validation_message(error)) from None
    except (AttributeError, TypeError):
        content_type = raw.headers.get("content-type", "none")
        raise LlmMalformed(
            f"the endpoint's answer is not a chat completion (content-type {content_type})"
        ) from None

    if not completion.choices:
        raise LlmMalformed("the answer has no choices")
    message = completion.choices[0].message
    if message.refusal:
        raise LlmRefused("the model refused: " + _detail(message.refusal, key))
    if message.parsed is None:
        raise LlmMalformed("the answer has no content")
    return message.parsed


def _as_params(messages: list[dict[str, str]]) -> list[ChatCompletionMessageParam]:
    # The SDK types each role's message separately; build_messages only makes system and user.
    params: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message["role"] == "system":
            params.append({"role": "system", "content": message["content"]})
        elif message["role"] == "user":
            params.append({"role": "user", "content": message["content"]})
        else:
            raise ValueError(f"unexpected message role {message['role']!r}")
    return params


def _where(client: OpenAI) -> str:
    return scrub_url(str(client.base_url))


def _detail(text: str, key: str) -> str:
    """Return text on one line, bounded, without the key or anything shaped like one."""
    if key:
        text = text.replace(key, "[redacted]")
    text = _KEY_LIKE.sub("sk-[redacted]", text)
    text = " ".join(text.split())
    if len(text) > _MAX_DETAIL_CHARS:
        text = text[: _MAX_DETAIL_CHARS - 1] + "…"
    return text


def _status_message(error: openai.APIStatusError, key: str) -> str:
    status = error.status_code
    body = error.body if isinstance(error.body, dict) else {}
    said = body.get("message") if isinstance(body.get("message"), str) else ""
    code = f" {error.code}" if error.code else ""
    if status in (401, 403):
        what = "refused the API key"
    elif status == 429 or status >= 500:
        # The SDK stamps each attempt with how many retries came before it.
        retries = error.response.request.headers.get("x-stainless-retry-count", "0")
        what = f"kept failing after {retries} retries"
    else:
        what = "rejected the request"
    return _detail(f"the LLM endpoint {what} (HTTP {status}{code}): {said or 'no message'}", key)


def _validation_message(error: ValidationError) -> str:
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0] if problems else {}
    where = ".".join(str(part) for part in first.get("loc", ())) or "answer"
    return _detail(
        f"the answer is not an AiFix ({error.error_count()} problem(s)); "
        f"{where}: {first.get('msg', 'invalid')}",
        "",
    )
