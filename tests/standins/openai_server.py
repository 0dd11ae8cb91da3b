"""An OpenAI-compatible Chat Completions server on 127.0.0.1: real HTTP, scripted replies.

    with OpenAIStandin() as llm:
        llm.reply_error(500, "overloaded")
        llm.reply_json({"root_cause": "...", ...})
        client = OpenAI(api_key="sk-test", base_url=llm.base_url, max_retries=1)
        ...
        assert len(llm.requests) == 2

Scripted replies are answered in order; once they run out, `responder(body)` answers (set it to
compute a reply from the prompt); with neither, the request gets a 400 saying so. Errors have
OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`). With `api_key` set, a request
without `Authorization: Bearer <api_key>` gets OpenAI's 401, which echoes the key it was given
in full (OpenAI masks its middle) so that a test can prove the caller never repeats it.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = ["OpenAIStandin", "Reply"]

COMPLETIONS_PATH = "/v1/chat/completions"

# The `type` OpenAI gives each status's errors.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class Reply:
    """One answer: a completion (content, refusal) or, with status >= 400, an OpenAI error."""

    status: int = 200
    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    error_message: str = ""
    error_code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: str | None = None
    content_type: str = "application/json"

    @classmethod
    def of_json(cls, obj: Any) -> Reply:
        """A completion whose content is `json.dumps(obj)`: a structured-output answer."""
        return cls(content=json.dumps(obj))

    @classmethod
    def of_content(cls, text: str, *, finish_reason: str = "stop") -> Reply:
        """A completion with this raw content (use it for malformed answers)."""
        return cls(content=text, finish_reason=finish_reason)

    @classmethod
    def of_refusal(cls, text: str) -> Reply:
        """A completion in which the model refuses: content null, `refusal` set."""
        return cls(refusal=text)

    @classmethod
    def of_raw(cls, text: str, *, status: int = 200, content_type: str = "text/html") -> Reply:
        """A body sent as it is, not a chat completion (a proxy's HTML page, say)."""
        return cls(status=status, raw=text, content_type=content_type)

    @classmethod
    def of_error(
        cls,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An OpenAI-shaped error with this status (`headers` e.g. `retry-after-ms`)."""
        if status < 400:
            raise ValueError(f"an error reply needs a status >= 400, not {status}")
        return cls(status=status, error_message=message, error_code=code, headers=headers or {})

    def encode(self, request: Mapping[str, Any], serial: int) -> bytes:
        """Return the bytes of the body answering `request`."""
        if self.raw is not None:
            return self.raw.encode()
        return json.dumps(self.render(request, serial)).encode()

    def render(self, request: Mapping[str, Any], serial: int) -> dict[str, Any]:
        """Return the JSON body OpenAI would send for this reply to `request`."""
        if self.status >= 400:
            return {
                "error": {
                    "message": self.error_message,
                    "type": _ERROR_TYPES.get(self.status, "server_error"),
                    "param": None,
                    "code": self.error_code,
                }
            }
        prompt_tokens = len(json.dumps(request.get("messages", []))) // 4
        completion_tokens = len(self.content or self.refusal or "") // 4
        return {
            "id": f"chatcmpl-standin{serial:08d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model", "standin")),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": self.content,
                        "refusal": self.refusal,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_standin",
        }


@dataclass(frozen=True)
class _Delay:
    seconds: float


class OpenAIStandin:
    """A Chat Completions endpoint on 127.0.0.1 answering from a script, then a responder."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        responder: Callable[[dict[str, Any]], Reply] | None = None,
    ) -> None:
        self.api_key = api_key
        self.responder = responder
        self._lock = threading.Lock()
        self._script: list[Reply | _Delay] = []
        self._requests: list[dict[str, Any]] = []
        self._headers: list[dict[str, str]] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._closed = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        # A responder that crashed is a bug in the test: say so unless the test already failed.
        if exc is None and self._errors:
            raise self._errors[0]

    def start(self) -> None:
        """Listen on 127.0.0.1 on a free port and serve in a background thread."""
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-standin",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, wake delayed replies and cut open connections; returns promptly."""
        if self._server is None:
            return
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as `base_url`: `http://127.0.0.1:<port>/v1`."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # --- what it received -----------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far, in order (recorded before any delay)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_headers(self) -> list[dict[str, str]]:
        """The headers of each received request (names lower-cased), parallel to `requests`."""
        with self._lock:
            return [dict(headers) for headers in self._headers]

    @property
    def pending(self) -> int:
        """How many scripted replies are not yet used."""
        with self._lock:
            return sum(isinstance(item, Reply) for item in self._script)

    # --- scripting ------------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        """Queue a reply for the next request that has none yet."""
        with self._lock:
            self._script.append(reply)

    def reply_json(self, obj: Any) -> None:
        self.reply(Reply.of_json(obj))

    def reply_content(self, text: str, *, finish_reason: str = "stop") -> None:
        self.reply(Reply.of_content(text, finish_reason=finish_reason))

    def reply_refusal(self, text: str) -> None:
        self.reply(Reply.of_refusal(text))

    def reply_error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.reply(Reply.of_error(status, message, code=code, headers=headers))

    def reply_raw(self, text: str, *, status: int = 200, content_type: str = "text/html") -> None:
        self.reply(Reply.of_raw(text, status=status, content_type=content_type))

    def reply_delay(self, seconds: float) -> None:
        """Wait this long (after recording the request) before sending the next scripted reply."""
        with self._lock:
            self._script.append(_Delay(seconds))

    # --- serving --------------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[Reply, int]:
        """Record the request; return its reply (a script's delays folded in) and its number."""
        with self._lock:
            self._requests.append(body)
            self._headers.append(headers)
            serial = len(self._requests)
        if self.api_key is not None:
            given = headers.get("authorization", "").removeprefix("Bearer ")
            if given != self.api_key:
                message = (
                    f"Incorrect API key provided: {given}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                )
                return Reply.of_error(401, message, code="invalid_api_key"), serial
        with self._lock:
            delay = 0.0
            while self._script and isinstance(self._script[0], _Delay):
                delay += self._script.pop(0).seconds  # type: ignore[union-attr]
            reply = self._script.pop(0) if self._script else None
        if reply is None and self.responder is not None:
            try:
                reply = self.responder(body)
            except Exception as error:  # reported when the stand-in closes
                with self._lock:
                    self._errors.append(error)
                reply = Reply.of_error(
                    500,
                    f"stand-in responder failed: {error!r}",
                    headers={"x-should-retry": "false"},
                )
        if reply is None:
            reply = Reply.of_error(400, "OpenAIStandin: no scripted reply and no responder")
        return (replace(reply, delay_s=reply.delay_s + delay) if delay else reply), serial

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a reply still waiting must not hold up the end of a test

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is expected here, not worth a traceback.
        if isinstance(sys.exception(), OSError):
            return
        super().handle_error(request, client_address)


def _make_handler(standin: OpenAIStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # otherwise every reply waits ~40 ms for a delayed ACK

        def setup(self) -> None:
            super().setup()
            standin._track(self.connection, open_=True)

        def finish(self) -> None:
            standin._track(self.connection, open_=False)
            super().finish()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.split("?", 1)[0] != COMPLETIONS_PATH:
                self._send(Reply.of_error(404, f"Invalid URL (POST {self.path})"), {}, serial=0)
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(Reply.of_error(400, "We could not parse the JSON body."), {}, serial=0)
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            reply, serial = standin._answer(body, headers)
            if reply.delay_s and standin._closed.wait(reply.delay_s):
                self.close_connection = True  # closing: give up on this reply
                return
            self._send(reply, body, serial=serial)

        def do_GET(self) -> None:
            self._send(Reply.of_error(404, f"Invalid URL (GET {self.path})"), {}, serial=0)

        def _send(self, reply: Reply, request: Mapping[str, Any], *, serial: int) -> None:
            payload = reply.encode(request, serial)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-request-id", f"req_standin{serial:08d}")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
