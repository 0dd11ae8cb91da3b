"""Alembic environment: the schema is SQLModel's metadata; the URL comes from the settings."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import immunity.models.tables  # noqa: F401  (registers the tables on the metadata)
from immunity.models.db import get_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = get_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as connection:
        # Batch mode lets later migrations alter tables on SQLite, which has no ALTER COLUMN.
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
