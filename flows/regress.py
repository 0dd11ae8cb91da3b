"""The regression loop: select tests, run them in a few concurrent chunks, record, alert, report."""

from __future__ import annotations

from itertools import chain

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.annotations import quote

from immunity.models.enums import ExecutionStatus, Severity, TestKind, Trigger
from immunity.models.results import CaseResult, SuiteSummary, Transition
from immunity.models.settings import get_settings
from immunity.models.specs import Selection
from immunity.tasks.heal.trigger import start_heal_runs
from immunity.tasks.regress.reports import publish_suite_dashboards, write_suite_reports
from immunity.tasks.regress.tasks import (
    close_suite,
    open_suite,
    record_chunk,
    run_chunk,
    select_tests,
)
from immunity.tasks.shared.alerts import raise_alert

__all__ = ["run_regression_suite", "run_suite"]

_ALERTED = {
    "regressed": Severity.HIGH,
    "confidence_band": Severity.MEDIUM,
    "quarantined": Severity.LOW,
}


@flow(name="regression-suite")
def run_regression_suite(
    ids: list[int] | None = None,
    names: list[str] | None = None,
    tags: list[str] | None = None,
    types: list[str] | None = None,
    kinds: list[str] | None = None,
    environment: str | None = None,
    trigger: Trigger = Trigger.MANUAL,
    suite_run_id: int | None = None,
) -> SuiteSummary:
    """Run the selected regression tests and return the suite's summary.

    Every list narrows the selection; with none given, every active test runs. Results move each
    test's confidence and its signature (`fixed`, `regressed`); regressions, confidence band drops
    and quarantines alert. A JSON report and JUnit XML are written for every run.

    Args:
        ids: Test ids.
        names: Test names.
        tags: Tests carrying any of these tags.
        types: smoke, regression, contract, integration.
        kinds: http, scenario, ui (default: http and scenario; UI tests run in `ui-suite`).
        environment: Run every test against this environment (default: each test's own).
        trigger: manual, schedule, ci or deployment.
        suite_run_id: Record into this pre-created suite run (the CLI uses it for progress).
    """
    selection = Selection(
        ids=ids or [],
        names=names or [],
        tags=tags or [],
        types=types or [],
        # UI tests have their own flow and schedule (flows/ui.py) unless asked for by kind.
        kinds=kinds or [TestKind.HTTP.value, TestKind.SCENARIO.value],
    )
    return run_suite(selection, environment, trigger, suite_run_id)


def run_suite(
    selection: Selection,
    environment: str | None,
    trigger: Trigger,
    suite_run_id: int | None = None,
) -> SuiteSummary:
    """Select, run in chunks, record, report, alert: the body of every suite flow."""
    settings = get_settings()
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None
    cases, unrunnable = select_tests(selection, environment)
    suite_id = open_suite(
        trigger.value,
        environment,
        selection,
        len(cases) + len(unrunnable),
        run_id,
        suite_run_id,
    )
    logger.info("suite run %s: %d test(s) selected", suite_id, len(cases) + len(unrunnable))
    size = settings.regression_chunk_size
    # One chunk at a time, each at full concurrency: chunks in threads of one process would only
    # share its CPU and GIL (the HTTP client is the bottleneck, not the target).
    chunks = (run_chunk(quote(cases[i : i + size])) for i in range(0, len(cases), size))
    results: list[CaseResult] = []
    transitions: list[Transition] = []
    critical: list[str] = []
    # Chunks are recorded as they finish, so the suite run's progress shows while it runs.
    for chunk in chain([unrunnable], chunks):
        if chunk:
            outcome = record_chunk(suite_id, quote(chunk), trigger.value, environment, run_id)
            results += chunk
            transitions += outcome.transitions
            critical += outcome.critical_failures
    summary = close_suite(suite_id, critical, transitions)
    summary = write_suite_reports(summary, quote(results))
    for transition in transitions:
        severity = _ALERTED.get(transition.kind)
        if severity is None:
            continue
        raise_alert(
            key=f"{transition.kind}:{transition.test_name}"[:200],
            kind=transition.kind,
            severity=severity.value,
            message=transition.message,
            details=transition.model_dump(mode="json") | {"suite_run_id": suite_id},
        )
    publish_suite_dashboards(summary)
    failing = [
        r.test_id for r in results if r.status in (ExecutionStatus.FAILED, ExecutionStatus.ERROR)
    ]
    if failing:
        # A heal run that cannot be started must not fail the suite that found the failures.
        state = start_heal_runs(failing, return_state=True)
        if state.is_failed():
            logger.warning("could not start fix proposals: %s", state.message)
    logger.info(
        "suite run %s: %d passed, %d failed, %d error, %d flaky, %d skipped; gate %s",
        suite_id,
        summary.passed,
        summary.failed,
        summary.errors,
        summary.flaky,
        summary.skipped,
        "passed" if summary.gate_passed else "FAILED",
    )
    return summary
