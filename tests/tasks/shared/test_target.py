"""A local copy of the target: started from a working copy, healthy or explained, always stopped."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from immunity.tasks.shared.target import TargetError, running_target
from tests.processes import gone, refused

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SAMPLE_SERVICE = "{python} -m examples.sample_service --port {port}"
# Serves on {port} after writing its process id where the test can read it.
RECORDING_SERVER = """\
import os, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
Path(sys.argv[2]).write_text(str(os.getpid()))
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), SimpleHTTPRequestHandler).serve_forever()
"""


def test_the_sample_service_starts_from_the_project_and_answers() -> None:
    with running_target(
        PROJECT_ROOT, command=SAMPLE_SERVICE, health_path="/api/health", timeout_s=30
    ) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        response = httpx.get(f"{url}/api/health", timeout=5)
        assert response.status_code == 200
    assert refused(f"{url}/api/health")


@pytest.fixture
def recording_server(tmp_path: Path) -> tuple[Path, str, Path]:
    """(workdir, command, pid file) of a plain HTTP server that records its process id."""
    (tmp_path / "serve.py").write_text(RECORDING_SERVER)
    pid_file = tmp_path / "server.pid"
    return tmp_path, f"{{python}} serve.py {{port}} {pid_file}", pid_file


def test_the_process_is_gone_after_the_block(recording_server: tuple[Path, str, Path]) -> None:
    workdir, command, pid_file = recording_server
    with running_target(workdir, command=command, health_path="/", timeout_s=30) as url:
        pid = int(pid_file.read_text())
        assert not gone(pid)
    assert gone(pid)
    assert refused(url)


def test_the_process_is_gone_even_when_the_body_raises(
    recording_server: tuple[Path, str, Path],
) -> None:
    workdir, command, pid_file = recording_server
    with (
        pytest.raises(RuntimeError, match="the test against it blew up"),
        running_target(workdir, command=command, health_path="/", timeout_s=30) as url,
    ):
        pid = int(pid_file.read_text())
        raise RuntimeError("the test against it blew up")
    assert gone(pid)
    assert refused(url)


def test_a_command_that_exits_at_once_is_explained_by_its_output(tmp_path: Path) -> None:
    command = "{python} -c \"import sys; print('cannot open the database'); sys.exit(3)\""
    with (
        pytest.raises(TargetError, match=r"exited with 3: cannot open the database"),
        running_target(tmp_path, command=command, health_path="/", timeout_s=30),
    ):
        pytest.fail("the block must not run")


def test_a_command_that_never_gets_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    command = '{python} -c "import os, time; print(os.getpid(), flush=True); time.sleep(30)"'
    started = time.monotonic()
    with (
        pytest.raises(
            TargetError, match=r"not healthy at http://127\.0\.0\.1:\d+/ within 1 s: "
        ) as refused,
        running_target(tmp_path, command=command, health_path="/", timeout_s=1),
    ):
        pytest.fail("the block must not run")
    assert time.monotonic() - started < 10
    # The output tail is the process's own id: it was stopped, not left sleeping.
    pid = int(str(refused.value).rsplit(": ", 1)[1])
    assert gone(pid)


def test_no_command_or_a_missing_program_is_a_target_error(tmp_path: Path) -> None:
    with (
        pytest.raises(TargetError, match="no command starts the target"),
        running_target(tmp_path, command="  ", health_path="/", timeout_s=1),
    ):
        pytest.fail("the block must not run")
    with (
        pytest.raises(TargetError, match="cannot start 'no-such-program-here'"),
        running_target(tmp_path, command="no-such-program-here", health_path="/", timeout_s=1),
    ):
        pytest.fail("the block must not run")


def test_a_server_started_by_a_wrapper_is_gone_after_the_block(
    recording_server: tuple[Path, str, Path],
) -> None:
    workdir, command, pid_file = recording_server
    wrapped = f"sh -c '{command} & wait'"
    try:
        with running_target(workdir, command=wrapped, health_path="/", timeout_s=30) as url:
            pid = int(pid_file.read_text())
        assert refused(url)
        assert gone(pid)
    finally:
        if pid_file.exists() and not gone(pid := int(pid_file.read_text())):
            os.kill(pid, signal.SIGTERM)  # the orphan this test made
