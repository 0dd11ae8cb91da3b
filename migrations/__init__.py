"""Alembic migrations: the only owner of the store's schema."""
