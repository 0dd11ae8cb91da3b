"""The part every JSON API stand-in shares: a real HTTP/1.1 server on 127.0.0.1, requests recorded.

A subclass routes each request in `answer(request) -> Answer`; this class serves, records and
shuts down. A crash in `answer` is a bug in the stand-in or the test: the client gets a 500 and
the error is raised again when the stand-in closes (unless the test already failed).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Answer", "JsonStandin", "Recorded"]


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # the parsed JSON, the raw text when it is not JSON, None when empty


@dataclass(frozen=True)
class Answer:
    """One reply: a status, a JSON body (none for None) and extra headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class JsonStandin:
    """A JSON API on 127.0.0.1 on a free port, served from a background thread."""

    name = "standin"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._requests: list[Recorded] = []
        self._errors: list[BaseException] = []
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def answer(self, request: Recorded) -> Answer:
        """Return the reply to `request` (subclasses route here)."""
        raise NotImplementedError

    def extra_headers(self, request: Recorded) -> Mapping[str, str]:
        """Return the headers every reply carries (subclasses add their API's own)."""
        return {}

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
        if exc is None and self._errors:
            raise self._errors[0]

    def start(self) -> None:
        """Listen on 127.0.0.1 on a free port and serve in a background thread."""
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-standin",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and cut open keep-alive connections; returns promptly."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
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
        """`http://127.0.0.1:<port>`, no trailing slash."""
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far, in order."""
        with self.lock:
            return list(self._requests)

    # --- serving --------------------------------------------------------------------------------

    def _handle(self, request: Recorded) -> Answer:
        with self.lock:
            self._requests.append(request)
        try:
            return self.answer(request)
        except Exception as error:  # raised again when the stand-in closes
            with self.lock:
                self._errors.append(error)
            return Answer(500, {"message": f"stand-in crashed: {error!r}"})

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self.lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up is expected here, not worth a traceback.
        if isinstance(sys.exception(), OSError):
            return
        super().handle_error(request, client_address)


def _make_handler(standin: JsonStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # otherwise every reply waits ~40 ms for a delayed ACK

        def setup(self) -> None:
            super().setup()
            standin._track(self.connection, open_=True)

        def finish(self) -> None:
            standin._track(self.connection, open_=False)
            super().finish()

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            parts = urlsplit(self.path)
            request = Recorded(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            answer = standin._handle(request)
            self.send_response(answer.status)
            headers = {**standin.extra_headers(request), **answer.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            if answer.status in (204, 304):
                self.end_headers()
                return
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
