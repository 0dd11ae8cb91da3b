"""Alembic owns the schema: migrating an empty store yields exactly the models' tables."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import immunity.models.tables  # noqa: F401
from immunity.models.db import get_engine
from immunity.tasks.shared.schema import upgrade_database
from tests.conftest import POSTGRES_ADMIN_URL, _admin_connection


def _differences(url: str) -> list:
    engine = get_engine(url)
    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    engine.dispose()
    return found


def test_migrations_build_the_models_schema_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade_database(url)
    upgrade_database(url)  # a second upgrade is a no-op, not an error
    assert _differences(url) == []


@pytest.mark.usefixtures("postgres_url")  # skips or fails with the session's PostgreSQL rules
def test_migrations_build_the_models_schema_on_postgresql() -> None:
    name = f"immunity_migrate_{uuid.uuid4().hex[:10]}"
    with _admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        upgrade_database(f"{base}/{name}")
        assert _differences(f"{base}/{name}") == []
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
