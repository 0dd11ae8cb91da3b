"""Production readiness (seed 003): probes, the weighted parts, the 0–100 score and its band."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["PART_NAMES", "ProbeResult", "Readiness", "ReadinessBand", "ReadinessPart"]

# The seed's five parts, in the order they are shown.
PART_NAMES = ("workflow", "ui", "health", "database", "queue")


class ReadinessBand(StrEnum):
    """The seed's bands: 95–100 ready, 80–94 mostly ready, 60–79 needs work, 0–59 not ready."""

    READY = "ready"
    MOSTLY_READY = "mostly ready"
    NEEDS_WORK = "needs work"
    NOT_READY = "not ready"


class ProbeResult(BaseModel):
    """One check of something the service needs: an HTTP endpoint, the store, a queue."""

    name: str
    kind: Literal["http", "database", "queue"]
    ok: bool
    status_code: int | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    detail: str = ""


class ReadinessPart(BaseModel):
    """One weighted part of the score; `score` None means it could not be measured."""

    name: str
    weight: float = Field(default=0, ge=0, le=100, description="Configured share, in percent.")
    effective_weight: float = Field(
        default=0, ge=0, le=100, description="Share after missing parts' weight moved, percent."
    )
    score: float | None = Field(default=None, ge=0, le=100)
    detail: str = ""


class Readiness(BaseModel):
    """The readiness score, how it was made, and the critical tests that block a deploy."""

    score: float = Field(ge=0, le=100, description="Kept to one decimal: the band reads it.")
    band: ReadinessBand
    parts: list[ReadinessPart]
    notes: list[str] = Field(default_factory=list)
    critical_failures: list[str] = Field(
        default_factory=list, description="Critical tests whose latest run failed or errored."
    )
    probes: list[ProbeResult] = Field(default_factory=list)
    environment: str | None = None
    measured_at: datetime
