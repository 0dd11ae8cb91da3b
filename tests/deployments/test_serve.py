"""Every flow built so far is a deployment; the scheduled ones carry their cron."""

from __future__ import annotations

from prefect.utilities.callables import parameter_schema

from immunity.deployments.serve import (
    GENERATION_SWEEP_CRON,
    HEALTH_CHECK_CRON,
    REGRESSION_SUITE_CRON,
    UI_SUITE_CRON,
    build_deployments,
)
from immunity.flows.heal import propose_fix
from immunity.flows.ingest import ingest_file
from immunity.flows.regress import run_regression_suite


def test_every_flow_is_a_deployment_with_its_schedule() -> None:
    deployments = {d.name: d for d in build_deployments()}
    assert set(deployments) == {
        "ingest-file",
        "ingest-log",
        "ingest-failures",
        "ingest-successes",
        "generation-sweep",
        "health-check",
        "regression-suite",
        "ui-suite",
        "propose-fix",
        "deploy",
        "readiness-check",
        "fix-experiment",
    }
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in deployments.items()}
    assert crons["generation-sweep"] == [GENERATION_SWEEP_CRON]
    assert crons["health-check"] == [HEALTH_CHECK_CRON]
    assert crons["regression-suite"] == [REGRESSION_SUITE_CRON] == ["0 */6 * * *"]
    assert crons["ui-suite"] == [UI_SUITE_CRON] == ["30 */6 * * *"]
    assert crons["ingest-file"] == []
    assert crons["propose-fix"] == []  # started by the regression loop, the CLI or the UI
    # The Prefect UI's run form explains each parameter from the flow's docstring.
    schema = parameter_schema(ingest_file).model_dump()
    assert schema["properties"]["path"]["description"] == "A file with one JSON event per line."
    heal = parameter_schema(propose_fix).model_dump()
    assert heal["required"] == ["signature_id"]
    assert "signature to fix" in heal["properties"]["signature_id"]["description"]


def test_regression_suite_schedule_records_trigger_schedule() -> None:
    suite = next(d for d in build_deployments() if d.name == "regression-suite")
    assert suite.flow_name == "regression-suite"
    assert suite.entrypoint == "flows/regress.py:run_regression_suite"
    assert suite.tags == ["regress"]
    assert suite.description
    # Runs the schedule creates get trigger=schedule; the deployment's own defaults leave a run
    # started by hand (UI, API, CLI) at the flow's default, trigger=manual.
    [schedule] = suite.schedules
    assert schedule.active
    assert schedule.parameters == {"trigger": "schedule"}
    assert suite.parameters == {}
    schema = parameter_schema(run_regression_suite).model_dump()
    assert schema["properties"]["trigger"]["default"] == "manual"
