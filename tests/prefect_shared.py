"""One real Prefect server for a whole test run, shared by every pytest-xdist worker.

The first worker that needs it starts `prefect server start` on a free port of 127.0.0.1 (on a
fresh PostgreSQL database when one is reachable, else on SQLite in the run's directory) under a
file lock; the others read its address from the run's directory. The process that is not a worker
(the xdist controller, or pytest itself without xdist) stops it when the session ends, so nothing
is left running. Tests that read the server back filter by their own flow runs, since other
workers' runs land on it too.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from immunity.tasks.shared.target import free_port
from tests.deployments.prefect_server import server_env

__all__ = ["RUN_DIR_VARIABLE", "shared_server_url", "stop_shared_server"]

# Set once by the process that is not a worker; workers inherit it.
RUN_DIR_VARIABLE = "IMMUNITY_TEST_RUN_DIR"
STARTUP_TIMEOUT_S = 90.0


def _state_file(run_dir: Path) -> Path:
    return run_dir / "prefect-server.json"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _postgres_database(admin_url: str) -> tuple[str, str] | None:
    """(name, asyncpg URL) of a fresh database for the server, or None without PostgreSQL."""
    name = f"prefect_tests_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    host = admin_url.split("://", 1)[1].rsplit("/", 1)[0]
    return name, f"postgresql+asyncpg://{host}/{name}"


def _start(run_dir: Path, admin_url: str) -> dict[str, object]:
    database = _postgres_database(admin_url)
    home = run_dir / "prefect-server-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    log_path = run_dir / "prefect-server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
            + ["--port", str(port)],
            env=server_env(home, database[1] if database else None),
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state: dict[str, object] = {
        "api_url": f"http://127.0.0.1:{port}/api",
        "pid": process.pid,
        "database": database[0] if database else None,
        "log": str(log_path),
    }
    # Written before the wait, so the session's end stops it even if it never became healthy.
    _state_file(run_dir).write_text(json.dumps(state))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited: {log_path.read_text(errors='replace')}")
        try:
            if httpx.get(f"{state['api_url']}/health", timeout=2).status_code == 200:
                return state
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"prefect server not healthy: {log_path.read_text(errors='replace')}")


def shared_server_url(run_dir: Path, admin_url: str) -> str:
    """Return the API URL of the run's Prefect server, starting it if no worker has yet."""
    with _locked(run_dir / "prefect-server.lock"):
        state_file = _state_file(run_dir)
        if state_file.exists():
            return str(json.loads(state_file.read_text())["api_url"])
        return str(_start(run_dir, admin_url)["api_url"])


def _exited(pid: int) -> bool:
    try:  # our own child (pytest without xdist): reap it, or it lingers as a zombie
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # a worker's child, adopted by init once that worker ended
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def stop_shared_server(run_dir: Path, admin_url: str) -> None:
    """Stop the run's Prefect server (if one was started) and drop its database."""
    state_file = _state_file(run_dir)
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    pid = int(state["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)  # its own session: uvicorn's children go too
        for _ in range(150):
            if _exited(pid):
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    state_file.unlink()
    if state.get("database"):
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{state["database"]}" WITH (FORCE)')
