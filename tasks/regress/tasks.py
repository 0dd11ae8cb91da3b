"""The retryable units of a regression run: select, run a chunk concurrently, record, close."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from immunity.models.db import get_engine
from immunity.models.results import CaseResult, SuiteSummary, Transition
from immunity.models.settings import get_settings
from immunity.models.specs import Selection, TestCase
from immunity.tasks.regress.selection import select_cases
from immunity.tasks.regress.store import (
    RecordOutcome,
    close_suite_run,
    open_suite_run,
    record_results,
    set_total,
)
from immunity.tasks.shared.retry import DB_TASK_OPTIONS
from immunity.tasks.shared.runner import run_any

__all__ = ["close_suite", "open_suite", "record_chunk", "run_chunk", "select_tests"]


@task(name="select-tests", **DB_TASK_OPTIONS)
def select_tests(
    selection: Selection, environment: str | None
) -> tuple[list[TestCase], list[CaseResult]]:
    """Return the selected tests ready to run, and those that cannot (unknown environment)."""
    return select_cases(get_engine(), get_settings(), selection, environment)


@task(name="open-suite-run", **DB_TASK_OPTIONS)
def open_suite(
    trigger: str,
    environment: str | None,
    selection: Selection,
    total: int,
    flow_run_id: str | None,
    suite_run_id: int | None = None,
) -> int:
    """Return the id of the suite run, created (or taken over) with its number of tests."""
    engine = get_engine()
    suite_id = open_suite_run(
        engine,
        trigger=trigger,
        environment=environment,
        selection=selection,
        flow_run_id=flow_run_id,
        suite_run_id=suite_run_id,
    )
    set_total(engine, suite_id, total)
    return suite_id


# No retries: a re-run would send every request again; the runner already retries transport
# failures and re-runs failed tests, and it never raises for a test's outcome.
@task(name="run-test-chunk", cache_policy=NO_CACHE)
def run_chunk(cases: Sequence[TestCase]) -> list[CaseResult]:
    """Return one result per case, in order: HTTP ones concurrently, UI ones in browsers."""
    return run_any(cases, get_settings())


@task(name="record-results", **DB_TASK_OPTIONS)
def record_chunk(
    suite_run_id: int,
    results: Sequence[CaseResult],
    trigger: str,
    environment: str | None,
    flow_run_id: str | None,
) -> RecordOutcome:
    """Store a chunk's executions and return the transitions and gating failures they caused."""
    return record_results(
        get_engine(),
        get_settings(),
        suite_run_id=suite_run_id,
        results=results,
        trigger=trigger,
        environment=environment,
        flow_run_id=flow_run_id,
    )


@task(name="close-suite-run", **DB_TASK_OPTIONS)
def close_suite(
    suite_run_id: int, critical_failures: Sequence[str], transitions: Sequence[Transition]
) -> SuiteSummary:
    """Return the run's summary after writing its totals."""
    return close_suite_run(
        get_engine(),
        suite_run_id=suite_run_id,
        critical_failures=critical_failures,
        transitions=transitions,
    )
