"""Every flow as a Prefect deployment, so the UI can run it with parameters and schedules run it."""

from __future__ import annotations

from typing import Any

__all__ = ["GENERATION_SWEEP_CRON", "HEALTH_CHECK_CRON", "build_deployments", "serve_all"]

# The ingest flow generates tests as events arrive; the sweep is a safety net for anything missed.
GENERATION_SWEEP_CRON = "*/30 * * * *"
# Seed 001's health check, every 5 minutes (the width of an occurrence bucket).
HEALTH_CHECK_CRON = "*/5 * * * *"


def build_deployments() -> list[Any]:
    """Return the deployments of the flows built so far (each later loop adds its own)."""
    from flows.generate import generate_regression_tests
    from flows.health import check_health
    from flows.ingest import ingest_failures, ingest_file, ingest_successes

    return [
        ingest_file.to_deployment(
            name="ingest-file",
            description="Stream a JSONL file of failure or success events into the store.",
            tags=["ingest"],
        ),
        ingest_failures.to_deployment(
            name="ingest-failures",
            description="Store a batch of failure events and build tests that are due.",
            tags=["ingest"],
        ),
        ingest_successes.to_deployment(
            name="ingest-successes",
            description="Store a batch of success events (the failure rate's denominator).",
            tags=["ingest"],
        ),
        generate_regression_tests.to_deployment(
            name="generation-sweep",
            description="Give every signature over the threshold its regression test.",
            cron=GENERATION_SWEEP_CRON,
            tags=["generate"],
        ),
        check_health.to_deployment(
            name="health-check",
            description="Failure rate over the last hour and new critical signatures; alerts.",
            cron=HEALTH_CHECK_CRON,
            tags=["health"],
        ),
    ]


def serve_all() -> None:
    """Serve every deployment until interrupted (serve pauses its deployments on exit)."""
    from prefect import serve

    serve(*build_deployments())


if __name__ == "__main__":
    serve_all()
