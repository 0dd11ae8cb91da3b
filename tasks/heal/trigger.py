"""From the regression loop to the heal loop: a test failing N runs in a row gets a fix proposal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from prefect import get_run_logger, task
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from immunity.models.db import get_engine
from immunity.models.enums import ExecutionStatus
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest
from immunity.tasks.heal.store import recently_proposed
from immunity.tasks.regress.store import recent_statuses
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = ["failing_signatures", "start_heal_runs"]

_FAILING = {ExecutionStatus.FAILED.value, ExecutionStatus.ERROR.value}


def failing_signatures(engine: Engine, test_ids: Sequence[int], streak: int) -> list[int]:
    """Return the signatures whose regression test failed its last `streak` runs."""
    if not test_ids:
        return []
    with Session(engine) as session:
        recent = recent_statuses(session, test_ids, streak)
        failing = [
            test_id
            for test_id, statuses in recent.items()
            if len(statuses) >= streak and set(statuses) <= _FAILING
        ]
        if not failing:
            return []
        query = select(RegressionTest.created_from_signature_id).where(
            col(RegressionTest.id).in_(failing),
            col(RegressionTest.created_from_signature_id).is_not(None),
        )
        return sorted(sid for sid in session.exec(query).all() if sid is not None)


@task(name="start-heal-runs", **DB_TASK_OPTIONS)
def start_heal_runs(failed_test_ids: list[int]) -> list[int]:
    """Start the heal deployment for each signature now due a fix proposal; return them."""
    settings = get_settings()
    engine = get_engine()
    logger = get_run_logger()
    due = failing_signatures(engine, failed_test_ids, settings.heal_after_failures)
    cooldown = timedelta(hours=settings.heal_cooldown_hours)
    with Session(engine) as session:
        blocked = recently_proposed(session=session, signature_ids=due, cooldown=cooldown)
    started: list[int] = []
    for signature_id in (sid for sid in due if sid not in blocked):
        try:
            run_deployment(
                settings.heal_deployment,
                parameters={"signature_id": signature_id},
                timeout=0,
                tags=["heal", "from-regression"],
            )
        except ObjectNotFound:
            logger.warning(
                "signature %s is due a fix proposal, but deployment %r is not served here;"
                " run `immunity heal %s` or `immunity serve`",
                signature_id,
                settings.heal_deployment,
                signature_id,
            )
            break
        started.append(signature_id)
    if started:
        logger.info("fix proposals started for signature(s) %s", started)
    return started
