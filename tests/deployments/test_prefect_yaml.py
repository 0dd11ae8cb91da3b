"""prefect.yaml: current with serve.py, and `prefect deploy --all` registers it on a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.flows import load_flow_from_entrypoint
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from immunity.cli.main import app
from immunity.deployments.prefect_yaml import PREFECT_YAML, WORK_POOL, render_prefect_yaml
from immunity.deployments.serve import build_deployments
from tests.deployments.prefect_server import PrefectServer

PROJECT = Path(__file__).resolve().parents[2]


def test_the_committed_prefect_yaml_is_current_with_serve() -> None:
    result = CliRunner().invoke(app, ["prefect-yaml", "--check"])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(PREFECT_YAML.read_text())
    served = {d.name: d for d in build_deployments()}
    listed = {entry["name"]: entry for entry in document["deployments"]}
    assert set(listed) == set(served)
    for name, entry in listed.items():
        # A module path (no file, no colon): an installed immunity deploys and runs it too.
        assert entry["entrypoint"].startswith("immunity.flows.") and ":" not in entry["entrypoint"]
        assert load_flow_from_entrypoint(entry["entrypoint"]).name == served[name].flow_name
        assert entry["work_pool"] == {"name": WORK_POOL}
        crons = [schedule["cron"] for schedule in entry.get("schedules", [])]
        assert crons == [s.schedule.cron for s in served[name].schedules]
    [pull] = document["pull"]
    assert pull["prefect.deployments.steps.set_working_directory"] == {
        "directory": "{{ $IMMUNITY_PROJECT_DIR }}"
    }


def test_check_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "prefect.yaml"
    stale.write_text(render_prefect_yaml().replace("0 */6 * * *", "0 * * * *"))
    result = CliRunner().invoke(app, ["prefect-yaml", "--check", "--path", str(stale)])
    # Rich wraps at the terminal's width, wherever the temporary path's length puts the break.
    assert result.exit_code == 1 and "out of date" in " ".join(result.output.split())
    assert CliRunner().invoke(app, ["prefect-yaml", "--path", str(stale)]).exit_code == 0
    assert stale.read_text() == render_prefect_yaml()


def test_prefect_deploy_all_registers_every_deployment_on_the_process_pool(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_URL=prefect_server.api_url,
        PREFECT_HOME=str(tmp_path / "client-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    prefect = [sys.executable, "-m", "prefect"]
    for command in (
        [*prefect, "work-pool", "create", WORK_POOL, "--type", "process"],
        [*prefect, "--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}),
        get_client(sync_client=True) as client,
    ):
        registered = {d.name: d for d in client.read_deployments()}
    assert set(registered) == {d.name for d in build_deployments()}
    assert {d.work_pool_name for d in registered.values()} == {WORK_POOL}
    suite = registered["regression-suite"]
    assert [s.schedule.cron for s in suite.schedules] == ["0 */6 * * *"]
    assert suite.pull_steps == [
        {
            "prefect.deployments.steps.set_working_directory": {
                "directory": "{{ $IMMUNITY_PROJECT_DIR }}"
            }
        }
    ]
