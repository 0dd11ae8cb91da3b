"""Suite runs in the store: opening and closing them, and recording what their results change.

Recording a chunk of results is one transaction: the executions are inserted, each test's
counts, confidence and quarantine are moved from its locked row (so two suite runs over the
same test never lose an update on PostgreSQL), and each trusted result moves its signature.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, insert, update
from sqlmodel import Session, col, select

from immunity.models.db import session_scope
from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult, SuiteSummary, Transition
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.specs import Selection
from immunity.models.tables import RegressionTest, Signature, SuiteRun, TestExecution
from immunity.tasks.regress.lifecycle import (
    Counts,
    band_dropped,
    next_confidence,
    next_counts,
    next_signature_status,
    quarantine_decision,
)
from immunity.tasks.regress.selection import is_critical, is_trusted
from immunity.tasks.shared.queries import confidence_band

__all__ = [
    "RecordOutcome",
    "close_suite_run",
    "open_suite_run",
    "recent_statuses",
    "record_results",
    "set_total",
]

executions = TestExecution.__table__  # type: ignore[attr-defined]
_GATING = (ExecutionStatus.FAILED, ExecutionStatus.ERROR)


def open_suite_run(
    engine: Engine,
    *,
    trigger: str,
    environment: str | None,
    selection: Selection,
    flow_run_id: str | None,
    suite_run_id: int | None = None,
) -> int:
    """Return the id of the suite run this run records into (a new one, or the one given)."""
    with session_scope(engine) as session:
        suite = session.get(SuiteRun, suite_run_id) if suite_run_id is not None else None
        if suite_run_id is not None and suite is None:
            raise ValueError(f"suite run {suite_run_id} does not exist")
        if suite is None:
            suite = SuiteRun(trigger=trigger, environment=environment)
        suite.selection = selection.model_dump(mode="json", exclude_defaults=True)
        suite.flow_run_id = flow_run_id
        session.add(suite)
        session.flush()
        assert suite.id is not None
        return suite.id


def set_total(engine: Engine, suite_run_id: int, total: int) -> None:
    """Record how many tests the run will report (the CLI's progress bar reads it)."""
    with engine.begin() as conn:
        conn.execute(update(SuiteRun).where(col(SuiteRun.id) == suite_run_id).values(total=total))


@dataclass
class RecordOutcome:
    """What recording a chunk changed: transitions to report and the tests that gate."""

    transitions: list[Transition] = field(default_factory=list)
    critical_failures: list[str] = field(default_factory=list)


def ranked_runs(*conditions: Any) -> Any:
    """Return a subquery of (test_id, status, rank) over runs that were not skipped, rank 1 the
    newest of each test, narrowed by `conditions` over the executions table."""
    return (
        select(
            executions.c.test_id,
            executions.c.status,
            func.row_number()
            .over(
                partition_by=executions.c.test_id,
                order_by=(executions.c.started_at.desc(), executions.c.id.desc()),
            )
            .label("rank"),
        )
        .where(executions.c.status != ExecutionStatus.SKIPPED.value, *conditions)
        .subquery()
    )


def recent_statuses(session: Session, test_ids: Sequence[int], window: int) -> dict[int, list]:
    """Return the newest `window` statuses of each test (skipped runs left out), newest first."""
    ranked = ranked_runs(executions.c.test_id.in_(test_ids))
    rows = session.connection().execute(
        select(ranked.c.test_id, ranked.c.status)
        .where(ranked.c.rank <= window)
        .order_by(ranked.c.test_id, ranked.c.rank)
    )
    recent: dict[int, list] = defaultdict(list)
    for row in rows:
        recent[row.test_id].append(row.status)
    return recent


def record_results(
    engine: Engine,
    settings: Settings,
    *,
    suite_run_id: int | None,
    results: Sequence[CaseResult],
    trigger: str,
    environment: str | None,
    flow_run_id: str | None = None,
) -> RecordOutcome:
    """Store the results and move each test and signature; return what changed."""
    outcome = RecordOutcome()
    if not results:
        return outcome
    ids = sorted({result.test_id for result in results})
    with session_scope(engine) as session:
        locked = select(RegressionTest).where(col(RegressionTest.id).in_(ids))
        tests = {
            test.id: test
            for test in session.exec(locked.order_by(col(RegressionTest.id)).with_for_update())
        }
        signature_ids = [t.created_from_signature_id for t in tests.values()]
        signatures = {
            signature.id: signature
            for signature in session.exec(
                select(Signature)
                .where(col(Signature.id).in_([i for i in signature_ids if i is not None]))
                .order_by(col(Signature.id))
                .with_for_update()
            )
        }
        rows = []
        for result in results:
            test = tests.get(result.test_id)
            if test is None:  # deleted while it ran
                continue
            _apply(test, result, settings, signatures, outcome)
            rows.append(_execution_row(result, test, suite_run_id, trigger, environment))
            rows[-1]["flow_run_id"] = flow_run_id
        if rows:
            session.connection().execute(insert(executions), rows)
        recent = recent_statuses(session, ids, settings.flaky_window)
        for test_id, test in tests.items():
            _quarantine(test, recent.get(test_id, []), settings, outcome)
    return outcome


def _execution_row(
    result: CaseResult,
    test: RegressionTest,
    suite_run_id: int | None,
    trigger: str,
    environment: str | None,
) -> dict:
    return {
        "test_id": result.test_id,
        "suite_run_id": suite_run_id,
        "status": result.status.value,
        "duration_ms": result.duration_ms,
        "attempts": result.attempts,
        "error": result.error,
        "expected": result.expected,
        "actual": result.actual,
        "calls": result.calls,
        "environment": environment or test.environment,
        "trigger": trigger,
        "artifacts": result.artifacts,
        "confidence_after": test.confidence,
        "started_at": result.started_at,
    }


def _apply(
    test: RegressionTest,
    result: CaseResult,
    settings: Settings,
    signatures: dict,
    outcome: RecordOutcome,
) -> None:
    status = result.status
    before = test.confidence
    test.confidence = next_confidence(
        before, status, up=settings.confidence_pass_step, down=settings.confidence_fail_step
    )
    counts = next_counts(
        Counts(test.run_count, test.pass_count, test.fail_count, test.flaky_count), status
    )
    test.run_count, test.pass_count = counts.run, counts.passed
    test.fail_count, test.flaky_count = counts.failed, counts.flaky
    if status != ExecutionStatus.SKIPPED:
        test.last_run_at = result.started_at
    if band_dropped(before, test.confidence):
        outcome.transitions.append(
            Transition(
                kind="confidence_band",
                test_id=result.test_id,
                test_name=test.name,
                signature_id=test.created_from_signature_id,
                before=confidence_band(before),
                after=confidence_band(test.confidence),
                message=(
                    f"confidence of {test.name} fell from {before} to {test.confidence}"
                    f" ({confidence_band(before)} → {confidence_band(test.confidence)})"
                ),
            )
        )
    if status in _GATING and not test.quarantined and is_critical(test, settings):
        outcome.critical_failures.append(test.name)
    signature = signatures.get(test.created_from_signature_id)
    if signature is None:
        return
    moved = next_signature_status(signature.status, status, trusted=is_trusted(test))
    if moved is None or moved == signature.status:
        return
    before_status, signature.status = signature.status, moved
    outcome.transitions.append(
        Transition(
            kind=moved,
            test_id=result.test_id,
            test_name=test.name,
            signature_id=signature.id,
            before=before_status,
            after=moved,
            message=(
                f"{signature.error_type} ({signature.fingerprint[:8]}) is {moved}: "
                f"{test.name} {status.value}"
                + (f" — {result.error}" if result.error and moved == "regressed" else "")
            ),
        )
    )


def _quarantine(
    test: RegressionTest, recent: list, settings: Settings, outcome: RecordOutcome
) -> None:
    decision = quarantine_decision(
        recent,
        quarantined=test.quarantined,
        window=settings.flaky_window,
        share=settings.flaky_quarantine_share,
    )
    if decision is None:
        return
    test.quarantined = decision
    flaky = sum(1 for status in recent[: settings.flaky_window] if status == "flaky")
    outcome.transitions.append(
        Transition(
            kind="quarantined" if decision else "released",
            test_id=test.id or 0,
            test_name=test.name,
            signature_id=test.created_from_signature_id,
            before="active" if decision else "quarantined",
            after="quarantined" if decision else "active",
            message=(
                f"{test.name} {'quarantined' if decision else 'released from quarantine'}:"
                f" flaky in {flaky} of its last {min(len(recent), settings.flaky_window)} runs"
            ),
        )
    )


def close_suite_run(
    engine: Engine,
    *,
    suite_run_id: int,
    critical_failures: Sequence[str],
    transitions: Sequence[Transition],
) -> SuiteSummary:
    """Total the run's executions into its row and return the summary."""
    with session_scope(engine) as session:
        rows = session.connection().execute(
            select(executions.c.status, func.count())
            .where(executions.c.suite_run_id == suite_run_id)
            .group_by(executions.c.status)
        )
        counts = {status: count for status, count in rows}
        suite = session.get(SuiteRun, suite_run_id)
        assert suite is not None
        summary = SuiteSummary(
            suite_run_id=suite_run_id,
            trigger=suite.trigger,
            environment=suite.environment,
            total=sum(counts.values()),
            passed=counts.get(ExecutionStatus.PASSED.value, 0),
            failed=counts.get(ExecutionStatus.FAILED.value, 0),
            errors=counts.get(ExecutionStatus.ERROR.value, 0),
            flaky=counts.get(ExecutionStatus.FLAKY.value, 0),
            skipped=counts.get(ExecutionStatus.SKIPPED.value, 0),
            critical_failures=sorted(critical_failures),
            transitions=list(transitions),
            started_at=suite.started_at,
            finished_at=utcnow(),
        )
        suite.total, suite.passed, suite.failed = summary.total, summary.passed, summary.failed
        suite.errors, suite.flaky, suite.skipped = summary.errors, summary.flaky, summary.skipped
        suite.critical_failures = summary.critical_failures
        suite.pass_rate = summary.pass_rate
        suite.status, suite.finished_at = "finished", summary.finished_at
        session.add(suite)
    return summary
