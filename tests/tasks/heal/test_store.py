"""Fix proposals in the store: recorded, moved only along allowed paths, audited, looked up."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from immunity.models.db import session_scope
from immunity.models.enums import ExecutionStatus, FixStatus, FixStrategy, RiskLevel
from immunity.models.fixes import Candidate, DiffCheck, Verification
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.heal.store import (
    OPEN_STATUSES,
    InvalidTransitionError,
    ProposalNotFoundError,
    get_proposal,
    list_events,
    list_proposals,
    proposal_for_run,
    recently_proposed,
    record_candidate,
    transition,
)

DIFF = (
    "--- a/app/service.py\n+++ b/app/service.py\n@@ -1,2 +1,2 @@\n def handler(fields):\n"
    '-    return fields["nickname"]\n+    return fields.get("nickname")\n'
)
FIXED = Verification(
    ran=True,
    detail="t: failed before the change, passed after",
    before=ExecutionStatus.FAILED,
    after=ExecutionStatus.PASSED,
)
# The path a proposal takes to each status, from `proposed`.
PATHS: dict[FixStatus, tuple[FixStatus, ...]] = {
    FixStatus.PROPOSED: (),
    FixStatus.AWAITING_APPROVAL: (FixStatus.AWAITING_APPROVAL,),
    FixStatus.APPROVED: (FixStatus.AWAITING_APPROVAL, FixStatus.APPROVED),
    FixStatus.REJECTED: (FixStatus.AWAITING_APPROVAL, FixStatus.REJECTED),
    FixStatus.EXPIRED: (FixStatus.AWAITING_APPROVAL, FixStatus.EXPIRED),
    FixStatus.APPLIED: (FixStatus.AWAITING_APPROVAL, FixStatus.APPROVED, FixStatus.APPLIED),
    FixStatus.VERIFIED: (
        FixStatus.AWAITING_APPROVAL,
        FixStatus.APPROVED,
        FixStatus.APPLIED,
        FixStatus.VERIFIED,
    ),
    FixStatus.FAILED: (FixStatus.AWAITING_APPROVAL, FixStatus.APPROVED, FixStatus.FAILED),
    FixStatus.ROLLED_BACK: (
        FixStatus.AWAITING_APPROVAL,
        FixStatus.APPROVED,
        FixStatus.APPLIED,
        FixStatus.ROLLED_BACK,
    ),
}


def stored_signature(
    engine: Engine,
    *,
    error_type: str = "KeyError",
    message: str = "'nickname'",
    fingerprint: str | None = None,
) -> int:
    """Store a signature (a proposal's foreign key) and return its id."""
    with Session(engine) as session:
        count = len(session.exec(select(Signature.id)).all())
        signature = Signature(
            fingerprint=fingerprint or f"{count + 1:064x}",
            error_type=error_type,
            message=message,
            culprit="app/service.py in handler",
            category="unknown",
            severity="high",
            first_seen=utcnow(),
            last_seen=utcnow(),
            occurrence_count=3,
            status="tested",
        )
        session.add(signature)
        session.commit()
        assert signature.id is not None
        return signature.id


def stored_proposal(
    engine: Engine,
    signature_id: int,
    status: FixStatus = FixStatus.PROPOSED,
    *,
    candidate: Candidate | None = None,
    check: DiffCheck | None = None,
    verification: Verification = FIXED,
    flow_run_id: str | None = None,
) -> FixProposal:
    """Record a rule candidate (refused if `status` says so) and walk it to `status`."""
    candidate = candidate or Candidate(
        strategy=FixStrategy.RULE, diff=DIFF, fix_rule="key_default", confidence=0.8
    )
    with session_scope(engine) as session:
        proposal = record_candidate(
            session=session,
            signature_id=signature_id,
            test_id=None,
            candidate=candidate,
            check=check or DiffCheck(files=["app/service.py"], added=1, removed=1),
            verification=verification,
            risk=RiskLevel.LOW,
            risk_reasons=["one line"],
            base_ref="a" * 40,
            valid=status != FixStatus.REFUSED,
            flow_run_id=flow_run_id,
        )
        assert proposal.id is not None
        for step in PATHS.get(status, ()):
            proposal = transition(session=session, proposal_id=proposal.id, target=step)
    return proposal


def in_transaction(engine: Engine, store_function: Any, **arguments: Any) -> Any:
    """Call a store function as its callers do: in a transaction of its own, committed."""
    with session_scope(engine) as session:
        return store_function(session=session, **arguments)


def _regression_test(engine: Engine, signature_id: int) -> int:
    with Session(engine) as session:
        test = RegressionTest(name="nickname", created_from_signature_id=signature_id)
        session.add(test)
        session.commit()
        assert test.id is not None
        return test.id


def test_a_valid_candidate_is_proposed_with_what_validation_applied(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    test_id = _regression_test(engine, signature_id)
    candidate = Candidate(
        strategy=FixStrategy.AI,
        diff="the diff as the model wrote it",
        root_cause="the nickname is optional",
        explanation="read it with get",
        confidence=0.7,
        model="gpt-test",
    )
    check = DiffCheck(files=["app/service.py"], added=1, removed=1, applied_diff=DIFF)
    proposal = in_transaction(
        engine,
        record_candidate,
        signature_id=signature_id,
        test_id=test_id,
        candidate=candidate,
        check=check,
        verification=FIXED,
        risk=RiskLevel.MEDIUM,
        risk_reasons=["changes a handler"],
        base_ref="b" * 40,
        valid=True,
        flow_run_id="run-1",
    )

    stored = in_transaction(engine, get_proposal, proposal_id=proposal.id or 0)
    assert stored.status == FixStatus.PROPOSED
    assert stored.diff == DIFF  # what git applied, not what the model wrote
    assert (stored.signature_id, stored.test_id) == (signature_id, test_id)
    assert (stored.strategy, stored.model, stored.confidence) == ("ai", "gpt-test", 0.7)
    assert stored.root_cause == "the nickname is optional"
    assert stored.risk_level == "medium" and stored.risk_reasons == ["changes a handler"]
    assert stored.files_touched == ["app/service.py"] and stored.problems == []
    assert stored.verification["before"] == "failed" and stored.verification["after"] == "passed"
    assert (stored.base_ref, stored.flow_run_id) == ("b" * 40, "run-1")
    [event] = in_transaction(engine, list_events, proposal_id=stored.id or 0)
    assert (event.status, event.actor, event.note) == ("proposed", "immunity", FIXED.detail)


def test_an_invalid_candidate_is_refused_with_its_problems(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    proposal = stored_proposal(
        engine,
        signature_id,
        FixStatus.REFUSED,
        candidate=Candidate(strategy=FixStrategy.AI, diff=DIFF),
        check=DiffCheck(problems=["touches .github/workflows/ci.yml", "too big"]),
        verification=Verification(detail="not run: the diff was refused"),
    )

    stored = in_transaction(engine, get_proposal, proposal_id=proposal.id or 0)
    assert stored.status == FixStatus.REFUSED
    assert stored.problems == ["touches .github/workflows/ci.yml", "too big"]
    assert stored.diff == DIFF  # nothing applied: the candidate's own diff is kept
    [event] = in_transaction(engine, list_events, proposal_id=stored.id or 0)
    assert event.status == "refused" and event.actor == "immunity"
    assert event.note == "touches .github/workflows/ci.yml; too big"


def test_a_candidate_refused_for_its_verification_says_so(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    failed = Verification(
        ran=True, detail="t: failed before, failed after", before="failed", after="failed"
    )
    proposal = stored_proposal(engine, signature_id, FixStatus.REFUSED, verification=failed)

    stored = in_transaction(engine, get_proposal, proposal_id=proposal.id or 0)
    assert stored.status == FixStatus.REFUSED
    assert stored.problems == ["verification: t: failed before, failed after"]
    [event] = in_transaction(engine, list_events, proposal_id=stored.id or 0)
    assert event.note == "verification: t: failed before, failed after"


def test_a_proposal_moves_through_approval_and_keeps_an_ordered_trail(engine: Engine) -> None:
    proposal = stored_proposal(engine, stored_signature(engine))
    pid = proposal.id or 0
    created = in_transaction(engine, get_proposal, proposal_id=pid).updated_at
    decided = utcnow()

    in_transaction(
        engine,
        transition,
        proposal_id=pid,
        target=FixStatus.AWAITING_APPROVAL,
        note="waiting for a reviewer",
    )
    approved = in_transaction(
        engine,
        transition,
        proposal_id=pid,
        target=FixStatus.APPROVED,
        actor="alice",
        note="looks right",
        reviewer="alice",
        notes="looks right",
        decided_at=decided,
    )
    assert approved.status == FixStatus.APPROVED and approved.reviewer == "alice"
    in_transaction(
        engine,
        transition,
        proposal_id=pid,
        target=FixStatus.APPLIED,
        branch="immunity/fix-1",
        commit="c" * 40,
    )
    in_transaction(
        engine,
        transition,
        proposal_id=pid,
        target=FixStatus.VERIFIED,
        note="passes on the fix commit",
    )

    stored = in_transaction(engine, get_proposal, proposal_id=pid)
    assert stored.status == FixStatus.VERIFIED
    assert (stored.reviewer, stored.notes, stored.decided_at) == ("alice", "looks right", decided)
    assert (stored.branch, stored.commit) == ("immunity/fix-1", "c" * 40)
    assert stored.updated_at > created
    trail = in_transaction(engine, list_events, proposal_id=pid)
    assert [(e.status, e.actor, e.note) for e in trail] == [
        ("proposed", "immunity", FIXED.detail),
        ("awaiting_approval", "immunity", "waiting for a reviewer"),
        ("approved", "alice", "looks right"),
        ("applied", "immunity", ""),
        ("verified", "immunity", "passes on the fix commit"),
    ]
    assert [e.at for e in trail] == sorted(e.at for e in trail)


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (FixStatus.REFUSED, FixStatus.APPROVED),
        (FixStatus.REFUSED, FixStatus.AWAITING_APPROVAL),
        (FixStatus.PROPOSED, FixStatus.APPROVED),  # not without a reviewer being asked
        (FixStatus.PROPOSED, FixStatus.APPLIED),
        (FixStatus.AWAITING_APPROVAL, FixStatus.APPLIED),
        (FixStatus.AWAITING_APPROVAL, FixStatus.AWAITING_APPROVAL),
        (FixStatus.REJECTED, FixStatus.APPROVED),
        (FixStatus.EXPIRED, FixStatus.APPROVED),
        (FixStatus.APPROVED, FixStatus.VERIFIED),
        (FixStatus.VERIFIED, FixStatus.APPLIED),
        (FixStatus.ROLLED_BACK, FixStatus.APPLIED),
        (FixStatus.FAILED, FixStatus.APPLIED),
    ],
)
def test_a_move_off_the_allowed_paths_is_refused_and_changes_nothing(
    engine: Engine, start: FixStatus, target: FixStatus
) -> None:
    proposal = stored_proposal(engine, stored_signature(engine), start)
    pid = proposal.id or 0
    before = in_transaction(engine, get_proposal, proposal_id=pid)
    trail = in_transaction(engine, list_events, proposal_id=pid)

    with pytest.raises(InvalidTransitionError, match=f"is {start}; it cannot become {target}"):
        in_transaction(
            engine, transition, proposal_id=pid, target=target, actor="mallory", reviewer="mallory"
        )

    after = in_transaction(engine, get_proposal, proposal_id=pid)
    assert after.status == start and after.reviewer is None
    assert after.updated_at == before.updated_at
    assert len(in_transaction(engine, list_events, proposal_id=pid)) == len(trail)


def test_the_refusal_names_the_proposal_and_its_status(engine: Engine) -> None:
    proposal = stored_proposal(engine, stored_signature(engine), FixStatus.REFUSED)
    with pytest.raises(InvalidTransitionError) as refused:
        in_transaction(engine, transition, proposal_id=proposal.id or 0, target=FixStatus.APPROVED)
    assert refused.value.proposal_id == proposal.id
    assert refused.value.status == "refused"


def test_an_unknown_proposal_is_not_found(engine: Engine) -> None:
    with pytest.raises(ProposalNotFoundError, match="fix proposal 999 does not exist") as missing:
        in_transaction(engine, transition, proposal_id=999, target=FixStatus.AWAITING_APPROVAL)
    assert missing.value.proposal_id == 999
    with pytest.raises(ProposalNotFoundError):
        in_transaction(engine, get_proposal, proposal_id=999)
    assert in_transaction(engine, list_events, proposal_id=999) == []


def test_list_proposals_is_newest_first_filtered_and_limited(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    statuses = [
        FixStatus.REFUSED,
        FixStatus.AWAITING_APPROVAL,
        FixStatus.REJECTED,
        FixStatus.AWAITING_APPROVAL,
        FixStatus.VERIFIED,
    ]
    ids = [stored_proposal(engine, signature_id, status).id for status in statuses]

    assert [p.id for p in in_transaction(engine, list_proposals)] == ids[::-1]
    assert [p.id for p in in_transaction(engine, list_proposals, limit=2)] == [ids[4], ids[3]]
    waiting = in_transaction(engine, list_proposals, statuses=[FixStatus.AWAITING_APPROVAL])
    assert [p.id for p in waiting] == [ids[3], ids[1]]
    decided = in_transaction(engine, list_proposals, statuses=["rejected", "verified"], limit=1)
    assert [p.id for p in decided] == [ids[4]]
    assert in_transaction(engine, list_proposals, statuses=["expired"]) == []


def test_proposal_for_run_finds_what_the_run_put_up_for_approval(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    stored_proposal(engine, signature_id, FixStatus.REFUSED, flow_run_id="run-1")
    pending = stored_proposal(engine, signature_id, flow_run_id="run-1")
    stored_proposal(engine, signature_id, FixStatus.AWAITING_APPROVAL, flow_run_id="run-2")

    # Refused and merely proposed candidates are not what a resumed run waits on.
    assert in_transaction(engine, proposal_for_run, flow_run_id="run-1") is None
    in_transaction(
        engine, transition, proposal_id=pending.id or 0, target=FixStatus.AWAITING_APPROVAL
    )
    found = in_transaction(engine, proposal_for_run, flow_run_id="run-1")
    assert found is not None and found.id == pending.id
    in_transaction(
        engine, transition, proposal_id=pending.id or 0, target=FixStatus.APPROVED, actor="alice"
    )
    found = in_transaction(engine, proposal_for_run, flow_run_id="run-1")
    assert found is not None and found.status == FixStatus.APPROVED
    assert in_transaction(engine, proposal_for_run, flow_run_id="run-3") is None


def test_proposal_for_run_prefers_the_newest(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    older = stored_proposal(engine, signature_id, FixStatus.REJECTED, flow_run_id="run-1")
    newer = stored_proposal(engine, signature_id, FixStatus.AWAITING_APPROVAL, flow_run_id="run-1")
    found = in_transaction(engine, proposal_for_run, flow_run_id="run-1")
    assert found is not None and found.id == newer.id != older.id


def _age(engine: Engine, proposal_id: int, hours: float) -> None:
    """Make the proposal's last change `hours` old."""
    past = utcnow() - timedelta(hours=hours)
    with engine.begin() as connection:
        connection.execute(
            update(FixProposal).where(col(FixProposal.id) == proposal_id).values(updated_at=past)
        )


@pytest.mark.parametrize("status", OPEN_STATUSES)
def test_an_open_proposal_blocks_however_old(engine: Engine, status: FixStatus) -> None:
    signature_id = stored_signature(engine)
    proposal = stored_proposal(engine, signature_id, status)
    _age(engine, proposal.id or 0, hours=24 * 30)
    assert in_transaction(
        engine, recently_proposed, signature_ids=[signature_id], cooldown=timedelta(hours=24)
    ) == {signature_id}


@pytest.mark.parametrize("status", [FixStatus.REJECTED, FixStatus.EXPIRED])
def test_a_declined_proposal_blocks_only_within_the_cooldown(
    engine: Engine, status: FixStatus
) -> None:
    recent, old = stored_signature(engine), stored_signature(engine)
    stored_proposal(engine, recent, status)
    _age(engine, stored_proposal(engine, old, status).id or 0, hours=25)
    _age(engine, stored_proposal(engine, recent, status).id or 0, hours=25)

    cooldown = timedelta(hours=24)
    assert in_transaction(
        engine, recently_proposed, signature_ids=[recent, old], cooldown=cooldown
    ) == {recent}
    assert in_transaction(
        engine, recently_proposed, signature_ids=[recent, old], cooldown=timedelta(hours=26)
    ) == {recent, old}


@pytest.mark.parametrize(
    "status", [FixStatus.REFUSED, FixStatus.VERIFIED, FixStatus.FAILED, FixStatus.ROLLED_BACK]
)
def test_a_closed_proposal_does_not_block(engine: Engine, status: FixStatus) -> None:
    signature_id = stored_signature(engine)
    stored_proposal(engine, signature_id, status)
    assert (
        in_transaction(
            engine, recently_proposed, signature_ids=[signature_id], cooldown=timedelta(hours=24)
        )
        == set()
    )


def test_recently_proposed_only_looks_at_the_signatures_asked_about(engine: Engine) -> None:
    asked, other = stored_signature(engine), stored_signature(engine)
    stored_proposal(engine, other, FixStatus.AWAITING_APPROVAL)
    assert (
        in_transaction(
            engine, recently_proposed, signature_ids=[asked], cooldown=timedelta(hours=24)
        )
        == set()
    )
    assert (
        in_transaction(engine, recently_proposed, signature_ids=[], cooldown=timedelta(hours=24))
        == set()
    )


def test_a_move_is_the_callers_to_commit_or_roll_back(engine: Engine) -> None:
    proposal = stored_proposal(engine, stored_signature(engine))
    pid = proposal.id or 0
    with Session(engine) as session:
        moved = transition(session=session, proposal_id=pid, target=FixStatus.AWAITING_APPROVAL)
        assert moved.status == FixStatus.AWAITING_APPROVAL
        assert len(list_events(session=session, proposal_id=pid)) == 2  # flushed: seen inside
        session.rollback()

    assert in_transaction(engine, get_proposal, proposal_id=pid).status == FixStatus.PROPOSED
    assert len(in_transaction(engine, list_events, proposal_id=pid)) == 1
