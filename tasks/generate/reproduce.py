"""The reproduction check: a generated test replays once before its passes are trusted.

Right after generation (and again on later occurrences while it is not `reproduced`), the test's
request is replayed once: in the failure's own environment if that one allows replays, else in
`reproduction_environment` if that one does, else nowhere (a report cannot choose where replays
go). The test is `reproduced` when the replay fails the way the signature did, `not_reproduced`
when it does not, `unverified` when it could not be checked (no environment allows replays, a
method refused there, target down, a redirect off the environment). A later sample with a more
complete capture replaces the test's request and is checked again.

The replay carries a signed marker (tasks/shared/replay_marker.py); what the target reports back
with a valid one is evidence about the check, never an occurrence. A report whose marker is
missing, expired or forged is an ordinary occurrence and never changes a verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from prefect import task
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from immunity.models.db import get_engine, session_scope
from immunity.models.enums import ExecutionStatus, Reproduction, TestKind
from immunity.models.results import CaseResult, ReproductionOutcome
from immunity.models.schemas import FailureEventIn, utcnow
from immunity.models.settings import Settings, get_settings
from immunity.models.specs import REPLAY_HEADER, TestCase
from immunity.models.tables import FailureEvent, RegressionTest, Signature
from immunity.tasks.generate.capture import (
    capture_issues,
    capture_score,
    most_complete,
    reproduction_verdict,
)
from immunity.tasks.generate.testgen import replay_spec
from immunity.tasks.ingest.prepare import PreparedFailure, prepare_failure
from immunity.tasks.ingest.storable import storable_text
from immunity.tasks.regress.selection import case_for, replay_target
from immunity.tasks.shared.queries import UNTRUSTED_REPRODUCTION
from immunity.tasks.shared.replay_marker import sign, verify
from immunity.tasks.shared.retry import DB_TASK_OPTIONS
from immunity.tasks.shared.runner import refusal, run_any

__all__ = [
    "best_sample",
    "find_due",
    "record_replay_reports",
    "split_replays",
    "untrusted_signatures",
    "verify_reproductions",
    "verify_tests",
]

SAMPLES_LOOKED_AT = 20

log = logging.getLogger(__name__)


def best_sample(session: Session, signature_id: int) -> FailureEvent | None:
    """Return the most complete recent capture of a signature's request (newest on a tie)."""
    samples = session.exec(
        select(FailureEvent)
        .where(FailureEvent.signature_id == signature_id, col(FailureEvent.request).is_not(None))
        .order_by(col(FailureEvent.received_at).desc(), col(FailureEvent.id).desc())
        .limit(SAMPLES_LOOKED_AT)
    ).all()
    return most_complete(samples, lambda sample: sample.request)


def _current_score(test: RegressionTest) -> tuple[int, ...]:
    return tuple((test.reproduction_evidence or {}).get("capture_score") or (-100, 0, 0))


def _refresh(session: Session, test: RegressionTest, settings: Settings) -> bool:
    """Replace the test's request by a more complete capture; return True when it did."""
    if test.created_from_signature_id is None or test.kind == TestKind.UI:
        return False
    sample = best_sample(session, test.created_from_signature_id)
    if sample is None or capture_score(sample.request) <= _current_score(test):
        return False
    spec, _ = replay_spec(sample.request, settings.environments.get(sample.environment))
    if spec is None:
        return False
    test.spec = spec.as_dict()
    test.capture_issues = capture_issues(sample.request)
    test.reproduction = Reproduction.PENDING.value
    test.reproduction_evidence = {
        **(test.reproduction_evidence or {}),
        "capture_score": list(capture_score(sample.request)),
        "replaced_from_event": sample.id,
    }
    return True


def untrusted_signatures(*, session: Session, signature_ids: Sequence[int]) -> list[int]:
    """Return those of the signatures whose generated test is not `reproduced` yet."""
    found = session.exec(
        select(RegressionTest.created_from_signature_id).where(
            col(RegressionTest.created_from_signature_id).in_(signature_ids),
            col(RegressionTest.reproduction).in_([state.value for state in UNTRUSTED_REPRODUCTION]),
        )
    ).all()
    return sorted(signature_id for signature_id in found if signature_id is not None)


_REPLAY_HEADER = REPLAY_HEADER.lower()
_REPLAY_HEADER_LENGTH = len(_REPLAY_HEADER)


def _replay_marker(event: FailureEventIn) -> str | None:
    if event.request is None:
        return None
    for name, value in event.request.headers.items():  # names arrive in any case
        # The length first: it rules out almost every header without making a lowered copy.
        if len(name) == _REPLAY_HEADER_LENGTH and name.lower() == _REPLAY_HEADER:
            return value
    return None


def split_replays(
    accepted: Sequence[tuple[int, FailureEventIn]], settings: Settings
) -> tuple[list[tuple[int, FailureEventIn]], list[tuple[str, FailureEventIn]]]:
    """Return the events of real traffic, and (`<kind>:<id>`, event) for those replays caused.

    Only a marker that verifies (signed by immunity, not expired) makes an event a replay's; only
    events carrying the header pay for the check.
    """
    real, replays = [], []
    for index, event in accepted:
        marker = _replay_marker(event)
        verified = verify(marker, settings) if marker is not None else None
        if verified is None:
            real.append((index, event))
        else:
            replays.append((":".join(verified), event))
    return real, replays


def _reported(event: FailureEventIn, settings: Settings) -> PreparedFailure | None:
    try:
        return prepare_failure(event, settings)
    except Exception:  # a report that cannot be read is no evidence; the batch goes on
        log.warning("a replay's failure report could not be read", exc_info=True)
        return None


def record_replay_reports(
    *, session: Session, settings: Settings, replays: Sequence[tuple[str, FailureEventIn]]
) -> None:
    """Keep what the target reported of reproduction replays as evidence on their tests, in the
    caller's transaction.

    `replays` are `split_replays`'s: markers already verified. A reproduction replay whose
    reported failure has another signature did not fail the way the signature did: a
    `reproduced` test becomes `not_reproduced`. Suite-run replays are dropped.
    """
    reports: dict[int, FailureEventIn] = {}
    for marker, event in replays:
        kind, _, test_id = marker.partition(":")
        if kind == "verify" and test_id.isdigit():
            reports[int(test_id)] = event
    for test_id, event in sorted(reports.items()):
        test = session.get(RegressionTest, test_id)
        if test is None or test.created_from_signature_id is None:
            continue
        reported = _reported(event, settings)
        if reported is None:
            continue
        signature = session.get(Signature, test.created_from_signature_id)
        same = signature is not None and reported.fingerprint == signature.fingerprint
        error_type = storable_text(reported.error_type)  # evidence is JSON: no NUL, no surrogate
        evidence = dict(test.reproduction_evidence or {})
        evidence["reported"] = {
            "error_type": error_type,
            "fingerprint": reported.fingerprint,
            "same_signature": same,
        }
        if not same and test.reproduction == Reproduction.REPRODUCED:
            test.reproduction = Reproduction.NOT_REPRODUCED.value
            evidence["reason"] = (
                f"the replay failed with another error: {error_type}"
                f" ({reported.fingerprint[:8]}), not this signature's"
            )
        test.reproduction_evidence = evidence
        session.add(test)


def find_due(
    *, session: Session, settings: Settings, signature_ids: Sequence[int] | None
) -> list[int]:
    """Return the generated tests due for a reproduction check, refreshing their captures first
    (in the caller's transaction).

    Due: pending ones, ones whose request was just replaced by a better capture, and unverified
    or not reproduced ones last checked more than `reproduction_retry_minutes` ago.
    """
    retry_before = utcnow() - timedelta(minutes=settings.reproduction_retry_minutes)
    query = select(RegressionTest).where(
        col(RegressionTest.reproduction).in_([state.value for state in UNTRUSTED_REPRODUCTION])
    )
    if signature_ids is not None:
        query = query.where(col(RegressionTest.created_from_signature_id).in_(signature_ids))
    due = []
    for test in session.exec(query.order_by(col(RegressionTest.id))).all():
        refreshed = _refresh(session, test, settings)
        checked = test.reproduction_checked_at
        if (
            refreshed
            or test.reproduction == Reproduction.PENDING
            or checked is None
            or checked <= retry_before
        ):
            due.append(test.id)
        session.add(test)
    session.flush()
    return [test_id for test_id in due if test_id is not None]


def _original_status(session: Session, signature_id: int | None) -> int | None:
    if signature_id is None:
        return None
    return session.exec(
        select(FailureEvent.status_code)
        .where(
            FailureEvent.signature_id == signature_id, col(FailureEvent.status_code).is_not(None)
        )
        .order_by(col(FailureEvent.received_at).desc())
        .limit(1)
    ).first()


def _case(test: RegressionTest, settings: Settings) -> tuple[TestCase | None, str]:
    """Return the test's case where it may replay, or None and why it may not replay anywhere."""
    assert test.id is not None
    target = replay_target(settings, test.environment)
    if target.name is None or target.environment is None:
        return None, target.reason
    marker = sign("verify", test.id, settings)
    return case_for(test, target.name, target.environment, marker=marker), target.name


def verify_tests(
    engine: Engine, settings: Settings, test_ids: Sequence[int]
) -> list[ReproductionOutcome]:
    """Replay each test once and record whether it reproduced its signature's failure."""
    if not test_ids:
        return []
    with session_scope(engine) as session:
        tests = session.exec(
            select(RegressionTest).where(col(RegressionTest.id).in_(test_ids))
        ).all()
        originals = {t.id: _original_status(session, t.created_from_signature_id) for t in tests}
        for test in tests:
            # What the target reports from now on is about this check, not an earlier one.
            test.reproduction_evidence = {
                k: v for k, v in (test.reproduction_evidence or {}).items() if k != "reported"
            }
            session.add(test)
        session.flush()
        session.expunge_all()
    verdicts: dict[int, tuple[Reproduction, dict[str, Any]]] = {}
    cases = []
    for test in tests:
        assert test.id is not None
        case, where = _case(test, settings)
        reason = where if case is None else refusal(case)
        if case is None or reason is not None:
            environment = test.environment if case is None else where
            evidence = {"reason": reason, "environment": environment}
            verdicts[test.id] = (Reproduction.UNVERIFIED, evidence)
        else:
            cases.append(case)
    for case, result in _replay(cases, settings):
        evidence: dict[str, Any] = {
            "environment": case.environment,
            "expected_status": originals[case.test_id],
            "actual_status": result.actual.get("status"),
            "calls": result.calls,
        }
        if result.status == ExecutionStatus.ERROR:
            evidence["reason"] = f"the replay could not be made: {result.error}"
            verdicts[case.test_id] = (Reproduction.UNVERIFIED, evidence)
            continue
        if case.kind == TestKind.UI:
            # A page error has no status: the replayed actions must raise a console error again.
            failed = result.status == ExecutionStatus.FAILED
            evidence["reason"] = (
                f"the replayed actions failed again: {result.error}"
                if failed
                else "the replayed actions raised no console error"
            )
            evidence["artifacts"] = result.artifacts
            state = Reproduction.REPRODUCED if failed else Reproduction.NOT_REPRODUCED
            verdicts[case.test_id] = (state, evidence)
            continue
        reproduced, reason = reproduction_verdict(
            originals[case.test_id],
            result.actual.get("status"),
            expectations_failed=result.status == ExecutionStatus.FAILED,
        )
        evidence["reason"] = reason
        if result.status == ExecutionStatus.FAILED:
            evidence["failed_checks"] = result.actual.get("failed_checks", [])
        state = Reproduction.REPRODUCED if reproduced else Reproduction.NOT_REPRODUCED
        verdicts[case.test_id] = (state, evidence)
    return _record(engine, verdicts)


def _replay(cases: Sequence[TestCase], settings: Settings) -> list[tuple[TestCase, CaseResult]]:
    """Return each case with the result of replaying it once (UI ones in a browser)."""
    once = settings.model_copy(update={"regression_reruns": 0})
    return list(zip(cases, run_any(cases, once), strict=True))


def _record(
    engine: Engine, verdicts: dict[int, tuple[Reproduction, dict[str, Any]]]
) -> list[ReproductionOutcome]:
    now, outcomes = utcnow(), []
    with session_scope(engine) as session:
        for test_id, (state, evidence) in sorted(verdicts.items()):
            test = session.get(RegressionTest, test_id)
            if test is None:
                continue
            reported = (test.reproduction_evidence or {}).get("reported")
            if reported and state == Reproduction.REPRODUCED and not reported["same_signature"]:
                # The target already reported this replay's failure, and it is another bug.
                state = Reproduction.NOT_REPRODUCED
                evidence["reason"] = (
                    f"the replay failed with another error: {reported['error_type']}"
                )
            evidence = {
                **evidence,
                "reported": reported,
                "checked_at": now.isoformat(),
                "capture_issues": test.capture_issues,
                "capture_score": (test.reproduction_evidence or {}).get("capture_score"),
            }
            test.reproduction, test.reproduction_checked_at = state.value, now
            test.reproduction_evidence = evidence
            session.add(test)
            outcomes.append(
                ReproductionOutcome(
                    test_id=test_id, name=test.name, reproduction=state, reason=evidence["reason"]
                )
            )
    return outcomes


@task(name="verify-reproductions", **DB_TASK_OPTIONS)
def verify_reproductions(test_ids: list[int]) -> list[ReproductionOutcome]:
    """Return whether each test's replay reproduced its signature's failure (recorded)."""
    return verify_tests(get_engine(), get_settings(), test_ids)
