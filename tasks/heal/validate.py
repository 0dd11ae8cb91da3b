"""Validation of a proposed diff before a human sees it, and of an applied fix after.

A diff is refused when git cannot parse it, it leaves the source roots, touches CI configuration,
is too big, or does not apply to the commit it was made for. A diff that passes is tried: the
regression test runs against a local copy of the target without the change and with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from immunity.models.enums import ExecutionStatus
from immunity.models.fixes import DiffCheck, Verification
from immunity.models.settings import Environment, Settings
from immunity.models.specs import TestCase
from immunity.models.tables import RegressionTest
from immunity.tasks.heal.checks import check_diff
from immunity.tasks.heal.git_repo import apply, apply_check, git_output, worktree
from immunity.tasks.regress.selection import case_for
from immunity.tasks.shared.runner import run_any
from immunity.tasks.shared.target import TargetError, running_target

__all__ = ["LocalRun", "run_test_in", "validate_diff", "verify_commit"]

LOCAL_ENVIRONMENT = "heal-local"


def _local_case(test: RegressionTest, base_url: str) -> TestCase:
    # A throwaway local copy: replaying unsafe methods there harms nothing.
    local = Environment(base_url=base_url, is_production=False)
    return case_for(test, LOCAL_ENVIRONMENT, local, marker=f"heal:{test.id}", allow_unsafe=True)


class LocalRun(NamedTuple):
    """How a test ended against a local copy; `started` is False when the copy never came up."""

    status: ExecutionStatus
    error: str | None
    started: bool = True


def run_test_in(workdir: Path, test: RegressionTest, settings: Settings) -> LocalRun:
    """Return how the test ends against the target started from `workdir`."""
    try:
        with running_target(
            workdir,
            command=settings.target_command,
            health_path=settings.target_health_path,
            timeout_s=settings.target_start_timeout_s,
        ) as base_url:
            [result] = run_any([_local_case(test, base_url)], settings)
    except TargetError as error:
        return LocalRun(ExecutionStatus.ERROR, f"the copy did not start: {error}", started=False)
    return LocalRun(ExecutionStatus(result.status), result.error)


def validate_diff(
    repo: Path, base_ref: str, diff: str, test: RegressionTest | None, settings: Settings
) -> tuple[DiffCheck, Verification]:
    """Return what checking the diff found and how the test ran before and after it."""
    check = check_diff(
        repo,
        diff,
        source_roots=settings.source_roots,
        sensitive_patterns=settings.sensitive_paths,
        max_lines=settings.heal_max_diff_lines,
    )
    if not check.ok:
        return check, Verification(detail="not run: the diff was refused")
    with worktree(repo, base_ref) as copy:
        problem = apply_check(copy, diff)
        if problem is not None:
            check.problems.append(f"the diff does not apply to {base_ref[:12]}: {problem}")
            return check, Verification(detail="not run: the diff does not apply")
        skipped = _not_runnable(test, settings)
        before = run_test_in(copy, test, settings) if test is not None and not skipped else None
        apply(copy, diff, index=True)
        # Git ignores lines past a hunk's declared length: show and commit what it really applied.
        applied = git_output(copy, "diff", "--cached", "--no-color", "--no-ext-diff")
        check.applied_diff = applied or diff
        if test is None or skipped or before is None:
            return check, Verification(detail=f"not run: {skipped}")
        if not before.started:
            return check, Verification(detail=f"not run: unpatched, {before.error}")
        after = run_test_in(copy, test, settings)
    verification = Verification(
        ran=True,
        before=before.status,
        before_error=before.error,
        after=after.status,
        after_error=after.error,
    )
    verification.detail = f"{test.name}: {before.status} before the change, {after.status} after"
    verification.detail += f" ({_verdict(verification)})"
    return check, verification


def _verdict(verification: Verification) -> str:
    if verification.fixed:
        return "fails before, passes after"
    if verification.before == ExecutionStatus.PASSED:
        return "it passed before the change too: the failure did not reproduce"
    return "does not fix it"


def _not_runnable(test: RegressionTest | None, settings: Settings) -> str:
    if test is None:
        return "the signature has no regression test"
    if not settings.target_command:
        return "no command starts the target locally"
    return ""


def verify_commit(repo: Path, commit: str, test: RegressionTest, settings: Settings) -> LocalRun:
    """Return how the test ends against the target built from `commit` (the applied fix)."""
    with worktree(repo, commit) as copy:
        return run_test_in(copy, test, settings)
