"""The deploy loop: gate on readiness → trigger → watch → promote, or roll back and alert.

The way Argo Rollouts and Flagger treat a canary: a deployment is only promoted after a watch
window in which the fix's regression test and the smoke suite pass, the failure rate of real
traffic does not rise and the fixed signature stops occurring. Anything else rolls back to the
last promoted ref, reverts the fix commit on its branch and alerts.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from immunity.models.deploys import DeployOutcome, DeployPlan, WatchReport
from immunity.models.enums import DeploymentStatus, Severity
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.tasks.deploy.tasks import (
    gate,
    link_suspect_signatures,
    mark,
    plan_deployment,
    publish,
    read_deployment,
    record_deployment,
    revert_fix,
    trigger,
    watch_once,
)
from immunity.tasks.shared.alerts import raise_alert

__all__ = ["deploy"]


def _alert(plan: DeployPlan, deployment_id: int, kind: str, message: str) -> None:
    raise_alert(
        key=f"{kind}:{plan.target}:{deployment_id}",
        kind=kind,
        severity=Severity.HIGH.value,
        message=message,
        details={"deployment_id": deployment_id, "target": plan.target, "ref": plan.ref},
    )


def _watch(plan: DeployPlan, deployment_id: int) -> list[WatchReport]:
    """Look every interval until the window ends; stop at the first unhealthy look."""
    settings = get_settings()
    deadline = time.monotonic() + settings.deploy_watch_s
    reports: list[WatchReport] = []
    while True:
        time.sleep(min(settings.deploy_watch_interval_s, max(0.0, deadline - time.monotonic())))
        deployment = read_deployment(deployment_id)
        report = watch_once(plan, deployment)
        reports.append(report)
        if not report.healthy or time.monotonic() >= deadline:
            return reports


@flow(name="deploy")
def deploy(
    ref: str | None = None,
    fix_id: int | None = None,
    target: str | None = None,
    environment: str | None = None,
    reason: str = "",
    watch: bool = True,
    min_readiness: float | None = None,
    triggered_by: str = "immunity",
) -> DeployOutcome:
    """Deploy a ref (or an approved fix's commit) behind the readiness gate, watch it, and
    promote it or roll it back.

    Args:
        ref: The git ref or commit to deploy (default: the fix's commit).
        fix_id: An approved, applied fix proposal to deploy.
        target: A name in IMMUNITY_DEPLOY_TARGETS (default: IMMUNITY_DEPLOY_TARGET).
        environment: The immunity environment it serves (default: the target's).
        reason: Why, for the record.
        watch: Watch the deployment before promoting it (off: promoted once live).
        min_readiness: The gate's minimum readiness score (default: IMMUNITY_DEPLOY_MIN_READINESS).
        triggered_by: Who asked for it.
    """
    settings = get_settings()
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None
    plan = plan_deployment(ref, fix_id, target, environment, reason, triggered_by)
    minimum = settings.deploy_min_readiness if min_readiness is None else min_readiness
    verdict = gate(plan, minimum)
    deployment = record_deployment(plan, run_id, gate=verdict.model_dump(mode="json"))
    assert deployment.id is not None
    outcome = DeployOutcome(
        deployment_id=deployment.id,
        status=DeploymentStatus.PENDING,
        target=plan.target,
        ref=plan.ref,
        previous_ref=plan.previous_ref,
        gate=verdict,
    )
    if not verdict.passed:
        detail = "refused by the readiness gate: " + "; ".join(verdict.reasons)
        mark(deployment.id, status=DeploymentStatus.REFUSED, detail=detail)
        logger.warning(detail)
        publish(deployment.id)
        return outcome.model_copy(update={"status": DeploymentStatus.REFUSED, "detail": detail})

    mark(deployment.id, status=DeploymentStatus.DEPLOYING)
    result = trigger(plan, plan.ref)
    if not result.ok:
        detail = f"the target did not deploy {plan.ref[:12]}: {result.detail}"
        mark(
            deployment.id,
            status=DeploymentStatus.FAILED,
            detail=detail,
            external_id=result.external_id,
        )
        _alert(plan, deployment.id, "deploy_failed", detail)
        publish(deployment.id)
        return outcome.model_copy(update={"status": DeploymentStatus.FAILED, "detail": detail})
    mark(
        deployment.id,
        status=DeploymentStatus.WATCHING,
        deployed_at=utcnow(),
        external_id=result.external_id,
        external_url=result.external_url,
    )
    reports = _watch(plan, deployment.id) if watch else []
    evidence = {"reports": [r.model_dump(mode="json") for r in reports]}
    if all(report.healthy for report in reports):
        detail = (
            f"promoted after {len(reports)} healthy look(s)" if reports else "promoted (no watch)"
        )
        mark(deployment.id, status=DeploymentStatus.SUCCEEDED, watch=evidence, detail=detail)
        link_suspect_signatures(deployment.id)
        publish(deployment.id)
        return outcome.model_copy(
            update={"status": DeploymentStatus.SUCCEEDED, "watch": reports, "detail": detail}
        )
    return _roll_back(plan, deployment.id, reports, evidence, outcome)


def _roll_back(
    plan: DeployPlan,
    deployment_id: int,
    reports: list[WatchReport],
    evidence: dict,
    outcome: DeployOutcome,
) -> DeployOutcome:
    """Restore the previous ref, revert the fix commit, alert, and record all of it."""
    why = "; ".join(reports[-1].reasons)
    rollback_id = None
    restored = "no previous ref is known: nothing was restored"
    if plan.previous_ref:
        rollback_plan = plan.model_copy(
            update={"ref": plan.previous_ref, "reason": f"roll back deployment #{deployment_id}"}
        )
        rollback = record_deployment(rollback_plan, None, rollback_of=deployment_id)
        assert rollback.id is not None
        rollback_id = rollback.id
        result = trigger(rollback_plan, plan.previous_ref)
        status = DeploymentStatus.SUCCEEDED if result.ok else DeploymentStatus.FAILED
        mark(rollback.id, status=status, deployed_at=utcnow(), detail=result.detail)
        restored = (
            f"restored {plan.previous_ref[:12]}"
            if result.ok
            else f"restoring failed: {result.detail}"
        )
    reverted = revert_fix(plan, why)
    detail = f"rolled back: {why}; {restored}" + (
        f"; fix reverted by {reverted[:12]}" if reverted else ""
    )
    mark(deployment_id, status=DeploymentStatus.ROLLED_BACK, watch=evidence, detail=detail)
    _alert(
        plan,
        deployment_id,
        "rolled_back",
        f"deployment #{deployment_id} of {plan.ref[:12]} to {plan.target}: {detail}",
    )
    publish(deployment_id)
    return outcome.model_copy(
        update={
            "status": DeploymentStatus.ROLLED_BACK,
            "watch": reports,
            "rollback_deployment_id": rollback_id,
            "detail": detail,
        }
    )
