"""Fix proposals over HTTP: list and read them (`read` scope), and decide one (`review` scope),
which resumes its flow run. A token sees its own project's proposals (every project's with
`admin`); a decision is recorded as the token's principal, never as a name the body gives."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlmodel import Session

from immunity.api.auth import Principal
from immunity.api.deps import EngineDep, ReaderDep, ReviewerDep, SessionDep
from immunity.api.errors import error_responses
from immunity.api.public import DecisionAnswer, FixDetail, FixEventPublic, FixPublic
from immunity.models.enums import FixStatus
from immunity.models.fixes import Approval
from immunity.models.heal_tables import FixProposal
from immunity.models.tables import Signature
from immunity.tasks.heal.approvals import submit_decision
from immunity.tasks.heal.store import (
    ProposalNotFoundError,
    get_proposal,
    list_events,
    list_proposals,
)

__all__ = ["Decision", "FixList", "router"]

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/v1/fixes",
    tags=["fixes"],
    responses=error_responses(401, 403, 503),
)


class FixList(BaseModel):
    """The newest fix proposals, newest first."""

    fixes: list[FixPublic]


class Decision(BaseModel):
    """A decision on a proposal awaiting approval, recorded as the token's principal."""

    approved: bool = Field(description="Apply this fix on a new branch? False rejects it.")
    notes: str = Field(default="", max_length=4_000, description="Why; kept with the decision.")
    reviewer: str | None = Field(
        default=None,
        max_length=200,
        description="Ignored (older clients send it): the reviewer recorded is the token's name.",
    )


def _visible_proposal(session: Session, proposal_id: int, principal: Principal) -> FixProposal:
    """Return the proposal if the principal may see it; another project's is as if absent."""
    proposal = get_proposal(session=session, proposal_id=proposal_id)
    project = principal.visible_project
    if project is not None:
        signature = session.get(Signature, proposal.signature_id)
        if signature is None or signature.project != project:
            raise ProposalNotFoundError(proposal_id)
    return proposal


@router.get("", response_model=FixList, responses=error_responses(422))
def get_fixes(
    session: SessionDep,
    principal: ReaderDep,
    status: Annotated[FixStatus | None, Query(description="Only proposals in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="How many (1–500).")] = 50,
) -> FixList:
    """List the newest fix proposals, optionally only those in one status."""
    found = list_proposals(
        session=session,
        statuses=[status] if status else [],
        limit=limit,
        project=principal.visible_project,
    )
    return FixList(fixes=[FixPublic.model_validate(proposal) for proposal in found])


@router.get("/{proposal_id}", response_model=FixDetail, responses=error_responses(404))
def get_fix(proposal_id: int, session: SessionDep, principal: ReaderDep) -> FixDetail:
    """Return one proposal with its status history (who did what, when)."""
    proposal = _visible_proposal(session, proposal_id, principal)
    trail = list_events(session=session, proposal_id=proposal_id)
    return FixDetail(
        **FixPublic.model_validate(proposal).model_dump(),
        events=[FixEventPublic.model_validate(event) for event in trail],
    )


def _decide(engine: Engine, proposal_id: int, approval: Approval, principal: Principal) -> str:
    with Session(engine) as session:
        _visible_proposal(session, proposal_id, principal)
    return submit_decision(engine, proposal_id, approval).flow_run_id or ""


@router.post(
    "/{proposal_id}/decision",
    status_code=202,
    response_model=DecisionAnswer,
    responses=error_responses(404, 409, 422),
)
async def post_decision(
    proposal_id: int, decision: Decision, engine: EngineDep, principal: ReviewerDep
) -> DecisionAnswer:
    """Approve or reject a proposal awaiting approval: its paused flow run resumes with it,
    recorded as decided by the token's principal."""
    reviewer = principal.name[:200]
    approval = Approval(approved=decision.approved, reviewer=reviewer, notes=decision.notes)
    # The engine, not a request session: resuming waits on Prefect for up to seconds.
    flow_run_id = await run_in_threadpool(_decide, engine, proposal_id, approval, principal)
    verdict = "approved" if decision.approved else "rejected"
    log.info("proposal %s %s by %s", proposal_id, verdict, reviewer)
    if decision.reviewer and decision.reviewer != reviewer:
        log.info("proposal %s: the body's reviewer %r was ignored", proposal_id, decision.reviewer)
    return DecisionAnswer(
        proposal_id=proposal_id,
        flow_run_id=flow_run_id or None,
        approved=decision.approved,
        reviewer=reviewer,
        resumed=True,
    )
