"""How complete a captured request is, and whether a replay failed the way the signature did.

Error SDKs do not always keep what a replay needs: a body declared by the headers but absent
(the real sentry-sdk sends `data: ""` for bodies it will not send), a body cut to a size limit, or
values scrubbed before storage that the request needs. A replay of such a capture may pass while
the bug is still there, so these are named up front and the test is checked before it is trusted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from immunity.tasks.shared.scrub import FILTERED

__all__ = [
    "capture_issues",
    "capture_score",
    "most_complete",
    "reproduction_verdict",
    "status_class",
]

T = TypeVar("T")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CUT_MARKS = ("[…]", "…[truncated ")
_TRUNCATED = re.compile(r"…\[truncated \d+ chars\]")


def _headers(request: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (request.get("headers") or {}).items()}


def _scrubbed_paths(value: Any, path: str = "$") -> list[str]:
    # A secret found inside a text (`password=[Filtered]&user=ada`) is scrubbed all the same.
    if isinstance(value, str) and FILTERED in value:
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _scrubbed_paths(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _scrubbed_paths(item, f"{path}[{i}]")]
    return []


def _cut(value: Any) -> bool:
    if isinstance(value, str):
        return value in _CUT_MARKS or bool(_TRUNCATED.search(value))
    if isinstance(value, dict):
        return any(_cut(item) for item in value.values()) or "…" in value
    if isinstance(value, list):
        return any(_cut(item) for item in value)
    return False


def capture_issues(request: Mapping[str, Any] | None) -> list[str]:
    """Return what the captured request lacks for a faithful replay, one sentence each."""
    if not request:
        return ["no request was captured"]
    issues = []
    method = str(request.get("method") or "").upper()
    headers = _headers(request)
    body = request.get("body")
    length = headers.get("content-length", "")
    declared = length.isdigit() and int(length) > 0
    content_type = headers.get("content-type", "")
    if body in (None, "") and (declared or (content_type and method in _BODY_METHODS)):
        what = ", ".join(
            part
            for part in (
                f"Content-Length {length}" if declared else "",
                f"Content-Type {content_type}" if content_type else "",
            )
            if part
        )
        issues.append(f"the body is missing: the request declared one ({what})")
    if request.get("body_truncated") or _cut(body):
        issues.append("the body was cut to a size limit: the replay sends a shortened body")
    scrubbed = [f"body {path}" for path in _scrubbed_paths(body)]
    scrubbed += [f"header {name}" for name, value in headers.items() if FILTERED in value]
    query = urlsplit(str(request.get("url") or "")).query
    scrubbed += [f"query {key}" for key, value in parse_qsl(query) if FILTERED in value]
    if scrubbed:
        issues.append(
            "values were scrubbed before storage and are not replayed as sent: "
            + ", ".join(scrubbed[:20])
        )
    return issues


def capture_score(request: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """Return a sortable measure of a capture's completeness: fewer issues, a body, more headers."""
    if not request:
        return (-100, 0, 0)
    has_body = request.get("body") not in (None, "")
    return (-len(capture_issues(request)), int(has_body), len(request.get("headers") or {}))


def most_complete(samples: Sequence[T], request: Callable[[T], Any]) -> T | None:
    """Return the sample whose request is replayable and most complete (the first on a tie).

    Give samples newest first, so a tie goes to the newest.
    """
    replayable = [s for s in samples if (r := request(s)) and r.get("method") and r.get("url")]
    return max(replayable, key=lambda s: capture_score(request(s))) if replayable else None


def status_class(status: int | None) -> str | None:
    """Return `5xx` for 503, None for no status."""
    return f"{status // 100}xx" if status else None


def reproduction_verdict(
    expected_status: int | None, actual_status: int | None, *, expectations_failed: bool
) -> tuple[bool, str]:
    """Return whether the replay failed like the original, and a sentence saying why.

    The replay must fail the test's expectations and, when the failure answered an error status,
    answer the same class; without a recorded status any 5xx counts (an unhandled exception is
    what error SDKs report).
    """
    if actual_status is None:
        return False, "the replay got no answer"
    if expected_status is not None and expected_status < 400:
        if expectations_failed:
            return True, f"the replay answered {actual_status} and failed the test's expectations"
        return False, f"the replay answered {actual_status} and met the test's expectations"
    wanted = status_class(expected_status) or "5xx"
    got = status_class(actual_status)
    if got == wanted and expectations_failed:
        return True, f"the replay answered {actual_status}, the failure's class ({wanted})"
    origin = f"the failure answered {expected_status}" if expected_status else "5xx expected"
    return False, f"the replay answered {actual_status} where {origin} ({wanted})"
