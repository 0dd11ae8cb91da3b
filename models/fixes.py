"""Shapes of the heal loop: a strategy's proposal, what validation finds, a human's decision."""

from __future__ import annotations

from typing import Any

from prefect.input import RunInput
from pydantic import BaseModel, ConfigDict, Field

from immunity.models.enums import ExecutionStatus, FixStrategy, RiskLevel

__all__ = [
    "AiFix",
    "Approval",
    "Candidate",
    "DiffCheck",
    "FixContext",
    "HealOutcome",
    "PatternInfo",
    "RuleFix",
    "SampleInfo",
    "SignatureInfo",
    "SourceLocation",
    "SourceSnippet",
    "TestInfo",
    "Verification",
]


class AiFix(BaseModel):
    """What the model must answer (OpenAI structured output): a diagnosis and a unified diff."""

    model_config = ConfigDict(extra="forbid")

    root_cause: str = Field(max_length=4_000, description="Why the error happens, in a paragraph.")
    diff: str = Field(
        max_length=60_000,
        description="A unified diff (git format, a/ and b/ prefixes, paths from the repository "
        "root) that fixes the root cause; empty when no safe fix is known.",
    )
    explanation: str = Field(max_length=4_000, description="What the change does and why.")
    confidence: float = Field(ge=0, le=1, description="How sure you are the diff fixes it, 0–1.")
    risk_level: RiskLevel = Field(description="How risky applying the diff is.")
    risk_reasons: list[str] = Field(max_length=20, description="Why the risk is what it is.")
    files_touched: list[str] = Field(max_length=50, description="Paths the diff changes.")


class RuleFix(BaseModel):
    """A fix an offline rule derived from the failing line; no model involved."""

    rule: str = Field(description="The rule's name, e.g. 'none_guard'.")
    path: str = Field(description="The repository-relative file it changes.")
    diff: str
    root_cause: str
    explanation: str


class Candidate(BaseModel):
    """One strategy's proposal before validation."""

    strategy: FixStrategy
    diff: str
    root_cause: str = ""
    explanation: str = ""
    confidence: float = Field(default=0.5, ge=0, le=1)
    claimed_risk: RiskLevel | None = None
    claimed_reasons: list[str] = Field(default_factory=list)
    fix_rule: str | None = None
    pattern_id: int | None = None
    model: str | None = None


class DiffCheck(BaseModel):
    """What validating a diff found; `problems` non-empty means it is refused."""

    files: list[str] = Field(default_factory=list)
    added: int = 0
    removed: int = 0
    problems: list[str] = Field(default_factory=list)
    sensitive: list[str] = Field(default_factory=list, description="Sensitive paths it touches.")
    created: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    applied_diff: str = Field(
        default="",
        description="The diff as git applied it: what is shown and what is committed.",
    )

    @property
    def ok(self) -> bool:
        return not self.problems


class Verification(BaseModel):
    """The regression test against the unpatched copy (before) and the patched one (after)."""

    ran: bool = False
    detail: str = Field(default="", description="Why it did not run, or what happened.")
    before: ExecutionStatus | None = None
    before_error: str | None = None
    after: ExecutionStatus | None = None
    after_error: str | None = None

    @property
    def fixed(self) -> bool:
        """Return whether the test failed before the change and passes after it."""
        return (
            self.ran
            and self.before in (ExecutionStatus.FAILED, ExecutionStatus.ERROR)
            and self.after == ExecutionStatus.PASSED
        )


class HealOutcome(BaseModel):
    """What one run of the heal flow came to."""

    signature_id: int
    proposal_id: int | None = None
    status: str = Field(description="The proposal's last status, or 'no_proposal'.")
    strategy: str | None = None
    refused: int = Field(default=0, description="Candidates refused before this one.")
    branch: str | None = None
    commit: str | None = None


class Approval(RunInput):
    """A reviewer's decision on a fix proposal, as the Prefect UI's form asks for it."""

    approved: bool = Field(description="Apply this fix on a new branch? Leave off to reject.")
    reviewer: str = Field(min_length=1, max_length=200, description="Your name, for the record.")
    notes: str = Field(default="", max_length=4_000, description="Why; kept with the decision.")


# What the AI strategies see: scrubbed, bounded, and sent as quoted data.


class SignatureInfo(BaseModel):
    id: int
    fingerprint: str
    error_type: str
    message: str
    culprit: str
    category: str
    severity: str
    occurrence_count: int


class SampleInfo(BaseModel):
    message: str
    stacktrace: str | None = None
    frames: list[dict[str, Any]] = Field(default_factory=list)
    request: dict[str, Any] | None = None
    status_code: int | None = None
    release: str | None = None
    environment: str = ""


class TestInfo(BaseModel):
    __test__ = False

    name: str
    spec: dict[str, Any]
    expectations: dict[str, Any]
    last_status: str | None = None
    last_error: str | None = None
    last_expected: dict[str, Any] = Field(default_factory=dict)
    last_actual: dict[str, Any] = Field(default_factory=dict)


class PatternInfo(BaseModel):
    name: str
    error_type: str
    message_regex: str
    description: str
    confidence: float


class SourceLocation(BaseModel):
    """An in-app frame resolved to a file of the repository, with the file's whole text."""

    path: str = Field(description="Repository-relative, '/'-separated.")
    lineno: int = Field(ge=1)
    function: str = ""
    text: str


class SourceSnippet(BaseModel):
    path: str = Field(description="Repository-relative.")
    start_line: int = Field(ge=1)
    text: str
    focus_line: int | None = Field(default=None, description="The frame's line, when known.")


class FixContext(BaseModel):
    """Everything a strategy may look at for one signature."""

    signature: SignatureInfo
    samples: list[SampleInfo] = Field(default_factory=list)
    test: TestInfo | None = None
    patterns: list[PatternInfo] = Field(default_factory=list)
    source: list[SourceSnippet] = Field(default_factory=list)
    source_roots: list[str] = Field(default_factory=list)
