"""The heal loop: a failing signature → a validated fix proposal → a human's decision → a branch.

Strategies run in order (known pattern, offline rule, AI, AI with source, rollback) and the first
candidate that passes validation is shown for approval: the flow pauses with a form in the Prefect
UI (or is resumed from `immunity fixes approve|reject` and the API). Nothing is applied without a
recorded approval.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from immunity.models.enums import FixStatus
from immunity.models.fixes import Approval, HealOutcome
from immunity.models.heal_tables import FixProposal
from immunity.models.settings import Settings, get_settings
from immunity.tasks.heal.strategies import CHAIN
from immunity.tasks.heal.tasks import (
    apply_approved_fix,
    candidates_for,
    decide,
    gather,
    learn,
    pending_for_run,
    publish_proposal,
    refreshed,
    validate_and_record,
    verify_applied_fix,
)

__all__ = ["propose_fix"]


def _outcome(signature_id: int, proposal: FixProposal, refused: int = 0) -> HealOutcome:
    return HealOutcome(
        signature_id=signature_id,
        proposal_id=proposal.id,
        status=proposal.status,
        strategy=proposal.strategy,
        refused=refused,
        branch=proposal.branch,
        commit=proposal.commit,
    )


def _first_valid(signature_id: int, run_id: str | None) -> tuple[FixProposal | None, int]:
    """Walk the chain; return the first proposal that passed validation and how many did not."""
    logger = get_run_logger()
    context, found, base_ref, test_id = gather(signature_id)
    refused = 0
    for strategy in CHAIN:
        for candidate in candidates_for(strategy, quote(context), found, base_ref):
            proposal = validate_and_record(signature_id, test_id, candidate, base_ref, run_id)
            if proposal.status == FixStatus.PROPOSED:
                return proposal, refused
            refused += 1
            logger.warning("%s proposal #%s refused: %s", strategy, proposal.id, proposal.problems)
    return None, refused


def _wait_for_approval(
    proposal_id: int, markdown: str, timeout_s: int, settings: Settings
) -> Approval | None:
    """Pause (or suspend, for approvals taking hours) until a reviewer answers; None on expiry."""
    form = Approval.with_initial_data(description=markdown, approved=False)
    try:
        # Suspending ends the process and needs a deployment to start the run again.
        if settings.approval_suspend and flow_run.deployment_id:
            return suspend_flow_run(
                wait_for_input=form, timeout=timeout_s, key=f"approval-{proposal_id}"
            )
        return pause_flow_run(
            wait_for_input=form,
            timeout=timeout_s,
            poll_interval=settings.approval_poll_s,
            key=f"approval-{proposal_id}",
        )
    except FlowPauseTimeout:
        return None


@flow(name="propose-fix")
def propose_fix(
    signature_id: int,
    wait_for_approval: bool = True,
    approval_timeout_s: int | None = None,
) -> HealOutcome:
    """Propose a fix for a failing signature, wait for a human's decision, apply it if approved.

    Args:
        signature_id: The signature to fix (see `immunity failures`).
        wait_for_approval: Pause for a reviewer; off, the proposal is left awaiting approval.
        approval_timeout_s: Seconds to wait before the proposal expires (default: settings).
    """
    settings = get_settings()
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None
    # A suspended run starts again from the top when resumed: carry on with its proposal.
    proposal = pending_for_run(run_id) if run_id else None
    if proposal is not None:
        markdown = publish_proposal(proposal.id, already_published=True)
        refused = 0
    else:
        proposal, refused = _first_valid(signature_id, run_id)
        if proposal is None:
            logger.warning("no strategy produced a valid fix for signature %s", signature_id)
            return HealOutcome(signature_id=signature_id, status="no_proposal", refused=refused)
        markdown = publish_proposal(proposal.id)
    assert proposal.id is not None
    if not wait_for_approval:
        return HealOutcome(
            signature_id=signature_id,
            proposal_id=proposal.id,
            status=FixStatus.AWAITING_APPROVAL,
            strategy=proposal.strategy,
            refused=refused,
        )
    timeout_s = approval_timeout_s or settings.approval_timeout_s
    approval = _wait_for_approval(proposal.id, markdown, timeout_s, settings)
    decided = decide(proposal.id, approval)
    if decided.status != FixStatus.APPROVED:
        if decided.status == FixStatus.REJECTED:
            learn(proposal.id, False)
        return _outcome(signature_id, decided, refused)
    logger.info("fix #%s approved by %s", proposal.id, decided.reviewer)
    applied = apply_approved_fix(proposal.id)
    if applied.status == FixStatus.APPLIED:
        applied = verify_applied_fix(proposal.id)
    if applied.status in (FixStatus.VERIFIED, FixStatus.FAILED):
        learn(proposal.id, applied.status == FixStatus.VERIFIED)
    if applied.status == FixStatus.VERIFIED and settings.deploy_target:
        from immunity.flows.deploy import deploy  # the deploy loop, when a target is configured

        deployed = deploy(fix_id=proposal.id, triggered_by=decided.reviewer or "immunity")
        logger.info(
            "fix #%s deployment #%s: %s", proposal.id, deployed.deployment_id, deployed.status
        )
        if deployed.status == "rolled_back":
            learn(proposal.id, False)
        applied = refreshed(proposal.id)
    return _outcome(signature_id, applied, refused)
