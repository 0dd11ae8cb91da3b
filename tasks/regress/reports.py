"""After a suite run: its CI reports on disk and its dashboards in the Prefect UI."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from immunity.models.db import get_engine
from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult, SuiteSummary
from immunity.models.settings import Settings, get_settings
from immunity.models.tables import RegressionTest, TestExecution
from immunity.tasks.regress.ci_reports import TestInfo, write_reports
from immunity.tasks.regress.selection import is_critical_type
from immunity.tasks.shared.queries import confidence_band

__all__ = [
    "RECENT_FAILURES_KEY",
    "SUITE_SUMMARY_KEY",
    "TEST_HEALTH_KEY",
    "UI_FAILURES_KEY",
    "publish_suite_dashboards",
    "publish_ui_failures",
    "summary_markdown",
    "test_infos",
    "write_suite_reports",
]

TEST_HEALTH_KEY = "test-health"
SUITE_SUMMARY_KEY = "suite-summary"
RECENT_FAILURES_KEY = "recent-failures"
UI_FAILURES_KEY = "ui-failures"
RECENT_FAILURES = 50


def test_infos(engine: Engine, settings: Settings, test_ids: Sequence[int]) -> dict[int, TestInfo]:
    """Return what the reports show of each test, as it stands after the run."""
    columns = (
        RegressionTest.id,
        RegressionTest.name,
        RegressionTest.kind,
        RegressionTest.type,
        RegressionTest.tags,
        RegressionTest.confidence,
        RegressionTest.quarantined,
        RegressionTest.created_from_signature_id,
        RegressionTest.reproduction,
    )
    # Columns, not whole rows: specs and evidence are large and these reports do not need them.
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(col(RegressionTest.id).in_(test_ids))).all()
    return {
        row.id: TestInfo(
            test_id=row.id,
            name=row.name,
            kind=row.kind,
            type=row.type,
            tags=tuple(row.tags or ()),
            confidence=row.confidence,
            quarantined=row.quarantined,
            critical=is_critical_type(row.type, row.tags, settings),
            signature_id=row.created_from_signature_id,
            reproduction=row.reproduction,
        )
        for row in rows
    }


@task(name="write-suite-reports", retries=1, retry_delay_seconds=1)
def write_suite_reports(summary: SuiteSummary, results: Sequence[CaseResult]) -> SuiteSummary:
    """Write the run's JSON report and JUnit XML; return the summary with their paths."""
    settings = get_settings()
    infos = test_infos(get_engine(), settings, [result.test_id for result in results])
    json_path, xml_path = write_reports(
        summary, results, tests=infos, directory=settings.reports_dir
    )
    return summary.model_copy(update={"report_json": str(json_path), "report_junit": str(xml_path)})


def summary_markdown(summary: SuiteSummary) -> str:
    """Return the suite summary as the Prefect UI shows it."""
    rate = "n/a" if summary.pass_rate is None else f"{100 * summary.pass_rate:.1f}%"
    gate = (
        "**passed**"
        if summary.gate_passed
        else f"**failed**: {', '.join(summary.critical_failures[:20])}"
    )
    lines = [
        f"# Suite run {summary.suite_run_id} ({summary.trigger}, {summary.environment or 'own'})",
        "",
        "| total | passed | failed | error | flaky | skipped | pass rate |",
        "|---|---|---|---|---|---|---|",
        f"| {summary.total} | {summary.passed} | {summary.failed} | {summary.errors}"
        f" | {summary.flaky} | {summary.skipped} | {rate} |",
        "",
        f"CI gate: {gate}",
    ]
    if summary.transitions:
        lines += ["", "## Changes", ""]
        lines += [f"- **{t.kind}**: {t.message}" for t in summary.transitions[:50]]
    return "\n".join(lines)


@task(name="publish-suite-dashboards", retries=2, retry_delay_seconds=2)
def publish_suite_dashboards(summary: SuiteSummary) -> None:
    """Publish test health, the latest suite summary and recent failures as artifacts."""
    with Session(get_engine()) as session:
        tests = session.exec(select(RegressionTest).order_by(col(RegressionTest.name))).all()
        failures = session.exec(
            select(TestExecution, RegressionTest.name)
            .join(RegressionTest, col(RegressionTest.id) == col(TestExecution.test_id))
            .where(
                col(TestExecution.status).in_(
                    [ExecutionStatus.FAILED.value, ExecutionStatus.ERROR.value]
                )
            )
            .order_by(col(TestExecution.started_at).desc())
            .limit(RECENT_FAILURES)
        ).all()
    create_table_artifact(
        key=TEST_HEALTH_KEY,
        table=[
            {
                "test": test.name,
                "kind": test.kind,
                "type": test.type,
                "confidence": test.confidence,
                "band": confidence_band(test.confidence),
                "passed": test.pass_count,
                "failed": test.fail_count,
                "flaky": test.flaky_count,
                "quarantined": "yes" if test.quarantined else "",
                "reproduced": test.reproduction or "",
                "last run": test.last_run_at.isoformat() if test.last_run_at else "",
            }
            for (test,) in tests
        ],
        description="Every regression test: confidence, band and results so far.",
    )
    create_markdown_artifact(
        key=SUITE_SUMMARY_KEY,
        markdown=summary_markdown(summary),
        description="The latest regression suite run.",
    )
    create_table_artifact(
        key=RECENT_FAILURES_KEY,
        table=[
            {
                "test": name,
                "status": execution.status,
                "when": execution.started_at.isoformat(),
                "environment": execution.environment,
                "error": (execution.error or "")[:300],
            }
            for execution, name in failures
        ],
        description=f"The last {RECENT_FAILURES} failed or errored test executions.",
    )


@task(name="publish-ui-failures", retries=2, retry_delay_seconds=2)
def publish_ui_failures(suite_run_id: int) -> None:
    """Publish the run's failed UI tests with what was kept of each: screenshot, page, console."""
    with Session(get_engine()) as session:
        rows = session.exec(
            select(TestExecution, RegressionTest.name)
            .join(RegressionTest, col(RegressionTest.id) == col(TestExecution.test_id))
            .where(
                TestExecution.suite_run_id == suite_run_id,
                col(TestExecution.status).in_(
                    [ExecutionStatus.FAILED.value, ExecutionStatus.ERROR.value]
                ),
            )
            .order_by(col(RegressionTest.name))
        ).all()
    lines = [f"# UI failures of suite run {suite_run_id}", ""]
    if not rows:
        lines.append("Every UI test passed.")
    for execution, name in rows:
        lines += [f"## {name} ({execution.status})", "", f"{execution.error or ''}", ""]
        for label, path in sorted((execution.artifacts or {}).items()):
            lines.append(f"- {label}: `{path}`")
        lines.append("")
    create_markdown_artifact(
        key=UI_FAILURES_KEY,
        markdown="\n".join(lines),
        description="Failed UI tests with their screenshot, page source and console log.",
    )
