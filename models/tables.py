"""The store: signatures, their occurrences, successes and the regression tests built from them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from immunity.models.deploy_tables import Deployment, Experiment, ExperimentResult
from immunity.models.enums import SignatureStatus, TestKind, TestType
from immunity.models.heal_tables import ErrorPattern, FixEvent, FixProposal
from immunity.models.schemas import utcnow
from immunity.models.types import json_column, utc_column

__all__ = [
    "DEFAULT_PROJECT",
    "Alert",
    "Deployment",
    "ErrorPattern",
    "Experiment",
    "ExperimentResult",
    "FailureEvent",
    "FixEvent",
    "FixProposal",
    "OccurrenceBucket",
    "RegressionTest",
    "Signature",
    "SuccessEvent",
    "SuiteRun",
    "TestExecution",
]


# Whose events are whose: a Sentry DSN's project id, an API token's project, or this one.
DEFAULT_PROJECT = "default"


class Signature(SQLModel, table=True):
    """A group of failures of one project that share a fingerprint (seed: generation_failures)."""

    # The same error in two projects is two signatures. The key's first column is the project,
    # so it is also the index that reads one project's signatures.
    __table_args__ = (
        UniqueConstraint("project", "fingerprint", name="uq_signature_project_fingerprint"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project: str = Field(
        default=DEFAULT_PROJECT,
        max_length=64,
        sa_column_kwargs={"server_default": DEFAULT_PROJECT},
        description="Whose: a Sentry DSN's project id, or the ingest token's project.",
    )
    fingerprint: str = Field(max_length=64)
    error_type: str = Field(max_length=256)
    message: str = Field(sa_column=Column(Text, nullable=False), description="Normalised message.")
    culprit: str = Field(default="", max_length=512, description="Top in-app frame.")
    category: str = Field(max_length=32, index=True)
    severity: str = Field(max_length=16, description="The highest severity seen.")
    first_seen: datetime = Field(sa_column=utc_column(nullable=False))
    last_seen: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    occurrence_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    status: str = Field(default=SignatureStatus.NEW, max_length=16, index=True)
    # No foreign key: the test points back with one, and a cycle would need ALTERs on SQLite.
    test_id: int | None = Field(default=None, index=True)
    untestable_reason: str | None = Field(default=None, max_length=512)
    suspect_deployment_id: int | None = Field(default=None)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )


class FailureEvent(SQLModel, table=True):
    """One occurrence of a signature; only the newest samples per signature are kept."""

    __table_args__ = (Index("ix_failureevent_signature_received", "signature_id", "received_at"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    signature_id: int = Field(
        sa_column=Column(Integer, ForeignKey("signature.id", ondelete="CASCADE"), nullable=False)
    )
    received_at: datetime = Field(sa_column=utc_column(nullable=False))
    environment: str = Field(max_length=64)
    release: str | None = Field(default=None, max_length=128)
    error_type: str = Field(max_length=256)
    message: str = Field(sa_column=Column(Text, nullable=False), description="Scrubbed, truncated.")
    frames: list[dict[str, Any]] = Field(default_factory=list, sa_column=json_column())
    stacktrace: str | None = Field(default=None, sa_column=Column(Text))
    request: dict[str, Any] | None = Field(default=None, sa_column=json_column())
    status_code: int | None = None
    context: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    tags: dict[str, str] = Field(default_factory=dict, sa_column=json_column())
    user_hash: str | None = Field(default=None, max_length=64)
    source: str = Field(max_length=16)
    category: str = Field(max_length=32)
    severity: str = Field(max_length=16)


class OccurrenceBucket(SQLModel, table=True):
    """Exact occurrences of a signature per time bucket (samples are bounded; these are not)."""

    __table_args__ = (
        UniqueConstraint(
            "signature_id", "bucket_start", name="uq_occurrencebucket_signature_start"
        ),
        Index("ix_occurrencebucket_start", "bucket_start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    signature_id: int = Field(
        sa_column=Column(Integer, ForeignKey("signature.id", ondelete="CASCADE"), nullable=False)
    )
    bucket_start: datetime = Field(sa_column=utc_column(nullable=False))
    count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class SuccessEvent(SQLModel, table=True):
    """One successful operation (seed: generation_analytics)."""

    __table_args__ = (Index("ix_successevent_operation_received", "operation", "received_at"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    operation: str = Field(max_length=512)
    received_at: datetime = Field(sa_column=utc_column(nullable=False, index=True))
    environment: str = Field(max_length=64)
    duration_ms: float = 0
    list_counts: dict[str, int] = Field(default_factory=dict, sa_column=json_column())
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())


class RegressionTest(SQLModel, table=True):
    """A test that replays what once failed (seed: auto_generated_tests)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    kind: str = Field(default=TestKind.HTTP, max_length=16)
    type: str = Field(default=TestType.REGRESSION, max_length=16)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=json_column(nullable=False))
    expectations: dict[str, Any] = Field(
        default_factory=dict, sa_column=json_column(nullable=False)
    )
    framework: str | None = Field(default=None, max_length=32)
    tags: list[str] = Field(default_factory=list, sa_column=json_column(nullable=False))
    environment: str = Field(default="production", max_length=64)
    confidence: int = Field(default=75, ge=0, le=100)
    run_count: int = 0
    pass_count: int = 0
    fail_count: int = 0
    flaky_count: int = 0
    is_active: bool = True
    quarantined: bool = False
    allow_unsafe: bool = Field(
        default=False, description="May replay POST/PUT/PATCH/DELETE against production."
    )
    # Generated tests only (None for manual ones): did the replay fail the way the signature did?
    reproduction: str | None = Field(default=None, max_length=16, index=True)
    reproduction_evidence: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    reproduction_checked_at: datetime | None = Field(default=None, sa_column=utc_column())
    capture_issues: list[str] = Field(
        default_factory=list,
        sa_column=json_column(),
        description="What the captured request lacks: a declared body, a cut one, scrubbed values.",
    )
    # Unique: "exactly one test per signature" holds even under concurrent generation.
    created_from_signature_id: int | None = Field(
        default=None,
        sa_column=Column(
            Integer, ForeignKey("signature.id", ondelete="SET NULL"), unique=True, nullable=True
        ),
    )
    last_run_at: datetime | None = Field(default=None, sa_column=utc_column())
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )


class SuiteRun(SQLModel, table=True):
    """One run of a selection of tests against one environment."""

    id: int | None = Field(default=None, primary_key=True)
    trigger: str = Field(max_length=16)
    environment: str | None = Field(default=None, max_length=64)
    selection: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    status: str = Field(default="running", max_length=16, description="running or finished.")
    total: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    flaky: int = 0
    skipped: int = 0
    critical_failures: list[str] = Field(
        default_factory=list,
        sa_column=json_column(),
        description="Names of the critical tests that failed: the CI gate.",
    )
    pass_rate: float | None = None
    flow_run_id: str | None = Field(default=None, max_length=64)
    started_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
    finished_at: datetime | None = Field(default=None, sa_column=utc_column())


class TestExecution(SQLModel, table=True):
    """One run of one test (seed: test_execution_results)."""

    __test__ = False  # not a pytest class
    __table_args__ = (Index("ix_testexecution_test_started", "test_id", "started_at"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    test_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("regressiontest.id", ondelete="CASCADE"), nullable=False
        )
    )
    suite_run_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("suiterun.id", ondelete="CASCADE"), index=True),
    )
    status: str = Field(max_length=16, index=True)
    duration_ms: float = 0
    attempts: int = 1
    error: str | None = Field(default=None, sa_column=Column(Text))
    expected: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    actual: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    calls: list[dict[str, Any]] = Field(default_factory=list, sa_column=json_column())
    environment: str = Field(max_length=64)
    trigger: str = Field(max_length=16)
    flow_run_id: str | None = Field(default=None, max_length=64)
    artifacts: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    confidence_after: int | None = None
    started_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )


class Alert(SQLModel, table=True):
    """A message sent (or due) about the system's health; one per key per cooldown."""

    __table_args__ = (Index("ix_alert_key_sent", "key", "sent_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(
        max_length=200, description="What the alert is about; the cooldown is per key."
    )
    kind: str = Field(
        max_length=32, description="e.g. failure_rate, critical_signature, regressed."
    )
    severity: str = Field(max_length=16)
    message: str = Field(sa_column=Column(Text, nullable=False))
    channel: str = Field(default="", max_length=200, description="Where it went: block or webhook.")
    delivered: bool = False
    error: str | None = Field(default=None, sa_column=Column(Text))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    sent_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
