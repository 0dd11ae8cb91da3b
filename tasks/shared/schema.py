"""Bringing a store's schema up to date with alembic (the only owner of the schema)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from immunity.models.settings import get_settings

__all__ = ["alembic_config", "upgrade_database"]

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """Return an alembic configuration for `url` (default: the configured store)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url or get_settings().effective_database_url)
    return config


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    """Apply every migration up to `revision` to the store at `url`."""
    command.upgrade(alembic_config(url), revision)
