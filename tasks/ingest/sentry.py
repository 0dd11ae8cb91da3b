"""Sentry's wire format read without I/O: envelopes, events and sessions in immunity's shapes.

`envelope_to_batch` (`/envelope/` bodies) and `store_to_batch` (legacy `/store/`: one JSON event)
return a SentryBatch: FailureEventIn-shaped dicts for error events, SuccessEventIn-shaped dicts for
sessions that ended well, and only the *counts* of the others: a crashed or errored session comes
with its own error event, so a failure made from the session would count twice. Other items
(transactions, attachments, client reports, profiles, check-ins, …) are ignored. Malformed input
raises SentryFormatError saying what is wrong, and nothing else does, whatever the bytes; strings
returned are UTF-8 without NUL (PostgreSQL refuses both), numbers finite, structures bounded.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from immunity.models.errors import MalformedInputError
from immunity.tasks.ingest.prepare import truncate
from immunity.tasks.ingest.storable import storable_text

__all__ = [
    "LEVEL_SEVERITY", "EnvelopeItem", "SentryBatch", "SentryFormatError",
    "envelope_to_batch", "event_to_failure", "parse_envelope", "session_outcomes", "store_to_batch",
]  # fmt: skip

LEVEL_SEVERITY = {"fatal": "critical", "critical": "critical", "error": "high"} | {
    "warning": "medium", "warn": "medium", "info": "low", "log": "low", "debug": "low"
}  # fmt: skip
FAILED_SESSION_STATES = ("crashed", "errored", "abnormal")
# An aggregate says "exited: 50000" in a few bytes; success rows are bounded per envelope.
MAX_SESSION_SUCCESSES = 10_000
MAX_FRAMES, MAX_CHAIN, MAX_PAIRS = 250, 10, 100
_TEXT, _LINE, _KEY = 8_192, 1_024, 200
# (depth, nodes, string length) a copy of a free-form structure is cut to.
_CONTEXT_BOUNDS, _BODY_BOUNDS = (6, 2_000, 2_048), (16, 20_000, 1_048_576)
_METHOD = re.compile(r"[A-Za-z]{1,16}")
_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
_CUT = "[…]"


class SentryFormatError(MalformedInputError):
    """Input that is not Sentry's wire format; the message says what is wrong (for a 400)."""


@dataclass(frozen=True)
class EnvelopeItem:
    """One item of an envelope: its type, its JSON header and its raw payload."""

    type: str
    headers: dict[str, Any]
    payload: bytes


@dataclass
class SentryBatch:
    """What one Sentry request carries, in the shapes immunity's ingest pipeline takes."""

    event_id: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    successes: list[dict[str, Any]] = field(default_factory=list)
    session_failures: Counter[str] = field(default_factory=Counter)
    sessions_dropped: int = 0
    ignored: int = 0


def _json(data: bytes, what: str, *, obj: bool = False) -> Any:
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise SentryFormatError(f"{what} is not valid UTF-8 (byte {error.start})") from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise SentryFormatError(f"{what} is not valid JSON: {error.msg} at {where}") from None
    except (RecursionError, ValueError) as error:  # nesting too deep, integers too long
        raise SentryFormatError(f"{what} is not valid JSON: {str(error)[:200]}") from None
    if obj and not isinstance(value, dict):
        raise SentryFormatError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _name(value: Any, limit: int) -> str | None:
    # Cut without a truncation mark: the store's column holds `limit` characters at most.
    return (storable_text(value)[:limit] or None) if isinstance(value, str) else None


def _get(value: Any, *path: str) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _int(value: Any, low: int, high: int) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    return value if ok else None


def _text(value: Any, limit: int, *, scalars: bool = False) -> str | None:
    """Return a clean, bounded string for a string (or, with `scalars`, a number), else None."""
    if scalars and (_int(value, -(2**63), 2**63) is not None or isinstance(value, float)):
        value = str(value) if math.isfinite(value) else None
    return truncate(storable_text(value), limit) if isinstance(value, str) else None


def _bounded(value: Any, bounds: tuple[int, int, int]) -> Any:
    """Return a JSON-safe copy of a free-form value, cut to `bounds` (depth, nodes, string)."""
    max_depth, budget, max_str = bounds[0], [bounds[1]], bounds[2]

    def copy(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if isinstance(item, str):
            return truncate(storable_text(item), max_str)
        if isinstance(item, float):
            return item if math.isfinite(item) else None
        if not isinstance(item, dict | list):
            return item if item is None or isinstance(item, bool | int) else None
        if depth >= max_depth or budget[0] <= 0:
            return _CUT
        is_dict = isinstance(item, dict)
        out: dict[Any, Any] = {}
        for key, child in item.items() if is_dict else enumerate(item):
            if budget[0] <= 0:
                out["…"] = _CUT
                break
            out[truncate(storable_text(str(key)), _KEY) if is_dict else key] = copy(
                child, depth + 1
            )
        return out if is_dict else list(out.values())

    return copy(value, 0)


def _timestamp(value: Any) -> str | None:
    """Return an ISO UTC timestamp for an epoch number or an ISO string, None when unusable."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            at = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str) and len(value) <= 64:
            at = datetime.fromisoformat(value.strip())
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        else:
            return None
    except (OverflowError, OSError, ValueError):
        return None
    # Outside this range a timestamp is a client bug, and window arithmetic would overflow.
    return at.isoformat() if _EARLIEST <= at < _LATEST else None


def _pairs(value: Any) -> list[tuple[str, str]]:
    """Return (name, value) string pairs from a dict or a list of pairs (Sentry sends both)."""
    items = value.items() if isinstance(value, dict) else value if isinstance(value, list) else []
    pairs = [(e[0], e[1]) for e in items if isinstance(e, list | tuple) and len(e) == 2]
    texts = ((_text(k, _KEY), _text(v, _TEXT, scalars=True)) for k, v in pairs)
    return [(k, v) for k, v in texts if k and v is not None][:MAX_PAIRS]


def _line(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b"\n", pos)
    return (data[pos:], len(data)) if end < 0 else (data[pos:end], end + 1)


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[EnvelopeItem]]:
    """Return an envelope's header and items, or raise SentryFormatError saying what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SentryFormatError(f"an envelope is bytes, not {type(data).__name__}")
    data = bytes(data)
    header, pos = _line(data, 0)
    if not header.strip():
        raise SentryFormatError("the envelope is empty: its first line must be a JSON header")
    headers, items = _json(header, "the envelope header", obj=True), []
    while pos < len(data):
        line, pos = _line(data, pos)
        if not line.strip():  # blank lines between items and at the end are harmless
            continue
        what = f"item {len(items) + 1}"
        item = _json(line, f"{what}'s header", obj=True)
        kind, length = item.get("type"), item.get("length")
        if not isinstance(kind, str) or not kind:
            raise SentryFormatError(f"{what}'s header has no type")
        what = f"{what} ({truncate(storable_text(kind), 40)})"
        if length is None:  # without a length the payload runs to the end of the line
            payload, pos = _line(data, pos)
        elif _int(length, 0, 2**63) is None:
            raise SentryFormatError(f"{what}: length must be a non-negative integer")
        elif pos + length > len(data):
            raise SentryFormatError(f"{what} declares {length} bytes; {len(data) - pos} follow")
        else:
            payload, pos = data[pos : pos + length], pos + length
            if pos < len(data) and data[pos : pos + 1] != b"\n":
                raise SentryFormatError(f"{what}: no newline after its {length}-byte payload")
            pos += 1
        items.append(EnvelopeItem(kind, item, payload))
    return headers, items


def _frames(stacktrace: Any) -> list[dict[str, Any]]:
    raw = _get(stacktrace, "frames")
    # Sentry orders frames oldest first, innermost last, as immunity does; the innermost matter.
    return [
        {
            "filename": _text(f.get("abs_path"), _LINE) or _text(f.get("filename"), _LINE) or "",
            "module": _text(f.get("module"), _LINE) or "",
            "function": _text(f.get("function"), _LINE) or "",
            "lineno": _int(f.get("lineno"), 0, 2**31 - 1),
            "in_app": f["in_app"] if isinstance(f.get("in_app"), bool) else None,
            "context_line": _text(f.get("context_line"), _LINE),
        }
        for f in (raw[-MAX_FRAMES:] if isinstance(raw, list) else [])
        if isinstance(f, dict)
    ]


def _message(event: dict[str, Any]) -> str | None:
    for key in ("logentry", "message"):
        value = event.get(key)
        if isinstance(value, dict):  # {"message": "hello %s", "formatted": "hello world", …}
            value = value.get("formatted") or value.get("message")
        if text := _text(value, _TEXT):
            return text
    return None


def _request(raw: dict[str, Any]) -> dict[str, Any] | None:
    method, url = _text(raw.get("method"), 16), _text(raw.get("url"), _TEXT)
    if not method or not _METHOD.fullmatch(method) or not url:
        return None  # not replayable without both
    query = raw.get("query_string")
    query = urlencode(_pairs(query)) if isinstance(query, dict | list) else query
    query = (_text(query, _TEXT) or "").lstrip("?")
    data = raw.get("data")
    return {
        "method": method,
        "url": f"{url}?{query}" if query and "?" not in url else url,
        "headers": dict(_pairs(raw.get("headers"))),
        # "" is the SDK's "a body I would not send" (raw bytes, too large): nothing captured.
        "body": None if data == "" else _bounded(data, _BODY_BOUNDS),
    }


def _status_code(contexts: Any) -> int | None:
    found = _get(contexts, "response", "status_code")
    return _int(found or _get(contexts, "trace", "data", "http.response.status_code"), 100, 599)


def _user(raw: Any) -> str | None:
    for key in ("id", "email", "ip_address", "username"):
        value = _text(raw.get(key), _LINE, scalars=True) if isinstance(raw, dict) else None
        if value and value != "{{auto}}":  # JS SDKs' placeholder for "the client's address"
            return value
    return None


def _chain_entry(value: dict[str, Any]) -> dict[str, Any]:
    entry = {key: _text(value.get(key), _LINE, scalars=True) for key in ("type", "module", "value")}
    handled = _get(value, "mechanism", "handled")
    entry["handled"] = handled if isinstance(handled, bool) else None
    return {**entry, "mechanism": _text(_get(value, "mechanism", "type"), _KEY)}


def event_to_failure(event: Any) -> dict[str, Any]:
    """Return the FailureEventIn-shaped dict of a Sentry event, or raise SentryFormatError."""
    if not isinstance(event, dict):
        raise SentryFormatError(f"the event must be a JSON object, not {type(event).__name__}")
    raw = event.get("exception")
    values = raw.get("values") if isinstance(raw, dict) else raw  # {"values": […]} or […]
    values = values if isinstance(values, list) else []
    chain = [v for v in values if isinstance(v, dict) and (v.get("type") or v.get("value"))]
    message = _message(event)
    keys = ("event_id", "platform", "logger", "transaction", "server_name")
    sentry = {key: _text(event.get(key), _LINE) for key in keys}
    context: dict[str, Any] = {"sentry": {k: v for k, v in sentry.items() if v}}
    if chain:
        # Sentry lists a chain's causes first: the last value is the exception that was raised.
        outer = chain[-1]
        error_type = _text(outer.get("type"), _KEY) or "Error"
        text = _text(outer.get("value"), _TEXT, scalars=True) or ""
        frames = _frames(outer.get("stacktrace"))
        context["exception_chain"] = [_chain_entry(v) for v in chain[-MAX_CHAIN:]]
        if message:
            context["log_message"] = message
    elif message:
        error_type, text, frames = "Message", message, []
    else:
        raise SentryFormatError("the event has neither an exception nor a message")
    if not frames:  # a message sent with attach_stacktrace, or a thread dump
        threads = _get(event, "threads", "values")
        stacks = [_get(t, "stacktrace") for t in (threads if isinstance(threads, list) else [])]
        frames = next((f for f in map(_frames, [event.get("stacktrace"), *stacks]) if f), [])
    for key in ("contexts", "extra"):
        if isinstance(event.get(key), dict) and event[key]:
            context[key] = _bounded(event[key], _CONTEXT_BOUNDS)
    raw_request = event.get("request") if isinstance(event.get("request"), dict) else {}
    request = _request(raw_request)
    if request is None and (url := _text(raw_request.get("url"), _TEXT)):
        context["request_url"] = url
    failure: dict[str, Any] = {
        "error_type": error_type,
        "message": text,
        "frames": frames,
        "received_at": _timestamp(event.get("timestamp")),
        "environment": _name(event.get("environment"), 64) or "production",
        "release": _name(event.get("release"), 128),
        "request": request,
        "status_code": _status_code(event.get("contexts")),
        "context": context,
        "tags": dict(_pairs(event.get("tags"))),
        "user": _user(event.get("user")),
        "source": "sentry",
        "severity": LEVEL_SEVERITY.get((_name(event.get("level"), 16) or "").lower()),
    }
    return {key: value for key, value in failure.items() if value is not None}


def _count(value: Any, what: str) -> int:
    count = 0 if value is None else _int(value, 0, 2**63)
    if count is None:
        raise SentryFormatError(f"{what} must be a non-negative integer")
    return count


def session_outcomes(
    item_type: str, payload: Any, *, limit: int = MAX_SESSION_SUCCESSES
) -> tuple[list[dict[str, Any]], Counter[str], int]:
    """Return success dicts of sessions that ended well, counts of failed ones, successes dropped.

    A `session` counts once ended (`exited`; `crashed`, `abnormal`, `errored` fail, and so does
    an exited session that saw errors, as in Sentry's release health); `sessions` aggregates
    count `exited` as successes. Successes past `limit` are only counted, as dropped.
    """
    if not isinstance(payload, dict):
        raise SentryFormatError(f"a {item_type} item must be a JSON object")
    if item_type == "session":
        status = payload.get("status", "ok")
        if status == "exited" and _count(payload.get("errors"), "errors"):
            status = "errored"
        if status not in ("ok", "exited", *FAILED_SESSION_STATES):
            raise SentryFormatError(f"unknown session status {str(status)[:40]!r}")
        # "ok" is an update of a session still running: it counts once it has ended.
        buckets = [] if status == "ok" else [{status: 1, "started": payload.get("timestamp")}]
    elif isinstance(payload.get("aggregates"), list):
        buckets = payload["aggregates"]
    else:
        raise SentryFormatError("a sessions item needs an aggregates list")
    release = _name(_get(payload, "attrs", "release"), 128)
    success = {
        "operation": "session",
        "environment": _name(_get(payload, "attrs", "environment"), 64) or "production",
        "metadata": {"source": "sentry", **({"release": release} if release else {})},
    }
    successes, failures, dropped = list[dict[str, Any]](), Counter[str](), 0
    for bucket in buckets:
        if not isinstance(bucket, dict):
            raise SentryFormatError("each session aggregate must be a JSON object")
        for state in FAILED_SESSION_STATES:
            failures[state] += _count(bucket.get(state), state)
        exited = _count(bucket.get("exited"), "exited")
        kept = min(exited, max(limit - len(successes), 0))
        dropped += exited - kept
        one = {**success, "received_at": _timestamp(bucket.get("started"))}
        successes.extend({**one, "metadata": dict(success["metadata"])} for _ in range(kept))
    return successes, +failures, dropped


def envelope_to_batch(data: bytes) -> SentryBatch:
    """Return what an envelope carries for the pipeline, or raise SentryFormatError."""
    headers, items = parse_envelope(data)
    batch = SentryBatch(event_id=_text(headers.get("event_id"), 64))
    for n, item in enumerate(items, 1):
        try:
            if item.type == "event":
                if batch.failures:  # the protocol's rule: at most one event per envelope
                    raise SentryFormatError("an envelope carries at most one event")
                failure = event_to_failure(_json(item.payload, "its payload"))
                batch.failures.append(failure)
                batch.event_id = batch.event_id or failure["context"]["sentry"].get("event_id")
            elif item.type in ("session", "sessions"):
                payload, room = _json(item.payload, "its payload"), MAX_SESSION_SUCCESSES
                found = session_outcomes(item.type, payload, limit=room - len(batch.successes))
                batch.successes.extend(found[0])
                batch.session_failures.update(found[1])
                batch.sessions_dropped += found[2]
            else:
                batch.ignored += 1
        except SentryFormatError as error:
            what = f"item {n} ({truncate(storable_text(item.type), 40)})"
            raise SentryFormatError(f"{what}: {error}") from None
    return batch


def store_to_batch(data: bytes) -> SentryBatch:
    """Return what a legacy `/store/` body (one JSON event) carries, or raise SentryFormatError."""
    failure = event_to_failure(_json(data, "the body"))
    return SentryBatch(event_id=failure["context"]["sentry"].get("event_id"), failures=[failure])
