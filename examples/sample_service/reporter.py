"""Reporting to immunity as an instrumented app does: an ASGI middleware and a buffered Reporter."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .events import (
    build_failure_event,
    build_success_event,
    capture_request,
    frames_from_traceback,
    list_counts,
    route_template,
)
from .sinks import HttpSink, JsonlSink, Sink

__all__ = [
    "HttpSink",
    "JsonlSink",
    "Reporter",
    "ReportingMiddleware",
    "Sink",
    "build_failure_event",
    "build_success_event",
    "capture_request",
    "frames_from_traceback",
    "list_counts",
]

logger = logging.getLogger(__name__)

Event = dict[str, Any]


class Reporter:
    """Buffers events in memory; a background thread hands them to a sink in batches."""

    def __init__(
        self,
        sink: Sink,
        *,
        flush_interval_s: float = 1.0,
        max_buffer: int = 10_000,
        batch_size: int = 500,
    ) -> None:
        self.sink = sink
        self.flush_interval_s = flush_interval_s
        self.batch_size = max(1, batch_size)
        self._buffer: deque[tuple[str, Event]] = deque(maxlen=max(1, max_buffer))
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._closed = False
        self.captured = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="immunity-reporter", daemon=True)
        self._thread.start()

    def capture_failure(self, event: Event) -> None:
        """Queue one failure event; never blocks on I/O."""
        self._put("failure", event)

    def capture_success(self, event: Event) -> None:
        """Queue one success event; never blocks on I/O."""
        self._put("success", event)

    def _put(self, kind: str, event: Event) -> None:
        with self._cond:
            if self._closed:
                self.dropped += 1
                return
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1  # the oldest event makes room
            self._buffer.append((kind, event))
            self.captured += 1
            if len(self._buffer) >= self.batch_size:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closed or len(self._buffer) >= self.batch_size,
                    timeout=self.flush_interval_s,
                )
                closed = self._closed
            self._drain()
            if closed:
                return

    def _drain(self) -> None:
        # The write lock makes flush() wait for a batch the thread has taken but not yet written.
        with self._write_lock:
            with self._cond:
                batch = list(self._buffer)
                self._buffer.clear()
            if not batch:
                return
            failures = [event for kind, event in batch if kind == "failure"]
            successes = [event for kind, event in batch if kind == "success"]
            try:
                self.sink.write(failures, successes)
            except Exception:
                logger.exception("reporter sink failed; %d events lost", len(batch))

    def flush(self) -> None:
        """Block until every event buffered so far has been handed to the sink."""
        self._drain()

    def close(self) -> None:
        """Flush, stop the background thread and close the sink; later events are dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self._drain()
        try:
            self.sink.close()
        except Exception:
            logger.exception("closing the reporter sink failed")

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _default_status(exc: BaseException) -> int:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) and 400 <= status <= 599 else 500


class ReportingMiddleware:
    """Turns unhandled exceptions into JSON errors and reports failures and API successes."""

    def __init__(
        self,
        app: ASGIApp,
        reporter: Reporter | None = None,
        *,
        environment: str = "production",
        release: str | None = None,
        status_for: Callable[[BaseException], int] = _default_status,
        success_prefixes: tuple[str, ...] = ("/api/",),
        ignore_paths: frozenset[str] = frozenset({"/api/health"}),
        tags: dict[str, str] | None = None,
        propagate_errors: bool = False,
    ) -> None:
        self.app = app
        # An app instrumented with an error SDK (sentry-sdk) lets the exception reach the SDK's
        # own middleware, which captures it and answers 500.
        self.propagate_errors = propagate_errors
        self.reporter = reporter
        self.environment = environment
        self.release = release
        self.status_for = status_for
        self.success_prefixes = success_prefixes
        self.ignore_paths = ignore_paths
        self.tags = dict(tags or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body, replay = await _buffer_body(receive)
        path = str(scope.get("path", ""))
        wants_success = (
            self.reporter is not None
            and path.startswith(self.success_prefixes)
            and path not in self.ignore_paths
        )
        state: dict[str, Any] = {"status": None, "json": False, "chunks": []}

        async def capture_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                state["json"] = wants_success and b"json" in content_type
            elif message["type"] == "http.response.body":
                if state["json"]:
                    state["chunks"].append(message.get("body", b""))
                status = state["status"]
                last = not message.get("more_body", False)
                if last and wants_success and isinstance(status, int) and 200 <= status < 300:
                    # Captured before the last byte leaves: a client that saw the response
                    # and then flushes the reporter finds the event.
                    self._report_success(scope, state, started)
            await send(message)

        try:
            await self.app(scope, replay, capture_send)
        except Exception as exc:
            responded = state["status"] is not None
            status = state["status"] if responded else self.status_for(exc)
            self._report_failure(exc, scope, body, status)
            if responded or self.propagate_errors:
                raise
            await _send_error(send, status, exc)

    def _report_failure(self, exc: Exception, scope: Scope, body: bytes, status: int) -> None:
        if self.reporter is None:
            return
        try:
            request = capture_request(scope, body)
            template = route_template(scope)
            client = scope.get("client")
            event = build_failure_event(
                exc,
                request=request,
                status_code=status,
                environment=self.environment,
                release=self.release,
                user=request["headers"].get("x-user"),
                tags={**self.tags, "route": template, "method": request["method"]},
                context={
                    "route": template,
                    "path_params": dict(scope.get("path_params", {})),
                    "query": scope.get("query_string", b"").decode("latin-1"),
                    "client": client[0] if client else None,
                },
                skip_modules={__name__},
            )
            self.reporter.capture_failure(event)
        except Exception:
            logger.exception("could not report a failure")

    def _report_success(self, scope: Scope, state: dict[str, Any], started: float) -> None:
        if self.reporter is None:
            return
        try:
            payload: Any = None
            if state["json"]:
                raw = b"".join(state["chunks"])
                payload = json.loads(raw) if raw else None
            operation = f"{scope.get('method', 'GET')} {route_template(scope)}"
            duration_ms = (time.perf_counter() - started) * 1000
            event = build_success_event(operation, duration_ms, self.environment, payload)
            self.reporter.capture_success(event)
        except Exception:
            logger.exception("could not report a success")


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    # Read the whole body first so a failure can report it; the app then reads it from memory.
    chunks: list[bytes] = []
    disconnected: Message | None = None
    while True:
        message = await receive()
        if message["type"] != "http.request":
            disconnected = message
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if disconnected is not None:
            return disconnected
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _send_error(send: Send, status: int, exc: BaseException) -> None:
    payload = json.dumps({"detail": str(exc), "error": type(exc).__name__}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
