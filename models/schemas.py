"""Shapes of what clients send: failure and success events, before they are stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from models.enums import EventSource, Severity

__all__ = ["FailureEventIn", "Frame", "RequestCapture", "SuccessEventIn", "utcnow"]


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # A timestamp without a zone is taken as UTC, which is what error SDKs send.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime | None, AfterValidator(_as_utc)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class Frame(_Input):
    """One stack frame, innermost last (as Python and Sentry order them)."""

    filename: str = ""
    module: str = ""
    function: str = ""
    lineno: int | None = None
    in_app: bool | None = Field(default=None, description="None: decided by the in-app rules.")
    context_line: str | None = None


class RequestCapture(_Input):
    """The HTTP request that failed, as the client captured it."""

    method: str = Field(min_length=1, max_length=16)
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None

    @field_validator("method")
    @classmethod
    def _upper(cls, method: str) -> str:
        return method.upper()


class FailureEventIn(_Input):
    """One failure occurrence as reported by a client."""

    error_type: str = Field(min_length=1)
    message: str = ""
    frames: list[Frame] = Field(default_factory=list)
    stacktrace: str | None = None
    received_at: UtcDatetime = None
    environment: str = Field(default="production", min_length=1, max_length=64)
    release: str | None = Field(default=None, max_length=128)
    request: RequestCapture | None = None
    status_code: int | None = Field(default=None, ge=100, le=599)
    context: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    source: EventSource = EventSource.PYTHON
    severity: Severity | None = Field(
        default=None, description="Overrides the classified severity."
    )


class SuccessEventIn(_Input):
    """One successful operation: the denominator of the failure rate."""

    operation: str = Field(min_length=1, max_length=512)
    duration_ms: float = Field(default=0, ge=0)
    received_at: UtcDatetime = None
    environment: str = Field(default="production", min_length=1, max_length=64)
    list_counts: dict[str, int] = Field(
        default_factory=dict,
        description="Items in each list field of the response, by JSON path (e.g. `$.files`).",
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
