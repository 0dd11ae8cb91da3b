"""What a deployment target answered when a ref was deployed to it."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["TargetOutcome"]


class TargetOutcome(BaseModel):
    """How one deployment to a target ended: deployed or not, where to look, and why."""

    ok: bool = Field(description="The ref is deployed (a run succeeded, a copy answers).")
    ref: str = Field(description="The ref deployed; a local target gives the sha it resolved to.")
    external_id: str | None = Field(
        default=None, description="The workflow run, deployment, hook job or process id."
    )
    external_url: str | None = Field(
        default=None, description="Where a human sees it: the run's page, the deployment's URL."
    )
    detail: str = Field(description="What happened, in a sentence or two; the log tail on failure.")
