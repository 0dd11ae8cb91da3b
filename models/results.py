"""What a regression run observes and concludes: checks, calls, one result per test, a summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from immunity.models.enums import ExecutionStatus, Reproduction

__all__ = [
    "CaseResult",
    "CheckResult",
    "Observed",
    "ReproductionOutcome",
    "SuiteSummary",
    "Transition",
]


class Observed(BaseModel):
    """A response as the expectations see it. `json` is None when the body is not JSON."""

    status: int
    latency_ms: float
    text: str = ""
    json_body: Any = None
    is_json: bool = False


class CheckResult(BaseModel):
    """One expectation checked against one response."""

    name: str = Field(description="e.g. `status`, `min_items $.files`, `json_schema`.")
    passed: bool
    expected: Any = None
    actual: Any = None
    message: str = ""


class CaseResult(BaseModel):
    """The outcome of one test in one run, with what was expected and what came back."""

    test_id: int
    name: str
    status: ExecutionStatus
    duration_ms: float = 0
    attempts: int = 1
    error: str | None = None
    expected: dict[str, Any] = Field(default_factory=dict)
    actual: dict[str, Any] = Field(default_factory=dict)
    calls: list[dict[str, Any]] = Field(
        default_factory=list, description="Every HTTP call made: step, method, path, status, ms."
    )
    artifacts: dict[str, Any] = Field(
        default_factory=dict,
        description="Files kept of a failed UI test: screenshot, page source, console log.",
    )
    started_at: datetime


class Transition(BaseModel):
    """A change a run caused that someone should hear about."""

    kind: str = Field(description="regressed, fixed, confidence_band, quarantined, released.")
    test_id: int
    test_name: str
    signature_id: int | None = None
    before: str
    after: str
    message: str


class SuiteSummary(BaseModel):
    """The outcome of a suite run, as the CLI, the artifacts and CI reports show it."""

    suite_run_id: int
    trigger: str
    environment: str | None
    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    flaky: int = 0
    skipped: int = 0
    critical_failures: list[str] = Field(
        default_factory=list,
        description="Names of failed tests that gate (critical, not quarantined).",
    )
    transitions: list[Transition] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime | None = None
    report_json: str | None = None
    report_junit: str | None = None

    @property
    def pass_rate(self) -> float | None:
        ran = self.total - self.skipped
        return None if ran == 0 else (self.passed + self.flaky) / ran

    @property
    def gate_passed(self) -> bool:
        return not self.critical_failures


class ReproductionOutcome(BaseModel):
    """Whether a generated test's replay failed the way its signature did, and why."""

    test_id: int
    name: str
    reproduction: Reproduction
    reason: str | None = None
