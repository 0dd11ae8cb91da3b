"""Fix proposals over HTTP: list and read them, and decide one (which resumes its flow run)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from immunity.api.auth import authenticate
from immunity.api.deps import EngineDep, PrincipalDep, SessionDep
from immunity.api.errors import error_responses
from immunity.api.public import DecisionAnswer, FixDetail, FixEventPublic, FixPublic
from immunity.models.enums import FixStatus
from immunity.models.fixes import Approval
from immunity.tasks.heal.approvals import submit_decision
from immunity.tasks.heal.store import get_proposal, list_events, list_proposals

__all__ = ["FixList", "router"]

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/fixes",
    tags=["fixes"],
    dependencies=[Depends(authenticate)],
    responses=error_responses(401, 503),
)


class FixList(BaseModel):
    """The newest fix proposals, newest first."""

    fixes: list[FixPublic]


@router.get("", response_model=FixList, responses=error_responses(422))
def get_fixes(
    session: SessionDep,
    status: Annotated[FixStatus | None, Query(description="Only proposals in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="How many (1–500).")] = 50,
) -> FixList:
    """List the newest fix proposals, optionally only those in one status."""
    found = list_proposals(session=session, statuses=[status] if status else [], limit=limit)
    return FixList(fixes=[FixPublic.model_validate(proposal) for proposal in found])


@router.get("/{proposal_id}", response_model=FixDetail, responses=error_responses(404))
def get_fix(proposal_id: int, session: SessionDep) -> FixDetail:
    """Return one proposal with its status history (who did what, when)."""
    proposal = get_proposal(session=session, proposal_id=proposal_id)
    trail = list_events(session=session, proposal_id=proposal_id)
    return FixDetail(
        **FixPublic.model_validate(proposal).model_dump(),
        events=[FixEventPublic.model_validate(event) for event in trail],
    )


@router.post(
    "/{proposal_id}/decision",
    status_code=202,
    response_model=DecisionAnswer,
    responses=error_responses(404, 409, 422),
)
async def post_decision(
    proposal_id: int, decision: Approval, engine: EngineDep, principal: PrincipalDep
) -> DecisionAnswer:
    """Approve or reject a proposal awaiting approval: its paused flow run resumes with it."""
    # The engine, not a request session: resuming waits on Prefect for up to seconds.
    proposal = await run_in_threadpool(submit_decision, engine, proposal_id, decision)
    verdict = "approved" if decision.approved else "rejected"
    log.info("%s: proposal %s %s by %s", principal.name, proposal_id, verdict, decision.reviewer)
    return DecisionAnswer(
        proposal_id=proposal_id,
        flow_run_id=proposal.flow_run_id,
        approved=decision.approved,
        reviewer=decision.reviewer,
        resumed=True,
    )
