"""`immunity readiness` and `immunity gate`: the readiness score, and the CI gate on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from immunity.models.readiness import Readiness

__all__ = ["readiness_table", "register"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole
_BAND_STYLE = {"ready": "green", "mostly ready": "yellow", "needs work": "yellow"}

Env = Annotated[
    str | None,
    typer.Option("--env", help="Judge tests by their latest run there (default: anywhere)."),
]


def readiness_table(readiness: Readiness) -> Table:
    """Return a table of the readiness parts: weights, effective weights, scores, details."""
    style = _BAND_STYLE.get(readiness.band, "red")
    scope = readiness.environment or "all environments"
    table = Table(
        title=f"Readiness ({scope}): [bold {style}]{readiness.score:.1f} — {readiness.band}[/]",
        title_justify="left",
    )
    table.add_column("part", no_wrap=True)
    table.add_column("weight %", justify="right")
    table.add_column("effective %", justify="right")
    table.add_column("score", justify="right")
    table.add_column("detail", overflow="fold")
    for part in readiness.parts:
        table.add_row(
            part.name,
            f"{part.weight:.1f}",
            f"{part.effective_weight:.1f}",
            "—" if part.score is None else f"{part.score:.1f}",
            escape(part.detail),
        )
    return table


def _measure(env: str | None) -> Readiness:
    from immunity.models.settings import get_settings
    from immunity.tasks.regress.selection import UnknownEnvironmentError

    settings = get_settings()
    if env is not None and env not in settings.environments:
        error = UnknownEnvironmentError(env, list(settings.environments))
        errors.print(f"[red]{escape(str(error))}[/]")
        raise typer.Exit(code=2)
    from immunity.flows.health import check_readiness

    return check_readiness(environment=env)


def _explain(readiness: Readiness) -> None:
    for note in readiness.notes:
        console.print(f"[dim]note:[/] {escape(note)}")
    if readiness.critical_failures:
        console.print(
            "[red]critical test(s) failing:[/] " + escape(", ".join(readiness.critical_failures))
        )


def readiness(
    env: Env = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the readiness as JSON instead of a table.")
    ] = False,
) -> None:
    """Score production readiness 0–100 (tests, UI tests, health, database, queue)."""
    measured = _measure(env)
    if json_output:
        typer.echo(measured.model_dump_json(indent=2))
        return
    console.print(readiness_table(measured))
    _explain(measured)


def gate(
    min_readiness: Annotated[
        float | None,
        typer.Option(
            "--min-readiness",
            min=0,
            help="Least score that passes (default: IMMUNITY_DEPLOY_MIN_READINESS, 95).",
        ),
    ] = None,
    env: Env = None,
) -> None:
    """Exit 1 when readiness is below the minimum or a critical test fails: the CI gate."""
    from immunity.models.settings import get_settings
    from immunity.tasks.health.readiness import gate_failures

    threshold = get_settings().deploy_min_readiness if min_readiness is None else min_readiness
    measured = _measure(env)
    console.print(readiness_table(measured))
    _explain(measured)
    reasons = gate_failures(measured, threshold)
    if reasons:
        for reason in reasons:
            errors.print(f"[red]gate failed:[/] {escape(reason)}")
        raise typer.Exit(code=1)
    console.print(f"[green]gate passed[/]: {measured.score:.1f} ≥ {threshold:g}")


def register(app: typer.Typer) -> None:
    """Add `readiness` and `gate` to the main app."""
    app.command("readiness")(readiness)
    app.command("gate")(gate)
