"""A reviewer's decision from outside the Prefect UI (CLI, API): resume the paused flow run.

The flow records the decision itself when it resumes, so the store has one writer and the Prefect
UI, the CLI and the API all take the same path.
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect import get_client
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import resume_flow_run
from sqlalchemy import Engine

from immunity.models.db import session_scope
from immunity.models.enums import FixStatus
from immunity.models.errors import ConflictError
from immunity.models.fixes import Approval
from immunity.models.heal_tables import FixProposal
from immunity.tasks.heal.store import get_proposal

__all__ = ["DecisionConflictError", "submit_decision", "wait_for_decision"]

PAUSE_WAIT_S = 15.0


class DecisionConflictError(ConflictError):
    """The proposal is not waiting for a decision (decided, expired, or its run is gone)."""


def submit_decision(engine: Engine, proposal_id: int, approval: Approval) -> FixProposal:
    """Resume the flow run waiting on the proposal with the reviewer's decision."""
    with session_scope(engine) as session:
        proposal = get_proposal(session=session, proposal_id=proposal_id)
    if proposal.status != FixStatus.AWAITING_APPROVAL:
        raise DecisionConflictError(
            f"fix proposal {proposal_id} is {proposal.status}: there is nothing to decide"
        )
    if not proposal.flow_run_id:
        raise DecisionConflictError(f"fix proposal {proposal_id} has no flow run to resume")
    run_input = approval.model_dump(include={"approved", "reviewer", "notes"})
    run_id = UUID(proposal.flow_run_id)
    try:
        _await_pause(run_id)
        resume_flow_run(run_id, run_input=run_input)
    except ObjectNotFound:
        raise DecisionConflictError(
            f"flow run {proposal.flow_run_id} is not on this Prefect server (is PREFECT_API_URL"
            " the server the heal flow runs on?)"
        ) from None
    except (NotPausedError, FlowPauseTimeout) as error:
        raise DecisionConflictError(
            f"flow run {proposal.flow_run_id} is no longer waiting for a decision: {error}"
        ) from None
    except RuntimeError as error:  # Prefect refused the input, e.g. it failed validation
        raise DecisionConflictError(str(error)) from None
    return proposal


def _await_pause(run_id: UUID, timeout_s: float = PAUSE_WAIT_S) -> None:
    """Wait for the run to reach its pause: it shows the proposal a moment before it pauses."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is None or not state.is_running():
                return  # paused, or finished: resume_flow_run says which
            time.sleep(0.25)


def wait_for_decision(engine: Engine, proposal_id: int, *, timeout_s: float) -> FixProposal:
    """Return the proposal once its flow has recorded a decision, or as it is after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        with session_scope(engine) as session:
            proposal = get_proposal(session=session, proposal_id=proposal_id)
        if proposal.status != FixStatus.AWAITING_APPROVAL or time.monotonic() >= deadline:
            return proposal
        time.sleep(0.5)
