"""The heal loop end to end, offline: seeded bug → proposal → pause → decision → branch → green."""

from __future__ import annotations

import subprocess
from pathlib import Path
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from sqlmodel import Session, select

from immunity.api.app import create_app
from immunity.models.db import get_engine
from immunity.models.enums import ExecutionStatus, FixStatus, FixStrategy
from immunity.models.heal_tables import ErrorPattern, FixEvent, FixProposal
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest
from immunity.tasks.heal.git_repo import branch_exists, worktree
from immunity.tasks.heal.patterns import list_patterns
from immunity.tasks.heal.validate import run_test_in
from tests.flows.heal_support import AUTH, HealRun, awaiting_proposal, drill, first_bug, wait_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _trail(engine, proposal_id: int) -> list[tuple[str, str]]:
    with Session(engine) as session:
        events = session.exec(
            select(FixEvent).where(FixEvent.proposal_id == proposal_id).order_by(FixEvent.id)
        ).all()
    return [(event.status, event.actor) for event in events]


def test_approval_through_the_api_commits_the_fix_on_a_branch_and_the_test_passes(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = first_bug(offline_fixable=True)
    seeded = drill(bug, tmp_path, monkeypatch)
    main_before = _git(seeded.repo, "rev-parse", "HEAD")
    run = HealRun(seeded.signature_id)
    proposal = wait_for(awaiting_proposal, what="a proposal awaiting approval")
    assert proposal.strategy == FixStrategy.RULE
    # Validated before anyone sees it: the test failed on the bugged copy and passes with the diff.
    assert proposal.verification["before"] in ("failed", "error")
    assert proposal.verification["after"] == "passed"
    assert proposal.files_touched == [bug.path]

    # The flow run pauses in Prefect, waiting for the approval form.
    def paused() -> bool:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(proposal.flow_run_id)).state
        return state is not None and state.is_paused()

    wait_for(paused, 30, "the flow run to pause")
    assert not branch_exists(seeded.repo, f"immunity/fix-{proposal.id}")  # nothing before approval

    api = TestClient(create_app(get_settings()))
    decision = {"approved": True, "reviewer": "ann", "notes": "guard looks right"}
    assert api.post(f"/api/v1/fixes/{proposal.id}/decision", json=decision).status_code == 401
    answer = api.post(f"/api/v1/fixes/{proposal.id}/decision", json=decision, headers=AUTH)
    assert answer.status_code == 202, answer.text
    outcome = run.result()

    assert outcome.status == FixStatus.VERIFIED
    branch = f"immunity/fix-{proposal.id}"
    assert outcome.branch == branch
    # The commit is on its own branch, on top of the commit it was validated on; main is untouched.
    assert _git(seeded.repo, "rev-parse", branch) == outcome.commit
    assert _git(seeded.repo, "rev-parse", f"{branch}^") == main_before
    assert _git(seeded.repo, "rev-parse", "HEAD") == main_before
    message = _git(seeded.repo, "log", "-1", "--format=%B", branch)
    with Session(get_engine(store)) as session:
        stored = session.get(FixProposal, proposal.id)
        test = session.get(RegressionTest, seeded.test_id)
    assert stored is not None and test is not None
    assert bug.error_type in message and "approved by ann" in message
    assert _git(seeded.repo, "diff", "--name-only", f"{branch}^", branch) == bug.path
    # The regression test passes against the service built from the branch.
    with worktree(seeded.repo, branch) as patched:
        assert run_test_in(patched, test, get_settings()).status == ExecutionStatus.PASSED
    # Every status change is stored with who made it.
    assert _trail(get_engine(store), proposal.id) == [
        ("proposed", "immunity"),
        ("awaiting_approval", "immunity"),
        ("approved", "ann"),
        ("applied", "immunity"),
        ("verified", "immunity"),
    ]
    assert stored.reviewer == "ann" and stored.notes == "guard looks right"
    assert stored.decided_at is not None
    # Learning: the verified fix created its pattern.
    [pattern] = list_patterns(get_engine(store))
    assert (pattern.fix_rule, pattern.successes, pattern.failures) == (stored.fix_rule, 1, 0)
    # Deciding twice is refused.
    again = api.post(f"/api/v1/fixes/{proposal.id}/decision", json=decision, headers=AUTH)
    assert again.status_code == 409 and "verified" in again.json()["error"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rejection_is_recorded_weakens_nothing_new_and_applies_nothing(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = drill(first_bug(offline_fixable=True), tmp_path, monkeypatch)
    run = HealRun(seeded.signature_id)
    proposal = wait_for(awaiting_proposal, what="a proposal awaiting approval")
    api = TestClient(create_app(get_settings()))
    assert api.post("/api/v1/fixes/999/decision", json={}, headers=AUTH).status_code in (400, 422)
    missing = {"approved": False, "reviewer": "bob"}
    assert api.post("/api/v1/fixes/999/decision", json=missing, headers=AUTH).status_code == 404
    undecided = {"reviewer": "bob"}
    bad = api.post(f"/api/v1/fixes/{proposal.id}/decision", json=undecided, headers=AUTH)
    assert bad.status_code in (400, 422)
    # The body's reviewer is not who decided: the token's principal (ann) is.
    decision = {"approved": False, "reviewer": "bob", "notes": "wrong layer for this"}
    assert (
        api.post(f"/api/v1/fixes/{proposal.id}/decision", json=decision, headers=AUTH).status_code
        == 202
    )
    outcome = run.result()
    assert outcome.status == FixStatus.REJECTED
    assert outcome.branch is None and not branch_exists(seeded.repo, f"immunity/fix-{proposal.id}")
    engine = get_engine(store)
    assert _trail(engine, proposal.id)[-1] == ("rejected", "ann")
    # A rejected fix never made a pattern, so there is nothing to weaken yet.
    assert list_patterns(engine) == []
    shown = api.get(f"/api/v1/fixes/{proposal.id}", headers=AUTH).json()
    assert shown["status"] == "rejected" and shown["reviewer"] == "ann"
    assert [event["status"] for event in shown["events"]][-1] == "rejected"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unanswered_approval_expires_and_nothing_is_applied(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = drill(first_bug(offline_fixable=True), tmp_path, monkeypatch)
    outcome = HealRun(seeded.signature_id, approval_timeout_s=3).result()
    assert outcome.status == FixStatus.EXPIRED
    assert outcome.proposal_id is not None
    assert not branch_exists(seeded.repo, f"immunity/fix-{outcome.proposal_id}")
    assert _trail(get_engine(store), outcome.proposal_id)[-1] == ("expired", "immunity")
    api = TestClient(create_app(get_settings()))
    late = {"approved": True, "reviewer": "ann"}
    answer = api.post(f"/api/v1/fixes/{outcome.proposal_id}/decision", json=late, headers=AUTH)
    assert answer.status_code == 409 and "expired" in answer.json()["error"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_confident_learned_pattern_is_tried_first(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bug = first_bug(offline_fixable=True)
    seeded = drill(bug, tmp_path, monkeypatch)
    from immunity.tasks.heal.rules import ERROR_RULES

    [rule] = ERROR_RULES[bug.error_type]
    with Session(get_engine(store)) as session:
        session.add(
            ErrorPattern(
                name=f"{bug.error_type}: {rule}",
                error_type=bug.error_type,
                fix_rule=rule,
                confidence=0.9,
                successes=8,
            )
        )
        session.commit()
    outcome = HealRun(seeded.signature_id, wait_for_approval=False).result()
    with Session(get_engine(store)) as session:
        proposal = session.get(FixProposal, outcome.proposal_id)
    assert proposal is not None
    assert (proposal.strategy, proposal.fix_rule) == (FixStrategy.PATTERN, rule)
    assert proposal.pattern_id is not None and proposal.confidence == 0.9
    assert proposal.verification["after"] == "passed"
