"""`immunity up` with IMMUNITY_PREFECT_AUTH_STRING: the Prefect server (whose UI's approval form
takes any reviewer name) asks for it, and the pieces immunity starts present it."""

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
AUTH_STRING = "reviewers:s3cret-for-the-ui"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_up_puts_the_prefect_server_behind_the_auth_string_and_its_pieces_present_it(
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
        IMMUNITY_PREFECT_AUTH_STRING=AUTH_STRING,
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
    prefect = f"http://127.0.0.1:{prefect_port}/api"
    serve_log = tmp_path / "data" / "logs" / "serve.log"
    try:
        deadline = time.monotonic() + 120
        # `serve` registers its deployments on the server: only possible with the auth string.
        while "Your deployments" not in _read(serve_log) and "serving" not in _read(serve_log):
            assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
            assert time.monotonic() < deadline, "immunity up did not start serving"
            time.sleep(0.5)
        user, password = AUTH_STRING.split(":")
        anonymous = httpx.post(f"{prefect}/deployments/filter", json={}, timeout=10)
        wrong = httpx.post(
            f"{prefect}/deployments/filter", json={}, auth=(user, "guess"), timeout=10
        )
        allowed = httpx.post(
            f"{prefect}/deployments/filter", json={}, auth=(user, password), timeout=10
        )
        health = httpx.get(f"{prefect}/health", timeout=10)
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(timeout=10)
    print("prefect server:", anonymous.status_code, wrong.status_code, allowed.status_code)
    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert allowed.status_code == 200 and len(allowed.json()) >= 1  # serve's deployments
    assert health.status_code == 200  # probes need no credentials
    text = out.decode()
    assert up.returncode == 0, text
    assert "PREFECT_API_AUTH_STRING" in text and AUTH_STRING not in text
