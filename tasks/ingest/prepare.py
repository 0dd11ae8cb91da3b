"""The pure middle of ingestion: classify → scrub → fingerprint → rows ready for the store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from immunity.models.enums import severity_rank
from immunity.models.schemas import FailureEventIn, SuccessEventIn, full_frame, utcnow
from immunity.models.settings import Settings
from immunity.tasks.ingest.classify import classify
from immunity.tasks.ingest.fingerprint import (
    MAX_NORMALIZED_CHARS,
    fingerprint,
    frames_fingerprint,
    normalize_message,
    parse_python_traceback,
)
from immunity.tasks.ingest.storable import storable, storable_text
from immunity.tasks.shared.scrub import Scrubber, scrubber

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


@dataclass(slots=True)  # not frozen: a frozen dataclass pays a setattr call per field
class PreparedFailure:
    """A validated failure turned into its signature's key and its scrubbed event row."""

    fingerprint: str
    error_type: str
    culprit: str
    category: str
    severity: str
    received_at: datetime
    row: dict[str, Any]
    # Known when grouping needed it (no frames); else worked out only if the signature is new.
    known_message: str | None = None

    @property
    def normalized_message(self) -> str:
        """The message with its variable parts replaced: what the signature shows."""
        if self.known_message is not None:
            return self.known_message
        return normalize_message(self.row["message"])[:MAX_NORMALIZED_CHARS]


@dataclass(slots=True)
class SignatureDelta:
    """What one batch adds to one signature: a count, a time span and the highest severity."""

    fingerprint: str
    error_type: str
    first: PreparedFailure  # the batch's first event of it: the message of a new signature
    culprit: str
    category: str
    severity: str
    first_seen: datetime
    last_seen: datetime
    count: int
    buckets: dict[datetime, int] = field(default_factory=dict)  # occurrences per bucket


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


def _scrubber(settings: Settings) -> Scrubber | None:
    """Return the scrubber of these settings (their patterns and keys), None when it is off."""
    if not settings.scrub_enabled:
        return None
    return scrubber(settings.scrub_patterns, settings.scrub_keys)


def _scrub_request(
    event: FailureEventIn, settings: Settings, scrubs: Scrubber | None
) -> dict[str, Any] | None:
    if event.request is None:
        return None
    request = event.request
    # A body sent as text (a form, JSON text) is text to scrub: its `password=…` pairs go.
    body = scrubs.scrub(request.body) if scrubs else request.body
    captured: dict[str, Any] = {
        "method": request.method,
        "url": scrubs.scrub_url(request.url) if scrubs else request.url,
        "headers": scrubs.scrub_headers(request.headers) if scrubs else dict(request.headers),
        "body": body,
    }
    if body is not None:
        encoded = body if isinstance(body, str) else _json_text(body)
        if len(encoded) > settings.max_body_chars:
            captured["body"] = truncate(encoded, settings.max_body_chars)
            captured["body_truncated"] = True
    return captured


_JSON = json.JSONEncoder(default=str)  # built once: json.dumps(default=…) builds one per call
# JSONEncoder.encode builds its C encoder on every call; this one is built once. Without the
# cycle check: a scrubbed body is a fresh tree, cut at a bounded depth.
_C_ENCODER = c_make_encoder and c_make_encoder(
    None, str, encode_basestring_ascii, None, ": ", ", ", False, False, True
)


def _json_text(value: Any) -> str:
    """Return what _JSON.encode(value) returns, faster."""
    if _C_ENCODER is None or not isinstance(value, dict | list):
        return _JSON.encode(value)
    return "".join(_C_ENCODER(value, 0))


@lru_cache(maxsize=8192)  # a service has a bounded set of users and each sends many events
def _user_hash(user: str | None) -> str | None:
    # Only a hash is kept: enough to count distinct users, useless to identify one.
    return hashlib.sha256(user.encode()).hexdigest()[:32] if user else None


_FrameTexts = tuple[str, str, str, str | None]
# A bug's frames repeat in each of its occurrences: what scrubbing made of them is remembered
# (None: nothing to change), per scrubber, so a frame costs one lookup.
_FRAMES_SEEN: dict[Scrubber, dict[_FrameTexts, _FrameTexts | None]] = {}
_UNSEEN: Any = object()


def _scrubbed_frame(
    scrubs: Scrubber, seen: dict[_FrameTexts, _FrameTexts | None], texts: _FrameTexts
) -> _FrameTexts | None:
    text = scrubs.scrub_text
    found = (text(texts[0]), text(texts[1]), text(texts[2]), texts[3] and text(texts[3]))
    if len(seen) >= 16_384:
        seen.clear()
    seen[texts] = changed = None if found == texts else found
    return changed


def _stored_frames(
    frames: list[dict[str, Any]], settings: Settings, scrubs: Scrubber | None
) -> list[dict[str, Any]]:
    stored = frames[-settings.max_frames :]
    if scrubs is not None:
        seen = _FRAMES_SEEN.get(scrubs)
        if seen is None:
            seen = _FRAMES_SEEN.setdefault(scrubs, {})
        for frame in stored:
            texts = (frame["filename"], frame["module"], frame["function"], frame["context_line"])
            changed = seen.get(texts, _UNSEEN)
            if changed is _UNSEEN:
                changed = _scrubbed_frame(scrubs, seen, texts)
            if changed is not None:
                frame["filename"], frame["module"], frame["function"] = changed[:3]
                frame["context_line"] = changed[3]
    return stored


def _maybe(text: str | None, scrubs: Scrubber | None) -> str | None:
    return scrubs.scrub_text(text) if scrubs is not None and text else text


def prepare_failure(event: FailureEventIn, settings: Settings) -> PreparedFailure:
    """Return the classified, scrubbed and fingerprinted form of one failure event."""
    classification = classify(
        event.error_type, event.message, event.status_code, settings.classification_rules
    )
    severity = (event.severity or classification.severity).value
    category = classification.category.value
    # Validated frames are whole already (and the event's own: storing may change them).
    frames: list[dict[str, Any]] = event.frames  # type: ignore[assignment]
    if not frames and event.stacktrace:
        frames = [full_frame(frame) for frame in parse_python_traceback(event.stacktrace)]
    scrubs = _scrubber(settings)
    error_type = truncate(event.error_type, 200)
    message = truncate(event.message, settings.max_message_chars)
    if scrubs is not None:
        error_type, message = scrubs.scrub_text(error_type), scrubs.scrub_text(message)
    grouped = frames_fingerprint(error_type, frames, settings.in_app_include)
    known_message = None
    if grouped is None:
        found = fingerprint(error_type, message, frames, settings.in_app_include)
        grouped, known_message = (found.hash, found.culprit), found.normalized_message
    stacktrace = event.stacktrace
    if stacktrace is not None:
        stacktrace = _truncate_tail(stacktrace, settings.max_message_chars * 4)
        stacktrace = _maybe(stacktrace, scrubs)
    received_at = event.received_at or utcnow()
    row = {
        "received_at": received_at,
        "environment": _maybe(event.environment, scrubs),
        "release": _maybe(event.release, scrubs),
        "error_type": error_type,
        "message": message,
        "frames": _stored_frames(frames, settings, scrubs),
        "stacktrace": stacktrace,
        "request": _scrub_request(event, settings, scrubs),
        "status_code": event.status_code,
        "context": scrubs.scrub(event.context) if scrubs else event.context,
        "tags": scrubs.scrub(event.tags) if scrubs else event.tags,
        "user_hash": _user_hash(event.user),
        "source": event.source.value,
        "category": category,
        "severity": severity,
    }
    return PreparedFailure(
        fingerprint=grouped[0],
        error_type=error_type,
        culprit=_maybe(truncate(grouped[1], 500), scrubs) or "",
        category=category,
        severity=severity,
        received_at=received_at,
        row=row,
        known_message=known_message,
    )


def bucket_start(at: datetime, minutes: int) -> datetime:
    """Return the start of the `minutes`-wide bucket holding `at` (buckets align to the hour)."""
    return at.replace(second=0, microsecond=0) - timedelta(minutes=at.minute % minutes)


def storable_failure(item: PreparedFailure) -> PreparedFailure:
    """Return the failure with every text and JSON value in a form every store accepts."""
    return replace(
        item,
        error_type=storable_text(item.error_type),
        known_message=storable_text(item.normalized_message),
        culprit=storable_text(item.culprit),
        row=storable(item.row),
    )


def aggregate_signatures(
    prepared: Iterable[PreparedFailure], bucket_minutes: int
) -> list[SignatureDelta]:
    """Return one delta per fingerprint, sorted by fingerprint so writers lock rows in one order."""
    deltas: dict[str, SignatureDelta] = {}
    buckets: dict[float, datetime] = {}  # by minute since the epoch: events crowd few minutes
    for item in prepared:
        at = item.received_at
        minute = at.timestamp() // 60
        bucket = buckets.get(minute)
        if bucket is None:
            bucket = buckets[minute] = bucket_start(at, bucket_minutes)
        seen = deltas.get(item.fingerprint)
        if seen is None:
            seen = deltas[item.fingerprint] = SignatureDelta(
                fingerprint=item.fingerprint,
                error_type=item.error_type,
                first=item,
                culprit=item.culprit,
                category=item.category,
                severity=item.severity,
                first_seen=at,
                last_seen=at,
                count=0,
            )
        elif item.severity != seen.severity and (
            severity_rank(item.severity) > severity_rank(seen.severity)
        ):
            seen.severity = item.severity
        if at < seen.first_seen:
            seen.first_seen = at
        elif at > seen.last_seen:
            seen.last_seen = at
        seen.count += 1
        counts = seen.buckets
        counts[bucket] = counts.get(bucket, 0) + 1  # not Counter's +=: no __missing__ call
    return [deltas[key] for key in sorted(deltas)]


def prepare_success(event: SuccessEventIn, settings: Settings) -> dict[str, Any]:
    """Return the stored row of one success event."""
    scrubs = _scrubber(settings)
    return {
        "operation": _maybe(event.operation, scrubs),
        "received_at": event.received_at or utcnow(),
        "environment": _maybe(event.environment, scrubs),
        "duration_ms": event.duration_ms,
        "list_counts": event.list_counts,
        "meta": scrubs.scrub(event.metadata) if scrubs else event.metadata,
    }
