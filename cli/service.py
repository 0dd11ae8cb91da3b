"""`immunity api`, `immunity token create`, `immunity dsn create`: running and opening the API."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

console = Console()
token_app = typer.Typer(no_args_is_help=True, help="API tokens for the ingest API.")
dsn_app = typer.Typer(no_args_is_help=True, help="Sentry DSNs: point a Sentry SDK at immunity.")


def _update_env(path: Path, key: str, update: object) -> None:
    """Set `key` in a .env file to the JSON of `update(current value)`, keeping other lines."""
    lines = path.read_text().splitlines() if path.exists() else []
    current = None
    for line in lines:
        if line.startswith(f"{key}="):
            current = json.loads(line.split("=", 1)[1].strip().strip("'"))
    value = update(current)  # type: ignore[operator]
    kept = [line for line in lines if not line.startswith(f"{key}=")]
    kept.append(f"{key}='{json.dumps(value)}'")
    path.write_text("\n".join(kept) + "\n")


@token_app.command("create")
def token_create(
    name: Annotated[
        str,
        typer.Option(help="Who the token acts as: decisions made with it are recorded so."),
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="What it may do, repeatable: ingest (send events), read (signatures, tests,"
            " fixes), review (decide fixes), admin (everything, every project). Default: ingest.",
        ),
    ] = None,
    project: Annotated[
        str, typer.Option(help="Its project: where its events go and what it reads.")
    ] = "default",
    env_file: Annotated[
        Path, typer.Option(help="The .env file that keeps the token's hash.")
    ] = Path(".env"),
) -> None:
    """Create an API token: it is printed once; only its SHA-256 hash, with its name, scopes and
    project, is written to .env."""
    from immunity.api.auth import ALL_SCOPES, hash_token, new_token

    scopes = sorted(set(scope or ["ingest"]))
    unknown = [found for found in scopes if found not in ALL_SCOPES]
    if unknown:
        known = ", ".join(sorted(ALL_SCOPES))
        raise typer.BadParameter(
            f"unknown scope {unknown[0]!r} (one of {known})", param_hint="--scope"
        )
    if not name.strip() or len(name) > 200:
        raise typer.BadParameter("a name of 1 to 200 characters", param_hint="--name")
    if not project.strip() or len(project) > 64:
        raise typer.BadParameter("a project of 1 to 64 characters", param_hint="--project")
    token = new_token()
    entry = {"hash": hash_token(token), "name": name, "scopes": scopes, "project": project}
    _update_env(env_file, "IMMUNITY_API_TOKENS", lambda now: [*(now or []), entry])
    console.print("token (shown once, keep it in your secret store):")
    typer.echo(token)  # plain, so no terminal wrapping breaks it when copied
    console.print(
        f"its hash was added to IMMUNITY_API_TOKENS in {env_file}: {name}, scopes"
        f" {', '.join(scopes)}, project {project} (restart the API to use it)",
        highlight=False,
        markup=False,
    )


@dsn_app.command("create")
def dsn_create(
    project: Annotated[
        str, typer.Option(help="Project id in the DSN path: the project its events belong to.")
    ] = "1",
    host: Annotated[str, typer.Option(help="Where clients reach the API.")] = "127.0.0.1:8100",
    env_file: Annotated[Path, typer.Option(help="The .env file that keeps the key.")] = Path(
        ".env"
    ),
) -> None:
    """Create a DSN for a Sentry SDK: `sentry_sdk.init(dsn=...)` then reports to immunity."""
    key = secrets.token_hex(16)
    _update_env(env_file, "IMMUNITY_SENTRY_PROJECTS", lambda now: {**(now or {}), project: key})
    console.print(f"DSN: [bold]http://{key}@{host}/{project}[/]")
    console.print(f"project {project} was added to IMMUNITY_SENTRY_PROJECTS in {env_file}")


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
) -> None:
    """Serve the ingest API (native and Sentry-compatible) until interrupted."""
    import uvicorn

    from immunity.api.app import create_app

    uvicorn.run(create_app(), host=host, port=port)


def register(app: typer.Typer) -> None:
    """Add the API commands to the `immunity` command."""
    app.command("api")(api)
    app.add_typer(token_app, name="token")
    app.add_typer(dsn_app, name="dsn")
