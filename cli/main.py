"""The `immunity` command: set up the store, ingest, look at signatures and tests, run the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from immunity.cli import (
    alerts,
    deploys,
    experiments,
    fixes,
    ingest_log,
    readiness,
    regress,
    service,
    stack,
)
from immunity.cli.render import signatures_table, tests_table, unverified_table

app = typer.Typer(
    no_args_is_help=True, help="immunity: recurring production failures become regression tests."
)
db_app = typer.Typer(no_args_is_help=True, help="The store's schema.")
tests_app = typer.Typer(help="Regression tests.", invoke_without_command=True)
app.add_typer(db_app, name="db")
app.add_typer(tests_app, name="tests")
service.register(app)
alerts.register(app)
ingest_log.register(app)
regress.register(app, tests_app)
fixes.register(app)
stack.register(app)
deploys.register(app)
readiness.register(app)
experiments.register(app)

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
) -> None:
    """Create or migrate the store's tables (SQLite by default; see IMMUNITY_DATABASE_URL)."""
    from immunity.models.settings import get_settings
    from immunity.tasks.shared.schema import upgrade_database

    url = get_settings().effective_database_url
    upgrade_database(url, revision)
    console.print(f"[green]store is at {revision}[/]: {url.split('@')[-1]}")


@app.command("ingest")
def ingest(
    file: Annotated[Path, typer.Argument(help="A JSONL file: one event per line.")],
    kind: Annotated[str, typer.Option(help="failures or successes")] = "failures",
    batch_size: Annotated[int | None, typer.Option(help="Events per batch.")] = None,
    generate: Annotated[
        bool, typer.Option(help="Build tests for signatures over the threshold.")
    ] = True,
) -> None:
    """Stream a JSONL file of events into the store, in batches."""
    if kind not in ("failures", "successes"):
        errors.print(f"[red]--kind must be 'failures' or 'successes', not {kind!r}[/]")
        raise typer.Exit(code=2)
    if not file.is_file():
        errors.print(f"[red]no such file: {file}[/]")
        raise typer.Exit(code=2)
    from immunity.flows.ingest import ingest_file

    with console.status(f"ingesting {file} …"):
        report = ingest_file(str(file), kind=kind, generate=generate, batch_size=batch_size)
    console.print(
        f"accepted [bold]{report.accepted}[/], rejected [bold]{len(report.rejected)}[/]; "
        f"{report.new_signatures} new signature(s); {report.tests_created} test(s) created"
    )
    for rejection in report.rejected[:20]:
        errors.print(f"[yellow]line {rejection.index}[/]: {'; '.join(rejection.errors)}")
    if len(report.rejected) > 20:
        errors.print(f"… and {len(report.rejected) - 20} more rejected")
    if report.rejected and not report.accepted:
        raise typer.Exit(code=1)


@app.command("generate")
def generate() -> None:
    """Sweep every signature and build the regression tests that are due."""
    from immunity.flows.generate import generate_regression_tests

    generated = generate_regression_tests()
    console.print(f"{sum(g.created for g in generated)} test(s) created")


@app.command("failures", help="Alias of `signatures`.")
@app.command("signatures")
def signatures(limit: Annotated[int, typer.Option(help="How many to show.")] = 50) -> None:
    """List signatures, most recently seen first."""
    from immunity.models.db import get_engine
    from immunity.tasks.shared.queries import list_signatures

    console.print(signatures_table(list_signatures(get_engine(), limit=limit)))


@tests_app.callback()
def tests_list(
    ctx: typer.Context,
    unverified: Annotated[
        bool,
        typer.Option(
            "--unverified",
            help="Only generated tests whose replay has not reproduced their failure, and why.",
        ),
    ] = False,
) -> None:
    """List regression tests."""
    if ctx.invoked_subcommand is not None:
        return
    from immunity.models.db import get_engine
    from immunity.tasks.shared.queries import list_tests

    if unverified:
        tests = list_tests(get_engine(), unverified=True)
        console.print(unverified_table(tests))
        if not tests:
            console.print("every generated test has reproduced its failure")
        return
    console.print(tests_table(list_tests(get_engine())))


@app.command("demo")
def demo(
    port: Annotated[int, typer.Option(help="Port of the sample service (0: any free port).")] = 0,
    users: Annotated[int, typer.Option(help="Users driving traffic each day.", min=1)] = 4,
    days: Annotated[
        int, typer.Option(help="Days of traffic (the 3rd occurrence makes a test).", min=1)
    ] = 3,
) -> None:
    """Run the sample service with faults on, drive traffic, and watch failures become tests."""
    import os

    # The story is told in tables; Prefect's per-run log lines still reach its UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from immunity.cli.demo import run_demo

    run_demo(console, port=port, users=users, days=days)


@app.command("serve")
def serve() -> None:
    """Serve every flow as a Prefect deployment (with schedules) until interrupted."""
    from immunity.deployments.serve import serve_all

    serve_all()


if __name__ == "__main__":
    app()
