"""The heal loop's store: learned error patterns, fix proposals and every change of their status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, Text
from sqlmodel import Field, SQLModel

from immunity.models.enums import FixStatus, RiskLevel
from immunity.models.schemas import utcnow
from immunity.models.types import json_column, utc_column

__all__ = ["ErrorPattern", "FixEvent", "FixProposal"]


class ErrorPattern(SQLModel, table=True):
    """A kind of error and the fix that worked for it (seed: universal_error_patterns)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    error_type: str = Field(max_length=256, index=True, description="Exact exception type name.")
    message_regex: str = Field(
        default="", max_length=1024, description="Searched in the message; '' matches all."
    )
    fix_rule: str | None = Field(
        default=None, max_length=64, description="The offline rule that fixes it, when one does."
    )
    fix_template: str | None = Field(
        default=None,
        sa_column=Column(Text),
        description="A diff that fixed it (AI fixes): re-applied where it still applies.",
    )
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    confidence: float = Field(default=0.5, ge=0, le=1, description="From its success rate.")
    successes: int = 0
    failures: int = 0
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )


class FixProposal(SQLModel, table=True):
    """A proposed change for a failing signature and what became of it (seed: fix_proposals)."""

    __table_args__ = (Index("ix_fixproposal_signature_status", "signature_id", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    signature_id: int = Field(
        sa_column=Column(Integer, ForeignKey("signature.id", ondelete="CASCADE"), nullable=False)
    )
    test_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("regressiontest.id", ondelete="SET NULL")),
    )
    pattern_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("errorpattern.id", ondelete="SET NULL")),
    )
    strategy: str = Field(max_length=32)
    fix_rule: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=128, description="The LLM, for AI fixes.")
    root_cause: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    diff: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    explanation: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    confidence: float = Field(default=0, ge=0, le=1)
    risk_level: str = Field(default=RiskLevel.MEDIUM, max_length=16)
    risk_reasons: list[str] = Field(default_factory=list, sa_column=json_column())
    files_touched: list[str] = Field(default_factory=list, sa_column=json_column())
    problems: list[str] = Field(
        default_factory=list,
        sa_column=json_column(),
        description="Why validation refused it (refused proposals only).",
    )
    verification: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=json_column(),
        description="The regression test against the unpatched and the patched copy.",
    )
    status: str = Field(default=FixStatus.PROPOSED, max_length=24, index=True)
    base_ref: str | None = Field(default=None, max_length=64, description="Commit validated on.")
    reviewer: str | None = Field(default=None, max_length=200)
    notes: str | None = Field(default=None, sa_column=Column(Text))
    decided_at: datetime | None = Field(default=None, sa_column=utc_column())
    branch: str | None = Field(default=None, max_length=200)
    commit: str | None = Field(default=None, max_length=64)
    flow_run_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )


class FixEvent(SQLModel, table=True):
    """One change of a proposal's status: what, who and when (the audit trail)."""

    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("fixproposal.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    status: str = Field(max_length=24)
    actor: str = Field(max_length=200, description="A reviewer's name, or 'immunity'.")
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
