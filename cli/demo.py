"""`immunity demo`: the sample service fails for real users; the third occurrence becomes a test."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.panel import Panel

from immunity.cli.render import signatures_table, tests_table

__all__ = ["run_demo"]


class _NewLines:
    """Reads the JSON lines appended to a file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a half-written last line waits for next time
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


def _use_sample_service_as_production(base_url: str) -> None:
    from immunity.models.settings import get_settings

    # The same service plays staging too: replays of unsafe requests go there, not to production.
    os.environ["IMMUNITY_ENVIRONMENTS"] = json.dumps(
        {
            "production": {"base_url": base_url, "is_production": True},
            "staging": {"base_url": base_url, "is_production": False},
        }
    )
    # New tests prove they reproduce their failure there before their passes are trusted.
    os.environ["IMMUNITY_REPRODUCTION_ENVIRONMENT"] = "staging"
    get_settings.cache_clear()


def _regression_runs(console: Console, client: httpx.Client) -> None:
    """Run the suite on staging with the faults on, then after they are fixed."""
    from immunity.examples.traffic import DEMO_FAULTS, switch_faults
    from immunity.flows.regress import run_regression_suite

    for label in ("faults still on", "faults fixed"):
        if label == "faults fixed":
            switch_faults(client, DEMO_FAULTS, enabled=False)
        with console.status(f"regression run on staging ({label}) …"):
            summary = run_regression_suite(environment="staging")
        console.print(
            f"[bold]regression run[/] ({label}): [green]{summary.passed} passed[/], "
            f"[red]{summary.failed} failed[/], {summary.errors} error(s); "
            f"gate {'passed' if summary.gate_passed else 'failed'}"
        )
        for transition in summary.transitions:
            console.print(f"    {transition.message}")


def _start_prefect(console: Console) -> None:
    from prefect.client.orchestration import get_client

    with console.status("starting Prefect (ephemeral mode: a temporary local server) …"):
        get_client(sync_client=True).hello()  # warm it once, before anything else uses it


def run_demo(console: Console, *, port: int = 0, users: int = 4, days: int = 3) -> None:
    """Run the whole first loop on the embedded defaults and print what it produced."""
    from immunity.examples.sample_service import JsonlSink, Reporter, create_app, start_server
    from immunity.examples.traffic import DEMO_FAULTS, drive_day, switch_faults
    from immunity.flows.ingest import ingest_failures, ingest_successes
    from immunity.models.db import get_engine
    from immunity.models.settings import get_settings
    from immunity.tasks.shared.queries import list_signatures, list_tests
    from immunity.tasks.shared.schema import upgrade_database

    started = time.monotonic()
    settings = get_settings()
    console.rule("[bold]immunity demo[/]: recurring failures become regression tests")
    url = settings.effective_database_url
    with console.status("migrating the store …"):
        upgrade_database(url)
    console.print(f"store: [cyan]{url}[/]")
    if earlier := len(list_signatures(get_engine(), limit=1000)):
        console.print(f"(the store holds {earlier} signature(s) from earlier runs: counts go on)")
    _start_prefect(console)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    sink = JsonlSink(settings.data_dir / "demo" / stamp)
    failures, successes = _NewLines(sink.failures_path), _NewLines(sink.successes_path)
    with (
        Reporter(sink, flush_interval_s=0.2) as reporter,
        start_server(create_app(reporter, release="sample@1.0.0"), port=port) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as client,
    ):
        _use_sample_service_as_production(server.base_url)
        console.print(f"sample service: [cyan]{server.base_url}[/] (reports to {sink.directory})")
        switch_faults(client, DEMO_FAULTS, enabled=True)
        console.print(f"faults on: [red]{', '.join(DEMO_FAULTS)}[/]")
        for day in range(1, days + 1):
            with console.status(f"day {day}: {users} users at work …"):
                traffic = drive_day(client, day, users)
                reporter.flush()
            with console.status(f"day {day}: ingesting what the service reported …"):
                ingest_successes(successes.read())
                report = ingest_failures(failures.read())
            console.print(
                f"[bold]day {day}[/]: {traffic.requests} requests, {traffic.failures} failed → "
                f"{report.accepted} failure event(s) ingested, {report.new_signatures} new "
                f"signature(s), [green]{report.tests_created} regression test(s) generated[/]"
            )
            for signature in list_signatures(get_engine(), limit=len(DEMO_FAULTS)):
                console.print(
                    f"    {signature.error_type} seen {signature.occurrence_count}× "
                    f"({signature.status})"
                    + (" → has its regression test" if signature.test_id else "")
                )
        _regression_runs(console, client)

    engine = get_engine()
    console.print(signatures_table(list_signatures(engine, limit=20)))
    tests = list_tests(engine)
    console.print(tests_table(tests))
    console.print(_where_to_look(len(tests), time.monotonic() - started))


def _where_to_look(tests: int, seconds: float) -> Panel:
    lines = [
        f"{tests} regression test(s) in the store, built from the requests that failed "
        f"({seconds:.0f} s).",
        "",
        "In the Prefect UI ([bold]prefect server start[/], then http://127.0.0.1:4200):",
        "  • Runs: [cyan]ingest-failures[/] once a day, each with its "
        "batch task that builds the tests a signature crossing the threshold made due;",
        "  • Artifacts: [cyan]regression-tests-generated[/] lists the signatures and their tests;",
        "    [cyan]test-health[/], [cyan]suite-summary[/] and [cyan]recent-failures[/] show the"
        " regression runs.",
        "",
        "From the shell: [bold]uv run immunity signatures[/] and [bold]uv run immunity tests[/].",
    ]
    return Panel("\n".join(lines), title="what happened and where to look", expand=False)
