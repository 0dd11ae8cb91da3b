"""`immunity deploy` and `immunity deployments` on a store alembic made, with a local target."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from immunity.cli.main import app
from immunity.examples.seeded_bugs import seed_repo
from immunity.models.settings import get_settings
from immunity.tasks.deploy.targets.local import current_ref, stop_local
from immunity.tasks.shared.target import free_port

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def local_target(
    fresh_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str]]:
    """A local target `local` serving `production` from a new repository: (its sha, its URL)."""
    sha = seed_repo(tmp_path / "repo")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    target = {"kind": "local_command", "environment": "production", "port": port}
    monkeypatch.setenv("IMMUNITY_REPO_PATH", str(tmp_path / "repo"))
    monkeypatch.setenv("IMMUNITY_DEPLOY_TARGETS", json.dumps({"local": target}))
    monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps({"production": {"base_url": base_url}}))
    get_settings.cache_clear()
    try:
        yield sha, base_url
    finally:
        stop_local("local", get_settings())
        get_settings.cache_clear()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "240"})


def test_an_unknown_target_exits_2_naming_the_known_ones(local_target: tuple[str, str]) -> None:
    result = invoke("deploy", "--ref", "HEAD", "--target", "nope")
    assert result.exit_code == 2, result.output
    assert "unknown deploy target 'nope' (known: local)" in result.stderr
    assert "Deployment #" not in result.stdout

    listed = invoke("deployments")
    assert listed.exit_code == 0, listed.output
    assert "nope" not in listed.stdout and "local" not in listed.stdout


def test_deploy_to_a_local_target_succeeds_and_is_listed(local_target: tuple[str, str]) -> None:
    sha, base_url = local_target
    result = invoke(
        "deploy", "--ref", "HEAD", "--target", "local", "--no-watch", "--min-readiness", "0"
    )
    assert result.exit_code == 0, result.output
    assert f"Deployment #1 of {sha[:12]} to local: succeeded." in result.stdout
    assert "promoted (no watch)" in result.stdout
    assert current_ref("local", get_settings()) == sha
    assert httpx.get(f"{base_url}/api/health").status_code == 200

    listed = invoke("deployments")
    assert listed.exit_code == 0, listed.output
    [row] = [line for line in listed.stdout.splitlines() if sha[:12] in line]
    assert "local" in row and "production" in row and "succeeded" in row
    assert "promoted (no watch)" in row
