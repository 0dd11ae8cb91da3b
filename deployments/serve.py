"""Every flow as a Prefect deployment, so the UI can run it with parameters and schedules run it."""

from __future__ import annotations

from typing import Any

__all__ = [
    "GENERATION_SWEEP_CRON",
    "HEALTH_CHECK_CRON",
    "REGRESSION_SUITE_CRON",
    "REGRESSION_SUITE_SCHEDULE_PARAMETERS",
    "UI_SUITE_CRON",
    "build_deployments",
    "serve_all",
]

# The ingest flow generates tests as events arrive; the sweep is a safety net for anything missed.
GENERATION_SWEEP_CRON = "*/30 * * * *"
# Seed 001's health check, every 5 minutes (the width of an occurrence bucket).
HEALTH_CHECK_CRON = "*/5 * * * *"
# Seed: "regression suite every 6 hours".
REGRESSION_SUITE_CRON = "0 */6 * * *"
# Runs the schedule creates record trigger=schedule; runs started by hand keep the flow's default.
REGRESSION_SUITE_SCHEDULE_PARAMETERS = {"trigger": "schedule"}
# The UI suite on the same 6-hour rhythm, half an hour later so the two do not share a machine.
UI_SUITE_CRON = "30 */6 * * *"


def build_deployments() -> list[Any]:
    """Return the deployments of the flows built so far (each later loop adds its own)."""
    from prefect.schedules import Schedule

    from immunity.flows.deploy import deploy
    from immunity.flows.experiment import run_experiment
    from immunity.flows.generate import generate_regression_tests
    from immunity.flows.heal import propose_fix
    from immunity.flows.health import check_health, check_readiness
    from immunity.flows.ingest import ingest_failures, ingest_file, ingest_log, ingest_successes
    from immunity.flows.regress import run_regression_suite
    from immunity.flows.ui import run_ui_suite

    return [
        ingest_file.to_deployment(
            name="ingest-file",
            description="Stream a JSONL file of failure or success events into the store.",
            tags=["ingest"],
        ),
        ingest_log.to_deployment(
            name="ingest-log",
            description="Ingest each Python traceback of a log file as a failure event.",
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
        run_regression_suite.to_deployment(
            name="regression-suite",
            description=(
                "Run the regression tests (all active ones, or a selection) every 6 hours;"
                " record results, alert on regressions, write JSON and JUnit reports."
            ),
            # Parameters on the schedule, not the deployment: a run started from the UI or the
            # API stays trigger=manual unless it says otherwise.
            schedules=[
                Schedule(
                    cron=REGRESSION_SUITE_CRON,
                    parameters=dict(REGRESSION_SUITE_SCHEDULE_PARAMETERS),
                )
            ],
            tags=["regress"],
        ),
        run_ui_suite.to_deployment(
            name="ui-suite",
            description=(
                "Run the UI tests in headless Chromium every 6 hours; screenshots, console logs"
                " and failed requests of failures in the `ui-failures` artifact."
            ),
            schedules=[
                Schedule(cron=UI_SUITE_CRON, parameters=dict(REGRESSION_SUITE_SCHEDULE_PARAMETERS))
            ],
            tags=["ui"],
        ),
        propose_fix.to_deployment(
            name="propose-fix",
            description=(
                "Propose a fix for a failing signature (known pattern, offline rule, AI, AI with"
                " source, rollback), validate it against its regression test, and pause for a"
                " reviewer's approval; an approved fix is committed on immunity/fix-<id>."
                " The regression suite starts it for tests that keep failing."
            ),
            tags=["heal"],
        ),
        check_readiness.to_deployment(
            name="readiness-check",
            description=(
                "The production-readiness score (workflow tests 40, UI tests 30, service health 20,"
                " database 5, queue 5) with its band; the `readiness` artifact."
            ),
            tags=["health"],
        ),
        deploy.to_deployment(
            name="deploy",
            description=(
                "Deploy a ref or an approved fix behind the readiness gate, watch the fix's test,"
                " the smoke suite and the failure rate, then promote it or roll it back. The heal"
                " loop starts it for a verified fix when IMMUNITY_DEPLOY_TARGET is set."
            ),
            tags=["deploy"],
        ),
        run_experiment.to_deployment(
            name="fix-experiment",
            description=(
                "A/B of two fix variants, each deployed to its own target: the affected tests run"
                " against both in rounds until Fisher's exact test (or the beta-binomial"
                " posterior) decides; the winner can be promoted through the deploy flow."
            ),
            tags=["deploy", "experiment"],
        ),
    ]


def serve_all() -> None:
    """Serve every deployment until Ctrl-C or SIGTERM; either way their schedules are paused."""
    import asyncio
    import signal

    from prefect.runner import Runner

    class _Runner(Runner):
        loop: asyncio.AbstractEventLoop | None = None
        stop_requested = False

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            # Prefect 3.8's own handler exits the process from inside the signal handler, which
            # cuts the pausing of the schedules short. Stop the runner's loops instead: it then
            # leaves the way it does on Ctrl-C, pausing every deployment it served first.
            self.stop_requested = True
            if self.started and self.loop is not None:
                self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.astop()))

    runner = _Runner(pause_on_shutdown=True)
    # Until the runner installs this handler itself, a SIGTERM would kill the process outright.
    signal.signal(signal.SIGTERM, runner.handle_sigterm)
    deployments = build_deployments()
    for deployment in deployments:
        runner.add_deployment(deployment)

    async def run() -> None:
        runner.loop = asyncio.get_running_loop()
        serving = asyncio.ensure_future(runner.start())
        while not runner.started and not serving.done():
            await asyncio.sleep(0.1)
        if runner.stop_requested and runner.started:  # SIGTERM while it was starting
            await runner.astop()
        await serving

    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    print(f"serving {len(deployments)} deployment(s): {names}", flush=True)
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    print("stopped; the served deployments are paused", flush=True)


if __name__ == "__main__":
    serve_all()
