"""`immunity up`: a Prefect server, the API and the deployments together; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from immunity.tasks.shared.target import free_port

PROJECT = Path(__file__).resolve().parents[2]


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def test_up_starts_every_piece_and_sigterm_stops_them_with_deployments_paused(
    tmp_path: Path,
) -> None:
    prefect_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "IMMUNITY_"))}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        IMMUNITY_DATA_DIR=str(tmp_path / "data"),
        IMMUNITY_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}",
    )
    command = [sys.executable, "-m", "immunity.cli.main", "up"]
    ports = ["--prefect-port", str(prefect_port), "--api-port", str(api_port)]
    up = subprocess.Popen(
        [*command, *ports],
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    logs = tmp_path / "data" / "logs"
    try:
        deadline = time.monotonic() + 120
        while "Your deployments" not in _read(logs / "serve.log") and "serving" not in _read(
            logs / "serve.log"
        ):
            assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
            assert time.monotonic() < deadline, "immunity up did not start serving"
            time.sleep(0.5)
        assert _get(f"http://127.0.0.1:{prefect_port}/api/health") == 200
        assert _get(f"http://127.0.0.1:{api_port}/api/v1/health") == 200
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=10)
    text = out.decode()
    assert up.returncode == 0, text
    assert "stopped: serve (deployments paused), api, prefect server" in text
    assert "All deployments have been paused!" in _read(logs / "serve.log")
    assert _get(f"http://127.0.0.1:{prefect_port}/api/health") is None
    assert _get(f"http://127.0.0.1:{api_port}/api/v1/health") is None


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
