"""`immunity experiments`: fix experiments with their status, winner, evidence and samples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from immunity.models.deploy_tables import Experiment

__all__ = ["experiments_table", "register"]

console = Console()
_STATUS_STYLE = {"decided": "green", "inconclusive": "yellow", "failed": "red", "running": "cyan"}


def _samples(totals: dict[str, tuple[int, int]], names: list[str]) -> str:
    parts = []
    for name in names:
        passed, failed = totals.get(name, (0, 0))
        parts.append(f"{name} {passed}/{passed + failed}")
    return ", ".join(parts)


def experiments_table(
    experiments: list[Experiment], totals: dict[int, dict[str, tuple[int, int]]]
) -> Table:
    """Return experiments as a table: id, name, status, winner, evidence, passes per variant."""
    table = Table(title="Fix experiments", title_justify="left")
    for column in ("id", "name", "method", "status", "winner", "p-value", "posterior", "passed"):
        table.add_column(column, justify="right" if column in ("id", "p-value") else "left")
    for e in experiments:
        assert e.id is not None
        names = [str(variant.get("name")) for variant in e.variants]
        style = _STATUS_STYLE.get(e.status, "")
        table.add_row(
            str(e.id),
            escape(e.name),
            e.method,
            f"[{style}]{e.status}[/]",
            escape(e.winner or "—"),
            "—" if e.p_value is None else f"{e.p_value:.3g}",
            "—" if e.posterior is None else f"{e.posterior:.3f}",
            escape(_samples(totals.get(e.id, {}), names)),
        )
    return table


def experiments(limit: Annotated[int, typer.Option(help="How many to show.")] = 50) -> None:
    """List fix experiments, newest first: who won and on how many runs."""
    from immunity.models.db import get_engine
    from immunity.tasks.deploy.experiment_store import list_experiments, sample_totals

    engine = get_engine()
    found = list_experiments(engine, limit=limit)
    totals = sample_totals(engine, [e.id for e in found if e.id is not None])
    console.print(experiments_table(found, totals))
    if not found:
        console.print("no experiments yet (run the `fix-experiment` flow)")


def register(app: typer.Typer) -> None:
    """Add `experiments` to the main app."""
    app.command("experiments")(experiments)
