"""`immunity deploy` and `immunity deployments`: the deploy loop from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["register"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole
_STYLE = {"succeeded": "green", "rolled_back": "yellow", "failed": "red", "refused": "red"}


def deploy(
    ref: Annotated[str | None, typer.Option(help="The git ref or commit to deploy.")] = None,
    fix: Annotated[int | None, typer.Option(help="An approved, applied fix proposal.")] = None,
    target: Annotated[str | None, typer.Option(help="A name in IMMUNITY_DEPLOY_TARGETS.")] = None,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    watch: Annotated[bool, typer.Option(help="Watch before promoting.")] = True,
    min_readiness: Annotated[
        float | None, typer.Option(help="The gate's minimum readiness (default: settings).")
    ] = None,
) -> None:
    """Deploy behind the readiness gate, watch, and promote or roll back; exit 1 unless promoted."""
    from immunity.flows.deploy import deploy as deploy_flow
    from immunity.tasks.deploy.tasks import DeployRefusedError

    try:
        outcome = deploy_flow(
            ref=ref,
            fix_id=fix,
            target=target,
            reason=reason,
            watch=watch,
            min_readiness=min_readiness,
            triggered_by="cli",
        )
    except DeployRefusedError as error:
        errors.print(f"[red]{escape(str(error))}[/]")
        raise typer.Exit(code=2) from None
    style = _STYLE.get(outcome.status, "")
    console.print(
        f"Deployment #{outcome.deployment_id} of {outcome.ref[:12]} to {outcome.target}:"
        f" [{style}]{outcome.status}[/]. {escape(outcome.detail)}"
    )
    if outcome.status != "succeeded":
        raise typer.Exit(code=1)


def deployments(limit: Annotated[int, typer.Option(help="How many to show.")] = 30) -> None:
    """List the newest deployments: gate, status, what a rollback restored."""
    from immunity.models.db import session_scope
    from immunity.tasks.deploy.store import list_deployments

    table = Table(title="Deployments", title_justify="left")
    for column in ("id", "target", "env", "ref", "status", "gate", "fix", "rollback of", "detail"):
        table.add_column(column, overflow="fold")
    with session_scope() as session:
        found = list_deployments(session=session, limit=limit)
    for d in found:
        gate = f"{d.gate.get('score', 0):.0f}" if d.gate else "—"
        table.add_row(
            str(d.id),
            d.target,
            d.environment,
            d.ref[:12],
            f"[{_STYLE.get(d.status, '')}]{d.status}[/]",
            gate,
            f"#{d.fix_id}" if d.fix_id else "—",
            f"#{d.rollback_of}" if d.rollback_of else "—",
            escape(d.detail[:160]),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `deploy` and `deployments` to the main app."""
    app.command("deploy")(deploy)
    app.command("deployments")(deployments)
