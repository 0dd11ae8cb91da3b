"""Shapes of the deploy loop: what is deployed where, the gate's verdict, the watch's evidence."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["DeployOutcome", "DeployPlan", "GateResult", "WatchReport"]


class DeployPlan(BaseModel):
    """One deployment, resolved: the target, the environment it serves, and what to deploy."""

    target: str
    kind: str
    environment: str
    ref: str
    previous_ref: str | None = Field(default=None, description="What a rollback restores.")
    reason: str = ""
    fix_id: int | None = None
    fix_commit: str | None = None
    fix_branch: str | None = None
    signature_id: int | None = None
    test_id: int | None = None
    triggered_by: str = "immunity"


class GateResult(BaseModel):
    """The readiness gate before a deployment."""

    passed: bool
    score: float
    band: str
    min_readiness: float
    critical_failures: list[str] = Field(default_factory=list)
    excused: list[str] = Field(
        default_factory=list, description="Failing tests the deployed fix is verified to fix."
    )
    reasons: list[str] = Field(default_factory=list)


class WatchReport(BaseModel):
    """One look at a deployment: its tests, the failure rate and the fixed signature."""

    healthy: bool
    reasons: list[str] = Field(default_factory=list)
    tests: dict[str, str] = Field(default_factory=dict, description="Test name → status.")
    failures_before: int = 0
    successes_before: int = 0
    failures_after: int = 0
    successes_after: int = 0
    signature_before: int | None = None
    signature_after: int | None = None

    @property
    def rate_before(self) -> float:
        total = self.failures_before + self.successes_before
        return self.failures_before / total if total else 0.0

    @property
    def rate_after(self) -> float:
        total = self.failures_after + self.successes_after
        return self.failures_after / total if total else 0.0


class DeployOutcome(BaseModel):
    """What one run of the deploy flow came to."""

    deployment_id: int
    status: str
    target: str
    ref: str
    previous_ref: str | None = None
    rollback_deployment_id: int | None = None
    gate: GateResult | None = None
    watch: list[WatchReport] = Field(default_factory=list)
    detail: str = ""
