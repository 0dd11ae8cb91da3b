"""The retryable units of the heal loop: gather, propose, validate, publish, decide, apply."""

from __future__ import annotations

import logging

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import Session

from immunity.models.db import get_engine, session_scope
from immunity.models.enums import FixStatus, FixStrategy
from immunity.models.fixes import (
    Approval,
    Candidate,
    DiffCheck,
    FixContext,
    SourceLocation,
    Verification,
)
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.models.tables import Deployment, Signature
from immunity.tasks.heal.checks import assess_risk
from immunity.tasks.heal.context import gather_context, signature_test
from immunity.tasks.heal.git_repo import GitError, commit_fix, head
from immunity.tasks.heal.llm import LlmError, make_client
from immunity.tasks.heal.patterns import learn_from, matching_patterns
from immunity.tasks.heal.report import proposal_markdown
from immunity.tasks.heal.store import (
    get_proposal,
    proposal_for_run,
    record_candidate,
    transition,
)
from immunity.tasks.heal.strategies import (
    ai_candidate,
    deployment_rollback_candidate,
    pattern_candidates,
    rollback_candidate,
    rule_candidate,
)
from immunity.tasks.heal.validate import validate_diff, verify_commit
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = [
    "apply_approved_fix",
    "candidates_for",
    "decide",
    "gather",
    "learn",
    "pending_for_run",
    "publish_proposal",
    "refreshed",
    "validate_and_record",
    "verify_applied_fix",
]

log = logging.getLogger(__name__)

# Large inputs (contexts, diffs): hashing them for a cache key would be waste.
_NO_CACHE = {"cache_policy": NO_CACHE}


def _read(proposal_id: int) -> FixProposal:
    """Return the proposal as stored now."""
    with session_scope() as session:
        return get_proposal(session=session, proposal_id=proposal_id)


def _move(proposal_id: int, target: FixStatus, **fields: object) -> FixProposal:
    """Return the proposal moved to `target`, committed in a transaction of its own."""
    with session_scope() as session:
        return transition(session=session, proposal_id=proposal_id, target=target, **fields)


def _suspect_deployment(signature_id: int) -> Deployment | None:
    """Return the deployment the signature is suspected to come from, if one is linked."""
    with Session(get_engine()) as session:
        signature = session.get(Signature, signature_id)
        if signature is None or signature.suspect_deployment_id is None:
            return None
        return session.get(Deployment, signature.suspect_deployment_id)


@task(name="gather-fix-context", **DB_TASK_OPTIONS)
def gather(signature_id: int) -> tuple[FixContext, list[SourceLocation], str | None, int | None]:
    """Return the signature's context, its frames in the source, the base commit and its test."""
    settings = get_settings()
    engine = get_engine()
    context, found = gather_context(engine, signature_id, settings)
    repo = settings.repo_path
    base_ref = head(repo) if repo is not None else None
    test = signature_test(engine, signature_id)
    return context, found, base_ref, test.id if test else None


@task(name="propose-candidates", **_NO_CACHE)
def candidates_for(
    strategy: FixStrategy,
    context: FixContext,
    found: list[SourceLocation],
    base_ref: str | None,
) -> list[Candidate]:
    """Return what one strategy proposes (maybe nothing); an unusable model answer is logged."""
    settings = get_settings()
    error_type = context.signature.error_type
    message = context.samples[0].message if context.samples else context.signature.message
    repo = settings.repo_path
    if strategy == FixStrategy.PATTERN:
        patterns = matching_patterns(
            get_engine(),
            error_type,
            context.signature.message,
            min_confidence=settings.heal_pattern_min_confidence,
        )
        return pattern_candidates(patterns, error_type, message, found)
    if strategy == FixStrategy.RULE:
        return [c for c in [rule_candidate(error_type, message, found)] if c is not None]
    if strategy in (FixStrategy.AI, FixStrategy.AI_WITH_CONTEXT):
        with_source = strategy == FixStrategy.AI_WITH_CONTEXT
        client = make_client(settings)
        if client is None or (with_source and not context.source):
            return []
        try:
            found_ai = ai_candidate(client, settings.llm_model, context, with_source=with_source)
        except LlmError as error:
            log.warning("%s strategy: no proposal (%s)", strategy, error)
            return []
        return [found_ai] if found_ai is not None else []
    if strategy == FixStrategy.ROLLBACK and repo is not None and base_ref is not None:
        suspect = _suspect_deployment(context.signature.id)
        found_rollback = [
            deployment_rollback_candidate(repo, suspect.id, suspect.ref, suspect.previous_ref)
            if suspect is not None and suspect.id is not None and suspect.previous_ref
            else None,
            rollback_candidate(repo, base_ref, found),
        ]
        return [c for c in found_rollback if c is not None]
    return []


@task(name="validate-fix", **_NO_CACHE)
def validate_and_record(
    signature_id: int,
    test_id: int | None,
    candidate: Candidate,
    base_ref: str | None,
    flow_run_id: str | None,
) -> FixProposal:
    """Check the diff, run the test before and after it, and store the outcome as a proposal."""
    settings = get_settings()
    engine = get_engine()
    repo = settings.repo_path
    test = signature_test(engine, signature_id) if test_id is not None else None
    if repo is None or base_ref is None:
        check = DiffCheck(problems=["no repository is configured (IMMUNITY_REPO_PATH)"])
        verification = Verification(detail="not run: no repository")
    else:
        check, verification = validate_diff(repo, base_ref, candidate.diff, test, settings)
    risk, reasons = assess_risk(
        check,
        verification,
        claimed=candidate.claimed_risk,
        claimed_reasons=candidate.claimed_reasons,
    )
    # Valid: the diff is acceptable and, where it could be tried, it turns the test green.
    valid = check.ok and (verification.fixed or not verification.ran)
    with session_scope(engine) as session:
        return record_candidate(
            session=session,
            signature_id=signature_id,
            test_id=test_id,
            candidate=candidate,
            check=check,
            verification=verification,
            risk=risk,
            risk_reasons=reasons,
            base_ref=base_ref,
            valid=valid,
            flow_run_id=flow_run_id,
        )


@task(name="pending-proposal-of-run", **DB_TASK_OPTIONS)
def pending_for_run(flow_run_id: str) -> FixProposal | None:
    """Return the proposal this flow run already put up and still awaits a decision on."""
    with session_scope() as session:
        proposal = proposal_for_run(session=session, flow_run_id=flow_run_id)
    if proposal is None or proposal.status != FixStatus.AWAITING_APPROVAL:
        return None
    return proposal


@task(name="publish-fix-proposal", **DB_TASK_OPTIONS)
def publish_proposal(proposal_id: int, already_published: bool = False) -> str:
    """Mark the proposal as awaiting approval and return its markdown (also an artifact)."""
    engine = get_engine()
    if already_published:
        proposal = _read(proposal_id)
    else:
        proposal = _move(proposal_id, FixStatus.AWAITING_APPROVAL, note="shown for approval")
    with Session(engine) as session:
        signature = session.get(Signature, proposal.signature_id)
    assert signature is not None
    markdown = proposal_markdown(proposal, signature)
    create_markdown_artifact(
        key=f"fix-proposal-{proposal_id}",
        markdown=markdown,
        description=f"Fix proposal #{proposal_id} for {signature.error_type}",
    )
    return markdown


@task(name="record-decision", **DB_TASK_OPTIONS)
def decide(proposal_id: int, approval: Approval | None) -> FixProposal:
    """Record the reviewer's decision, or the approval's expiry when `approval` is None."""
    if approval is None:
        return _move(proposal_id, FixStatus.EXPIRED, note="nobody decided before the timeout")
    status = FixStatus.APPROVED if approval.approved else FixStatus.REJECTED
    return _move(
        proposal_id,
        status,
        actor=approval.reviewer,
        note=approval.notes,
        reviewer=approval.reviewer,
        notes=approval.notes,
        decided_at=utcnow(),
    )


@task(name="apply-fix", **_NO_CACHE)
def apply_approved_fix(proposal_id: int) -> FixProposal:
    """Commit an approved diff on a new branch `immunity/fix-<id>`; a failure is recorded."""
    settings = get_settings()
    engine = get_engine()
    proposal = _read(proposal_id)
    if proposal.status != FixStatus.APPROVED or not proposal.reviewer:
        raise PermissionError(f"fix proposal {proposal_id} has no recorded approval")
    repo = settings.repo_path
    assert repo is not None and proposal.base_ref is not None
    with Session(engine) as session:
        signature = session.get(Signature, proposal.signature_id)
    assert signature is not None
    branch = f"{settings.fix_branch_prefix}{proposal_id}"
    message = (
        f"Fix {signature.error_type} (signature {signature.fingerprint[:12]})\n\n"
        f"Signature {signature.fingerprint}: {signature.message[:200]}\n"
        f"Fix proposal #{proposal_id} ({proposal.strategy}), approved by {proposal.reviewer}."
    )
    try:
        commit = commit_fix(
            repo,
            base_ref=proposal.base_ref,
            branch=branch,
            diff=proposal.diff,
            message=message,
            author="immunity <immunity@localhost>",
        )
    except GitError as error:
        return _move(proposal_id, FixStatus.FAILED, note=f"apply failed: {error}")
    return _move(
        proposal_id,
        FixStatus.APPLIED,
        note=f"committed {commit[:12]} on {branch}",
        branch=branch,
        commit=commit,
    )


@task(name="verify-applied-fix", **_NO_CACHE)
def verify_applied_fix(proposal_id: int) -> FixProposal:
    """Run the regression test against the committed fix: `verified` when it passes."""
    settings = get_settings()
    engine = get_engine()
    proposal = _read(proposal_id)
    test = signature_test(engine, proposal.signature_id)
    repo = settings.repo_path
    if test is None or repo is None or proposal.commit is None or not settings.target_command:
        return proposal  # stays `applied`: nothing here can run the test
    outcome = verify_commit(repo, proposal.commit, test, settings)
    if outcome.status == "passed":
        return _move(
            proposal_id, FixStatus.VERIFIED, note=f"{test.name} passed on {proposal.branch}"
        )
    note = f"{test.name} {outcome.status} on {proposal.branch}: {outcome.error or ''}".strip()
    return _move(proposal_id, FixStatus.FAILED, note=note)


@task(name="read-fix-proposal", **DB_TASK_OPTIONS)
def refreshed(proposal_id: int) -> FixProposal:
    """Return the proposal as stored now."""
    return _read(proposal_id)


@task(name="learn-from-fix", **DB_TASK_OPTIONS)
def learn(proposal_id: int, success: bool) -> None:
    """Strengthen or weaken the proposal's error pattern."""
    learn_from(get_engine(), proposal_id, success=success)
