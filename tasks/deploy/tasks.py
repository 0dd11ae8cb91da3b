"""The retryable units of the deploy loop: plan, gate, trigger, watch, roll back, record."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import Session

from immunity.models.db import get_engine, session_scope
from immunity.models.deploy_tables import Deployment
from immunity.models.deploy_targets import TargetOutcome
from immunity.models.deploys import DeployPlan, GateResult, WatchReport
from immunity.models.enums import FixStatus
from immunity.models.errors import RefusedError
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest
from immunity.tasks.deploy.store import (
    get_deployment,
    last_good_ref,
    link_recent_suspects,
    link_suspects,
    open_deployment,
    update_deployment,
)
from immunity.tasks.deploy.targets import trigger_and_follow
from immunity.tasks.deploy.watch import judge, run_watch_tests, smoke_test_ids, traffic_counts
from immunity.tasks.heal.git_repo import GitError, head, revert_commit
from immunity.tasks.heal.store import transition
from immunity.tasks.health.readiness import measure_readiness
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = [
    "DeployRefusedError",
    "gate",
    "plan_deployment",
    "read_deployment",
    "record_deployment",
    "revert_fix",
    "trigger",
    "watch_once",
]

_NO_CACHE = {"cache_policy": NO_CACHE}


class DeployRefusedError(RefusedError, ValueError):
    """The deployment cannot even be planned (unknown target, fix not approved, no ref)."""


@task(name="plan-deployment", **DB_TASK_OPTIONS)
def plan_deployment(
    ref: str | None,
    fix_id: int | None,
    target: str | None,
    environment: str | None,
    reason: str,
    triggered_by: str,
) -> DeployPlan:
    """Resolve what goes where: the target, its environment, the ref, what a rollback restores."""
    settings = get_settings()
    name = target or settings.deploy_target
    if not name:
        raise DeployRefusedError("no target given and IMMUNITY_DEPLOY_TARGET is not set")
    config = settings.deploy_targets.get(name)
    if config is None:
        known = ", ".join(sorted(settings.deploy_targets)) or "none configured"
        raise DeployRefusedError(f"unknown deploy target {name!r} (known: {known})")
    plan = DeployPlan(
        target=name,
        kind=config.kind,
        environment=environment or config.environment,
        ref=ref or "",
        reason=reason,
        triggered_by=triggered_by,
    )
    if plan.environment not in settings.environments:
        known = ", ".join(sorted(settings.environments)) or "none configured"
        raise DeployRefusedError(
            f"target {name!r} serves environment {plan.environment!r}, which is not configured"
            f" (IMMUNITY_ENVIRONMENTS: {known})"
        )
    if fix_id is not None:
        with Session(get_engine()) as session:
            fix = session.get(FixProposal, fix_id)
        if fix is None:
            raise DeployRefusedError(f"fix proposal {fix_id} does not exist")
        # Nothing is deployed without a recorded human approval.
        if not fix.reviewer or fix.status not in (FixStatus.APPLIED, FixStatus.VERIFIED):
            raise DeployRefusedError(
                f"fix proposal {fix_id} is {fix.status}: only an approved fix that was applied"
                " can be deployed"
            )
        plan.ref = ref or fix.commit or ""
        plan.fix_id, plan.fix_commit, plan.fix_branch = fix_id, fix.commit, fix.branch
        plan.signature_id, plan.test_id = fix.signature_id, fix.test_id
        plan.reason = reason or f"fix proposal #{fix_id} approved by {fix.reviewer}"
    if not plan.ref:
        raise DeployRefusedError("nothing to deploy: give a ref or an applied fix")
    repo = config.repo or settings.repo_path
    with session_scope() as session:
        plan.previous_ref = last_good_ref(session=session, target=name)
    if plan.previous_ref is None and repo is not None and config.kind == "local_command":
        from immunity.tasks.deploy.targets.local import current_ref

        plan.previous_ref = current_ref(name, settings)
    if repo is not None and config.kind == "local_command":
        try:
            plan.ref = head(repo, plan.ref)  # a branch moves; the deployment names a commit
        except GitError as error:
            raise DeployRefusedError(f"{plan.ref!r} is not a commit of {repo}: {error}") from None
    return plan


@task(name="record-deployment", **DB_TASK_OPTIONS)
def record_deployment(plan: DeployPlan, flow_run_id: str | None, **fields: object) -> Deployment:
    """Store the deployment as planned (`pending`)."""
    with session_scope() as session:
        return open_deployment(
            session=session,
            target=plan.target,
            kind=plan.kind,
            environment=plan.environment,
            ref=plan.ref,
            previous_ref=plan.previous_ref,
            reason=plan.reason,
            fix_id=plan.fix_id,
            triggered_by=plan.triggered_by,
            flow_run_id=flow_run_id,
            **fields,
        )


@task(name="mark-deployment", **DB_TASK_OPTIONS)
def mark(deployment_id: int, **fields: object) -> Deployment:
    """Move a deployment on (status, evidence, detail)."""
    with session_scope() as session:
        return update_deployment(session=session, deployment_id=deployment_id, **fields)


def _test_name(test_id: int | None) -> str | None:
    if test_id is None:
        return None
    with Session(get_engine()) as session:
        test = session.get(RegressionTest, test_id)
    return test.name if test else None


@task(name="read-deployment", **DB_TASK_OPTIONS)
def read_deployment(deployment_id: int) -> Deployment:
    """Return the deployment as stored now."""
    with session_scope() as session:
        return get_deployment(session=session, deployment_id=deployment_id)


@task(name="readiness-gate", **DB_TASK_OPTIONS)
def gate(plan: DeployPlan, min_readiness: float) -> GateResult:
    """Return whether the environment is ready enough and no critical test fails.

    The deployed fix's own regression test fails until the fix is out: it is excused, since the
    fix was verified to turn it green on its branch.
    """
    settings = get_settings()
    excused = [name for name in [_test_name(plan.test_id)] if name]
    readiness = measure_readiness(
        get_engine(),
        settings,
        plan.environment,
        exclude_test_ids=[plan.test_id] if plan.test_id else [],
    )
    critical = [name for name in readiness.critical_failures if name not in excused]
    reasons = []
    if readiness.score < min_readiness:
        reasons.append(
            f"readiness {readiness.score:.0f} is below {min_readiness:.0f} ({readiness.band})"
        )
    if critical:
        reasons.append(f"critical test(s) failing: {', '.join(critical)}")
    return GateResult(
        passed=not reasons,
        score=readiness.score,
        band=readiness.band,
        min_readiness=min_readiness,
        critical_failures=critical,
        excused=excused,
        reasons=reasons,
    )


@task(name="trigger-deployment", **_NO_CACHE)
def trigger(plan: DeployPlan, ref: str) -> TargetOutcome:
    """Deploy `ref` to the plan's target and follow it until it is live or has failed."""
    settings = get_settings()
    return trigger_and_follow(
        plan.target, settings.deploy_targets[plan.target], ref, settings, reason=plan.reason
    )


@task(name="watch-deployment", **_NO_CACHE)
def watch_once(plan: DeployPlan, deployment: Deployment) -> WatchReport:
    """Look at the deployment once: tests now, and traffic since it went live vs as long before."""
    settings = get_settings()
    engine = get_engine()
    assert deployment.deployed_at is not None
    now = utcnow()
    span = now - deployment.deployed_at
    tests = [*smoke_test_ids(engine, settings), *([plan.test_id] if plan.test_id else [])]
    statuses = run_watch_tests(engine, settings, plan.environment, sorted(set(tests)))
    window = {"bucket_minutes": settings.bucket_minutes}
    since = deployment.deployed_at
    # The baseline ends when the deployment began, not when it went live: during the switch the
    # service may have served nothing, and an empty baseline compares with anything.
    began = min(deployment.created_at, since)
    before = traffic_counts(
        engine, plan.environment, began - span, began, plan.signature_id, **window
    )
    after = traffic_counts(engine, plan.environment, since, now, plan.signature_id, **window)
    report = WatchReport(
        healthy=True,
        tests=statuses,
        failures_before=before[0],
        successes_before=before[1],
        signature_before=before[2],
        failures_after=after[0],
        successes_after=after[1],
        signature_after=after[2],
    )
    return judge(
        report,
        fix_test=_test_name(plan.test_id),
        max_rate_increase=settings.deploy_max_rate_increase,
        min_attempts=settings.health_min_attempts,
    )


@task(name="revert-fix", **_NO_CACHE)
def revert_fix(plan: DeployPlan, why: str) -> str | None:
    """Revert the fix commit on its branch and mark the proposal rolled back; return the revert."""
    settings = get_settings()
    if plan.fix_id is None or plan.fix_commit is None or plan.fix_branch is None:
        return None
    repo = settings.deploy_targets[plan.target].repo or settings.repo_path
    sha = None
    if repo is not None:
        sha = revert_commit(
            Path(repo),
            commit=plan.fix_commit,
            branch=plan.fix_branch,
            message=f"Revert fix proposal #{plan.fix_id}: rolled back after deployment\n\n{why}",
            author="immunity <immunity@localhost>",
        )
    with session_scope() as session:
        transition(
            session=session, proposal_id=plan.fix_id, target=FixStatus.ROLLED_BACK, note=why[:2_000]
        )
    return sha


@task(name="link-suspect-deployment", **DB_TASK_OPTIONS)
def link_suspect_signatures(deployment_id: int) -> list[int]:
    """Link the signatures first seen soon after the deployment to it (suspect deployment)."""
    window = timedelta(minutes=get_settings().suspect_window_minutes)
    with session_scope() as session:
        deployment = session.get(Deployment, deployment_id)
        if deployment is None:
            return []
        return link_suspects(session=session, deployment=deployment, window=window)


@task(name="link-recent-suspect-deployments", **DB_TASK_OPTIONS)
def link_recent_suspect_deployments() -> list[int]:
    """Link the signatures first seen soon after any recent deployment (the health loop's sweep)."""
    window = timedelta(minutes=get_settings().suspect_window_minutes)
    with session_scope() as session:
        return link_recent_suspects(session=session, window=window)


@task(name="publish-deployment", **DB_TASK_OPTIONS)
def publish(deployment_id: int) -> None:
    """Publish the deployment as a markdown artifact (key `deployment-<id>`)."""
    with Session(get_engine()) as session:
        d = session.get(Deployment, deployment_id)
    if d is None:
        return
    watch = d.watch.get("reports", [])
    lines = [
        f"# Deployment #{d.id}: {d.status}",
        "",
        f"**Target:** {d.target} ({d.kind}) → {d.environment}.  **Ref:** `{d.ref[:12]}`"
        f" (previous `{(d.previous_ref or '—')[:12]}`).",
        f"**Reason:** {d.reason or '—'}.  **By:** {d.triggered_by}.",
        "",
        f"**Gate:** {'passed' if d.gate.get('passed') else 'refused'} — readiness"
        f" {d.gate.get('score', 0):.0f} ({d.gate.get('band', '?')}); "
        + ("; ".join(d.gate.get("reasons", [])) or "no objection"),
        "",
        "| look | healthy | failure rate before → after | reasons |",
        "|---|---|---|---|",
    ]
    for i, report in enumerate(watch, 1):
        report_model = WatchReport.model_validate(report)
        lines.append(
            f"| {i} | {'yes' if report_model.healthy else 'no'} |"
            f" {report_model.rate_before:.0%} → {report_model.rate_after:.0%} |"
            f" {'; '.join(report_model.reasons) or '—'} |"
        )
    lines += ["", d.detail or ""]
    create_markdown_artifact(
        key=f"deployment-{d.id}", markdown="\n".join(lines), description=f"Deployment #{d.id}"
    )
