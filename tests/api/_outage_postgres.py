"""A private, throwaway PostgreSQL server that a test may stop and restart at will.

The machine's shared server on :5432 serves other tests at the same time, so a fault test must
never restart it. This one lives in a temporary directory, listens on a free port of 127.0.0.1
only (plus a unix socket in its own directory), trusts local connections, and is removed
afterwards. initdb refuses to run as root, so as root every server command runs as the
`postgres` OS user (`runuser -u postgres --`) on a directory owned by that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg

__all__ = ["PrivatePostgres", "find_server_binaries"]

SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
OS_USER = "postgres"
SUPERUSER = "postgres"
COMMAND_TIMEOUT_S = 60.0


def _version(bindir: str) -> tuple[int, ...]:
    found = re.search(r"/postgresql/([\d.]+)/bin$", bindir)
    return tuple(int(part) for part in found.group(1).split(".")) if found else (0,)


def find_server_binaries() -> Path | None:
    """Return the newest directory holding initdb, pg_ctl and postgres, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        if all(os.access(Path(candidate) / tool, os.X_OK) for tool in SERVER_TOOLS):
            return Path(candidate)
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def _check_os_user() -> None:
    if not _is_root():
        return
    if shutil.which("runuser") is None:
        raise RuntimeError("running as root and `runuser` is missing (initdb refuses root)")
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        raise RuntimeError(f"running as root and there is no {OS_USER!r} OS user") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of our own: `start()` it, `restart()` it, `close()` it."""

    bindir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        """The URL of `database` on this server, over TCP with trust auth."""
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def start(cls, bindir: Path) -> PrivatePostgres:
        """Create a cluster in a fresh temporary directory and start it on a free port."""
        _check_os_user()
        root = Path(tempfile.mkdtemp(prefix="immunity-pg-"))
        server = cls(bindir, root, _free_port())
        try:
            if _is_root():
                record = pwd.getpwnam(OS_USER)
                os.chown(root, record.pw_uid, record.pw_gid)
            server._run(
                "initdb",
                f"--pgdata={server.data_dir}",
                "--auth=trust",
                f"--username={SUPERUSER}",
                "--encoding=UTF8",
                "--no-sync",  # a throwaway cluster: no need to flush its creation to disk
            )
            server.start_server()
        except BaseException:
            server.close()
            raise
        return server

    def _options(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"

    def start_server(self) -> None:
        """Start the stopped server and wait until it accepts connections."""
        self._run(
            "pg_ctl",
            f"--pgdata={self.data_dir}",
            f"--log={self.log_file}",
            f"--options={self._options()}",
            "--wait",
            "--timeout=30",
            "start",
        )

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends sessions and checkpoints, `immediate` crashes it."""
        self._run("pg_ctl", f"--pgdata={self.data_dir}", f"--mode={mode}", "--wait", "stop")

    def restart(self, pause_s: float = 1.0, mode: str = "fast") -> None:
        """Stop the server, leave the store away for `pause_s`, start it again."""
        self.stop_server(mode)
        time.sleep(pause_s)
        self.start_server()

    def is_running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        return pid_file.exists()

    def close(self) -> None:
        """Stop the server if it runs and remove every file it had."""
        try:
            if self.is_running():
                # A server that died on its own leaves a stale pid file that pg_ctl trips on.
                with contextlib.suppress(RuntimeError):
                    self.stop_server("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- databases ------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create database `name`; return its SQLAlchemy URL."""
        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- running the server's tools -------------------------------------------------------------

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if _is_root():
            command = ["runuser", "-u", OS_USER, "--", *command]
        # stdin/stdout/stderr: files and DEVNULL, never pipes a daemonised postmaster could hold.
        with tempfile.TemporaryFile() as output:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
            if done.returncode != 0:
                output.seek(0)
                said = output.read().decode(errors="replace")[-2000:]
                log = self._log_tail()
                raise RuntimeError(f"{tool} {args[-1]} failed ({done.returncode}):\n{said}\n{log}")

    def _log_tail(self) -> str:
        try:
            return "server log:\n" + self.log_file.read_text(errors="replace")[-2000:]
        except OSError:
            return ""
