"""Pure rules of test generation: who qualifies, what request to replay, what to expect."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from immunity.models.enums import Reproduction, TestKind, TestType
from immunity.models.settings import Environment
from immunity.models.ui_specs import UiSpec
from immunity.tasks.generate.capture import capture_issues, capture_score
from immunity.tasks.shared.replay_policy import allowed_headers, pick_headers, replay_path
from immunity.tasks.shared.scrub import FILTERED

__all__ = [
    "ReplaySpec",
    "crossed_threshold",
    "expectations_for",
    "operation_matches",
    "replay_spec",
    "test_name",
    "test_fields",
    "ui_test_fields",
]

_TEMPLATE_PART = re.compile(r"\{[^/}]+\}")


@dataclass(frozen=True)
class ReplaySpec:
    """A request that can be sent again: method, path relative to the environment, headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
        }


def crossed_threshold(
    counts: Iterable[tuple[datetime, int]],
    last_seen: datetime,
    *,
    threshold: int,
    window: timedelta,
    bucket_minutes: int,
) -> bool:
    """True when ≥ `threshold` occurrences fall in the window ending at the last one.

    `counts` are (bucket start, occurrences) pairs; the bucket holding the window's start counts
    whole, so the window may reach back up to one bucket further than asked.
    """
    since = last_seen - window
    since = since.replace(second=0, microsecond=0) - timedelta(
        minutes=since.minute % bucket_minutes
    )
    return sum(n for start, n in counts if start >= since) >= threshold


def replay_spec(
    request: Mapping[str, Any] | None, environment: Environment | None
) -> tuple[ReplaySpec | None, str | None]:
    """Return the replayable form of a captured request, or None and the reason it is not.

    The request is untrusted: only the allowlisted headers are kept (Content-Type, Accept,
    Accept-Language, User-Agent and the environment's `replay_headers`), and only the URL's path
    and query, as a path on whichever environment replays it.
    """
    if not request:
        return None, "no sample carries an HTTP request"
    method, url = request.get("method"), request.get("url")
    if not method or not url:
        return None, "the captured request has no method or URL"
    path = _relative_path(str(url), environment)
    if path is None:
        return None, f"the request URL is not an HTTP URL: {str(url)[:200]}"
    captured = request.get("headers") or {}
    if not isinstance(captured, Mapping):
        captured = {}
    kept = pick_headers(
        {str(name): value for name, value in captured.items() if isinstance(value, str)},
        allowed_headers(environment),
    )
    headers = {name: value for name, value in kept.items() if value != FILTERED}
    return ReplaySpec(str(method).upper(), path, headers, request.get("body")), None


def _relative_path(url: str, environment: Environment | None) -> str | None:
    if environment and url.startswith(environment.base_url.rstrip("/") + "/"):
        return replay_path(url[len(environment.base_url.rstrip("/")) :])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", ""):
        return None
    if not parts.path.startswith("/"):
        return None
    return replay_path(parts.path + (f"?{parts.query}" if parts.query else ""))


def operation_matches(operation: str, method: str, path: str) -> bool:
    """True when a success's operation (`POST /api/jobs/{id}`) names this method and path."""
    op_method, _, template = operation.partition(" ")
    if op_method.upper() != method.upper():
        return False
    segments = [
        "[^/]+" if _TEMPLATE_PART.fullmatch(part) else re.escape(part)
        for part in template.split("/")
    ]
    return re.fullmatch("/".join(segments), path.split("?", 1)[0]) is not None


def expectations_for(list_counts: Sequence[Mapping[str, int]]) -> dict[str, Any]:
    """Return `should_not_fail`, plus `min_items` for the lists every recent success carried."""
    expected: dict[str, Any] = {"should_not_fail": True}
    if list_counts:
        paths = set.intersection(*(set(counts) for counts in list_counts))
        min_items = {
            path: 1 for path in sorted(paths) if all(counts[path] >= 1 for counts in list_counts)
        }
        if min_items:
            expected["min_items"] = min_items
    return expected


def test_name(error_type: str, fingerprint: str) -> str:
    """Return `regression_<error_type in snake case>_<short fingerprint>`."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", error_type.rsplit(".", 1)[-1])
    snake = re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_")[:80] or "error"
    return f"regression_{snake}_{fingerprint[:8]}"


def _untrusted(captured: Mapping[str, Any]) -> dict[str, Any]:
    # Not trusted until a replay has reproduced the failure (tasks/reproduce.py).
    return {
        "reproduction": Reproduction.PENDING.value,
        "capture_issues": capture_issues(captured),
        "reproduction_evidence": {"capture_score": list(capture_score(captured))},
    }


def test_fields(
    *,
    signature_id: int,
    fingerprint: str,
    error_type: str,
    category: str,
    message: str,
    environment: str,
    spec: ReplaySpec,
    list_counts: Sequence[Mapping[str, int]],
    confidence: int,
    captured: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the columns of the regression test for a signature and its replayable sample."""
    return {
        "name": test_name(error_type, fingerprint),
        "description": f"{error_type}: {message[:300]} — replays {spec.method} {spec.path}",
        "kind": TestKind.HTTP.value,
        "type": TestType.REGRESSION.value,
        "spec": spec.as_dict(),
        "expectations": expectations_for(list_counts),
        "tags": ["regression", category],
        "environment": environment,
        "confidence": confidence,
        "created_from_signature_id": signature_id,
        **_untrusted(captured),
    }


def ui_test_fields(
    *,
    signature_id: int,
    fingerprint: str,
    error_type: str,
    category: str,
    message: str,
    environment: str,
    steps: UiSpec,
    confidence: int,
    captured: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the columns of the UI regression test replaying a page's JavaScript error."""
    page = steps.steps[0].path
    return {
        "name": test_name(error_type, fingerprint),
        "description": (
            f"{error_type}: {message[:300]} — replays {len(steps.steps) - 2} action(s) on {page}"
        ),
        "kind": TestKind.UI.value,
        "type": TestType.REGRESSION.value,
        "spec": steps.dump(),
        "expectations": {},
        "tags": ["regression", category, "ui"],
        "environment": environment,
        "confidence": confidence,
        "created_from_signature_id": signature_id,
        **_untrusted(captured),
    }
