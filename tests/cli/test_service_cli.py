"""Opening the API from the CLI: tokens and DSNs land in .env in a form Settings reads back."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from immunity.api.auth import token_matches
from immunity.cli.main import app
from immunity.models.settings import Settings

runner = CliRunner()


def test_token_create_keeps_only_the_hash_and_settings_accept_the_token(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("IMMUNITY_GENERATION_THRESHOLD=4\n")
    tokens = []
    for n in range(2):
        command = ["token", "create", "--name", f"svc-{n}", "--env-file", str(env)]
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        tokens.append(re.search(r"^imm_\S+$", result.output, re.MULTILINE).group(0))
    text = env.read_text()
    assert all(token not in text for token in tokens)  # the secret itself is never stored
    settings = Settings(_env_file=env)
    assert settings.generation_threshold == 4 and len(settings.api_tokens) == 2
    assert all(token_matches(token, settings.api_tokens) for token in tokens)
    assert not token_matches("imm_someone_else", settings.api_tokens)


def test_dsn_create_adds_a_project_key(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    result = runner.invoke(app, ["dsn", "create", "--project", "42", "--env-file", str(env)])
    assert result.exit_code == 0, result.output
    key = re.search(r"http://(\w+)@127.0.0.1:8100/42", result.output).group(1)
    assert Settings(_env_file=env).sentry_projects == {"42": key}
