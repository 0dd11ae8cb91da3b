"""Git as the heal loop needs it: read a proposed diff, try it, commit it on a branch, revert it.

Git does all the parsing (`git apply --numstat --summary -z`, `git apply --check`); this module only
reads git's output. The user's working copy, index and checked-out branch are never touched:
applying and committing happen in a temporary worktree that is always removed.

Every command runs with hooks off (`core.hooksPath` pointed at the null device): a proposed diff may
rewrite hook configuration (`.pre-commit-config.yaml`), which would otherwise run as we commit it.
Every failure is a `GitError` whose message carries git's own words.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from immunity.models.errors import UnavailableError

__all__ = [
    "GitError",
    "DiffStats",
    "apply",
    "apply_check",
    "branch_exists",
    "changed_files",
    "commit_fix",
    "diff_stats",
    "git_output",
    "head",
    "is_repo",
    "revert_commit",
    "worktree",
]

GIT_TIMEOUT_S = 120
_MAX_STDERR = 2_000
# Set inside git hooks (pre-commit runs us with GIT_INDEX_FILE): they would point git at another
# repository or index than the one asked for.
_LOCATING_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
_LINK_MODES = frozenset({"120000", "160000"})  # a symbolic link, a submodule
_NUMSTAT = re.compile(r"(\d+|-)\t(\d+|-)\t([^\0]*)\0")
_CREATE_DELETE = re.compile(r" (create|delete)(?: mode (\d{6}))? (.+)")
_RENAME_COPY = re.compile(r" (?:rename|copy) (.+) \(\d+%\)")
_MODE_CHANGE = re.compile(r" mode change (\d{6}) => (\d{6})(?: (.+))?")
_REWRITE = re.compile(r" rewrite .+ \(\d+%\)")
_AUTHOR = re.compile(r"\s*([^<>]*[^<>\s])\s*<([^<>\s]+)>\s*")


class GitError(UnavailableError):
    """A git command failed, or its answer was not what we can use; the message says why."""


@dataclass
class DiffStats:
    """What a diff touches, as `git apply --numstat --summary` reads it."""

    files: list[str]  # every path, both sides of a rename or copy
    added: int
    removed: int
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    binary: bool = False
    mode_changes: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # paths that would become a symlink/submodule


def _git(
    repo: Path,
    *args: str,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    environ = {key: value for key, value in os.environ.items() if key not in _LOCATING_VARS}
    environ.update(env or {})
    command = ["git", "-C", str(repo), "-c", f"core.hooksPath={os.devnull}", *args]
    data = None if stdin is None else stdin.encode("utf-8", "surrogateescape")
    try:
        done = subprocess.run(
            command, input=data, capture_output=True, env=environ, timeout=GIT_TIMEOUT_S
        )
    except FileNotFoundError as error:
        raise GitError("git is not installed (no `git` on PATH)") from error
    except subprocess.TimeoutExpired as error:
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT_S} s") from error
    if check and done.returncode != 0:
        raise GitError(f"git {args[0]} failed: {_stderr(done)}")
    return done


def _stderr(done: subprocess.CompletedProcess[bytes]) -> str:
    text = done.stderr.decode("utf-8", "replace").strip()
    return text[:_MAX_STDERR] if text else f"exit status {done.returncode}, no message"


def _stdout(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stdout.decode("utf-8", "surrogateescape")


def git_output(repo: Path, *args: str) -> str | None:
    """Return what a read-only git command prints, or None when it fails."""
    done = _git(repo, *args, check=False)
    return _stdout(done) if done.returncode == 0 else None


def head(repo: Path, ref: str = "HEAD") -> str:
    """Return the full sha of the commit `ref` names in `repo`."""
    done = _git(repo, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}", check=False)
    if done.returncode != 0:
        raise GitError(f"no commit {ref!r} in {repo}: {_stderr(done)}")
    return _stdout(done).strip()


def is_repo(path: Path) -> bool:
    """Return whether `path` is the top folder of a git working copy (not a folder inside one)."""
    done = _git(path, "rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0:
        return False
    return Path(_stdout(done).strip()).resolve() == Path(path).resolve()


def diff_stats(repo: Path, diff: str) -> DiffStats:
    """Return the paths and line counts of `diff` as git reads it; changes nothing."""
    done = _git(repo, "apply", "--numstat", "--summary", "-z", stdin=diff, check=False)
    if done.returncode != 0:
        raise GitError(f"the diff does not parse: {_stderr(done)}")
    return _read_stats(_stdout(done))


def _read_stats(output: str) -> DiffStats:
    # The numstat records come first, NUL-terminated, one per patch; then the summary, one
    # unquoted line per created/deleted/renamed/copied file or mode change.
    names: list[str] = []
    added = removed = 0
    binary = False
    position = 0
    while record := _NUMSTAT.match(output, position):
        plus, minus, name = record.groups()
        if plus == "-" or minus == "-":
            binary = True
        else:
            added += int(plus)
            removed += int(minus)
        names.append(name)
        position = record.end()
    if not names:
        raise GitError("the diff does not parse: git found no file in it")
    known = set(names)
    stats = DiffStats(files=[], added=added, removed=removed, binary=binary)
    sources: dict[str, str] = {}  # rename/copy target -> source
    last_target: str | None = None
    for line in output[position:].split("\n"):
        if not line or _REWRITE.fullmatch(line):
            continue
        if match := _CREATE_DELETE.fullmatch(line):
            kind, mode, name = match.groups()
            _expect_known(name, known, line)
            (stats.created if kind == "create" else stats.deleted).append(name)
            if kind == "create" and mode in _LINK_MODES:
                stats.links.append(name)
        elif match := _RENAME_COPY.fullmatch(line):
            source, last_target = _rename_sides(match.group(1), known, line)
            sources[last_target] = source
        elif match := _MODE_CHANGE.fullmatch(line):
            name = match.group(3) or last_target
            if name is None:
                raise GitError(f"the diff does not parse: cannot tell whose mode {line!r} is")
            _expect_known(name, known, line)
            stats.mode_changes.append(name)
            if match.group(2) in _LINK_MODES:
                stats.links.append(name)
        else:
            raise GitError(f"the diff does not parse: unexpected git summary {line!r}")
    for name in names:
        stats.files.extend(path for path in (sources.get(name), name) if path is not None)
    stats.files = list(dict.fromkeys(stats.files))
    return stats


def _expect_known(name: str, known: set[str], line: str) -> None:
    if name not in known:
        raise GitError(f"the diff does not parse: git's summary {line!r} names an unknown path")


def _rename_sides(body: str, known: set[str], line: str) -> tuple[str, str]:
    # git prints `old => new` or, with a shared folder prefix, `pre/{old => new}`, unquoted: a
    # name may itself hold " => " or braces, so keep the one reading whose target git listed.
    readings: set[tuple[str, str]] = set()
    arrows = [m.start() for m in re.finditer(" => ", body)]
    readings.update((body[:i], body[i + 4 :]) for i in arrows)
    if body.endswith("}"):
        for brace in (i for i, char in enumerate(body) if char == "{"):
            prefix, inner = body[:brace], body[brace + 1 : -1]
            if prefix.endswith("/"):
                for m in re.finditer(" => ", inner):
                    readings.add((prefix + inner[: m.start()], prefix + inner[m.end() :]))
    readings = {(old, new) for old, new in readings if new in known}
    if len(readings) != 1:
        raise GitError(f"the diff does not parse: cannot read the rename {line!r}")
    return readings.pop()


@contextmanager
def worktree(repo: Path, ref: str = "HEAD") -> Iterator[Path]:
    """Yield a temporary detached working copy of `ref`; it is removed afterwards, even on error."""
    with _worktree(repo, head(repo, ref), detach=True) as path:
        yield path


@contextmanager
def _worktree(repo: Path, ref: str, *, detach: bool) -> Iterator[Path]:
    # Not detached, `ref` is a branch: the worktree checks it out and commits there move it.
    parent = Path(tempfile.mkdtemp(prefix="immunity-worktree-"))
    path = parent / "copy"
    try:
        _git(repo, "worktree", "add", "--quiet", *(["--detach"] if detach else []), str(path), ref)
        yield path
    finally:
        _git(repo, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git(repo, "worktree", "prune", check=False)


def apply_check(path: Path, diff: str) -> str | None:
    """Return None when `diff` applies cleanly to the working copy at `path`, else git's message."""
    done = _git(path, "apply", "--check", stdin=diff, check=False)
    return None if done.returncode == 0 else _stderr(done)


def apply(path: Path, diff: str, *, index: bool = False) -> None:
    """Apply `diff` to the working copy at `path` (and its index when `index`)."""
    _git(path, "apply", *(["--index"] if index else []), stdin=diff)


def branch_exists(repo: Path, branch: str) -> bool:
    """Return whether `repo` has a local branch of that name."""
    done = _git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
    if done.returncode not in (0, 1):
        raise GitError(f"git show-ref failed: {_stderr(done)}")
    return done.returncode == 0


def changed_files(repo: Path, commit: str) -> list[str]:
    """Return the paths `commit` changes, both sides of a rename."""
    sha = head(repo, commit)
    args = ("diff-tree", "-r", "--root", "--no-commit-id", "--name-only", "-z", "--no-renames")
    done = _git(repo, *args, sha)
    return [name for name in _stdout(done).split("\0") if name]


def commit_fix(
    repo: Path, *, base_ref: str, branch: str, diff: str, message: str, author: str
) -> str:
    """Return the sha of a commit of `diff` on `base_ref`, on the new branch `branch`."""
    identity = _identity(author)
    _check_branch_name(repo, branch)
    if branch_exists(repo, branch):
        raise GitError(f"branch {branch} already exists")
    with _worktree(repo, head(repo, base_ref), detach=True) as copy:
        # --index also stages new files a .gitignore pattern would hide from `git add`.
        apply(copy, diff, index=True)
        sha = _commit(copy, message, identity)
        # Without --force: refuses if the branch appeared meanwhile.
        _git(repo, "branch", "--no-track", branch, sha)
    return sha


def revert_commit(repo: Path, *, commit: str, branch: str, message: str, author: str) -> str:
    """Return the sha of a new commit on `branch` that undoes `commit`."""
    identity = _identity(author)
    _check_branch_name(repo, branch)
    if not branch_exists(repo, branch):
        raise GitError(f"there is no branch {branch}")
    sha = head(repo, commit)
    on_branch = _git(repo, "merge-base", "--is-ancestor", sha, f"refs/heads/{branch}", check=False)
    if on_branch.returncode != 0:
        raise GitError(f"commit {commit} is not on branch {branch}")
    # A worktree on the branch itself: git refuses when the branch is checked out anywhere else,
    # so a branch the user is working on is never moved under them.
    with _worktree(repo, branch, detach=False) as copy:
        _git(copy, "revert", "--no-edit", "--no-commit", sha)
        return _commit(copy, message, identity)


def _commit(copy: Path, message: str, identity: Mapping[str, str]) -> str:
    # --cleanup=whitespace: the default would drop message lines starting with '#' ("#123 fix").
    args = ("commit", "--quiet", "--no-gpg-sign", "--cleanup=whitespace", "-m", message)
    _git(copy, *args, env=identity)
    return head(copy)


def _identity(author: str) -> dict[str, str]:
    match = _AUTHOR.fullmatch(author)
    if match is None:
        raise GitError(f"author {author!r} is not of the form 'Name <email>'")
    name, email = match.groups()
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _check_branch_name(repo: Path, branch: str) -> None:
    valid = _git(repo, "check-ref-format", f"refs/heads/{branch}", check=False).returncode == 0
    if branch.startswith("-") or not valid:
        raise GitError(f"{branch!r} is not a valid branch name")
