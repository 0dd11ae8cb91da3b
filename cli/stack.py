"""`immunity up` and `immunity prefect-yaml`: running immunity like production on one machine."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole


def up(
    host: Annotated[str, typer.Option(help="Interface every piece listens on.")] = "127.0.0.1",
    prefect_port: Annotated[int, typer.Option(help="The Prefect server and UI.")] = 4200,
    api_port: Annotated[int, typer.Option(help="The immunity API (ingest, decisions).")] = 8100,
    prefect_database_url: Annotated[
        str | None,
        typer.Option(
            help="The Prefect server's database, e.g. postgresql+asyncpg://user@host/prefect"
            " (default: SQLite under PREFECT_HOME)."
        ),
    ] = None,
    prefect_auth_string: Annotated[
        str | None,
        typer.Option(
            envvar="IMMUNITY_PREFECT_AUTH_STRING",
            show_envvar=True,
            help="user:password the Prefect server and UI ask for (basic auth); the API and the"
            " deployments present it. Set it whenever others can reach the UI: its approval form"
            " records whatever reviewer name is typed in.",
        ),
    ] = None,
) -> None:
    """Start a Prefect server, the immunity API and every deployment; SIGTERM/Ctrl-C stops all."""
    from immunity.deployments.stack import Piece, Stack, StackError
    from immunity.models.settings import get_settings

    logs = get_settings().data_dir / "logs"
    stack = Stack(
        host=host,
        prefect_port=prefect_port,
        api_port=api_port,
        logs=logs,
        prefect_database_url=prefect_database_url,
        prefect_auth_string=prefect_auth_string,
    )
    signal.signal(signal.SIGTERM, stack.request_stop)
    signal.signal(signal.SIGINT, stack.request_stop)

    def ready(piece: Piece) -> None:
        console.print(f"[green]✓[/] {piece.name} (log: {piece.log})")

    if prefect_auth_string:
        access = "The Prefect UI asks for the auth string; in your shell also export"
        access += " PREFECT_API_AUTH_STRING=<the same user:password>.\n"
    else:
        access = "The Prefect UI (and its approval form) is open to whoever reaches it:"
        access += " IMMUNITY_PREFECT_AUTH_STRING=user:password protects it.\n"
    try:
        stack.start(on_ready=ready)
        console.print(
            f"\nPrefect UI: [bold]{stack.prefect_url}[/]   immunity API: [bold]{stack.api_url}[/]\n"
            f"In your shell: export PREFECT_API_URL={stack.prefect_url}/api\n{access}"
            "Ctrl-C or SIGTERM stops everything (deployments are paused on the way out)."
        )
        stack.watch()
    except StackError as error:
        errors.print(f"[red]{error}[/]")
        raise typer.Exit(code=1) from None
    finally:
        stack.stop()
    console.print("stopped: serve (deployments paused), api, prefect server")


def prefect_yaml(
    check: Annotated[
        bool, typer.Option(help="Only check that prefect.yaml is current; exit 1 if not.")
    ] = False,
    path: Annotated[
        Path | None, typer.Option(help="Where to write (default: ./prefect.yaml).")
    ] = None,
) -> None:
    """Write prefect.yaml from the deployments `immunity serve` serves (`prefect deploy --all`)."""
    from immunity.deployments.prefect_yaml import PREFECT_YAML, render_prefect_yaml

    target = path or PREFECT_YAML
    text = render_prefect_yaml()
    if check:
        if not target.exists() or target.read_text() != text:
            errors.print(f"{target} is out of date: run `immunity prefect-yaml`")
            raise typer.Exit(code=1)
        console.print(f"{target} is current")
        return
    target.write_text(text)
    console.print(f"wrote {target}")


def register(app: typer.Typer) -> None:
    """Add `up` and `prefect-yaml` to the main app."""
    app.command("up")(up)
    app.command("prefect-yaml")(prefect_yaml)
