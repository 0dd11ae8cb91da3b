"""Every flow built so far is a deployment; the scheduled ones carry their cron."""

from __future__ import annotations

from prefect.utilities.callables import parameter_schema

from deployments.serve import GENERATION_SWEEP_CRON, HEALTH_CHECK_CRON, build_deployments
from flows.ingest import ingest_file


def test_every_flow_is_a_deployment_with_its_schedule() -> None:
    deployments = {d.name: d for d in build_deployments()}
    assert set(deployments) == {
        "ingest-file",
        "ingest-failures",
        "ingest-successes",
        "generation-sweep",
        "health-check",
    }
    crons = {name: [s.schedule.cron for s in d.schedules] for name, d in deployments.items()}
    assert crons["generation-sweep"] == [GENERATION_SWEEP_CRON]
    assert crons["health-check"] == [HEALTH_CHECK_CRON]
    assert crons["ingest-file"] == []
    # The Prefect UI's run form explains each parameter from the flow's docstring.
    schema = parameter_schema(ingest_file).model_dump()
    assert schema["properties"]["path"]["description"] == "A file with one JSON event per line."
