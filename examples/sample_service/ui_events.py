"""A page's JavaScript error as the browser reports it, and the failure event it becomes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["Breadcrumb", "ClientErrorIn", "browser_failure_event", "parse_js_stack"]

MAX_FRAMES = 50
# V8 (Chromium, Node): `    at fn (http://host/static/ui.js:12:5)` or `    at http://host/x.js:1:2`.
_V8_FRAME = re.compile(r"^\s*at (?:(?P<function>.+?) \()?(?P<location>\S+?):(?P<line>\d+):\d+\)?$")
# SpiderMonkey and JavaScriptCore: `fn@http://host/static/ui.js:12:5`.
_GECKO_FRAME = re.compile(r"^\s*(?P<function>[^@\s]*)@(?P<location>\S+?):(?P<line>\d+):\d+$")
_CALL_PREFIX = re.compile(r"^(?:async |new )+")


class Breadcrumb(BaseModel):
    """One user action on the page before the error, shaped like a UI test step."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["click", "type", "select", "submit"]
    selector: str = Field(min_length=1, max_length=1_000)
    value: str | None = Field(default=None, max_length=2_000)


class ClientErrorIn(BaseModel):
    """What a page posts to /api/client-errors when a script error goes uncaught."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1, max_length=4_096)
    message: str = Field(default="", max_length=10_000)
    name: str = Field(default="Error", min_length=1, max_length=200)
    stack: str | None = Field(default=None, max_length=100_000)
    breadcrumbs: list[Breadcrumb] = Field(default_factory=list, max_length=100)

    @field_validator("url")
    @classmethod
    def _page_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("url must be the page's http(s) URL")
        return url


def parse_js_stack(stack: str, page_url: str) -> list[dict[str, Any]]:
    """Return the frames of a JavaScript `error.stack`, outermost first (as Python orders them).

    A frame's filename is its script URL's path; scripts from the page's own origin are in-app.
    Lines that are not frames (the message line, native frames without a location) are skipped.
    """
    origin = urlsplit(page_url).netloc
    frames: list[dict[str, Any]] = []
    for line in stack.splitlines():
        match = _V8_FRAME.match(line.rstrip()) or _GECKO_FRAME.match(line.rstrip())
        if match is None:
            continue
        location = urlsplit(match["location"])
        function = _CALL_PREFIX.sub("", (match["function"] or "").strip())
        frames.append(
            {
                "function": function or "<anonymous>",
                "filename": location.path or match["location"],
                "lineno": int(match["line"]),
                "in_app": location.netloc in ("", origin),
            }
        )
    # JavaScript prints the innermost frame first.
    return frames[:MAX_FRAMES][::-1]


def browser_failure_event(
    report: ClientErrorIn,
    *,
    environment: str,
    release: str | None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Return the failure event of a page error, in the shape immunity's FailureEventIn takes.

    `headers` are those of the page's report worth keeping: a browser driven by immunity marks
    its requests (`X-Immunity-Replay`), and the mark travels with the event so a replay's error
    is not counted as an occurrence.
    """
    return {
        "error_type": report.name,
        "message": report.message,
        "frames": parse_js_stack(report.stack or "", report.url),
        "stacktrace": report.stack,
        "received_at": datetime.now(UTC).isoformat(),
        "environment": environment,
        "release": release,
        "request": {"method": "GET", "url": report.url, "headers": dict(headers or {})},
        "status_code": None,
        "user": None,
        "tags": {"source": "browser"},
        "context": {
            "breadcrumbs": [crumb.model_dump(exclude_none=True) for crumb in report.breadcrumbs],
            "page": urlsplit(report.url).path or "/",
        },
        "source": "browser",
    }
