"""What the ingest routes take and answer, as OpenAPI sees them.

The routes read their bodies themselves (gzip, deflate or br; size limits before and after
decompression: `immunity.api.body`), so FastAPI cannot infer the request schema: it is declared
here, generated from the models the pipeline validates against.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from immunity.models.schemas import FailureEventIn, SuccessEventIn

__all__ = [
    "FAILURES_BODY",
    "SENTRY_ENVELOPE_BODY",
    "SENTRY_EVENT_BODY",
    "SUCCESSES_BODY",
    "SentryAnswer",
    "SentrySessions",
    "inline_refs",
]


class SentrySessions(BaseModel):
    """The sessions of a Sentry envelope: the ended-well ones are stored as success events."""

    successes: int = Field(description="Sessions that ended well, stored as success events.")
    dropped: int = Field(default=0, description="Successes past the per-envelope bound.")
    crashed: int = 0
    errored: int = 0
    abnormal: int = 0


class SentryAnswer(BaseModel):
    """Sentry's answer: the event id; every item of the request is committed."""

    id: str | None = Field(description="The event's id (generated when the client sent none).")
    sessions: SentrySessions | None = Field(
        default=None, description="Present when the envelope carried sessions."
    )


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a pydantic JSON schema with its `$defs` references replaced by the definitions.

    A request body's schema sits inside the OpenAPI document, where `#/$defs/...` would point
    at the document's root; the models here are not recursive, so inlining ends.
    """
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rest = {key: value for key, value in node.items() if key != "$ref"}
            return resolve({**definitions[ref.removeprefix("#/$defs/")], **rest})
        return {key: resolve(value) for key, value in node.items() if key != "$defs"}

    return resolve(schema)


def _batch_body(model: type[BaseModel], what: str) -> dict[str, Any]:
    events = {
        "type": "array",
        "minItems": 1,
        "items": inline_refs(model.model_json_schema()),
        "description": f"{what}; bad ones are rejected by index, the good ones kept.",
    }
    wrapped = {
        "type": "object",
        "properties": {"events": events},
        "required": ["events"],
        "title": f"{model.__name__} batch",
    }
    return {
        "required": True,
        "description": (
            'A JSON array of events, or `{"events": [...]}`; `Content-Encoding` gzip, deflate'
            " or br accepted; size limited (`IMMUNITY_MAX_REQUEST_BYTES`, also after"
            " decompression)."
        ),
        "content": {"application/json": {"schema": {"oneOf": [events, wrapped]}}},
    }


FAILURES_BODY = _batch_body(FailureEventIn, "Failure events")
SUCCESSES_BODY = _batch_body(SuccessEventIn, "Success events")

_SENTRY_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Sentry event",
    "description": (
        "An event as the Sentry SDK sends it (Sentry's event payload): its `exception` (or"
        " `message`) becomes a failure event; `request`, `tags`, `user`, `contexts`, `level`,"
        " `environment`, `release` and `timestamp` are kept."
    ),
    "properties": {
        "event_id": {"type": "string"},
        "timestamp": {"type": ["string", "number"]},
        "level": {"type": "string"},
        "environment": {"type": "string"},
        "release": {"type": "string"},
        "exception": {"type": ["object", "array"]},
        "message": {"type": ["string", "object"]},
        "request": {"type": "object"},
        "tags": {"type": ["object", "array"]},
        "user": {"type": "object"},
        "contexts": {"type": "object"},
    },
    "additionalProperties": True,
}

SENTRY_EVENT_BODY: dict[str, Any] = {
    "required": True,
    "description": "One Sentry event as JSON (gzip, deflate or br accepted).",
    "content": {"application/json": {"schema": _SENTRY_EVENT_SCHEMA}},
}

SENTRY_ENVELOPE_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "A Sentry envelope: a JSON header line, then items (each a JSON header line and a"
        " payload). Error events become failure events, ended sessions success events; other"
        " items are ignored. Any content type; gzip, deflate or br accepted."
    ),
    "content": {
        "application/x-sentry-envelope": {
            "schema": {"type": "string", "title": "Sentry envelope"},
        },
    },
}
