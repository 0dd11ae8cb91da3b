"""Shapes of what clients send: failure and success events, before they are stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, get_type_hints

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict

from immunity.models.enums import EventSource, Severity

__all__ = ["FailureEventIn", "Frame", "RequestCapture", "SuccessEventIn", "full_frame", "utcnow"]


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


class Frame(TypedDict, total=False):
    """One stack frame, innermost last (as Python and Sentry order them); every key optional.

    A plain dict, not a model: an event carries dozens of frames and ingestion validates
    thousands of events a second, so frames skip model construction. Validation fills the keys
    a client left out with their defaults; `full_frame` does it for frames built in Python.
    """

    __pydantic_config__ = ConfigDict(extra="ignore")  # type: ignore[misc]

    filename: Annotated[str, Field(default="")]
    module: Annotated[str, Field(default="")]
    function: Annotated[str, Field(default="")]
    lineno: Annotated[int | None, Field(default=None)]
    in_app: Annotated[
        bool | None, Field(default=None, description="None: decided by the in-app rules.")
    ]
    context_line: Annotated[str | None, Field(default=None)]


_FRAME_DEFAULTS: dict[str, Any] = {
    key: hint.__metadata__[0].default
    for key, hint in get_type_hints(Frame, include_extras=True).items()
}


def full_frame(frame: Frame) -> dict[str, Any]:
    """Return the frame with every key present (missing ones at their defaults), as stored."""
    return {**_FRAME_DEFAULTS, **frame}


class RequestCapture(_Input):
    """The HTTP request that failed, as the client captured it."""

    method: Annotated[str, StringConstraints(min_length=1, max_length=16, to_upper=True)]
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None


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
