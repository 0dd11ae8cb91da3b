"""`immunity run`, `immunity status` and `immunity tests add`: run suites, see their health."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from immunity.models.results import SuiteSummary
    from immunity.models.specs import Selection

__all__ = ["register", "summary_table"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole
_STATUS_STYLE = {
    "passed": "green",
    "flaky": "yellow",
    "failed": "red",
    "error": "red",
    "skipped": "dim",
}


# The options `run` and `ui` share.
TestIds = Annotated[list[int] | None, typer.Option("--id", help="A test id (repeat).")]
Names = Annotated[list[str] | None, typer.Option("--name", help="A test name (repeat).")]
Tags = Annotated[list[str] | None, typer.Option("--tag", help="Tests with this tag (repeat).")]
Types = Annotated[
    list[str] | None, typer.Option("--type", help="smoke, regression, contract, integration.")
]
Env = Annotated[
    str | None, typer.Option("--env", help="Environment for every test (default: own).")
]
TriggerOpt = Annotated[str, typer.Option("--trigger", help="manual, schedule, ci or deployment.")]
JunitPath = Annotated[Path | None, typer.Option("--junit", help="Also copy the JUnit XML here.")]
JsonPath = Annotated[Path | None, typer.Option("--json", help="Also copy the JSON report here.")]


def summary_table(summary: SuiteSummary) -> Table:
    """Return a table of a suite run's totals and its CI gate."""
    gate = "[green]passed[/]" if summary.gate_passed else "[red]failed[/]"
    table = Table(
        title=f"Suite run {summary.suite_run_id} ({summary.trigger}): gate {gate}",
        title_justify="left",
    )
    for column in ("total", "passed", "failed", "error", "flaky", "skipped", "pass rate"):
        table.add_column(column, justify="right")
    rate = "—" if summary.pass_rate is None else f"{100 * summary.pass_rate:.1f} %"
    table.add_row(
        str(summary.total),
        f"[green]{summary.passed}[/]",
        f"[red]{summary.failed}[/]" if summary.failed else "0",
        f"[red]{summary.errors}[/]" if summary.errors else "0",
        f"[yellow]{summary.flaky}[/]" if summary.flaky else "0",
        str(summary.skipped),
        rate,
    )
    return table


def _failures_table(engine: Engine, suite_run_id: int) -> Table | None:
    from immunity.tasks.shared.queries import list_executions

    rows = list_executions(
        engine, suite_run_id=suite_run_id, statuses=("failed", "error", "flaky", "skipped")
    )
    if not rows:
        return None
    table = Table(title="Not passed", title_justify="left")
    for column in ("test", "status", "attempts", "ms", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column == "test")
    for execution, name in rows:
        style = _STATUS_STYLE.get(execution.status, "")
        table.add_row(
            name,
            f"[{style}]{execution.status}[/]",
            str(execution.attempts),
            f"{execution.duration_ms:.0f}",
            escape((execution.error or "")[:400]),
        )
    return table


def _watch(engine: Engine, suite_run_id: int, done: threading.Event) -> None:
    from immunity.tasks.shared.queries import suite_progress

    with Progress(
        TextColumn("[bold]running tests"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        bar = progress.add_task("tests", total=None)
        while not done.wait(0.25):
            finished, total = suite_progress(engine, suite_run_id)
            progress.update(bar, completed=finished, total=total or None)


def run(
    test_id: TestIds = None,
    name: Names = None,
    tag: Tags = None,
    type_: Types = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="http, scenario or ui (repeat; default: http and scenario)."),
    ] = None,
    env: Env = None,
    trigger: TriggerOpt = "manual",
    junit: JunitPath = None,
    json_report: JsonPath = None,
) -> None:
    """Run regression tests; exit 1 when a critical test fails (the CI gate)."""
    from immunity.models.specs import Selection

    selection = Selection(
        ids=test_id or [], names=name or [], tags=tag or [], types=type_ or [], kinds=kind or []
    )
    _run_suite(selection, env, trigger, junit=junit, json_report=json_report, ui=False)


def ui(
    test_id: TestIds = None,
    name: Names = None,
    tag: Tags = None,
    type_: Types = None,
    env: Env = None,
    trigger: TriggerOpt = "manual",
    junit: JunitPath = None,
    json_report: JsonPath = None,
) -> None:
    """Run UI tests in headless Chromium; exit 1 when a critical one fails."""
    from immunity.models.settings import get_settings
    from immunity.models.specs import Selection
    from immunity.tasks.ui.runner import chromium_missing

    missing = chromium_missing(get_settings())
    if missing:
        errors.print(f"[red]{escape(missing)}[/] (apt-get install -y chromium chromium-driver)")
        raise typer.Exit(code=2)
    selection = Selection(ids=test_id or [], names=name or [], tags=tag or [], types=type_ or [])
    _run_suite(selection, env, trigger, junit=junit, json_report=json_report, ui=True)


def _run_suite(
    selection: Selection,
    env: str | None,
    trigger: str,
    *,
    junit: Path | None,
    json_report: Path | None,
    ui: bool,
) -> None:
    from immunity.models.db import get_engine
    from immunity.models.enums import Trigger
    from immunity.models.settings import get_settings
    from immunity.tasks.regress.selection import UnknownEnvironmentError
    from immunity.tasks.regress.store import open_suite_run

    settings = get_settings()
    try:
        trigger_value = Trigger(trigger)
    except ValueError:
        errors.print(f"[red]--trigger must be one of {', '.join(t.value for t in Trigger)}[/]")
        raise typer.Exit(code=2) from None
    if env is not None and env not in settings.environments:
        errors.print(
            f"[red]{escape(str(UnknownEnvironmentError(env, list(settings.environments))))}[/]"
        )
        raise typer.Exit(code=2)
    from immunity.flows.regress import run_regression_suite
    from immunity.flows.ui import run_ui_suite

    engine = get_engine()
    suite_id = open_suite_run(
        engine, trigger=trigger_value.value, environment=env, selection=selection, flow_run_id=None
    )
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(engine, suite_id, done), daemon=True)
    watcher.start()
    common = {
        "ids": selection.ids,
        "names": selection.names,
        "tags": selection.tags,
        "types": selection.types,
        "environment": env,
        "trigger": trigger_value,
        "suite_run_id": suite_id,
    }
    try:
        if ui:
            summary = run_ui_suite(**common)
        else:
            summary = run_regression_suite(kinds=selection.kinds, **common)
    finally:
        done.set()
        watcher.join()
    _report(engine, summary, junit=junit, json_report=json_report)


def _report(
    engine: Engine, summary: SuiteSummary, *, junit: Path | None, json_report: Path | None
) -> None:
    console.print(summary_table(summary))
    failures = _failures_table(engine, summary.suite_run_id)
    if failures is not None:
        console.print(failures)
    for transition in summary.transitions:
        console.print(f"[bold]{transition.kind}[/]: {escape(transition.message)}")
    for source, target in ((summary.report_junit, junit), (summary.report_json, json_report)):
        if source and target:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    console.print(f"reports: {summary.report_json}, {summary.report_junit}")
    if summary.total == 0:
        errors.print("[yellow]no test matched the selection[/]")
    if not summary.gate_passed:
        errors.print(
            f"[red]critical test(s) failed: {escape(', '.join(summary.critical_failures[:20]))}[/]"
        )
        raise typer.Exit(code=1)


def status() -> None:
    """Show the latest suite run and every test's confidence, band and results."""
    from immunity.cli.render import tests_table
    from immunity.models.db import get_engine
    from immunity.tasks.shared.queries import latest_suite_summary, list_tests

    engine = get_engine()
    latest = latest_suite_summary(engine)
    if latest is None:
        console.print("no suite run yet: `immunity run` runs the tests")
    else:
        console.print(summary_table(latest))
    console.print(tests_table(list_tests(engine), title="Test health"))


def add(
    path: Annotated[Path, typer.Argument(help="A YAML file (one test or a list) or a directory.")],
    replace: Annotated[bool, typer.Option(help="Update tests that already exist.")] = False,
) -> None:
    """Add manual tests (smoke, contract, integration) from YAML; all or nothing."""
    from immunity.models.db import get_engine
    from immunity.tasks.regress.manual_tests import save_definitions
    from immunity.tasks.regress.testdefs import load_definitions

    if not path.exists():
        errors.print(f"[red]no such file or directory: {path}[/]")
        raise typer.Exit(code=2)
    try:
        definitions = load_definitions(path)
        report = save_definitions(get_engine(), definitions, replace=replace)
    except ValueError as exc:
        errors.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(code=1) from None
    console.print(
        f"{len(report.created)} test(s) added, {len(report.updated)} updated,"
        f" {len(report.unchanged)} unchanged"
    )


def register(app: typer.Typer, tests_app: typer.Typer) -> None:
    """Add `run`, `ui` and `status` to the main app and `add` to the tests group."""
    app.command("run")(run)
    app.command("ui")(ui)
    app.command("status")(status)
    tests_app.command("add")(add)
