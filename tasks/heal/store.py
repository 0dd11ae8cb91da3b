"""Fix proposals in the store: creation, status changes with their audit trail, look-ups.

Every function takes the caller's `session` and works inside its transaction: writers flush, the
caller commits or rolls back (`with session_scope(engine) as session: ...` does both).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from immunity.models.enums import FixStatus, RiskLevel
from immunity.models.errors import ConflictError, NotFoundError
from immunity.models.fixes import Candidate, DiffCheck, Verification
from immunity.models.heal_tables import FixEvent, FixProposal
from immunity.models.schemas import utcnow
from immunity.models.tables import Signature

__all__ = [
    "OPEN_STATUSES",
    "InvalidTransitionError",
    "ProposalNotFoundError",
    "get_proposal",
    "list_events",
    "list_proposals",
    "proposal_for_run",
    "record_candidate",
    "recently_proposed",
    "transition",
]

SYSTEM = "immunity"

# Which status may follow which; anything else is a bug or a race and is refused.
_MOVES: dict[FixStatus, set[FixStatus]] = {
    FixStatus.PROPOSED: {FixStatus.AWAITING_APPROVAL, FixStatus.REFUSED},
    FixStatus.AWAITING_APPROVAL: {FixStatus.APPROVED, FixStatus.REJECTED, FixStatus.EXPIRED},
    FixStatus.APPROVED: {FixStatus.APPLIED, FixStatus.FAILED},
    FixStatus.APPLIED: {FixStatus.VERIFIED, FixStatus.FAILED, FixStatus.ROLLED_BACK},
    FixStatus.VERIFIED: {FixStatus.ROLLED_BACK},
}

# A proposal in one of these blocks another for the same signature.
OPEN_STATUSES = (
    FixStatus.PROPOSED,
    FixStatus.AWAITING_APPROVAL,
    FixStatus.APPROVED,
    FixStatus.APPLIED,
)


class ProposalNotFoundError(NotFoundError):
    def __init__(self, proposal_id: int) -> None:
        super().__init__(f"fix proposal {proposal_id} does not exist")
        self.proposal_id = proposal_id


class InvalidTransitionError(ConflictError, ValueError):
    def __init__(self, proposal: FixProposal, target: str) -> None:
        super().__init__(
            f"fix proposal {proposal.id} is {proposal.status}; it cannot become {target}"
        )
        self.proposal_id = proposal.id
        self.status = proposal.status


def record_candidate(
    *,
    session: Session,
    signature_id: int,
    test_id: int | None,
    candidate: Candidate,
    check: DiffCheck,
    verification: Verification,
    risk: RiskLevel,
    risk_reasons: Sequence[str],
    base_ref: str | None,
    valid: bool,
    flow_run_id: str | None,
) -> FixProposal:
    """Store one validated candidate: `proposed` when valid, `refused` (never shown) when not."""
    status = FixStatus.PROPOSED if valid else FixStatus.REFUSED
    problems = list(check.problems)
    if not valid and not problems:
        problems = [f"verification: {verification.detail}"]
    proposal = FixProposal(
        signature_id=signature_id,
        test_id=test_id,
        pattern_id=candidate.pattern_id,
        strategy=candidate.strategy,
        fix_rule=candidate.fix_rule,
        model=candidate.model,
        root_cause=candidate.root_cause,
        diff=check.applied_diff or candidate.diff,
        explanation=candidate.explanation,
        confidence=candidate.confidence,
        risk_level=risk,
        risk_reasons=list(risk_reasons),
        files_touched=check.files,
        problems=problems,
        verification=verification.model_dump(mode="json"),
        status=status,
        base_ref=base_ref,
        flow_run_id=flow_run_id,
    )
    session.add(proposal)
    session.flush()
    assert proposal.id is not None
    note = "; ".join(problems) if problems else verification.detail
    session.add(FixEvent(proposal_id=proposal.id, status=status, actor=SYSTEM, note=note))
    session.flush()
    return proposal


def transition(
    *,
    session: Session,
    proposal_id: int,
    target: FixStatus,
    actor: str = SYSTEM,
    note: str = "",
    **fields: Any,
) -> FixProposal:
    """Move a proposal to `target`, set `fields` on it and log who did it and when."""
    query = select(FixProposal).where(FixProposal.id == proposal_id).with_for_update()
    proposal = session.exec(query).first()
    if proposal is None:
        raise ProposalNotFoundError(proposal_id)
    if target not in _MOVES.get(FixStatus(proposal.status), set()):
        raise InvalidTransitionError(proposal, target)
    proposal.status = target
    proposal.updated_at = utcnow()
    for name, value in fields.items():
        setattr(proposal, name, value)
    session.add(proposal)
    session.add(FixEvent(proposal_id=proposal_id, status=target, actor=actor, note=note))
    session.flush()
    return proposal


def get_proposal(*, session: Session, proposal_id: int) -> FixProposal:
    """Return the proposal or raise ProposalNotFoundError."""
    proposal = session.get(FixProposal, proposal_id)
    if proposal is None:
        raise ProposalNotFoundError(proposal_id)
    return proposal


def list_proposals(
    *, session: Session, statuses: Sequence[str] = (), limit: int = 50, project: str | None = None
) -> list[FixProposal]:
    """Return the newest proposals, optionally only those in `statuses` or of `project`'s
    signatures."""
    query = select(FixProposal).order_by(col(FixProposal.id).desc()).limit(limit)
    if statuses:
        query = query.where(col(FixProposal.status).in_(list(statuses)))
    if project is not None:
        in_project = select(Signature.id).where(Signature.project == project)
        query = query.where(col(FixProposal.signature_id).in_(in_project))
    return list(session.exec(query).all())


def list_events(*, session: Session, proposal_id: int) -> list[FixEvent]:
    """Return a proposal's status changes, oldest first."""
    query = select(FixEvent).where(FixEvent.proposal_id == proposal_id).order_by(col(FixEvent.id))
    return list(session.exec(query).all())


def proposal_for_run(*, session: Session, flow_run_id: str) -> FixProposal | None:
    """Return the proposal a flow run put up for approval (a suspended run re-runs from the top)."""
    query = select(FixProposal).where(
        FixProposal.flow_run_id == flow_run_id,
        col(FixProposal.status).not_in([FixStatus.PROPOSED, FixStatus.REFUSED]),
    )
    return session.exec(query.order_by(col(FixProposal.id).desc())).first()


def recently_proposed(
    *, session: Session, signature_ids: Sequence[int], cooldown: timedelta
) -> set[int]:
    """Return the signatures that have an open proposal, or one turned down within `cooldown`."""
    if not signature_ids:
        return set()
    since = utcnow() - cooldown
    declined = [FixStatus.REJECTED, FixStatus.EXPIRED]
    query = select(FixProposal.signature_id).where(
        col(FixProposal.signature_id).in_(list(signature_ids)),
        col(FixProposal.status).in_(list(OPEN_STATUSES))
        | (col(FixProposal.status).in_(declined) & (col(FixProposal.updated_at) >= since)),
    )
    return set(session.exec(query).all())
