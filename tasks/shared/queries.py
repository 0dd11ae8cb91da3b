"""Read-only views of the store for the CLI, the API and dashboards."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, func, or_
from sqlmodel import Session, col, select

from immunity.models.enums import Reproduction, TestState
from immunity.models.results import SuiteSummary
from immunity.models.tables import (
    DEFAULT_PROJECT,
    RegressionTest,
    Signature,
    SuiteRun,
    TestExecution,
)

__all__ = [
    "UNTRUSTED_REPRODUCTION",
    "confidence_band",
    "latest_suite_summary",
    "list_executions",
    "list_signatures",
    "list_tests",
    "state_of_test",
    "suite_progress",
]

_BANDS = ((40, "unreliable"), (60, "moderate"), (80, "reliable"))
_RUNS, _GATES = col(RegressionTest.is_active), col(RegressionTest.quarantined)
_TEST_STATES: dict[TestState, tuple[Any, ...]] = {
    TestState.ACTIVE: (_RUNS.is_(True), _GATES.is_(False)),
    TestState.QUARANTINED: (_RUNS.is_(True), _GATES.is_(True)),
    TestState.INACTIVE: (_RUNS.is_(False),),
}
# A generated test in one of these states may not move its signature (tasks/reproduce.py).
UNTRUSTED_REPRODUCTION = (
    Reproduction.PENDING,
    Reproduction.NOT_REPRODUCED,
    Reproduction.UNVERIFIED,
)


def confidence_band(confidence: int) -> str:
    """Return the seed's band for a confidence score (unreliable … highly reliable)."""
    for upper, name in _BANDS:
        if confidence < upper:
            return name
    return "highly reliable"


def state_of_test(test: RegressionTest) -> TestState:
    """Return where a test stands in the suite: active, quarantined or inactive."""
    if not test.is_active:
        return TestState.INACTIVE
    return TestState.QUARANTINED if test.quarantined else TestState.ACTIVE


def list_signatures(
    engine: Engine,
    *,
    limit: int = 50,
    offset: int = 0,
    status: str | None = None,
    project: str | None = None,
) -> Sequence[Signature]:
    """Return the most recently seen signatures, newest first; `status`: only those in it;
    `project`: only that project's."""
    with Session(engine) as session:
        query = (
            select(Signature)
            .order_by(col(Signature.last_seen).desc(), col(Signature.id).desc())
            .offset(offset)
            .limit(limit)
        )
        if status is not None:
            query = query.where(Signature.status == status)
        if project is not None:
            query = query.where(Signature.project == project)
        return session.exec(query).all()


def list_tests(
    engine: Engine,
    *,
    limit: int = 200,
    offset: int = 0,
    unverified: bool = False,
    state: TestState | None = None,
    project: str | None = None,
) -> Sequence[RegressionTest]:
    """Return regression tests, newest first; `state`, `unverified` or `project` narrow them.

    `state`: only active, quarantined or inactive tests; `unverified`: only generated tests whose
    reproduction is not yet trusted; `project`: only tests built from that project's signatures
    (tests written by hand belong to the default project).
    """
    with Session(engine) as session:
        query = (
            select(RegressionTest)
            .order_by(col(RegressionTest.id).desc())
            .offset(offset)
            .limit(limit)
        )
        if state is not None:
            query = query.where(*_TEST_STATES[state])
        if unverified:
            untrusted = [state.value for state in UNTRUSTED_REPRODUCTION]
            query = query.where(col(RegressionTest.reproduction).in_(untrusted))
        if project is not None:
            query = query.where(_in_project(project))
        return session.exec(query).all()


def _in_project(project: str) -> Any:
    source = col(RegressionTest.created_from_signature_id)
    built = source.in_(select(Signature.id).where(Signature.project == project))
    return or_(built, source.is_(None)) if project == DEFAULT_PROJECT else built


def list_executions(
    engine: Engine, *, suite_run_id: int, statuses: Sequence[str] = (), limit: int = 200
) -> Sequence[Any]:
    """Return (execution, test name) pairs of a suite run, optionally of some statuses only."""
    with Session(engine) as session:
        query = (
            select(TestExecution, RegressionTest.name)
            .join(RegressionTest, col(RegressionTest.id) == col(TestExecution.test_id))
            .where(TestExecution.suite_run_id == suite_run_id)
            .order_by(col(TestExecution.status), col(RegressionTest.name))
            .limit(limit)
        )
        if statuses:
            query = query.where(col(TestExecution.status).in_(statuses))
        return session.exec(query).all()


def suite_progress(engine: Engine, suite_run_id: int) -> tuple[int, int]:
    """Return how many of a suite run's tests have a recorded result, and how many it has."""
    with Session(engine) as session:
        done = session.exec(
            select(func.count()).where(TestExecution.suite_run_id == suite_run_id)
        ).one()
        total = session.exec(select(SuiteRun.total).where(SuiteRun.id == suite_run_id)).first()
    return int(done), int(total or 0)


def latest_suite_summary(engine: Engine) -> SuiteSummary | None:
    """Return the totals of the most recent finished suite run, or None before the first."""
    with Session(engine) as session:
        suite = session.exec(
            select(SuiteRun)
            .where(SuiteRun.status == "finished")
            .order_by(col(SuiteRun.id).desc())
            .limit(1)
        ).first()
    if suite is None or suite.id is None:
        return None
    return SuiteSummary(
        suite_run_id=suite.id,
        trigger=suite.trigger,
        environment=suite.environment,
        total=suite.total,
        passed=suite.passed,
        failed=suite.failed,
        errors=suite.errors,
        flaky=suite.flaky,
        skipped=suite.skipped,
        critical_failures=list(suite.critical_failures or ()),
        started_at=suite.started_at,
        finished_at=suite.finished_at,
    )
