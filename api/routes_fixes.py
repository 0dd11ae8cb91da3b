"""Fix proposals over HTTP: list and read them, and decide one (which resumes its flow run)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from immunity.api.auth import require_token
from immunity.api.errors import ApiError
from immunity.models.db import session_scope
from immunity.models.enums import FixStatus
from immunity.models.fixes import Approval
from immunity.models.heal_tables import FixProposal
from immunity.tasks.heal.approvals import DecisionConflictError, submit_decision
from immunity.tasks.heal.store import (
    ProposalNotFoundError,
    get_proposal,
    list_events,
    list_proposals,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/fixes", dependencies=[Depends(require_token)])


def _public(proposal: FixProposal) -> dict[str, Any]:
    return proposal.model_dump(mode="json")


@router.get("")
def get_fixes(request: Request, status: FixStatus | None = None, limit: int = 50) -> JSONResponse:
    """List the newest fix proposals, optionally only those in one status."""
    if not 1 <= limit <= 500:
        raise ApiError(400, "limit must be between 1 and 500")
    with session_scope(request.app.state.engine) as session:
        found = list_proposals(session=session, statuses=[status] if status else [], limit=limit)
    return JSONResponse({"fixes": [_public(p) for p in found]})


@router.get("/{proposal_id}")
def get_fix(proposal_id: int, request: Request) -> JSONResponse:
    """Return one proposal with its status history (who did what, when)."""
    with session_scope(request.app.state.engine) as session:
        try:
            proposal = get_proposal(session=session, proposal_id=proposal_id)
        except ProposalNotFoundError as error:
            raise ApiError(404, str(error)) from None
        trail = list_events(session=session, proposal_id=proposal_id)
    events = [event.model_dump(mode="json") for event in trail]
    return JSONResponse({**_public(proposal), "events": events})


@router.post("/{proposal_id}/decision", status_code=202)
async def post_decision(proposal_id: int, decision: Approval, request: Request) -> JSONResponse:
    """Approve or reject a proposal awaiting approval: its paused flow run resumes with it."""
    engine = request.app.state.engine
    try:
        proposal = await run_in_threadpool(submit_decision, engine, proposal_id, decision)
    except ProposalNotFoundError as error:
        raise ApiError(404, str(error)) from None
    except DecisionConflictError as error:
        raise ApiError(409, str(error)) from None
    return JSONResponse(
        {
            "proposal_id": proposal_id,
            "flow_run_id": proposal.flow_run_id,
            "approved": decision.approved,
            "reviewer": decision.reviewer,
            "resumed": True,
        },
        status_code=202,
    )
