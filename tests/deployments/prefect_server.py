"""A real `prefect server start` on 127.0.0.1 for tests, on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from immunity.tasks.shared.target import free_port

STARTUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class PrefectServer:
    api_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server_env(home: Path, database_url: str | None) -> dict[str, str]:
    # No inherited PREFECT_* at all: no API URL, no database URL, no profile. The server gets
    # its own PREFECT_HOME and so its own SQLite database there, unless a database is given.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_SERVER_LEVEL="INFO",  # the log shows "Scheduled N runs."
        # Defaults are 60 s (every deployment) and 5 s (recently changed deployments).
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="1",
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (one stops `prefect server start`), then SIGKILL to its session after 30 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session, started below
        process.wait(timeout=10)


@contextmanager
def prefect_server(tmp_path: Path, database_url: str | None = None) -> Iterator[PrefectServer]:
    """`prefect server start` on a free port with its own database; stopped afterwards."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = free_port()
    server = PrefectServer(f"http://127.0.0.1:{port}/api", tmp_path / "prefect-server.log")
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=server_env(home, database_url),
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"prefect server exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(f"{server.api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"prefect server not healthy after {STARTUP_TIMEOUT:.0f} s:\n{server.log()}"
                )
            time.sleep(0.5)
        yield server
    finally:
        stop(process)
        # Shown by pytest only when the test fails.
        print(f"---- prefect server log ({server.log_path}) ----\n{server.log()}")
