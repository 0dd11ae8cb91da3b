"""The UI automation loop: Selenium suites in headless Chromium, recorded like every other test."""

from __future__ import annotations

from prefect import flow

from immunity.flows.regress import run_suite
from immunity.models.enums import TestKind, Trigger
from immunity.models.results import SuiteSummary
from immunity.models.specs import Selection
from immunity.tasks.regress.reports import publish_ui_failures

__all__ = ["run_ui_suite"]


@flow(name="ui-suite")
def run_ui_suite(
    ids: list[int] | None = None,
    names: list[str] | None = None,
    tags: list[str] | None = None,
    types: list[str] | None = None,
    environment: str | None = None,
    trigger: Trigger = Trigger.MANUAL,
    suite_run_id: int | None = None,
) -> SuiteSummary:
    """Run the selected UI tests in a pool of reused browsers and return the suite's summary.

    Results move confidence, quarantine and signatures exactly as HTTP tests do; a failed UI test
    keeps a screenshot, the page source, the console log and the failed requests, listed in the
    `ui-failures` artifact.

    Args:
        ids: Test ids.
        names: Test names.
        tags: Tests carrying any of these tags.
        types: smoke, regression, contract, integration.
        environment: Run every test against this environment (default: each test's own).
        trigger: manual, schedule, ci or deployment.
        suite_run_id: Record into this pre-created suite run (the CLI uses it for progress).
    """
    selection = Selection(
        ids=ids or [],
        names=names or [],
        tags=tags or [],
        types=types or [],
        kinds=[TestKind.UI.value],
    )
    summary = run_suite(selection, environment, trigger, suite_run_id)
    publish_ui_failures(summary.suite_run_id)
    return summary
