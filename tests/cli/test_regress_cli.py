"""`immunity tests add`, `immunity run` and `immunity status` against a real sample service."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from immunity.cli.main import app
from immunity.examples.sample_service import create_app, start_server
from immunity.models.db import get_engine
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest, SuiteRun, TestExecution

pytestmark = pytest.mark.usefixtures("prefect_harness")

SMOKE = """
- name: health_is_ok
  type: smoke
  tags: [health, critical]
  request: {method: GET, path: /api/health}
  expect: {status: 200, json_schema: {type: object, required: [status]}}
- name: recipe_generation
  type: integration
  request:
    method: POST
    path: /api/generate
    body: {prompt: Build recipe website with search, framework: react}
  expect: {should_not_fail: true, min_items: {$.files: 1}}
"""


@pytest.fixture
def staging(fresh_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A sample service configured as the `staging` environment."""
    server = start_server(create_app())
    environments = {"staging": {"base_url": server.base_url, "is_production": False}}
    monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
    monkeypatch.setenv("IMMUNITY_REGRESSION_RERUNS", "0")
    get_settings.cache_clear()
    try:
        yield server.base_url
    finally:
        server.stop()


def test_add_run_and_status(staging: str, fresh_store: str, tmp_path: Path) -> None:
    runner = CliRunner()
    suite = tmp_path / "smoke.yaml"
    suite.write_text(SMOKE)
    added = runner.invoke(app, ["tests", "add", str(suite)])
    assert added.exit_code == 0, added.output
    assert "2 test(s) added" in added.output
    again = runner.invoke(app, ["tests", "add", str(suite)])
    assert "0 test(s) added, 0 updated, 2 unchanged" in again.output

    junit = tmp_path / "out" / "junit.xml"
    ran = runner.invoke(app, ["run", "--env", "staging", "--trigger", "ci", "--junit", str(junit)])
    assert ran.exit_code == 0, ran.output
    assert "gate passed" in ran.output
    root = ET.parse(junit).getroot()
    assert root.find("testsuite").get("tests") == "2"

    # The recipe fault breaks the integration test (not critical: the gate still passes) …
    httpx.put(f"{staging}/admin/faults/dependency_validation", json={"enabled": True})
    ran = runner.invoke(app, ["run", "--env", "staging"])
    assert ran.exit_code == 0, ran.output
    assert "recipe_generation" in ran.output and "failed" in ran.output
    # … while a failing critical (tagged) test fails the gate with exit code 1.
    httpx.put(f"{staging}/admin/faults/executions_500", json={"enabled": True})
    ran = runner.invoke(app, ["run", "--env", "staging", "--tag", "critical"])
    assert ran.exit_code == 1, ran.output
    assert "critical test(s) failed: health_is_ok" in ran.output

    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "health_is_ok" in status.output and "gate failed" in status.output
    engine = get_engine(fresh_store)
    with Session(engine) as session:
        health = session.exec(
            select(RegressionTest).where(RegressionTest.name == "health_is_ok")
        ).one()
        recipe = session.exec(
            select(RegressionTest).where(RegressionTest.name == "recipe_generation")
        ).one()
        suites = session.exec(select(SuiteRun).order_by(SuiteRun.id)).all()
        executions = session.exec(select(TestExecution)).all()
    assert (health.confidence, recipe.confidence) == (75 + 5 + 5 - 10, 75 + 5 - 10)
    assert [s.trigger for s in suites] == ["ci", "manual", "manual"]
    assert [s.total for s in suites] == [2, 2, 1]
    assert len(executions) == 5


def test_bad_input_is_refused_with_nothing_written(
    staging: str, fresh_store: str, tmp_path
) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE + "- name: broken\n  request: {method: FETCH, path: /x}\n")
    result = runner.invoke(app, ["tests", "add", str(bad)])
    assert result.exit_code == 1
    assert "bad.yaml" in result.output and "broken" in result.output
    with Session(get_engine(fresh_store)) as session:
        assert session.exec(select(RegressionTest)).all() == []

    result = runner.invoke(app, ["run", "--env", "nowhere"])
    assert result.exit_code == 2
    assert "unknown environment 'nowhere'" in result.output

    missing = runner.invoke(app, ["tests", "add", str(tmp_path / "absent.yaml")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_add_refuses_a_changed_test_unless_replaced(staging: str, tmp_path: Path) -> None:
    runner = CliRunner()
    suite = tmp_path / "smoke.yaml"
    suite.write_text(SMOKE)
    assert runner.invoke(app, ["tests", "add", str(suite)]).exit_code == 0
    suite.write_text(SMOKE.replace("status: 200", "status: 2xx"))
    refused = runner.invoke(app, ["tests", "add", str(suite)])
    assert refused.exit_code == 1 and "--replace" in refused.output
    replaced = runner.invoke(app, ["tests", "add", str(suite), "--replace"])
    assert replaced.exit_code == 0 and "1 updated" in replaced.output
