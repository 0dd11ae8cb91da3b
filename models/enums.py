"""The closed vocabularies of the store, in the seeds' words."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "Category",
    "DeploymentStatus",
    "ExperimentStatus",
    "EventSource",
    "ExecutionStatus",
    "FixStatus",
    "FixStrategy",
    "Reproduction",
    "RiskLevel",
    "Severity",
    "SignatureStatus",
    "TestKind",
    "TestState",
    "TestType",
    "Trigger",
    "severity_rank",
]


class Category(StrEnum):
    AI_TIMEOUT = "ai_timeout"
    RATE_LIMIT = "rate_limit"
    VALIDATION_ERROR = "validation_error"
    DEPENDENCY_ERROR = "dependency_error"
    SYNTAX_ERROR = "syntax_error"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


_SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}


def severity_rank(severity: str) -> int:
    """Return the order of a severity (low=0 … critical=3) so the maximum can be kept."""
    return _SEVERITY_ORDER[Severity(severity)]


class SignatureStatus(StrEnum):
    NEW = "new"
    ONGOING = "ongoing"
    TESTED = "tested"
    FIXED = "fixed"
    REGRESSED = "regressed"
    IGNORED = "ignored"


class EventSource(StrEnum):
    PYTHON = "python"
    HTTP = "http"
    SENTRY = "sentry"
    FILE = "file"
    BROWSER = "browser"  # a page's JavaScript error, with breadcrumbs of the last actions


class TestKind(StrEnum):
    __test__ = False  # not a pytest class

    HTTP = "http"
    SCENARIO = "scenario"
    UI = "ui"


class TestType(StrEnum):
    __test__ = False

    SMOKE = "smoke"
    REGRESSION = "regression"
    CONTRACT = "contract"
    INTEGRATION = "integration"


class TestState(StrEnum):
    """Where a test stands in the suite: it runs, it runs without gating, or it does not run."""

    __test__ = False

    ACTIVE = "active"
    QUARANTINED = "quarantined"
    INACTIVE = "inactive"


class ExecutionStatus(StrEnum):
    """How one run of one test ended; `skipped` is a run refused before anything was sent."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    FLAKY = "flaky"
    SKIPPED = "skipped"


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    CI = "ci"
    DEPLOYMENT = "deployment"


class Reproduction(StrEnum):
    """Whether replaying a generated test's captured request failed the way the signature did."""

    PENDING = "pending"  # generated, not checked yet
    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not_reproduced"
    UNVERIFIED = "unverified"  # could not be checked: refused, or the target did not answer


class FixStrategy(StrEnum):
    """Which link of the fix chain produced a proposal (seed 002's four, plus offline rules)."""

    PATTERN = "pattern"  # a learned ErrorPattern with enough confidence
    RULE = "rule"  # an offline rule for a common Python error (no LLM)
    AI = "ai"
    AI_WITH_CONTEXT = "ai_with_context"
    ROLLBACK = "rollback"


class FixStatus(StrEnum):
    """Where a fix proposal stands; every change is logged with who and when."""

    PROPOSED = "proposed"
    REFUSED = "refused"  # failed validation: never shown for approval
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided before the approval timed out
    APPLIED = "applied"
    VERIFIED = "verified"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class DeploymentStatus(StrEnum):
    """Where a deployment stands (seed: deployment_logs)."""

    PENDING = "pending"
    REFUSED = "refused"  # the readiness gate said no: nothing was triggered
    DEPLOYING = "deploying"
    WATCHING = "watching"
    SUCCEEDED = "succeeded"  # promoted after a healthy watch
    FAILED = "failed"  # the target reported failure
    ROLLED_BACK = "rolled_back"


class ExperimentStatus(StrEnum):
    """Where a fix experiment stands (seed 002's A/B for fixes)."""

    RUNNING = "running"
    DECIDED = "decided"  # one variant is significantly better
    INCONCLUSIVE = "inconclusive"  # the maximum sample was reached without a difference
    FAILED = "failed"
