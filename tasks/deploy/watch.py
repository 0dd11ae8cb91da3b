"""The watch after a deployment: the fix's test and the smoke suite, the failure rate of real
traffic and the fixed signature's occurrences, each against the same span before the deployment.

Replays (tests, reproduction checks) are never stored as failure events, so the rates compare real
traffic only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from immunity.models.deploys import WatchReport
from immunity.models.enums import ExecutionStatus
from immunity.models.settings import Settings
from immunity.models.specs import Selection
from immunity.models.tables import (
    FailureEvent,
    OccurrenceBucket,
    RegressionTest,
    Signature,
    SuccessEvent,
)
from immunity.tasks.regress.selection import select_cases
from immunity.tasks.shared.runner import run_any

__all__ = ["judge", "run_watch_tests", "smoke_test_ids", "traffic_counts"]

_PASSING = {ExecutionStatus.PASSED.value, ExecutionStatus.FLAKY.value}


def _bucket_estimate(
    session: Session, signature_id: int, start: datetime, end: datetime, minutes: int
) -> float:
    """Return the signature's exact per-bucket counts, prorated to the part inside [start, end)."""
    width = timedelta(minutes=minutes)
    rows = session.exec(
        select(OccurrenceBucket.bucket_start, OccurrenceBucket.count).where(
            OccurrenceBucket.signature_id == signature_id,
            col(OccurrenceBucket.bucket_start) < end,
            col(OccurrenceBucket.bucket_start) > start - width,
        )
    ).all()
    total = 0.0
    for bucket_start, count in rows:
        overlap = min(end, bucket_start + width) - max(start, bucket_start)
        total += count * max(overlap, timedelta(0)) / width
    return total


def _failures(
    session: Session, environment: str, start: datetime, end: datetime, bucket_minutes: int
) -> int:
    """Failures of real traffic in the window, also where a busy signature's samples were pruned.

    Only the newest samples of a signature are kept. Where its oldest kept sample is younger than
    both the window's start and the signature itself, the span before that sample is read from
    the exact occurrence buckets, prorated (they count every environment).
    """
    in_window = dict(
        session.exec(
            select(FailureEvent.signature_id, func.count())
            .where(
                FailureEvent.environment == environment,
                col(FailureEvent.received_at) >= start,
                col(FailureEvent.received_at) < end,
            )
            .group_by(col(FailureEvent.signature_id))
        ).all()
    )
    width = timedelta(minutes=bucket_minutes)
    bucketed = session.exec(
        select(OccurrenceBucket.signature_id)
        .where(
            col(OccurrenceBucket.bucket_start) < end,
            col(OccurrenceBucket.bucket_start) > start - width,
        )
        .distinct()
    ).all()
    candidates = set(in_window) | set(bucketed)
    oldest = dict(
        session.exec(
            select(FailureEvent.signature_id, func.min(FailureEvent.received_at))
            .where(col(FailureEvent.signature_id).in_(list(candidates) or [-1]))
            .group_by(col(FailureEvent.signature_id))
        ).all()
    )
    first_seen = dict(
        session.exec(
            select(Signature.id, Signature.first_seen).where(
                col(Signature.id).in_(list(candidates) or [-1])
            )
        ).all()
    )
    total = 0
    for signature_id in candidates:
        counted = in_window.get(signature_id, 0)
        kept_from, first = _aware(oldest.get(signature_id)), _aware(first_seen.get(signature_id))
        if kept_from is not None and first is not None and first < kept_from and kept_from > start:
            gap = _bucket_estimate(
                session, signature_id, start, min(kept_from, end), bucket_minutes
            )
            counted += round(gap)
        total += counted
    return total


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive timestamps from aggregates; the store writes UTC.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def traffic_counts(
    engine: Engine,
    environment: str,
    start: datetime,
    end: datetime,
    signature_id: int | None = None,
    *,
    bucket_minutes: int = 5,
) -> tuple[int, int, int | None]:
    """Return (failures, successes, the signature's failures) of real traffic in [start, end)."""
    with Session(engine) as session:
        failures = _failures(session, environment, start, end, bucket_minutes)
        successes = session.exec(
            select(func.count())
            .select_from(SuccessEvent)
            .where(
                SuccessEvent.environment == environment,
                col(SuccessEvent.received_at) >= start,
                col(SuccessEvent.received_at) < end,
            )
        ).one()
        signature = None
        if signature_id is not None:
            signature = session.exec(
                select(func.count())
                .select_from(FailureEvent)
                .where(
                    FailureEvent.signature_id == signature_id,
                    FailureEvent.environment == environment,
                    col(FailureEvent.received_at) >= start,
                    col(FailureEvent.received_at) < end,
                )
            ).one()
    return failures, int(successes), None if signature is None else int(signature)


def smoke_test_ids(engine: Engine, settings: Settings) -> list[int]:
    """Return the active tests of the smoke types (seed: the smoke suite run after a deploy)."""
    query = select(RegressionTest.id).where(
        col(RegressionTest.is_active).is_(True),
        col(RegressionTest.type).in_(settings.deploy_smoke_types),
    )
    with Session(engine) as session:
        return [test_id for test_id in session.exec(query).all() if test_id is not None]


def run_watch_tests(
    engine: Engine, settings: Settings, environment: str, test_ids: Sequence[int]
) -> dict[str, str]:
    """Run the tests against the environment and return name → status."""
    if not test_ids:
        return {}
    cases, unrunnable = select_cases(
        engine, settings, Selection(ids=list(test_ids), include_inactive=True), environment
    )
    results = [*unrunnable, *run_any(cases, settings)]
    return {result.name: str(result.status) for result in results}


def judge(
    report: WatchReport,
    *,
    fix_test: str | None,
    max_rate_increase: float,
    min_attempts: int,
) -> WatchReport:
    """Return the report with its verdict: healthy unless a check says otherwise (and why)."""
    reasons: list[str] = []
    failing = [name for name, status in report.tests.items() if status not in _PASSING]
    if fix_test is not None and fix_test in failing:
        reasons.append(f"the fix's regression test {fix_test} {report.tests[fix_test]}")
    others = sorted(name for name in failing if name != fix_test)
    if others:
        reasons.append(f"smoke test(s) failing: {', '.join(others)}")
    attempts = report.failures_after + report.successes_after
    rise = report.rate_after - report.rate_before
    if attempts >= min_attempts and rise > max_rate_increase:
        reasons.append(
            f"the failure rate rose from {report.rate_before:.0%} to {report.rate_after:.0%}"
            f" ({report.failures_after} of {attempts} requests)"
        )
    # A straggler reported just after the switch is not a recurrence; as many as before is.
    before, after = report.signature_before or 0, report.signature_after or 0
    if after and after >= before:
        reasons.append(
            f"the fixed signature still occurs: {report.signature_after} time(s) since the"
            f" deployment ({report.signature_before} in the span before)"
        )
    return report.model_copy(update={"healthy": not reasons, "reasons": reasons})
