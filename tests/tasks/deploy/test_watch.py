"""The watch's verdict by hand, and the traffic it compares counted from a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.deploys import WatchReport
from immunity.models.tables import Signature
from immunity.tasks.deploy.watch import judge, traffic_counts
from tests.tasks.test_health_alerts import failure, ingest, success

DEPLOYED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPAN = timedelta(minutes=30)
FIX_TEST = "regression_checkout_total"


def look(**fields: object) -> WatchReport:
    return judge(
        WatchReport(healthy=True, **fields),
        fix_test=FIX_TEST,
        max_rate_increase=0.2,
        min_attempts=5,
    )


# judge ------------------------------------------------------------------------------------------


def test_passing_tests_steady_traffic_and_a_silent_signature_are_healthy() -> None:
    report = look(
        tests={FIX_TEST: "passed", "smoke.health": "passed", "smoke.products": "flaky"},
        failures_before=2,
        successes_before=18,
        failures_after=2,
        successes_after=18,
        signature_before=4,
        signature_after=0,
    )
    assert report.healthy and report.reasons == []


def test_the_fixs_own_test_failing_is_named_as_such() -> None:
    report = look(tests={FIX_TEST: "failed", "smoke.health": "passed"})
    assert not report.healthy
    assert report.reasons == [f"the fix's regression test {FIX_TEST} failed"]


def test_other_failing_tests_are_named_as_smoke_failures_in_order() -> None:
    report = look(
        tests={
            FIX_TEST: "passed",
            "smoke.products": "failed",
            "smoke.health": "passed",
            "smoke.cart": "error",
        }
    )
    assert not report.healthy
    assert report.reasons == ["smoke test(s) failing: smoke.cart, smoke.products"]


def test_without_a_fix_every_failing_test_is_a_smoke_failure() -> None:
    report = judge(
        WatchReport(healthy=True, tests={FIX_TEST: "failed"}),
        fix_test=None,
        max_rate_increase=0.2,
        min_attempts=5,
    )
    assert report.reasons == [f"smoke test(s) failing: {FIX_TEST}"]


def test_a_failure_rate_rising_above_the_allowance_with_enough_attempts_is_unhealthy() -> None:
    # 10 % before, 50 % after: a rise of 40 points against an allowance of 20.
    report = look(failures_before=1, successes_before=9, failures_after=3, successes_after=3)
    assert not report.healthy
    assert report.reasons == ["the failure rate rose from 10% to 50% (3 of 6 requests)"]


def test_the_minimum_number_of_attempts_counts_exactly() -> None:
    # 5 attempts after: the minimum, so the rise from 0 % to 60 % counts.
    counted = look(failures_before=0, successes_before=10, failures_after=3, successes_after=2)
    assert not counted.healthy and "rose from 0% to 60%" in counted.reasons[0]


def test_a_rise_on_fewer_than_the_minimum_attempts_is_not_judged() -> None:
    # 4 attempts after, every one failing: too few to say the rate rose.
    report = look(failures_before=0, successes_before=10, failures_after=4, successes_after=0)
    assert report.healthy and report.reasons == []


def test_a_rise_within_the_allowance_is_healthy() -> None:
    report = look(failures_before=1, successes_before=9, failures_after=3, successes_after=7)
    assert report.healthy  # 10 % → 30 %: 20 points is the allowance, not above it


def test_a_straggler_of_the_fixed_signature_after_more_before_is_healthy() -> None:
    report = look(signature_before=5, signature_after=1)
    assert report.healthy and report.reasons == []


@pytest.mark.parametrize(("before", "after"), [(3, 3), (3, 4), (0, 1), (None, 1)])
def test_the_fixed_signature_occurring_as_often_as_before_is_unhealthy(
    before: int | None, after: int
) -> None:
    report = look(signature_before=before, signature_after=after)
    assert not report.healthy
    assert report.reasons == [
        f"the fixed signature still occurs: {after} time(s) since the deployment"
        f" ({before} in the span before)"
    ]


def test_every_reason_is_given_at_once() -> None:
    report = look(
        tests={FIX_TEST: "failed", "smoke.health": "failed"},
        failures_before=0,
        successes_before=10,
        failures_after=10,
        successes_after=0,
        signature_before=1,
        signature_after=2,
    )
    assert not report.healthy
    assert [reason.split(" ")[0:2] for reason in report.reasons] == [
        ["the", "fix's"],
        ["smoke", "test(s)"],
        ["the", "failure"],
        ["the", "fixed"],
    ]


# traffic_counts (both backends) -----------------------------------------------------------------


def _signature_id(engine: Engine, error_type: str) -> int:
    with Session(engine) as session:
        found = session.exec(select(Signature).where(Signature.error_type == error_type)).one()
    assert found.id is not None
    return found.id


def test_traffic_counts_the_environments_events_inside_the_window(engine: Engine) -> None:
    before, after = DEPLOYED - SPAN, DEPLOYED + SPAN
    ingest(
        engine,
        [
            failure(DEPLOYED - SPAN, kind="FixedError"),  # the first instant: inside
            failure(DEPLOYED - timedelta(minutes=10), kind="FixedError"),
            failure(DEPLOYED - timedelta(minutes=5), kind="OtherError"),
            failure(DEPLOYED - SPAN - timedelta(seconds=1), kind="FixedError"),  # too early
            failure(DEPLOYED - timedelta(minutes=3), kind="OtherError", environment="staging"),
            failure(DEPLOYED, kind="OtherError"),  # the deployment's instant: after, not before
            failure(DEPLOYED + timedelta(minutes=1), kind="FixedError"),
            failure(after, kind="OtherError"),  # the end is excluded
        ],
        [
            success(DEPLOYED - timedelta(minutes=20)),
            success(DEPLOYED - timedelta(minutes=1)),
            success(DEPLOYED - timedelta(minutes=1), environment="staging"),
            success(DEPLOYED - SPAN - timedelta(minutes=1)),
            success(DEPLOYED + timedelta(minutes=2)),
            success(DEPLOYED + timedelta(minutes=3)),
            success(DEPLOYED + timedelta(minutes=4)),
            success(after),
        ],
    )
    fixed = _signature_id(engine, "FixedError")

    assert traffic_counts(engine, "production", before, DEPLOYED, fixed) == (3, 2, 2)
    assert traffic_counts(engine, "production", DEPLOYED, after, fixed) == (2, 3, 1)
    # Without a signature there is no signature count; another environment has its own traffic.
    assert traffic_counts(engine, "production", before, DEPLOYED) == (3, 2, None)
    assert traffic_counts(engine, "staging", before, DEPLOYED) == (1, 1, None)


def test_the_signature_count_is_the_watched_environments_only(engine: Engine) -> None:
    ingest(
        engine,
        [
            failure(DEPLOYED - timedelta(minutes=5), kind="FixedError"),
            failure(DEPLOYED + timedelta(minutes=5), kind="FixedError", environment="staging"),
        ],
    )
    fixed = _signature_id(engine, "FixedError")
    # Production saw no failure at all after the deployment, yet one occurrence is counted.
    assert traffic_counts(engine, "production", DEPLOYED, DEPLOYED + SPAN, fixed) == (0, 0, 0)


def test_a_steady_failure_rate_reads_the_same_before_and_after(engine: Engine) -> None:
    settings = {"max_samples_per_signature": 10}
    # An unrelated signature failing half the requests, every minute for 10 minutes either side.
    for minute in range(-10, 10):
        at = DEPLOYED + timedelta(minutes=minute)
        ingest(engine, [failure(at, kind="SteadyError")], [success(at)], **settings)
    span = timedelta(minutes=10)
    assert traffic_counts(engine, "production", DEPLOYED - span, DEPLOYED) == (10, 10, None)
    assert traffic_counts(engine, "production", DEPLOYED, DEPLOYED + span) == (10, 10, None)
