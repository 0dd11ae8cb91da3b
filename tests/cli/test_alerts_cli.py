"""`alerts` and `health` as a user types them, registered on a typer app."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from sqlmodel import Session
from typer.testing import CliRunner

from immunity.cli.alerts import register
from immunity.models.db import get_engine
from immunity.models.schemas import utcnow
from immunity.models.tables import Alert

runner = CliRunner()
WIDE = {"COLUMNS": "220"}


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_alerts_lists_newest_first(store: str, app: typer.Typer) -> None:
    now = utcnow()
    with Session(get_engine(store)) as session:
        session.add(
            Alert(
                key="failure_rate:all",
                kind="failure_rate",
                severity="critical",
                message="Failure rate 60.0 % in all",
                channel="webhook:http://127.0.0.1:9",
                delivered=True,
                sent_at=now - timedelta(minutes=40),
            )
        )
        session.add(
            Alert(
                key="critical_signature:abc123",
                kind="critical_signature",
                severity="critical",
                message="New critical failure LedgerCorrupted",
                channel="block:slack-webhook/ops",
                delivered=False,
                error="HTTP 500 Internal Server Error",
                sent_at=now - timedelta(minutes=5),
            )
        )
        session.commit()

    result = runner.invoke(app, ["alerts"], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index("critical_signature:abc123") < out.index("failure_rate:all")
    for text in ("block:slack-webhook/ops", "HTTP 500", "LedgerCorrupted", "60.0 %", "yes"):
        assert text in out
    assert f"{now - timedelta(minutes=5):%Y-%m-%d %H:%M}" in out

    newest = runner.invoke(app, ["alerts", "--limit", "1"], env=WIDE)
    assert newest.exit_code == 0, newest.output
    assert "critical_signature:abc123" in newest.output
    assert "failure_rate:all" not in newest.output


@pytest.mark.usefixtures("prefect_harness")
def test_health_runs_the_check_and_prints_the_report(store: str, app: typer.Typer) -> None:
    result = runner.invoke(app, ["health"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output and "unhealthy" not in result.output
    assert "0.0 %" in result.output and "last 60 min" in result.output
