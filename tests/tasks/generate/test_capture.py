"""Incomplete captures are named; an unreproduced test's passes never move its signature."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.generate.capture import capture_issues, capture_score, reproduction_verdict
from immunity.tasks.regress.store import record_results
from tests.tasks.regress.test_lifecycle import stored_test

JSON = {"content-type": "application/json", "content-length": "57"}


def request(**extra) -> dict:
    return {"method": "POST", "url": "http://svc/api/generate", "headers": JSON, **extra}


def test_a_complete_capture_has_no_issues() -> None:
    assert capture_issues(request(body={"prompt": "recipe"})) == []


@pytest.mark.parametrize("body", [None, ""])
def test_a_declared_body_that_is_missing_is_named(body) -> None:
    [issue] = capture_issues(request(body=body))
    assert "body is missing" in issue and "Content-Length 57" in issue
    assert "application/json" in issue


def test_a_get_without_body_is_complete() -> None:
    assert capture_issues({"method": "GET", "url": "http://svc/x", "headers": {}}) == []


@pytest.mark.parametrize(
    "extra",
    [
        {"body": "x" * 10 + "…[truncated 900 chars]", "body_truncated": True},
        {"body": {"files": "[…]"}},  # sentry-style cut of a deep value
        {"body": {"a": 1, "…": "[…]"}},
    ],
)
def test_a_cut_body_is_named(extra) -> None:
    assert any("cut to a size limit" in issue for issue in capture_issues(request(**extra)))


def test_scrubbed_values_are_named_where_they_were() -> None:
    captured = request(
        url="http://svc/api/x?token=[Filtered]&page=2",
        headers={**JSON, "Authorization": "[Filtered]"},
        body={"user": {"password": "[Filtered]"}, "items": [{"card": "[Filtered]"}]},
    )
    [issue] = capture_issues(captured)
    for where in ("body $.user.password", "body $.items[0].card", "header authorization"):
        assert where in issue
    assert "query token" in issue and "page" not in issue


def test_a_better_capture_scores_higher() -> None:
    assert capture_score(request(body={"p": 1})) > capture_score(request(body=None))
    assert capture_score(request(body={"p": 1})) > capture_score(None)


@pytest.mark.parametrize(
    ("expected", "actual", "failed", "reproduced"),
    [
        (500, 500, True, True),
        (500, 503, True, True),
        (500, 422, True, False),  # the body was lost: a validation error, not the bug
        (500, 200, False, False),
        (None, 500, True, True),
        (None, 404, True, False),
        (200, 200, True, True),  # a 200 with a wrong body: the expectations decide
        (200, 200, False, False),
        (500, None, True, False),
    ],
)
def test_verdict(expected, actual, failed, reproduced) -> None:
    verdict, reason = reproduction_verdict(expected, actual, expectations_failed=failed)
    assert verdict is reproduced and reason


@pytest.mark.parametrize("state", ["not_reproduced", "pending", "unverified"])
def test_an_unreproduced_tests_passes_leave_the_signature_unchanged(
    engine: Engine, state: str
) -> None:
    ids = stored_test(engine, status="tested", name="regression_x", reproduction=state)

    def run(status: ExecutionStatus):
        result = CaseResult(test_id=ids[0], name="t", status=status, started_at=utcnow())
        return record_results(
            engine, Settings(), suite_run_id=None, results=[result], trigger="ci", environment=None
        )

    for _ in range(3):
        assert run(ExecutionStatus.PASSED).transitions == []
    with Session(engine) as session:
        assert session.get(Signature, ids[1]).status == "tested"
        # Confidence still moves: it measures the test, not the bug.
        assert session.get(RegressionTest, ids[0]).confidence == 90
        test = session.get(RegressionTest, ids[0])
        test.reproduction = "reproduced"
        session.add(test)
        session.commit()
    # Once reproduced, the same pass fixes it.
    assert [t.kind for t in run(ExecutionStatus.PASSED).transitions] == ["fixed"]
