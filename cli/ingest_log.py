"""`immunity ingest-log`: Python tracebacks in an ordinary log file become failure events."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from immunity.models.reports import GeneratedTest
from immunity.tasks.ingest.logparse import iter_log_failures

__all__ = ["chunk_events", "ingest_log", "register"]

# Prefect refuses a flow run whose parameters exceed 512 KB: a chunk stays well under it.
MAX_CHUNK_EVENTS = 200
MAX_CHUNK_BYTES = 400_000
_PROGRESS_EVERY = 2_000  # lines between progress-bar refreshes
_SHOWN_REJECTIONS = 20

console = Console()
errors = Console(stderr=True)


def chunk_events(
    events: Iterator[dict[str, Any]],
    max_events: int = MAX_CHUNK_EVENTS,
    max_bytes: int = MAX_CHUNK_BYTES,
) -> Iterator[list[dict[str, Any]]]:
    """Yield lists of at most `max_events` events whose JSON stays within `max_bytes`."""
    chunk: list[dict[str, Any]] = []
    size = 0
    for event in events:
        cost = len(json.dumps(event, default=str))
        if chunk and (len(chunk) >= max_events or size + cost > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(event)
        size += cost
    if chunk:
        yield chunk


@dataclass
class _Totals:
    found: int = 0
    accepted: int = 0
    new_signatures: int = 0
    tests_created: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (log line, errors)
    untestable: dict[int, str] = field(default_factory=dict)  # signature id → why no test


def _lines(handle: IO[str], progress: Progress, task_id: Any) -> Iterator[str]:
    # The binary buffer's position is read-ahead, not exact, which is plenty for a progress bar.
    for number, line in enumerate(handle, start=1):
        if number % _PROGRESS_EVERY == 0:
            progress.update(task_id, completed=handle.buffer.tell())
        yield line


def _note_generation(totals: _Totals, generated: list[GeneratedTest]) -> None:
    # A signature left without a test is a candidate again in every later chunk: one reason each.
    for outcome in generated:
        if outcome.created or outcome.test_id is not None:
            totals.untestable.pop(outcome.signature_id, None)
        elif outcome.reason:
            totals.untestable[outcome.signature_id] = outcome.reason


def _ingest(file: Path, environment: str, generate: bool) -> _Totals:
    # The progress bar and the summary tell the story; Prefect's per-run logs still reach its UI.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from immunity.flows.ingest import ingest_failures  # Prefect is slow to import: only when needed

    totals = _Totals()
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
    )
    # errors="replace": a log with stray non-UTF-8 bytes is still read, those bytes become �.
    with (
        file.open(encoding="utf-8", errors="replace") as handle,
        Progress(*columns, console=console, transient=True) as progress,
    ):
        task_id = progress.add_task(f"reading {file.name}", total=file.stat().st_size or 1)
        events = iter_log_failures(
            _lines(handle, progress, task_id), source_name=str(file), environment=environment
        )
        for chunk in chunk_events(events):
            totals.found += len(chunk)
            report = ingest_failures(chunk, generate=generate)
            totals.accepted += report.accepted
            totals.new_signatures += report.new_signatures
            totals.tests_created += report.tests_created
            totals.rejected.extend(
                (chunk[r.index]["context"]["line"], "; ".join(r.errors)) for r in report.rejected
            )
            _note_generation(totals, report.generated)
            progress.update(task_id, description=f"{totals.found} traceback(s) found")
    return totals


def ingest_log(
    file: Annotated[Path, typer.Argument(help="A log file with Python tracebacks in it.")],
    environment: Annotated[
        str, typer.Option(help="The environment the log comes from.")
    ] = "production",
    generate: Annotated[
        bool, typer.Option(help="Build tests for signatures over the threshold.")
    ] = True,
) -> None:
    """Find the Python tracebacks in a log file and ingest each one as a failure event."""
    if not file.is_file():
        errors.print(f"[red]no such file: {file}[/]")
        raise typer.Exit(code=2)
    totals = _ingest(file, environment, generate)
    if not totals.found:
        console.print(f"no Python tracebacks found in {file}")
        return
    console.print(
        f"found [bold]{totals.found}[/] traceback(s): accepted [bold]{totals.accepted}[/], "
        f"rejected [bold]{len(totals.rejected)}[/]; {totals.new_signatures} new signature(s); "
        f"{totals.tests_created} test(s) created",
        soft_wrap=True,  # one line, whatever the width: scripts grep it
    )
    for reason, count in Counter(totals.untestable.values()).most_common():
        console.print(f"[yellow]{count} signature(s) got no test[/]: {reason}", soft_wrap=True)
    for line, reasons in totals.rejected[:_SHOWN_REJECTIONS]:
        errors.print(f"[yellow]traceback at line {line}[/]: {reasons}", soft_wrap=True)
    if len(totals.rejected) > _SHOWN_REJECTIONS:
        errors.print(f"… and {len(totals.rejected) - _SHOWN_REJECTIONS} more rejected")
    if totals.rejected and not totals.accepted:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add `ingest-log` to a typer app (the `immunity` command's `app` in cli/main.py)."""
    app.command("ingest-log")(ingest_log)
