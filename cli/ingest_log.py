"""`immunity ingest-log`: Python tracebacks in an ordinary log file become failure events."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["ingest_log", "register"]

_SHOWN_REJECTIONS = 20

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole


def ingest_log(
    file: Annotated[Path, typer.Argument(help="A log file with Python tracebacks in it.")],
    environment: Annotated[
        str, typer.Option(help="The environment the log comes from.")
    ] = "production",
    generate: Annotated[
        bool, typer.Option(help="Build tests for signatures over the threshold.")
    ] = True,
    batch_size: Annotated[int | None, typer.Option(help="Tracebacks per batch.")] = None,
) -> None:
    """Find the Python tracebacks in a log file and ingest each one as a failure event."""
    if not file.is_file():
        errors.print(f"[red]no such file: {file}[/]")
        raise typer.Exit(code=2)
    # The summary tells the story; Prefect's per-run logs still reach its UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from immunity.flows.ingest import ingest_log as ingest_log_flow  # Prefect is slow to import

    with console.status(f"ingesting the tracebacks of {file} …"):
        report = ingest_log_flow(
            str(file), environment=environment, generate=generate, batch_size=batch_size
        )
    found = report.accepted + len(report.rejected)
    if not found:
        console.print(f"no Python tracebacks found in {file}")
        return
    console.print(
        f"found [bold]{found}[/] traceback(s): accepted [bold]{report.accepted}[/], "
        f"rejected [bold]{len(report.rejected)}[/]; {report.new_signatures} new signature(s); "
        f"{report.tests_created} test(s) created",
        soft_wrap=True,  # one line, whatever the width: scripts grep it
    )
    untestable = Counter(
        item.reason for item in report.generated if item.test_id is None and item.reason
    )
    for reason, count in untestable.most_common():
        console.print(f"[yellow]{count} signature(s) got no test[/]: {reason}", soft_wrap=True)
    for rejection in report.rejected[:_SHOWN_REJECTIONS]:
        reasons = "; ".join(rejection.errors)
        errors.print(f"[yellow]traceback at line {rejection.index}[/]: {reasons}", soft_wrap=True)
    if len(report.rejected) > _SHOWN_REJECTIONS:
        errors.print(f"… and {len(report.rejected) - _SHOWN_REJECTIONS} more rejected")
    if report.rejected and not report.accepted:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `ingest-log` to a typer app (the `immunity` command's `app` in cli/main.py)."""
    app.command("ingest-log")(ingest_log)
