"""Failure and success events built from a request, its traceback and its response."""

from __future__ import annotations

import json
import linecache
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from starlette.datastructures import URL
from starlette.types import Scope

__all__ = [
    "IN_APP_PREFIX",
    "build_failure_event",
    "build_success_event",
    "capture_request",
    "frames_from_traceback",
    "list_counts",
    "route_template",
]

Event = dict[str, Any]
# The package the service runs from: `examples.` in a working copy, `immunity.examples.` installed.
IN_APP_PREFIX = __name__.partition("sample_service")[0]
MAX_CAPTURED_BODY = 1_000_000


def _utcnow_iso() -> str:
    return datetime.now(UTC).isoformat()


def frames_from_traceback(
    tb: TracebackType | None, *, skip_modules: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Return the traceback's frames, outermost first, skipping frames of `skip_modules`."""
    skipped = set(skip_modules)
    frames: list[dict[str, Any]] = []
    while tb is not None:
        frame, lineno = tb.tb_frame, tb.tb_lineno
        module = str(frame.f_globals.get("__name__", ""))
        if module not in skipped:
            filename = frame.f_code.co_filename
            context_line = linecache.getline(filename, lineno, frame.f_globals).strip()
            frames.append(
                {
                    "filename": filename,
                    "module": module,
                    "function": frame.f_code.co_name,
                    "lineno": lineno,
                    "in_app": module.startswith(IN_APP_PREFIX),
                    "context_line": context_line or None,
                }
            )
        tb = tb.tb_next
    return frames


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _parse_body(body: bytes, content_type: str) -> Any:
    if not body or len(body) > MAX_CAPTURED_BODY:
        return None
    text = body.decode("utf-8", errors="replace")
    if "json" in content_type.lower():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def capture_request(scope: Scope, body: bytes) -> dict[str, Any]:
    """Return the request as immunity replays it: method, full URL, every header, body."""
    headers = _headers(scope)
    return {
        "method": scope.get("method", "GET"),
        "url": str(URL(scope=scope)),
        "headers": headers,
        "body": _parse_body(body, headers.get("content-type", "")),
    }


def route_template(scope: Scope) -> str:
    """Return the matched route's path template (`/api/jobs/{job_id}`), else the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else str(scope.get("path", ""))


def build_failure_event(
    exc: BaseException,
    *,
    request: dict[str, Any] | None,
    status_code: int | None,
    environment: str,
    release: str | None,
    user: str | None = None,
    tags: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    skip_modules: Iterable[str] = (),
) -> Event:
    """Return the failure event for an exception, in the shape immunity's FailureEventIn takes."""
    exc_context = getattr(exc, "context", None)
    merged_context = dict(context or {})
    if isinstance(exc_context, dict):
        merged_context.update(exc_context)
    return {
        "error_type": type(exc).__name__,
        "message": str(exc),
        "frames": frames_from_traceback(exc.__traceback__, skip_modules=skip_modules),
        "stacktrace": "".join(traceback.format_exception(exc)),
        "received_at": _utcnow_iso(),
        "environment": environment,
        "release": release,
        "request": request,
        "status_code": status_code,
        "user": user,
        "tags": dict(tags or {}),
        "context": merged_context,
        "source": "python",
    }


def list_counts(payload: Any) -> dict[str, int]:
    """Return the number of items of each top-level list field, keyed `$.<field>`."""
    if not isinstance(payload, dict):
        return {}
    return {f"$.{key}": len(value) for key, value in payload.items() if isinstance(value, list)}


def build_success_event(
    operation: str, duration_ms: float, environment: str, payload: Any = None
) -> Event:
    """Return the success event of one API call."""
    return {
        "operation": operation,
        "duration_ms": round(max(duration_ms, 0.0), 3),
        "received_at": _utcnow_iso(),
        "environment": environment,
        "list_counts": list_counts(payload),
    }
