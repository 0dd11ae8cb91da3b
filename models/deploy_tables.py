"""The deploy loop's store: deployments with their gate, watch and rollback, and fix experiments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, Text
from sqlmodel import Field, SQLModel

from immunity.models.enums import DeploymentStatus, ExperimentStatus
from immunity.models.schemas import utcnow
from immunity.models.types import json_column, utc_column

__all__ = ["Deployment", "Experiment", "ExperimentResult"]


class Deployment(SQLModel, table=True):
    """One deployment of a ref to a target (seed: deployment_logs, auto_rollback_logs)."""

    id: int | None = Field(default=None, primary_key=True)
    target: str = Field(
        max_length=100, index=True, description="A name in IMMUNITY_DEPLOY_TARGETS."
    )
    kind: str = Field(max_length=32, description="local_command, github_actions, vercel, webhook.")
    environment: str = Field(max_length=64, index=True)
    ref: str = Field(max_length=200, description="The git ref or commit deployed.")
    previous_ref: str | None = Field(
        default=None, max_length=200, description="What a rollback restores."
    )
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    fix_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("fixproposal.id", ondelete="SET NULL"), index=True),
    )
    rollback_of: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("deployment.id", ondelete="SET NULL")),
        description="The deployment this one rolls back.",
    )
    status: str = Field(default=DeploymentStatus.PENDING, max_length=16, index=True)
    triggered_by: str = Field(default="immunity", max_length=200)
    external_id: str | None = Field(
        default=None, max_length=200, description="Run or deployment id."
    )
    external_url: str | None = Field(default=None, max_length=1000)
    gate: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    health_before: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    health_after: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    watch: dict[str, Any] = Field(
        default_factory=dict, sa_column=json_column(), description="The evidence of the watch."
    )
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    flow_run_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow, index=True)
    )
    deployed_at: datetime | None = Field(default=None, sa_column=utc_column())
    finished_at: datetime | None = Field(default=None, sa_column=utc_column())


class Experiment(SQLModel, table=True):
    """Two fix variants compared on the same tests until one is significantly better."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    signature_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("signature.id", ondelete="SET NULL"), index=True),
    )
    variants: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=json_column(nullable=False),
        description="[{name, ref, target, environment, fix_id}] for A and B.",
    )
    method: str = Field(default="fisher", max_length=32, description="fisher or beta_binomial.")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_samples: int = Field(default=20, ge=1, description="Per variant before any decision.")
    max_samples: int = Field(default=200, ge=1, description="Per variant; then inconclusive.")
    status: str = Field(default=ExperimentStatus.RUNNING, max_length=16, index=True)
    winner: str | None = Field(default=None, max_length=100)
    p_value: float | None = None
    posterior: float | None = Field(default=None, description="P(winner's pass rate is higher).")
    promoted_deployment_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("deployment.id", ondelete="SET NULL"))
    )
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    flow_run_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
    finished_at: datetime | None = Field(default=None, sa_column=utc_column())


class ExperimentResult(SQLModel, table=True):
    """One round of one variant: how many runs of the affected tests passed and failed."""

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    variant: str = Field(max_length=100)
    round: int = Field(ge=1)
    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    recorded_at: datetime = Field(
        default_factory=utcnow, sa_column=utc_column(nullable=False, default=utcnow)
    )
