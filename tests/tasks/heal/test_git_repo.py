"""tasks.git_repo against real git repositories in tmp_path: diffs made by `git diff` from edits."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from immunity.tasks.heal.git_repo import (
    GitError,
    apply,
    apply_check,
    branch_exists,
    changed_files,
    commit_fix,
    diff_stats,
    head,
    is_repo,
    revert_commit,
    worktree,
)

BOT = "Immunity Bot <bot@immunity.example>"
SERVICE = "def total(items):\n    result = 0\n    for item in items:\n        result += item\n"
SERVICE += "    return result\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Dev Eloper")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "commit.gpgsign", "false")
    (path / "app").mkdir()
    (path / "app" / "service.py").write_text(SERVICE)
    (path / "app" / "util.py").write_text("def double(x):\n    return 2 * x\n")
    (path / "README.md").write_text("# Service\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def diff_of(repo: Path, edit: Callable[[Path], None]) -> str:
    """Return the diff of `edit` made in the working copy, which is then restored."""
    edit(repo)
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "-M", "--binary")
    git(repo, "reset", "-q", "--hard")
    git(repo, "clean", "-q", "-fdx")
    return diff


def fix_total(repo: Path) -> None:
    path = repo / "app" / "service.py"
    path.write_text(path.read_text().replace("result = 0", "result = 0.0"))


def fix_on(repo: Path, branch: str, message: str = "m") -> str:
    """Return the commit of the `fix_total` diff on main, on the new `branch`."""
    diff = diff_of(repo, fix_total)
    return commit_fix(repo, base_ref="main", branch=branch, diff=diff, message=message, author=BOT)


def assert_untouched(repo: Path, sha: str) -> None:
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert head(repo) == sha
    assert git(repo, "branch", "--show-current").strip() == "main"
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_head_and_is_repo(repo: Path, tmp_path: Path) -> None:
    assert head(repo) == git(repo, "rev-parse", "HEAD").strip()
    assert len(head(repo, "main")) == 40
    assert is_repo(repo)
    assert not is_repo(repo / "app")  # inside a working copy, not its top
    assert not is_repo(tmp_path)
    assert not is_repo(tmp_path / "missing")
    with pytest.raises(GitError, match="no commit 'nope'.*Needed a single revision"):
        head(repo, "nope")


def test_git_variables_of_a_hook_do_not_redirect(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = make_repo(tmp_path / "other")
    git(other, "commit", "-q", "--allow-empty", "-m", "second")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert head(repo) == git(repo, "--git-dir", str(repo / ".git"), "rev-parse", "HEAD").strip()
    assert head(repo) != git(other, "--git-dir", str(other / ".git"), "rev-parse", "HEAD").strip()


def test_stats_of_a_modification(repo: Path) -> None:
    sha = head(repo)
    stats = diff_stats(repo, diff_of(repo, fix_total))
    assert stats.files == ["app/service.py"]
    assert (stats.added, stats.removed) == (1, 1)
    assert (stats.created, stats.deleted, stats.mode_changes, stats.links) == ([], [], [], [])
    assert not stats.binary
    assert_untouched(repo, sha)


def test_stats_of_a_creation_and_a_deletion(repo: Path) -> None:
    def edit(repo: Path) -> None:
        (repo / "app" / "new.py").write_text("A = 1\nB = 2\n")
        (repo / "README.md").unlink()

    stats = diff_stats(repo, diff_of(repo, edit))
    assert sorted(stats.files) == ["README.md", "app/new.py"]
    assert stats.created == ["app/new.py"]
    assert stats.deleted == ["README.md"]
    assert (stats.added, stats.removed) == (2, 1)


def test_stats_of_a_rename_name_both_sides(repo: Path) -> None:
    def edit(repo: Path) -> None:
        (repo / "lib").mkdir()
        (repo / "app" / "util.py").rename(repo / "lib" / "util.py")

    stats = diff_stats(repo, diff_of(repo, edit))
    assert stats.files == ["app/util.py", "lib/util.py"]
    assert (stats.added, stats.removed, stats.created, stats.deleted) == (0, 0, [], [])


def test_stats_of_a_rename_whose_name_holds_an_arrow(repo: Path) -> None:
    # git's summary prints `app/{a => b.py => c.py}` unquoted; only one reading names a real target.
    (repo / "app" / "a => b.py").write_text("X = 1\nY = 2\nZ = 3\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "odd name")

    def edit(repo: Path) -> None:
        (repo / "app" / "a => b.py").rename(repo / "app" / "c.py")
        (repo / "app" / "c.py").chmod(0o755)

    stats = diff_stats(repo, diff_of(repo, edit))
    assert stats.files == ["app/a => b.py", "app/c.py"]
    assert stats.mode_changes == ["app/c.py"]


def test_stats_of_mode_binary_and_link_changes(repo: Path) -> None:
    def edit(repo: Path) -> None:
        (repo / "app" / "util.py").chmod(0o755)
        (repo / "app" / "blob.bin").write_bytes(b"\0\1\2\3")
        (repo / "app" / "link.py").symlink_to("../README.md")

    stats = diff_stats(repo, diff_of(repo, edit))
    assert sorted(stats.files) == ["app/blob.bin", "app/link.py", "app/util.py"]
    assert stats.mode_changes == ["app/util.py"]
    assert stats.binary
    assert stats.links == ["app/link.py"]
    assert sorted(stats.created) == ["app/blob.bin", "app/link.py"]


@pytest.mark.parametrize(
    "diff",
    [
        "",
        "this is not a diff\n",
        # A hunk cut short: git exits 0 but reports no file.
        "--- a/app/service.py\n+++ b/app/service.py\n@@ -1,3 +1,3 @@\n def total(items):\n"
        "-    result = 0\n+    result = 0.0\n",
        "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n",  # corrupt
    ],
)
def test_a_diff_git_cannot_read_raises(repo: Path, diff: str) -> None:
    with pytest.raises(GitError, match="the diff does not parse"):
        diff_stats(repo, diff)


def test_worktree_is_a_separate_copy_removed_afterwards(repo: Path) -> None:
    first = head(repo)
    (repo / "README.md").write_text("# Service, v2\n")
    git(repo, "commit", "-q", "-am", "v2")
    with worktree(repo, first) as copy:
        assert copy != repo
        assert (copy / "README.md").read_text() == "# Service\n"
        assert head(copy) == first
        (copy / "README.md").write_text("scribbled\n")
    assert not copy.exists()
    assert (repo / "README.md").read_text() == "# Service, v2\n"
    assert_untouched(repo, head(repo))


def test_worktree_is_removed_when_the_block_raises(repo: Path) -> None:
    with pytest.raises(ZeroDivisionError), worktree(repo) as copy:
        assert copy.is_dir()
        _ = 1 / 0
    assert not copy.exists()
    assert not copy.parent.exists()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_apply_check_and_apply(repo: Path) -> None:
    diff = diff_of(repo, fix_total)
    with worktree(repo) as copy:
        assert apply_check(copy, diff) is None
        apply(copy, diff)
        assert "result = 0.0" in (copy / "app" / "service.py").read_text()
        assert "patch does not apply" in (apply_check(copy, diff) or "")  # already applied
    # The context the diff expects changes on main: it no longer applies there.
    path = repo / "app" / "service.py"
    path.write_text(path.read_text().replace("    result = 0\n", "    result = 0  # start\n"))
    git(repo, "commit", "-q", "-am", "comment")
    with worktree(repo) as copy:
        message = apply_check(copy, diff)
        assert message is not None and "app/service.py" in message
        with pytest.raises(GitError, match="patch does not apply"):
            apply(copy, diff)


def test_commit_fix_makes_a_branch_and_leaves_the_working_copy_alone(repo: Path) -> None:
    base = head(repo)
    diff = diff_of(repo, fix_total)
    sha = commit_fix(
        repo, base_ref="main", branch="immunity/fix-7", diff=diff, message="#7 fix", author=BOT
    )
    assert branch_exists(repo, "immunity/fix-7")
    assert not branch_exists(repo, "immunity/fix-8")
    assert head(repo, "immunity/fix-7") == sha
    assert git(repo, "rev-parse", f"{sha}^").strip() == base
    log = git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", sha)
    assert log.strip() == f"{BOT}|{BOT}|#7 fix"
    assert changed_files(repo, sha) == ["app/service.py"]
    assert "result = 0.0" in git(repo, "show", f"{sha}:app/service.py")
    assert_untouched(repo, base)
    assert (repo / "app" / "service.py").read_text() == SERVICE

    with pytest.raises(GitError, match="already exists"):
        commit_fix(
            repo, base_ref="main", branch="immunity/fix-7", diff=diff, message="again", author=BOT
        )
    assert head(repo, "immunity/fix-7") == sha


def test_commit_fix_commits_creations_deletions_and_ignored_names(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ignore logs")

    def edit(repo: Path) -> None:
        (repo / "README.md").unlink()
        (repo / "app" / "notes.log").write_text("kept anyway\n")
        git(repo, "add", "-f", "app/notes.log")

    diff = diff_of(repo, edit)
    sha = commit_fix(repo, base_ref="HEAD", branch="fix-1", diff=diff, message="m", author=BOT)
    assert sorted(changed_files(repo, sha)) == ["README.md", "app/notes.log"]


def test_commit_fix_refusing_leaves_no_branch_and_no_worktree(repo: Path) -> None:
    base = head(repo)
    diff = diff_of(repo, fix_total)
    path = repo / "app" / "service.py"
    path.write_text(path.read_text().replace("result = 0\n", "result = 1\n"))
    git(repo, "commit", "-q", "-am", "moved on")
    with pytest.raises(GitError, match="patch does not apply"):
        commit_fix(repo, base_ref="main", branch="fix-2", diff=diff, message="m", author=BOT)
    assert not branch_exists(repo, "fix-2")
    assert_untouched(repo, head(repo))
    # The same diff on the commit it was made from still works.
    commit_fix(repo, base_ref=base, branch="fix-2", diff=diff, message="m", author=BOT)
    with pytest.raises(GitError, match="not of the form"):
        commit_fix(repo, base_ref=base, branch="fix-3", diff=diff, message="m", author="bot")
    with pytest.raises(GitError, match="not a valid branch name"):
        commit_fix(repo, base_ref=base, branch="fix..4", diff=diff, message="m", author=BOT)


def test_commit_fix_needs_no_git_identity_and_runs_no_hook(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    marker = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    hook.chmod(0o755)
    sha = fix_on(repo, "fix-5")
    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha).strip() == f"{BOT}|{BOT}"
    assert not marker.exists()


def test_revert_commit_undoes_the_fix_on_its_branch(repo: Path) -> None:
    base = head(repo)
    fix = fix_on(repo, "immunity/fix-9", message="fix")
    sha = revert_commit(
        repo, commit=fix, branch="immunity/fix-9", message="roll back #9", author=BOT
    )
    assert head(repo, "immunity/fix-9") == sha
    assert git(repo, "rev-parse", f"{sha}^").strip() == fix
    assert git(repo, "show", f"{sha}:app/service.py") == SERVICE
    assert git(repo, "diff", base, sha) == ""
    assert git(repo, "log", "-1", "--format=%an <%ae>|%B", sha).strip() == f"{BOT}|roll back #9"
    assert changed_files(repo, sha) == ["app/service.py"]
    assert_untouched(repo, base)


def test_revert_commit_refuses_a_checked_out_branch_or_a_foreign_commit(repo: Path) -> None:
    fix = fix_on(repo, "fix-10")
    git(repo, "merge", "-q", "--ff-only", "fix-10")
    main = head(repo)
    with pytest.raises(GitError, match="already (checked out|used by worktree)"):
        revert_commit(repo, commit=fix, branch="main", message="undo", author=BOT)
    assert_untouched(repo, main)

    git(repo, "branch", "other", f"{fix}^")
    with pytest.raises(GitError, match="not on branch other"):
        revert_commit(repo, commit=fix, branch="other", message="undo", author=BOT)
    with pytest.raises(GitError, match="no branch missing"):
        revert_commit(repo, commit=fix, branch="missing", message="undo", author=BOT)
