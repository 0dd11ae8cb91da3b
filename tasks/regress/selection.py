"""Choosing a suite run's tests: which stored tests run where, which gate, which are trusted."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from immunity.models.enums import ExecutionStatus, Reproduction
from immunity.models.errors import InvalidInputError
from immunity.models.results import CaseResult
from immunity.models.schemas import utcnow
from immunity.models.settings import Environment, Settings
from immunity.models.specs import Selection, TestCase
from immunity.models.tables import RegressionTest

__all__ = [
    "UnknownEnvironmentError",
    "case_for",
    "is_critical",
    "is_critical_type",
    "is_trusted",
    "select_cases",
]


class UnknownEnvironmentError(InvalidInputError):
    """A run asked for an environment the settings do not define."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(
            f"unknown environment {name!r}; configured: {', '.join(sorted(known)) or 'none'}"
            " (set IMMUNITY_ENVIRONMENTS)"
        )


def is_critical(test: RegressionTest, settings: Settings) -> bool:
    """Return True when the test's failure gates a deploy (critical type or tag)."""
    return is_critical_type(test.type, test.tags, settings)


def is_critical_type(type_: str, tags: Sequence[str] | None, settings: Settings) -> bool:
    """Return True for a critical type or a test carrying a critical tag."""
    return type_ in settings.critical_types or bool(set(tags or ()) & set(settings.critical_tags))


def is_trusted(test: RegressionTest) -> bool:
    """Return True when the test's results may move its signature.

    Not while quarantined (flaky), nor while a generated test has not reproduced its failure: a
    replay that passes because the capture lost the body must never mark a live bug `fixed`.
    """
    return not test.quarantined and test.reproduction in (None, Reproduction.REPRODUCED)


def _selected(test: RegressionTest, selection: Selection) -> bool:
    if selection.tags and not set(test.tags or ()) & set(selection.tags):
        return False
    return True


def select_cases(
    engine: Engine, settings: Settings, selection: Selection, environment: str | None
) -> tuple[list[TestCase], list[CaseResult]]:
    """Return the selected tests resolved against their environment, and those that cannot run.

    With `environment`, every test runs there; otherwise each runs in its own, and a test whose
    environment is not configured comes back as an `error` result instead of a case.
    """
    if environment is not None and environment not in settings.environments:
        raise UnknownEnvironmentError(environment, list(settings.environments))
    query = select(RegressionTest).order_by(col(RegressionTest.id))
    if not selection.include_inactive:
        query = query.where(col(RegressionTest.is_active).is_(True))
    if selection.ids:
        query = query.where(col(RegressionTest.id).in_(selection.ids))
    if selection.names:
        query = query.where(col(RegressionTest.name).in_(selection.names))
    if selection.types:
        query = query.where(col(RegressionTest.type).in_(selection.types))
    if selection.kinds:
        query = query.where(col(RegressionTest.kind).in_(selection.kinds))
    with Session(engine) as session:
        tests = [test for test in session.exec(query).all() if _selected(test, selection)]
    cases, unrunnable = [], []
    for test in tests:
        assert test.id is not None
        name = environment or test.environment
        target = settings.environments.get(name)
        if target is None:
            unrunnable.append(
                CaseResult(
                    test_id=test.id,
                    name=test.name,
                    status=ExecutionStatus.ERROR,
                    error=str(UnknownEnvironmentError(name, list(settings.environments))),
                    started_at=utcnow(),
                )
            )
            continue
        cases.append(case_for(test, name, target))
    return cases, unrunnable


def case_for(
    test: RegressionTest,
    name: str,
    environment: Environment,
    *,
    marker: str = "run",
    allow_unsafe: bool | None = None,
) -> TestCase:
    """Return the stored test resolved against one environment, as the runner takes it."""
    assert test.id is not None
    return TestCase(
        test_id=test.id,
        name=test.name,
        kind=test.kind,
        spec=test.spec,
        expectations=test.expectations,
        base_url=environment.base_url,
        environment=name,
        is_production=environment.is_production,
        allow_unsafe=test.allow_unsafe if allow_unsafe is None else allow_unsafe,
        marker=marker,
    )
