"""The shapes of a fix experiment: its two variants, one round's counts, and how it ended."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["ExperimentSummary", "RoundCounts", "Variant"]


class Variant(BaseModel):
    """One side of an experiment: a ref deployed to its own target."""

    name: str = Field(min_length=1, max_length=100, description="A or B.")
    ref: str = Field(min_length=1, max_length=200, description="The git ref or commit deployed.")
    target: str = Field(min_length=1, max_length=100, description="A name in deploy_targets.")
    environment: str | None = Field(
        default=None, description="The target's environment, filled in when the experiment starts."
    )
    fix_id: int | None = Field(default=None, description="The fix proposal this ref carries.")
    deployed_ref: str | None = Field(
        default=None, description="What the target resolved the ref to (a local target: the sha)."
    )

    @property
    def promotable_ref(self) -> str:
        """The ref a promotion deploys: the resolved sha when known (`HEAD` moves on)."""
        return self.deployed_ref or self.ref


class RoundCounts(BaseModel):
    """How many runs of the affected tests passed and failed against one variant in one round."""

    variant: str
    round: int = Field(ge=1)
    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0, description="Refused before sending: not a sample.")


class ExperimentSummary(BaseModel):
    """What an experiment found: its status, the winner and the evidence."""

    experiment_id: int
    status: str = Field(description="running, decided, inconclusive or failed.")
    winner: str | None = None
    winner_ref: str | None = None
    p_value: float | None = Field(default=None, ge=0, le=1)
    posterior: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="P(the winner's pass rate is higher); with no winner, P(B's is).",
    )
    rounds: int = Field(default=0, ge=0)
    samples: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="Variant → (passed, failed) over all rounds."
    )
    promoted_deployment_id: int | None = None
    detail: str = ""
