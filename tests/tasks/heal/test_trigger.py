"""From the regression loop to the heal loop: which signatures are due a fix proposal."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from prefect import flow
from sqlalchemy import Engine
from sqlmodel import Session

from immunity.models.db import get_engine
from immunity.models.enums import ExecutionStatus as S
from immunity.models.enums import FixStatus
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest, TestExecution
from immunity.tasks.heal.trigger import failing_signatures, start_heal_runs
from tests.tasks.heal.test_store import stored_proposal, stored_signature


def stored_runs(engine: Engine, statuses: list[S], *, generated: bool = True) -> tuple[int, int]:
    """Store a test (from a new signature, or manual) run with `statuses`, oldest first.

    Returns (test id, signature id); the signature exists even for a manual test.
    """
    signature_id = stored_signature(engine)
    start = utcnow() - timedelta(hours=1)
    with Session(engine) as session:
        test = RegressionTest(
            name=f"test-{uuid.uuid4().hex[:8]}",
            created_from_signature_id=signature_id if generated else None,
        )
        session.add(test)
        session.flush()
        assert test.id is not None
        for minute, status in enumerate(statuses):
            session.add(
                TestExecution(
                    test_id=test.id,
                    status=status,
                    environment="production",
                    trigger="schedule",
                    started_at=start + timedelta(minutes=minute),
                )
            )
        session.commit()
        return test.id, signature_id


@pytest.mark.parametrize(
    ("statuses", "due"),
    [
        ([S.FAILED, S.FAILED, S.FAILED], True),
        ([S.ERROR, S.FAILED, S.ERROR], True),
        ([S.PASSED, S.FAILED, S.FAILED, S.FAILED], True),  # the pass is before the streak
        ([S.FAILED, S.FAILED, S.PASSED, S.FAILED], False),
        ([S.FAILED, S.FAILED, S.FAILED, S.PASSED], False),
        ([S.FAILED, S.FLAKY, S.FAILED], False),  # flaky is not failing
        ([S.FAILED, S.FAILED], False),  # fewer runs than the streak
        ([], False),
        ([S.FAILED, S.SKIPPED, S.FAILED, S.SKIPPED, S.FAILED], True),  # skipped runs ignored
        ([S.FAILED, S.FAILED, S.SKIPPED, S.SKIPPED], False),
    ],
)
def test_a_signature_is_due_after_its_test_fails_n_runs_in_a_row(
    engine: Engine, statuses: list[S], due: bool
) -> None:
    test_id, signature_id = stored_runs(engine, statuses)
    assert failing_signatures(engine, [test_id], 3) == ([signature_id] if due else [])


def test_only_generated_tests_asked_about_count(engine: Engine) -> None:
    failing = [S.FAILED] * 3
    manual, _ = stored_runs(engine, failing, generated=False)
    second, second_signature = stored_runs(engine, failing)
    first, first_signature = stored_runs(engine, failing)
    not_asked, _ = stored_runs(engine, failing)
    passing, _ = stored_runs(engine, [S.PASSED] * 3)

    due = failing_signatures(engine, [manual, first, second, passing], 3)
    assert due == sorted([first_signature, second_signature])
    assert not_asked not in due
    assert failing_signatures(engine, [], 3) == []
    assert failing_signatures(engine, [first], 4) == []
    assert failing_signatures(engine, [first], 1) == [first_signature]


@flow(name="heal-trigger-probe")
def _start_in_a_flow(test_ids: list[int]) -> list[int]:
    return start_heal_runs.fn(test_ids)


@pytest.mark.usefixtures("prefect_harness")
def test_no_deployment_to_start_is_a_warning_not_a_failure(
    store: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = f"propose-fix/not-served-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("IMMUNITY_HEAL_DEPLOYMENT", deployment)
    get_settings.cache_clear()
    engine = get_engine(store)
    due_test, due_signature = stored_runs(engine, [S.FAILED] * 3)
    blocked_test, blocked_signature = stored_runs(engine, [S.FAILED] * 3)
    stored_proposal(engine, blocked_signature, FixStatus.AWAITING_APPROVAL)

    with caplog.at_level(logging.WARNING, logger="prefect"):
        assert _start_in_a_flow([due_test, blocked_test]) == []

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"signature {due_signature} is due a fix proposal" in w and deployment in w
        for w in warnings
    ), warnings
    assert not any(f"signature {blocked_signature} " in w for w in warnings)
