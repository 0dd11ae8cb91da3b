"""`immunity up`: a Prefect server, the immunity API and every deployment, started and stopped
together, for a team trying immunity for real on one machine.

Each piece is its own process (logs under `<data dir>/logs/`). SIGTERM or Ctrl-C stops them in
reverse order: `serve` first (it pauses its deployments' schedules on the way out), then the API,
then the server. If one piece dies, the others are stopped and the reason is shown.

With an auth string (`user:password`) the Prefect server and its UI ask for it
(`PREFECT_SERVER_API_AUTH_STRING`), and the API and `serve` present it (`PREFECT_API_AUTH_STRING`):
the UI's approval form records the reviewer name typed into it, so whoever reaches the UI can
decide fixes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from immunity.models.errors import UnavailableError

__all__ = ["Piece", "Stack", "StackError"]

STOP_TIMEOUT_S = 30.0


class StackError(UnavailableError):
    """A piece did not start or died."""


@dataclass
class Piece:
    """One process of the stack and how to tell it is ready."""

    name: str
    argv: list[str]
    log: Path
    ready_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def tail(self, chars: int = 2_000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:].strip()


def _wait_ready(piece: Piece, timeout_s: float) -> None:
    assert piece.process is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if piece.process.poll() is not None:
            raise StackError(
                f"{piece.name} exited with {piece.process.returncode}:\n{piece.tail()}"
            )
        if piece.ready_url is None:
            return
        try:
            if httpx.get(piece.ready_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StackError(f"{piece.name} was not ready within {timeout_s:.0f} s:\n{piece.tail()}")


def _stop(piece: Piece) -> None:
    process = piece.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class Stack:
    """The pieces, started in order and stopped in reverse."""

    def __init__(
        self,
        *,
        host: str,
        prefect_port: int,
        api_port: int,
        logs: Path,
        prefect_database_url: str | None = None,
        prefect_auth_string: str | None = None,
    ) -> None:
        self.prefect_url = f"http://{host}:{prefect_port}"
        self.api_url = f"http://{host}:{api_port}"
        logs.mkdir(parents=True, exist_ok=True)
        # The UI asks this server, whatever port it is on and whatever the shell points at.
        server_env = {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": f"{self.prefect_url}/api",
        }
        if prefect_database_url:
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = prefect_database_url
        # The API and the deployments talk to this server (the API resumes paused runs on it).
        client_env = {"PREFECT_API_URL": f"{self.prefect_url}/api"}
        if prefect_auth_string:
            # Basic auth on every route but health; the clients send the same string.
            server_env["PREFECT_SERVER_API_AUTH_STRING"] = prefect_auth_string
            client_env["PREFECT_API_AUTH_STRING"] = prefect_auth_string
        python = sys.executable
        self.pieces = [
            Piece(
                "prefect server",
                [python, "-m", "prefect", "server", "start", "--host", host],
                logs / "prefect-server.log",
                ready_url=f"{self.prefect_url}/api/health",
                env=server_env,
            ),
            Piece(
                "immunity api",
                [python, "-m", "immunity.cli.main", "api", "--host", host, "--port", str(api_port)],
                logs / "api.log",
                ready_url=f"{self.api_url}/api/v1/health",
                env=client_env,
            ),
            Piece(
                "immunity serve",
                [python, "-m", "immunity.cli.main", "serve"],
                logs / "serve.log",
                env=client_env,
            ),
        ]
        self.pieces[0].argv += ["--port", str(prefect_port)]
        self._stopping = threading.Event()

    def start(
        self, *, timeout_s: float = 60, on_ready: Callable[[Piece], None] | None = None
    ) -> None:
        """Start every piece in order, each once the previous is ready; StackError if one fails."""
        for piece in self.pieces:
            with piece.log.open("ab") as log:
                piece.process = subprocess.Popen(
                    piece.argv,
                    env={**os.environ, **piece.env},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                _wait_ready(piece, timeout_s)
            except StackError:
                self.stop()
                raise
            if on_ready is not None:
                on_ready(piece)

    def watch(self) -> None:
        """Block until asked to stop (SIGTERM, Ctrl-C, `request_stop`) or a piece dies."""
        while not self._stopping.wait(0.5):
            for piece in self.pieces:
                if piece.process is not None and piece.process.poll() is not None:
                    self.stop()
                    raise StackError(
                        f"{piece.name} exited with {piece.process.returncode}:\n{piece.tail()}"
                    )

    def request_stop(self, *_: object) -> None:
        """Ask `watch` to return (safe from a signal handler)."""
        self._stopping.set()

    def stop(self) -> None:
        """Stop the pieces in reverse order: deployments first, the server last."""
        for piece in reversed(self.pieces):
            _stop(piece)
