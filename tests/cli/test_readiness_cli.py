"""`immunity readiness` and `immunity gate` on a store alembic made, through the real flow."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from immunity.cli.readiness import register
from immunity.models.db import get_engine
from tests.tasks.health.test_readiness import add_test

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def app() -> typer.Typer:
    local = typer.Typer()
    register(local)
    return local


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, list(args))


def test_readiness_prints_a_table_and_json(fresh_store: str, app: typer.Typer) -> None:
    engine = get_engine(fresh_store)
    add_test(engine, "checkout", runs=[("passed", "production")])
    add_test(engine, "search", runs=[("failed", "production")])

    table = invoke(app, "readiness")
    assert table.exit_code == 0, table.output
    # workflow 50, database 100; UI, health and queue unmeasured: (50·40 + 100·5) / 45 = 55.56
    assert "55.6 — not ready" in table.stdout
    assert "1 of 2 workflow tests passed" in table.stdout
    assert "ui not measured" in table.stdout

    result = invoke(app, "readiness", "--json")
    assert result.exit_code == 0, result.output
    readiness = json.loads(result.stdout)
    assert (readiness["score"], readiness["band"]) == (55.6, "not ready")
    scores = {part["name"]: part["score"] for part in readiness["parts"]}
    assert scores == {"workflow": 50, "ui": None, "health": None, "database": 100, "queue": None}
    assert readiness["critical_failures"] == []
    assert len(readiness["notes"]) == 4


def test_gate_passes_at_zero_and_fails_above_the_score(fresh_store: str, app: typer.Typer) -> None:
    add_test(get_engine(fresh_store), "checkout", runs=[("passed", "production")])

    passed = invoke(app, "gate", "--min-readiness", "0")
    assert passed.exit_code == 0, passed.output
    assert "gate passed" in passed.stdout

    failed = invoke(app, "gate", "--min-readiness", "101")
    assert failed.exit_code == 1, failed.output
    assert "readiness 100 (ready) is below 101" in failed.stderr


def test_gate_fails_on_a_critical_test_whatever_the_minimum(
    fresh_store: str, app: typer.Typer
) -> None:
    engine = get_engine(fresh_store)
    add_test(engine, "checkout", runs=[("passed", "production")])
    add_test(engine, "login", type_="smoke", runs=[("failed", "production")])
    add_test(engine, "search", runs=[("failed", "production")])  # not critical

    result = invoke(app, "gate", "--min-readiness", "0")
    assert result.exit_code == 1, result.output
    assert "1 critical test(s) failed: login" in result.stderr
    assert "search" not in result.stderr


def test_an_unknown_environment_is_refused(fresh_store: str, app: typer.Typer) -> None:
    result = invoke(app, "gate", "--env", "nowhere")
    assert result.exit_code == 2
    assert "unknown environment 'nowhere'" in result.stderr
