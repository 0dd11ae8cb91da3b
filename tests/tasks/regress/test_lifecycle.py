"""What a result changes: confidence, counts, quarantine and signature status (pure and stored)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.db import create_schema
from immunity.models.enums import ExecutionStatus as S
from immunity.models.results import CaseResult
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.tables import RegressionTest, Signature, TestExecution
from immunity.tasks.regress.lifecycle import (
    Counts,
    band_dropped,
    next_confidence,
    next_counts,
    next_signature_status,
    quarantine_decision,
)
from immunity.tasks.regress.store import record_results


@pytest.mark.parametrize(
    ("before", "status", "after"),
    [
        (75, S.PASSED, 80),
        (75, S.FAILED, 65),
        (98, S.PASSED, 100),
        (5, S.FAILED, 0),
        (75, S.ERROR, 75),
        (75, S.FLAKY, 75),
        (75, S.SKIPPED, 75),
    ],
)
def test_confidence_moves_and_clamps(before: int, status: S, after: int) -> None:
    assert next_confidence(before, status, up=5, down=10) == after


def test_counts_ignore_refused_runs() -> None:
    counts = Counts(run=2, passed=1, failed=1, flaky=0)
    assert next_counts(counts, S.SKIPPED) == counts
    assert next_counts(counts, S.FLAKY) == Counts(3, 1, 1, 1)
    assert next_counts(counts, S.ERROR) == Counts(3, 1, 1, 0)


def test_band_drop_is_only_a_fall_across_a_boundary() -> None:
    assert band_dropped(65, 55)  # reliable → moderate
    assert not band_dropped(75, 65)  # both reliable
    assert not band_dropped(55, 65)  # a rise


@pytest.mark.parametrize(
    ("current", "status", "trusted", "after"),
    [
        ("tested", S.PASSED, True, "fixed"),
        ("regressed", S.PASSED, True, "fixed"),
        ("fixed", S.FAILED, True, "regressed"),
        ("tested", S.FAILED, True, None),
        ("fixed", S.ERROR, True, None),
        ("fixed", S.FLAKY, True, None),
        ("ignored", S.PASSED, True, None),
        ("tested", S.PASSED, False, None),
        ("fixed", S.FAILED, False, None),
    ],
)
def test_signature_moves(current: str, status: S, trusted: bool, after: str | None) -> None:
    assert next_signature_status(current, status, trusted=trusted) == after


def test_quarantine_needs_enough_runs_and_releases() -> None:
    rule = {"window": 10, "share": 0.3}
    assert quarantine_decision(["flaky"] * 4, quarantined=False, **rule) is None  # too few runs
    runs = ["flaky", "passed", "flaky", "passed", "flaky"]
    assert quarantine_decision(runs, quarantined=False, **rule) is True
    assert quarantine_decision(runs, quarantined=True, **rule) is None
    assert quarantine_decision(["passed"] * 10 + ["flaky"] * 5, quarantined=True, **rule) is False


def _result(test_id: int, status: S, minutes: int = 0) -> CaseResult:
    return CaseResult(
        test_id=test_id,
        name="t",
        status=status,
        error=None if status == S.PASSED else "boom",
        started_at=utcnow() + timedelta(minutes=minutes),
    )


def stored_test(engine: Engine, *, status: str, **test: Any) -> tuple[int, int]:
    """Create the schema, a signature in `status` and its test; return (test id, signature id)."""
    create_schema(engine)
    with Session(engine) as session:
        signature = Signature(
            fingerprint="f" * 64,
            error_type="Boom",
            message="boom",
            category="unknown",
            severity="medium",
            first_seen=utcnow(),
            last_seen=utcnow(),
            status=status,
        )
        session.add(signature)
        session.flush()
        row = RegressionTest(created_from_signature_id=signature.id, **test)
        session.add(row)
        session.commit()
        assert row.id is not None and signature.id is not None
        return row.id, signature.id


def test_a_flaky_test_is_quarantined_and_stops_gating(engine: Engine) -> None:
    settings = Settings(flaky_window=6, flaky_quarantine_share=0.3)
    test_id, signature_id = stored_test(engine, status="fixed", name="wobbly")

    def record(status: S, minute: int):
        return record_results(
            engine,
            settings,
            suite_run_id=None,
            results=[_result(test_id, status, minute)],
            trigger="manual",
            environment=None,
        )

    outcomes = [record(S.FLAKY if n % 2 else S.PASSED, n) for n in range(4)]
    assert [t.kind for o in outcomes for t in o.transitions] == ["quarantined"]
    # Quarantined: a failure neither gates nor turns the fixed signature regressed.
    failed = record(S.FAILED, 10)
    assert failed.critical_failures == []
    with Session(engine) as session:
        assert session.get(RegressionTest, test_id).quarantined
        assert session.get(Signature, signature_id).status == "fixed"
        assert len(session.exec(select(TestExecution)).all()) == 5
    # Clean runs release it.
    released = [record(S.PASSED, 20 + n) for n in range(6)]
    assert [t.kind for o in released for t in o.transitions] == ["released"]
