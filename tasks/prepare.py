"""The pure middle of ingestion: classify → scrub → fingerprint → rows ready for the store."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from models.enums import Severity, severity_rank
from models.schemas import FailureEventIn, Frame, SuccessEventIn, utcnow
from models.settings import Settings
from tasks.classify import classify
from tasks.fingerprint import fingerprint, parse_python_traceback
from tasks.scrub import scrub, scrub_headers, scrub_text, scrub_url
from tasks.storable import storable, storable_text

__all__ = [
    "PreparedFailure",
    "SignatureDelta",
    "aggregate_signatures",
    "bucket_start",
    "prepare_failure",
    "prepare_success",
    "storable_failure",
    "truncate",
]

TRUNCATION_MARK = "…[truncated {n} chars]"


@dataclass(frozen=True)
class PreparedFailure:
    """A validated failure turned into its signature's key and its scrubbed event row."""

    fingerprint: str
    error_type: str
    normalized_message: str
    culprit: str
    category: str
    severity: str
    received_at: datetime
    row: dict[str, Any]


@dataclass(slots=True)
class SignatureDelta:
    """What one batch adds to one signature: a count, a time span and the highest severity."""

    fingerprint: str
    error_type: str
    message: str
    culprit: str
    category: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    count: int
    buckets: Counter[datetime] = field(default_factory=Counter)


def truncate(text: str, limit: int) -> str:
    """Return `text` cut to `limit` characters with a marker saying how much was dropped."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARK.format(n=len(text) - limit)


def _truncate_tail(text: str, limit: int) -> str:
    # Tracebacks end with the error itself, so the tail is the part worth keeping.
    if len(text) <= limit:
        return text
    return TRUNCATION_MARK.format(n=len(text) - limit) + text[-limit:]


def _scrub_request(event: FailureEventIn, settings: Settings) -> dict[str, Any] | None:
    if event.request is None:
        return None
    request = event.request
    body = scrub(request.body) if settings.scrub_enabled else request.body
    captured: dict[str, Any] = {
        "method": request.method,
        "url": scrub_url(request.url) if settings.scrub_enabled else request.url,
        "headers": scrub_headers(request.headers)
        if settings.scrub_enabled
        else dict(request.headers),
        "body": body,
    }
    if body is not None:
        encoded = body if isinstance(body, str) else json.dumps(body, default=str)
        if len(encoded) > settings.max_body_chars:
            captured["body"] = truncate(encoded, settings.max_body_chars)
            captured["body_truncated"] = True
    return captured


def _user_hash(user: str | None) -> str | None:
    # Only a hash is kept: enough to count distinct users, useless to identify one.
    return hashlib.sha256(user.encode()).hexdigest()[:32] if user else None


def prepare_failure(event: FailureEventIn, settings: Settings) -> PreparedFailure:
    """Return the classified, scrubbed and fingerprinted form of one failure event."""
    classification = classify(
        event.error_type, event.message, event.status_code, settings.classification_rules
    )
    severity = event.severity or classification.severity
    frames: list[Frame] = event.frames or (
        parse_python_traceback(event.stacktrace) if event.stacktrace else []
    )
    error_type = truncate(event.error_type, 200)
    message = truncate(event.message, settings.max_message_chars)
    if settings.scrub_enabled:
        message = scrub_text(message)
    found = fingerprint(error_type, message, frames, settings.in_app_include)
    stored_frames = [f.model_dump() for f in frames[-settings.max_frames :]]
    if settings.scrub_enabled:
        for frame in stored_frames:
            if frame["context_line"]:
                frame["context_line"] = scrub_text(frame["context_line"])
    stacktrace = event.stacktrace
    if stacktrace is not None:
        stacktrace = _truncate_tail(stacktrace, settings.max_message_chars * 4)
        if settings.scrub_enabled:
            stacktrace = scrub_text(stacktrace)
    received_at = event.received_at or utcnow()
    row = {
        "received_at": received_at,
        "environment": event.environment,
        "release": event.release,
        "error_type": error_type,
        "message": message,
        "frames": stored_frames,
        "stacktrace": stacktrace,
        "request": _scrub_request(event, settings),
        "status_code": event.status_code,
        "context": scrub(event.context) if settings.scrub_enabled else event.context,
        "tags": scrub(event.tags) if settings.scrub_enabled else event.tags,
        "user_hash": _user_hash(event.user),
        "source": event.source.value,
        "category": classification.category.value,
        "severity": Severity(severity).value,
    }
    return PreparedFailure(
        fingerprint=found.hash,
        error_type=error_type,
        normalized_message=found.normalized_message,
        culprit=truncate(found.culprit, 500),
        category=classification.category.value,
        severity=Severity(severity).value,
        received_at=received_at,
        row=row,
    )


def bucket_start(at: datetime, minutes: int) -> datetime:
    """Return the start of the `minutes`-wide bucket holding `at` (buckets align to the hour)."""
    return at.replace(second=0, microsecond=0) - timedelta(minutes=at.minute % minutes)


def storable_failure(item: PreparedFailure) -> PreparedFailure:
    """Return the failure with every text and JSON value in a form every store accepts."""
    return replace(
        item,
        error_type=storable_text(item.error_type),
        normalized_message=storable_text(item.normalized_message),
        culprit=storable_text(item.culprit),
        row=storable(item.row),
    )


def aggregate_signatures(
    prepared: Iterable[PreparedFailure], bucket_minutes: int
) -> list[SignatureDelta]:
    """Return one delta per fingerprint, sorted by fingerprint so writers lock rows in one order."""
    deltas: dict[str, SignatureDelta] = {}
    for item in prepared:
        seen = deltas.get(item.fingerprint)
        if seen is None:
            deltas[item.fingerprint] = SignatureDelta(
                fingerprint=item.fingerprint,
                error_type=item.error_type,
                message=item.normalized_message,
                culprit=item.culprit,
                category=item.category,
                severity=item.severity,
                first_seen=item.received_at,
                last_seen=item.received_at,
                count=1,
            )
            deltas[item.fingerprint].buckets[bucket_start(item.received_at, bucket_minutes)] += 1
            continue
        seen.buckets[bucket_start(item.received_at, bucket_minutes)] += 1
        if severity_rank(item.severity) > severity_rank(seen.severity):
            seen.severity = item.severity
        seen.first_seen = min(seen.first_seen, item.received_at)
        seen.last_seen = max(seen.last_seen, item.received_at)
        seen.count += 1
    return [deltas[key] for key in sorted(deltas)]


def prepare_success(event: SuccessEventIn, settings: Settings) -> dict[str, Any]:
    """Return the stored row of one success event."""
    return {
        "operation": event.operation,
        "received_at": event.received_at or utcnow(),
        "environment": event.environment,
        "duration_ms": event.duration_ms,
        "list_counts": event.list_counts,
        "meta": scrub(event.metadata) if settings.scrub_enabled else event.metadata,
    }
