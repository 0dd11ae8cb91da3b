"""immunity on a real Prefect server, driven the way its UI drives it.

`immunity serve` serves every deployment against a `prefect server start` (SQLite, then
PostgreSQL). A regression run is started through the API as the UI's "Run" button does; it records
its artifacts, and its failing test (failed once: `IMMUNITY_HEAL_AFTER_FAILURES=1`) starts the
`propose-fix` deployment; that run pauses with the approval form's schema, and is resumed through
the API as the UI's form does; the fix lands on its branch. The cron deployment gets scheduled
runs, and SIGTERM stops `serve` with its deployments paused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, temporary_settings
from sqlmodel import Session, select

from immunity.examples.heal_drill import capture_failures
from immunity.examples.seeded_bugs import seed_repo
from immunity.models.db import create_schema, get_engine
from immunity.models.enums import FixStatus
from immunity.models.heal_tables import FixProposal
from immunity.models.settings import Settings
from immunity.models.tables import SuiteRun
from immunity.tasks.heal.git_repo import branch_exists
from immunity.tasks.ingest.pipeline import process_failures
from immunity.tasks.shared.target import running_target
from tests.deployments.prefect_server import PrefectServer
from tests.flows.heal_support import SOURCE_ROOTS, first_bug

PROJECT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _until(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _run_input(client: SyncPrefectClient, flow_run_id: UUID, key: str) -> str | None:
    try:
        return client.read_flow_run_input(flow_run_id, key)
    except PrefectHTTPStatusError as error:
        if error.response.status_code == 404:
            return None
        raise


@pytest.fixture
def serve(
    any_prefect_server: PrefectServer, tmp_path: Path
) -> Iterator[tuple[PrefectServer, dict[str, str], subprocess.Popen[bytes], Path]]:
    """A seeded store, the bugged service as `production`, and `immunity serve` on the server."""
    bug = first_bug(offline_fixable=True)
    repo = tmp_path / "repo"
    seed_repo(repo, bug)
    events = capture_failures(repo, bug)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    create_schema(get_engine(store))
    env = {
        "IMMUNITY_DATABASE_URL": store,
        "IMMUNITY_DATA_DIR": str(tmp_path / "data"),
        "IMMUNITY_REPO_PATH": str(repo),
        "IMMUNITY_SOURCE_ROOTS": json.dumps(SOURCE_ROOTS),
        "IMMUNITY_APPROVAL_POLL_S": "1",
        "IMMUNITY_HEAL_AFTER_FAILURES": "1",
        "IMMUNITY_REGRESSION_RERUNS": "0",
    }
    log = tmp_path / "serve.log"
    with running_target(
        repo,
        command="{python} -m examples.sample_service --port {port}",
        health_path="/api/health",
        timeout_s=30,
    ) as production:
        env["IMMUNITY_ENVIRONMENTS"] = json.dumps(
            {"production": {"base_url": production, "is_production": False}}
        )
        settings = Settings(database_url=store, data_dir=tmp_path / "data")
        generated = process_failures(
            events, engine=get_engine(store), settings=settings, generate=True
        ).generated
        assert [outcome.created for outcome in generated] == [True]
        process_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMMUNITY_"))},
            **env,
            "PREFECT_API_URL": any_prefect_server.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_HOME": str(tmp_path / "serve-home"),
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "immunity.cli.main", "serve"],
                cwd=PROJECT,
                env=process_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield any_prefect_server, env, process, log
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            print(f"---- immunity serve log ----\n{log.read_text(errors='replace')}")


def _resume(url: str, form: dict[str, Any]) -> httpx.Response:
    """POST the form as the UI does; a 503 (SQLite busy under load) is retried, as the UI's
    client and Prefect's own retry it."""
    for _ in range(10):
        answer = httpx.post(url, json={"run_input": form}, timeout=10)
        if answer.status_code != 503:
            return answer
        time.sleep(1)
    return answer


def _finished(client: SyncPrefectClient, run_id: UUID) -> FlowRun | None:
    run = client.read_flow_run(run_id)
    return run if run.state is not None and run.state.is_final() else None


def _paused_heal_run(client: SyncPrefectClient, deployment_id: UUID) -> FlowRun | None:
    runs = client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        ),
    )
    return runs[0] if runs else None


def _artifact_keys(client: SyncPrefectClient, run_id: UUID) -> set[str]:
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    )
    return {artifact.key for artifact in found if artifact.key}


def test_the_loops_run_on_a_real_prefect_server_as_the_ui_drives_them(
    serve: tuple[PrefectServer, dict[str, str], subprocess.Popen[bytes], Path],
) -> None:
    server, env, process, log = serve
    engine = get_engine(env["IMMUNITY_DATABASE_URL"])
    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        get_client(sync_client=True) as client,
    ):

        def deployment(name: str) -> Any:
            try:
                return client.read_deployment_by_name(name)
            except Exception:  # not registered yet
                return None

        suite = _until(lambda: deployment("regression-suite/regression-suite"), 60, "serve")
        heal = _until(lambda: deployment("propose-fix/propose-fix"), 30, "propose-fix")
        # The UI's run form explains each parameter.
        assert (
            "signature to fix"
            in heal.parameter_openapi_schema["properties"]["signature_id"]["description"]
        )

        # "Run" in the UI: a flow run from the deployment with the form's parameters.
        run = client.create_flow_run_from_deployment(suite.id, parameters={})
        done = _until(lambda: _finished(client, run.id), 120, "the regression run")
        assert done.state is not None and done.state.is_completed(), done.state
        assert {"test-health", "suite-summary", "recent-failures"} <= _artifact_keys(client, run.id)
        with Session(engine) as session:
            suite_run = session.exec(select(SuiteRun)).one()
        assert suite_run.flow_run_id == str(run.id)
        assert (suite_run.trigger, suite_run.failed) == ("manual", 1)

        # Its failing test started the heal deployment, which pauses for approval.
        paused = _until(lambda: _paused_heal_run(client, heal.id), 120, "a paused heal run")
        assert "from-regression" in paused.tags
        assert paused.state is not None
        keyset = paused.state.state_details.run_input_keyset
        assert keyset is not None
        # The pause is visible a moment before each of its inputs is written: wait for them.
        schema = json.loads(
            _until(lambda: _run_input(client, paused.id, keyset["schema"]), 30, "the form")
        )
        assert set(schema["properties"]) == {"approved", "reviewer", "notes"}
        assert schema["properties"]["reviewer"]["description"]
        description = _until(
            lambda: _run_input(client, paused.id, keyset["description"]), 30, "the description"
        )
        assert "Fix proposal #" in description and "fails before, passes after" in description

        # The UI's form posts the input to the resume endpoint.
        form = {"approved": True, "reviewer": "dana", "notes": "from the UI"}
        answer = _resume(f"{server.api_url}/flow_runs/{paused.id}/resume", form)
        assert answer.status_code == 201 and answer.json()["status"] == "ACCEPT", answer.text
        healed = _until(lambda: _finished(client, paused.id), 120, "the resumed heal run")
        assert healed.state is not None and healed.state.is_completed(), healed.state
        with Session(engine) as session:
            proposal = session.exec(select(FixProposal)).one()
        assert (proposal.status, proposal.reviewer) == (FixStatus.VERIFIED, "dana")
        assert proposal.flow_run_id == str(paused.id)
        assert branch_exists(Path(env["IMMUNITY_REPO_PATH"]), f"immunity/fix-{proposal.id}")

        # The server's scheduler gives the cron deployment its runs.
        scheduled = _until(
            lambda: client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[suite.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])
                    )
                ),
            ),
            60,
            "scheduled regression runs",
        )
        assert all(r.parameters == {"trigger": "schedule"} for r in scheduled)

        # SIGTERM: serve stops and pauses what it served.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text(errors="replace")
        assert client.read_deployment(suite.id).paused
        assert client.read_deployment(heal.id).paused
