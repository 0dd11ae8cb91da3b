"""Real Prefect servers for the deployment tests: SQLite, and PostgreSQL as in production."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, _admin_connection
from tests.deployments.prefect_server import PrefectServer
from tests.deployments.prefect_server import prefect_server as start_prefect_server


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[PrefectServer]:
    """A Prefect server on its own SQLite database."""
    with start_prefect_server(tmp_path) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def any_prefect_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrefectServer]:
    """A Prefect server on SQLite, then on a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        with start_prefect_server(tmp_path) as server:
            yield server
        return
    name = f"prefect_test_{uuid.uuid4().hex[:12]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    host = POSTGRES_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        with start_prefect_server(tmp_path, f"postgresql+asyncpg://{host}/{name}") as server:
            yield server
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
