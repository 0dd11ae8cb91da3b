"""Who last changed a line, and the diff that takes a commit back: the rollback strategy's input."""

from __future__ import annotations

from pathlib import Path

from immunity.tasks.heal.git_repo import git_output

__all__ = ["last_change", "last_file_change", "reverse_diff", "subject"]


def last_change(repo: Path, path: str, lineno: int, ref: str = "HEAD") -> str | None:
    """Return the commit that last changed `path` at `lineno` as of `ref`, or None."""
    out = git_output(repo, "blame", "--porcelain", "-L", f"{lineno},{lineno}", ref, "--", path)
    if not out:
        return None
    sha = out.split(" ", 1)[0]
    return sha if len(sha) == 40 and set(sha) != {"0"} else None


def last_file_change(repo: Path, path: str, ref: str = "HEAD") -> str | None:
    """Return the newest commit as of `ref` that changed `path`, or None."""
    out = git_output(repo, "log", "-1", "--format=%H", ref, "--", path)
    return out.strip() or None if out else None


def reverse_diff(repo: Path, commit: str) -> str | None:
    """Return the diff that undoes `commit` (None for a root commit, which has no parent)."""
    if git_output(repo, "rev-parse", "--verify", "--quiet", f"{commit}^") is None:
        return None
    return git_output(repo, "diff", "--no-color", "--no-ext-diff", commit, f"{commit}^") or None


def subject(repo: Path, commit: str) -> str:
    """Return the commit's subject line."""
    return (git_output(repo, "log", "-1", "--format=%s", commit) or "").strip()
