"""What the loops return to their callers: summaries a script, the CLI or the UI can show."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

__all__ = [
    "AlertOutcome",
    "AlertStatus",
    "GeneratedTest",
    "HealthReport",
    "IngestReport",
    "RejectedEvent",
]


class RejectedEvent(BaseModel):
    """An event that was refused, by its index in the batch (or its line in a file)."""

    index: int
    errors: list[str]


class GeneratedTest(BaseModel):
    """A signature that got its regression test, or the reason it could not."""

    signature_id: int
    test_id: int | None = None
    created: bool = False
    reason: str | None = None


class IngestReport(BaseModel):
    """The outcome of an ingest run."""

    accepted: int = 0
    rejected: list[RejectedEvent] = Field(default_factory=list)
    signatures: int = 0
    new_signatures: int = 0
    candidates: list[int] = Field(default_factory=list)
    rechecks: list[int] = Field(
        default_factory=list, description="Signatures whose test is checked again."
    )
    generated: list[GeneratedTest] = Field(default_factory=list)

    @property
    def tests_created(self) -> int:
        return sum(1 for item in self.generated if item.created)


class AlertStatus(StrEnum):
    SENT = "sent"  # every channel took it
    FAILED = "failed"  # at least one channel did not (the error says which and why)
    SUPPRESSED = "suppressed"  # the key is cooling down: nothing recorded, nothing sent
    RECORDED = "recorded"  # stored, but no channel is configured


class AlertOutcome(BaseModel):
    """What became of one alert: sent, failed, suppressed by the cooldown, or only recorded."""

    key: str
    kind: str
    status: AlertStatus
    alert_id: int | None = None
    channel: str = ""
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == AlertStatus.SENT


class HealthReport(BaseModel):
    """The outcome of a health check: the rate, the rule, and the alerts raised."""

    environment: str | None = None
    since: datetime
    window_minutes: int
    failures: int
    failures_max: int | None = None
    successes: int
    attempts: int
    rate: float
    rate_max: float
    exact: bool = True
    threshold: float
    min_attempts: int
    unhealthy: bool
    critical_signatures: list[str] = Field(default_factory=list, description="Fingerprints.")
    alerts: list[AlertOutcome] = Field(default_factory=list)

    def count(self, status: AlertStatus) -> int:
        """Return how many of the alerts ended with `status`."""
        return sum(1 for alert in self.alerts if alert.status == status)

    @property
    def alerts_sent(self) -> int:
        return self.count(AlertStatus.SENT)

    @property
    def alerts_suppressed(self) -> int:
        return self.count(AlertStatus.SUPPRESSED)

    @property
    def alerts_undelivered(self) -> int:
        return self.count(AlertStatus.FAILED) + self.count(AlertStatus.RECORDED)
