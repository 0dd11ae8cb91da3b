"""A local target: the service restarted from a git worktree of the ref, on the target's port.

Under `<data_dir>/targets/`: `<name>.pid` (the running copy), `<name>.ref` (its sha), `<name>.log`
(its output), `<name>.lock`, and the worktrees `<name>/<sha[:12]>/` (the current one and the one
before it are kept, so a rollback starts at once). The copy runs in its own session: it outlives
the deploy call and this process, and stopping it signals its whole process group.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from immunity.models.deploy_targets import TargetOutcome
from immunity.models.settings import DeployTarget, Settings
from immunity.tasks.deploy.targets._common import TargetConfigError, require
from immunity.tasks.heal.git_repo import GitError, git_output, head, is_repo
from immunity.tasks.shared.target import TargetError, wait_healthy

__all__ = ["check_local", "current_ref", "deploy_local", "stop_local", "targets_dir"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_STOP_WAIT_S = 10.0
_PORT_WAIT_S = 2.0
_KEEP = 2  # worktrees: the current one and the one before
# The copies this process started, so that stopping one also reaps it (no zombie left behind).
_children: dict[int, subprocess.Popen[bytes]] = {}


def targets_dir(settings: Settings) -> Path:
    """Return the folder holding local targets' pid, ref and log files and their worktrees."""
    return settings.data_dir / "targets"


def check_local(name: str, target: DeployTarget, settings: Settings) -> Path:
    """Return the repository the target deploys from; TargetConfigError if anything is missing."""
    if not _NAME.fullmatch(name):
        raise TargetConfigError(f"a local target's name must be a plain file name, not {name!r}")
    require(name, target, "port", "command", "health_path")
    repo = target.repo or settings.repo_path
    if repo is None:
        raise TargetConfigError(f"deploy target {name!r} needs repo (or IMMUNITY_REPO_PATH)")
    try:
        argv = shlex.split(target.command.format(python="python", port=target.port))
    except (KeyError, IndexError, ValueError) as error:
        raise TargetConfigError(
            f"deploy target {name!r}: command may use only {{python}} and {{port}}: {error!r}"
        ) from error
    if not argv:
        raise TargetConfigError(f"deploy target {name!r} has an empty command")
    return repo


def current_ref(name: str, settings: Settings) -> str | None:
    """Return the sha the target last came up at (None if it never did or was stopped)."""
    try:
        return (targets_dir(settings) / f"{name}.ref").read_text().strip() or None
    except FileNotFoundError:
        return None


def stop_local(name: str, settings: Settings) -> None:
    """Stop the target's copy (its whole process group) and forget its ref; idempotent."""
    folder = targets_dir(settings)
    if not folder.is_dir():
        return
    with _locked(folder, name):
        _stop_recorded(folder, name)


def deploy_local(name: str, target: DeployTarget, ref: str, settings: Settings) -> TargetOutcome:
    """Return ok once the copy at `ref` answers its health path on the target's port.

    The running copy is stopped first (they share the port). If the new one does not come up,
    nothing runs afterwards and the detail says so, with the end of its log.
    """
    repo = check_local(name, target, settings)
    port = target.port
    assert port is not None  # check_local requires it
    folder = targets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder, name):
        try:
            sha = head(repo, ref)
            copy = _worktree_at(repo, folder / name / sha[:12], sha)
        except GitError as error:
            return TargetOutcome(ok=False, ref=ref, detail=f"cannot check out {ref!r}: {error}")
        previous = current_ref(name, settings)
        stopped = _stop_recorded(folder, name)
        _prune(repo, folder / name, keep={sha, previous})
        before = (
            f"the copy at {previous[:12]} was stopped first, so nothing runs on port {port} now"
            if stopped and previous
            else f"nothing runs on port {port} now"
        )
        if not _port_free(port, _PORT_WAIT_S):
            return TargetOutcome(
                ok=False, ref=sha, detail=f"port {port} is taken by another process; {before}"
            )
        log = folder / f"{name}.log"
        try:
            process = _start(target.command, copy, port, log)
        except OSError as error:
            return TargetOutcome(
                ok=False, ref=sha, detail=f"cannot start the copy: {error}; {before}"
            )
        _write_pid(folder / f"{name}.pid", process.pid)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(process, base_url + target.health_path, log, target.timeout_s)
        except TargetError as error:
            _stop_recorded(folder, name)
            return TargetOutcome(
                ok=False, ref=sha, detail=f"{sha[:12]} ({ref}) did not come up: {error}; {before}"
            )
        (folder / f"{name}.ref").write_text(sha + "\n")
        replaced = f"replacing {previous[:12]}" if stopped and previous else "nothing ran before"
        return TargetOutcome(
            ok=True,
            ref=sha,
            external_id=str(process.pid),
            external_url=base_url,
            detail=f"{name} runs {sha[:12]} ({ref}) on port {port}, {replaced}",
        )


@contextmanager
def _locked(folder: Path, name: str) -> Iterator[None]:
    # One deploy or stop of a target at a time, across threads and processes.
    with (folder / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _worktree_at(repo: Path, path: Path, sha: str) -> Path:
    """Return a detached worktree of `sha` at `path`, reusing one left there unchanged."""
    if path.exists():
        if (
            is_repo(path)
            and (git_output(path, "rev-parse", "HEAD") or "").strip() == sha
            and git_output(path, "status", "--porcelain", "--untracked-files=no") == ""
        ):
            return path
        _remove_worktree(repo, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    git_output(repo, "worktree", "prune")
    if git_output(repo, "worktree", "add", "--detach", "--quiet", str(path), sha) is None:
        raise GitError(f"git could not add a worktree of {sha[:12]} at {path}")
    return path


def _remove_worktree(repo: Path, path: Path) -> None:
    git_output(repo, "worktree", "remove", "--force", str(path))
    shutil.rmtree(path, ignore_errors=True)


def _prune(repo: Path, folder: Path, *, keep: set[str | None]) -> None:
    """Remove the target's worktrees but those of the shas in `keep` (at most `_KEEP`)."""
    names = {sha[:12] for sha in keep if sha}
    assert len(names) <= _KEEP
    for path in folder.iterdir():
        if path.name not in names:
            _remove_worktree(repo, path)
    git_output(repo, "worktree", "prune")


def _start(command: str, copy: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    argv = shlex.split(command.format(python=shlex.quote(sys.executable), port=port))
    paths = [str(copy), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    _children[process.pid] = process
    return process


def _port_free(port: int, wait_s: float) -> bool:
    """Return whether `port` can be listened on (waiting up to `wait_s` for a closing one)."""
    deadline = time.monotonic() + wait_s
    while True:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                probe.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
        time.sleep(0.05)


# --- the pid file: the process id and its start time, so a reused pid is never signalled ---------


def _started(pid: int) -> str | None:
    """Return the process's start time in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _write_pid(path: Path, pid: int) -> None:
    path.write_text(json.dumps({"pid": pid, "started": _started(pid)}) + "\n")


def _stop_recorded(folder: Path, name: str) -> bool:
    """Stop the copy the pid file names, if it still runs; return whether one did."""
    pid_file, ref_file = folder / f"{name}.pid", folder / f"{name}.ref"
    try:
        record = json.loads(pid_file.read_text())
        pid, started = int(record["pid"]), record.get("started")
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pid, started = None, None
    # Our own child's group is swept even after its leader exited; another's only while its
    # leader is the very process the file recorded (a pid may have been reused since).
    ours = pid is not None and (pid in _children or (_alive(pid) and _is_recorded(pid, started)))
    running = ours and pid is not None and _alive(pid)
    if ours and pid is not None:
        _stop_group(pid)
    pid_file.unlink(missing_ok=True)
    ref_file.unlink(missing_ok=True)
    return running


def _is_recorded(pid: int, started: str | None) -> bool:
    try:
        leads_its_group = os.getpgid(pid) == pid  # as a copy started in its own session does
    except ProcessLookupError:
        return False
    return leads_its_group and (started is None or _started(pid) == started)


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A killed orphan stays a zombie until whoever adopted it reaps it: dead all the same.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_group(pid: int) -> None:
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, _STOP_WAIT_S):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, _STOP_WAIT_S)
    _signal_group(pid, signal.SIGKILL)  # anything of the group that outlived its leader
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=_STOP_WAIT_S)
