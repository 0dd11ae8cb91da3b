"""A real `prefect server start` creates the regression suite's scheduled runs from its cron.

Nothing in-process stands in for the server: its scheduler service has to create the runs itself
(creating a deployment through the API schedules nothing). On SQLAlchemy 2.1 that scheduler
silently creates no runs at all, which is what this test exists to catch.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from immunity.deployments.serve import REGRESSION_SUITE_CRON, build_deployments
from tests.deployments.prefect_server import PrefectServer

SCHEDULE_TIMEOUT = 60.0
MIN_RUNS = 3  # the scheduler's default min_runs: at least this many future runs per deployment


def _scheduled_runs(deployment_id: UUID) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def test_server_scheduler_creates_regression_suite_runs_on_its_cron(
    prefect_server: PrefectServer,
) -> None:
    suite = next(d for d in build_deployments() if d.name == "regression-suite")
    outer_api_url = get_current_settings().api.url
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        assert get_current_settings().api.url == prefect_server.api_url
        deployment_id = suite.apply()
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment(deployment_id)
        [schedule] = deployment.schedules
        assert schedule.schedule.cron == REGRESSION_SUITE_CRON
        assert schedule.active and not deployment.paused
        assert schedule.parameters == {"trigger": "schedule"}
        zone = ZoneInfo(schedule.schedule.timezone or "UTC")

        deadline = time.monotonic() + SCHEDULE_TIMEOUT
        runs = _scheduled_runs(deployment_id)
        while len(runs) < MIN_RUNS and time.monotonic() < deadline:
            time.sleep(1)
            runs = _scheduled_runs(deployment_id)
    assert get_current_settings().api.url == outer_api_url  # the override did not leak

    assert len(runs) >= MIN_RUNS, (
        f"the server's scheduler created {len(runs)} scheduled run(s) for regression-suite in"
        f" {SCHEDULE_TIMEOUT:.0f} s (expected at least {MIN_RUNS})"
    )
    now = datetime.now(UTC)
    starts = []
    for run in runs:
        assert run.deployment_id == deployment_id
        assert run.auto_scheduled, run
        assert run.state is not None and run.state.name == "Scheduled"
        assert run.parameters == {"trigger": "schedule"}
        start = run.expected_start_time
        assert start is not None and start.tzinfo is not None
        local = start.astimezone(zone)
        assert (local.hour % 6, local.minute, local.second, local.microsecond) == (0, 0, 0, 0), (
            f"{run.name} expected at {local.isoformat()}, not on {REGRESSION_SUITE_CRON}"
        )
        assert start > now - timedelta(minutes=1)
        starts.append(start)
    # One run every 6 hours, the first within the next 6 hours, none twice.
    assert starts[0] <= now + timedelta(hours=6)
    assert all(b - a == timedelta(hours=6) for a, b in zip(starts, starts[1:], strict=False))
