"""`immunity alerts` and `immunity health`: what was alerted, and a health check on demand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from immunity.models.reports import HealthReport
    from immunity.models.tables import Alert

__all__ = ["alerts", "alerts_table", "health", "health_table", "register"]


def alerts_table(rows: Sequence[Alert], title: str = "Alerts") -> Table:
    """Return a table of alerts: what, how bad, when, where it went and whether it arrived."""
    table = Table(title=title, title_justify="left")
    for column in ("key", "kind", "severity", "sent at (UTC)", "channel", "delivered", "message"):
        table.add_column(column, overflow="fold", no_wrap=column == "key")
    for alert in rows:
        # Keys, messages and errors are data: escaped, so brackets in them are not rich markup.
        delivered = (
            "[green]yes[/]" if alert.delivered else f"[red]no[/] {escape(alert.error or '')}"
        )
        table.add_row(
            escape(alert.key),
            escape(alert.kind),
            escape(alert.severity),
            f"{alert.sent_at:%Y-%m-%d %H:%M:%S}",
            escape(alert.channel or "—"),
            delivered.strip(),
            escape(alert.message),
        )
    return table


def health_table(report: HealthReport) -> Table:
    """Return a table of a health check: the rate against the rule and the alerts raised."""
    state = "[red]unhealthy[/]" if report.unhealthy else "[green]healthy[/]"
    scope = report.environment or "all environments"
    table = Table(title=f"Health of {scope}: {state}", title_justify="left", show_header=False)
    table.add_column("measure")
    table.add_column("value", overflow="fold")
    rate, failures = f"{100 * report.rate:.1f} %", str(report.failures)
    if not report.exact:
        rate += f" to {100 * report.rate_max:.1f} %"
        failures += f" to {report.failures_max} (samples were pruned: a floor and a ceiling)"
    rule = (
        f"alert above {100 * report.threshold:.0f} % with at least {report.min_attempts} attempts"
    )
    table.add_row("window", f"last {report.window_minutes} min")
    table.add_row("failure rate", f"{rate} ({rule})")
    table.add_row("attempts", str(report.attempts))
    table.add_row("failures", failures)
    table.add_row("successes", str(report.successes))
    table.add_row("new critical signatures", str(len(report.critical_signatures)))
    for alert in report.alerts:
        outcome = f"{alert.status}: {alert.error}" if alert.error else str(alert.status)
        table.add_row(f"alert {escape(alert.key)}", escape(outcome))
    return table


def alerts(limit: Annotated[int, typer.Option(help="How many to show.", min=1)] = 50) -> None:
    """List alerts, newest first (key, kind, severity, when, channel, delivered, message)."""
    from immunity.models.db import get_engine
    from immunity.tasks.shared.alerts import list_alerts

    Console().print(alerts_table(list_alerts(get_engine(), limit=limit)))


def health(
    environment: Annotated[
        str | None, typer.Option(help="Only this environment (default: all).")
    ] = None,
) -> None:
    """Run the health check now: failure rate over the window, alerts; exit 1 when unhealthy."""
    from immunity.flows.health import check_health

    report = check_health(environment=environment)
    Console().print(health_table(report))
    if report.unhealthy:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the `alerts` and `health` commands to `app`."""
    app.command("alerts")(alerts)
    app.command("health")(health)
