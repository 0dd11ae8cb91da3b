"""A copy of the target service started locally from a working copy, to run a test against it."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from immunity.models.errors import UnavailableError

__all__ = ["TargetError", "free_port", "running_target", "wait_healthy"]

_LOG_TAIL_CHARS = 2_000


class TargetError(UnavailableError):
    """The copy could not be started (bad command, crash at start-up, never healthy)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: Path) -> str:
    text = log.read_text(encoding="utf-8", errors="replace")
    return text[-_LOG_TAIL_CHARS:].strip()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # its own session: a wrapper's children go too
    except ProcessLookupError:
        pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=10)
    _signal_group(process, signal.SIGKILL)  # anything of the group that outlived its leader


def wait_healthy(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise TargetError(f"the copy exited with {process.returncode}: {_tail(log)}")
            try:
                if client.get(url).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise TargetError(f"the copy was not healthy at {url} within {timeout_s:g} s: {_tail(log)}")


@contextmanager
def running_target(
    workdir: Path, *, command: str, health_path: str, timeout_s: float
) -> Iterator[str]:
    """Yield the base URL of the target started from `workdir`; stop it on the way out.

    `command` may use `{python}` (this interpreter) and `{port}` (a free local port); the copy
    runs with `workdir` first on PYTHONPATH so it imports its own code, not an installed one.
    """
    port = free_port()
    argv = shlex.split(command.format(python=shlex.quote(sys.executable), port=port))
    if not argv:
        raise TargetError("no command starts the target (IMMUNITY_TARGET_COMMAND is empty)")
    paths = [str(workdir), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with tempfile.TemporaryDirectory(prefix="immunity-target-") as scratch:
        log = Path(scratch) / "target.log"
        with log.open("wb") as out:
            try:
                process = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                raise TargetError(f"cannot start {argv[0]!r}: {error}") from error
            try:
                base_url = f"http://127.0.0.1:{port}"
                wait_healthy(process, base_url + health_path, log, timeout_s)
                yield base_url
            finally:
                _stop(process)
