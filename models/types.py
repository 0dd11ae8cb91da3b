"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB

__all__ = ["JSONType", "UTCDateTime", "json_column", "utc_column"]

# none_as_null: a missing request is SQL NULL, so "has a request" is a plain IS NOT NULL.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_column(*, nullable: bool = True) -> Any:
    """Return a fresh JSON column (JSONB on PostgreSQL)."""
    return Column(JSONType, nullable=nullable)


def utc_column(*, nullable: bool = True, index: bool = False, default: Any = None) -> Any:
    """Return a fresh timezone-aware timestamp column (`default` also applies to Core inserts)."""
    return Column(UTCDateTime(), nullable=nullable, index=index, default=default)
