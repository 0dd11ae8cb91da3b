"""The HTTP API's answers as pydantic models: routes declare them, `immunity.Client` parses them.

Only pydantic and immunity's own models of reports are imported here, so a script that talks to
immunity over HTTP loads neither the store nor Prefect.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from immunity.models.enums import TestState
from immunity.models.reports import RejectedEvent

__all__ = [
    "CreatedTest",
    "DecisionAnswer",
    "FixDetail",
    "FixEventPublic",
    "FixPublic",
    "HealthAnswer",
    "IngestAnswer",
    "SignaturePage",
    "SignaturePublic",
    "TestPage",
    "TestPublic",
]


class _Public(BaseModel):
    # Read from table rows on the server; a field a newer server adds is ignored, not refused.
    model_config = ConfigDict(from_attributes=True)


class SignaturePublic(_Public):
    """A group of failures that share a fingerprint, as the API shows it."""

    id: int
    fingerprint: str
    error_type: str
    message: str = Field(description="The normalised message.")
    culprit: str = Field(default="", description="The top in-app frame.")
    category: str
    severity: str = Field(description="The highest severity seen.")
    status: str = Field(description="new, ongoing, tested, fixed, regressed or ignored.")
    occurrence_count: int
    first_seen: datetime
    last_seen: datetime
    test_id: int | None = Field(default=None, description="Its regression test, once built.")
    untestable_reason: str | None = None
    suspect_deployment_id: int | None = None


class TestPublic(_Public):
    """A regression test with its record so far, as the API shows it."""

    __test__ = False  # not a pytest class

    id: int
    name: str
    description: str = ""
    kind: str = Field(description="http, scenario or ui.")
    type: str = Field(description="smoke, regression, contract or integration.")
    state: TestState = Field(description="active, quarantined (runs, never gates) or inactive.")
    spec: dict[str, Any] = Field(default_factory=dict)
    expectations: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    environment: str
    confidence: int = Field(ge=0, le=100)
    run_count: int = 0
    pass_count: int = 0
    fail_count: int = 0
    flaky_count: int = 0
    reproduction: str | None = Field(
        default=None, description="Generated tests: did the replay fail the way it did?"
    )
    created_from_signature_id: int | None = None
    last_run_at: datetime | None = None
    created_at: datetime


class SignaturePage(BaseModel):
    """One page of signatures, most recently seen first."""

    signatures: list[SignaturePublic]
    limit: int
    offset: int


class TestPage(BaseModel):
    """One page of regression tests, newest first."""

    __test__ = False

    tests: list[TestPublic]
    limit: int
    offset: int


class CreatedTest(BaseModel):
    """A regression test an ingest batch created, and the signature it was built for."""

    signature_id: int
    test_id: int


class IngestAnswer(BaseModel):
    """What the API stored of a batch: accepted events, rejected ones by index, tests created."""

    accepted: int
    rejected: list[RejectedEvent] = Field(default_factory=list)
    signatures: int = 0
    new_signatures: int = 0
    tests_created: list[CreatedTest] = Field(default_factory=list)


class FixPublic(_Public):
    """A fix proposal: the diff, why, how risky, and what became of it."""

    id: int
    signature_id: int
    test_id: int | None = None
    strategy: str
    status: str
    root_cause: str = ""
    diff: str = ""
    explanation: str = ""
    confidence: float = Field(ge=0, le=1)
    risk_level: str
    risk_reasons: list[str] = Field(default_factory=list)
    files_touched: list[str] = Field(default_factory=list)
    reviewer: str | None = None
    notes: str | None = None
    decided_at: datetime | None = None
    branch: str | None = None
    commit: str | None = None
    flow_run_id: str | None = None
    created_at: datetime


class FixEventPublic(_Public):
    """One change of a proposal's status: what, who, when."""

    status: str
    actor: str
    note: str = ""
    at: datetime


class FixDetail(FixPublic):
    """A fix proposal with its status history, oldest first."""

    events: list[FixEventPublic] = Field(default_factory=list)


class DecisionAnswer(BaseModel):
    """The API took a reviewer's decision: the proposal's paused flow run resumes with it."""

    proposal_id: int
    flow_run_id: str | None = None
    approved: bool
    reviewer: str
    resumed: bool


class HealthAnswer(BaseModel):
    """Whether the API and its store are up: `status` is ok or unavailable."""

    status: str
    database: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"
