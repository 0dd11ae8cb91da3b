"""Fixtures of the CLI tests: a store that only `immunity db upgrade` has touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from immunity.cli.main import app
from immunity.models.settings import get_settings


@pytest.fixture
def fresh_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty SQLite store that only alembic has touched (the way a new user starts)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("IMMUNITY_DATABASE_URL", url)
    monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    yield url
    get_settings.cache_clear()
