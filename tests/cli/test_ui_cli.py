"""`immunity ui`: UI checks from YAML run in Chromium; a missing browser is a clear refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from immunity.cli.main import app
from immunity.examples import SCENARIO_PACK
from immunity.examples.sample_service import create_app, start_server
from immunity.models.settings import get_settings

UI_PACK = SCENARIO_PACK.parent / "ui_scenarios"
runner = CliRunner()


@pytest.fixture
def staging(fresh_store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with start_server(create_app()) as server:
        environments = {"staging": {"base_url": server.base_url, "is_production": False}}
        monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
        monkeypatch.setenv("IMMUNITY_REGRESSION_RERUNS", "0")
        get_settings.cache_clear()
        yield server.base_url


@pytest.mark.usefixtures("prefect_harness", "chromium")
def test_ui_command_runs_checks_and_gates(staging: str, tmp_path: Path) -> None:
    added = runner.invoke(app, ["tests", "add", str(UI_PACK / "cart.yaml")])
    assert added.exit_code == 0, added.output
    names = ["--name", "ui.cart.add_from_product_page", "--name", "ui.cart.remove_line"]
    ran = runner.invoke(app, ["ui", "--env", "staging", *names])
    assert ran.exit_code == 0, ran.output
    assert "gate passed" in ran.output

    httpx.put(f"{staging}/admin/faults/ui_button_throws", json={"enabled": True})
    ran = runner.invoke(app, ["ui", "--env", "staging", *names])
    assert ran.exit_code == 1, ran.output
    assert "ui.cart.add_from_product_page" in ran.output and "critical test(s) failed" in ran.output


def test_ui_command_refuses_without_chromium(staging: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMMUNITY_CHROMIUM_BINARY", "/nonexistent/chromium")
    get_settings.cache_clear()
    ran = runner.invoke(app, ["ui"])
    assert ran.exit_code == 2
    assert "/nonexistent/chromium" in ran.output and "apt-get install" in ran.output
