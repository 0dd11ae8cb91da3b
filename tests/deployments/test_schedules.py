"""A real `prefect server start` creates the regression suite's scheduled runs from its cron.

Nothing in-process stands in for the server: its scheduler service has to create the runs itself
(creating a deployment through the API schedules nothing). On SQLAlchemy 2.1 that scheduler
silently creates no runs at all, which is what this test exists to catch.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
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

from deployments.serve import REGRESSION_SUITE_CRON, build_deployments

STARTUP_TIMEOUT = 60.0
SCHEDULE_TIMEOUT = 60.0
MIN_RUNS = 3  # the scheduler's default min_runs: at least this many future runs per deployment


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(home: Path) -> dict[str, str]:
    # No inherited PREFECT_* at all: no API URL, no database URL, no profile. The server gets
    # its own PREFECT_HOME and so its own SQLite database there.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_SERVER_LEVEL="INFO",  # the log shows "Scheduled N runs."
        # Defaults are 60 s (every deployment) and 5 s (recently changed deployments).
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="1",
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # one SIGTERM stops `prefect server start`
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session, started below
        process.wait(timeout=10)


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port with its own SQLite database; stopped afterwards."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = _free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", tmp_path / "prefect-server.log")
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=_server_env(home),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"prefect server not healthy after {STARTUP_TIMEOUT:.0f} s:\n{server.log()}"
                )
            time.sleep(0.5)
        yield server
    finally:
        _stop(process)
        # Shown by pytest only when the test fails.
        print(f"---- prefect server log ({server.log_path}) ----\n{server.log()}")


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
