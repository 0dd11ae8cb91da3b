"""Whether a proposed diff may be shown for approval, and how risky applying it is.

`check_paths` and `assess_risk` are pure; `check_diff` only asks git (`diff_stats`) what the diff
touches. A problem is a refusal: the proposal is never shown. A sensitive path is not refused, but
makes the risk high.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from pathlib import Path

from immunity.models.enums import ExecutionStatus, RiskLevel
from immunity.models.fixes import DiffCheck, Verification
from immunity.tasks.heal.git_repo import GitError, diff_stats

__all__ = ["assess_risk", "check_diff", "check_paths"]

# Refused outright, at any depth and in any case (a case-insensitive file system reads
# `.GitHub/` as `.github/`).
CI_FOLDERS = frozenset({".github", ".circleci"})
CI_FILES = frozenset({".gitlab-ci.yml", "jenkinsfile", ".travis.yml", "azure-pipelines.yml"})
MEDIUM_LINES = 20
HIGH_LINES = 80
MEDIUM_FILES = 3

_RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


def _parts(path: str) -> list[str]:
    # Backslashes count as separators too: harmless on POSIX, and a Windows checkout reads them so.
    return [part for part in re.split(r"[\\/]", path) if part not in ("", ".")]


def _refusal(path: str, source_roots: Sequence[str]) -> str | None:
    parts = _parts(path)
    lowered = [part.lower() for part in parts]
    if not parts:
        return f"{path!r} is not a file path"
    if path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        return f"{path} is an absolute path; fixes change files of the repository only"
    if ".." in parts:
        return f"{path} climbs out of its folder (..); fixes change files of the repository only"
    if ".git" in lowered:
        return f"{path} is inside git's own folder"
    if CI_FOLDERS.intersection(lowered) or lowered[-1] in CI_FILES:
        return f"{path} is CI configuration, which fixes never change"
    roots = [_parts(root) for root in source_roots]  # "." is []: the whole repository
    if not any(parts[: len(root)] == root for root in roots):
        shown = ", ".join(source_roots) or "none configured"
        return f"{path} is outside the source roots ({shown})"
    return None


def _is_sensitive(path: str, patterns: Sequence[str]) -> bool:
    full = "/".join(_parts(path)).lower()
    base = full.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatchcase(full, pattern.lower()) or fnmatch.fnmatchcase(base, pattern.lower())
        for pattern in patterns
    )


def check_paths(
    stats_files: Sequence[str],
    *,
    added: int,
    removed: int,
    source_roots: Sequence[str],
    sensitive_patterns: Sequence[str],
    max_lines: int,
) -> DiffCheck:
    """Return the refusals and sensitive paths of a diff touching `stats_files`."""
    problems: list[str] = [] if stats_files else ["the diff changes no file"]
    sensitive: list[str] = []
    for path in stats_files:
        if refusal := _refusal(path, source_roots):
            problems.append(refusal)
        elif _is_sensitive(path, sensitive_patterns):
            sensitive.append(path)
    if added + removed > max_lines:
        problems.append(
            f"the diff changes {added + removed} lines, more than the {max_lines} allowed"
        )
    return DiffCheck(
        files=list(stats_files),
        added=added,
        removed=removed,
        problems=problems,
        sensitive=sensitive,
    )


def check_diff(
    repo: Path,
    diff: str,
    *,
    source_roots: Sequence[str],
    sensitive_patterns: Sequence[str],
    max_lines: int,
) -> DiffCheck:
    """Return what validating `diff` against the repository at `repo` finds; never raises on it."""
    try:
        stats = diff_stats(repo, diff)
    except GitError as error:
        return DiffCheck(problems=[str(error)])
    check = check_paths(
        stats.files,
        added=stats.added,
        removed=stats.removed,
        source_roots=source_roots,
        sensitive_patterns=sensitive_patterns,
        max_lines=max_lines,
    )
    check.created, check.deleted = list(stats.created), list(stats.deleted)
    if stats.binary:
        check.problems.append("the diff changes binary content, which a reviewer cannot read")
    check.problems.extend(
        f"{path} would become a symbolic link or submodule" for path in stats.links
    )
    # An executable bit is a change a reviewer should look at closely, not a refusal.
    check.sensitive.extend(
        path
        for path in stats.mode_changes
        if path not in check.sensitive and _refusal(path, source_roots) is None
    )
    return check


def assess_risk(
    check: DiffCheck,
    verification: Verification | None,
    *,
    claimed: RiskLevel | None = None,
    claimed_reasons: Sequence[str] = (),
) -> tuple[RiskLevel, list[str]]:
    """Return the risk of applying a checked, maybe verified, diff and one reason per factor.

    Low only when the diff is small, verified to fix the failure, and touches nothing sensitive.
    Never lower than what the proposal `claimed`.
    """
    factors: list[tuple[RiskLevel, str]] = []
    if check.problems:
        factors.append((RiskLevel.HIGH, f"refused: {'; '.join(check.problems)}"))
    if check.sensitive:
        factors.append((RiskLevel.HIGH, f"touches sensitive paths: {', '.join(check.sensitive)}"))
    lines = check.added + check.removed
    if lines > HIGH_LINES:
        factors.append((RiskLevel.HIGH, f"a large change: {lines} lines"))
    elif lines > MEDIUM_LINES:
        factors.append((RiskLevel.MEDIUM, f"a sizeable change: {lines} lines"))
    if len(check.files) > MEDIUM_FILES:
        factors.append((RiskLevel.MEDIUM, f"touches {len(check.files)} files"))
    if check.created:
        factors.append((RiskLevel.MEDIUM, f"creates {', '.join(check.created)}"))
    if check.deleted:
        factors.append((RiskLevel.MEDIUM, f"deletes {', '.join(check.deleted)}"))
    factors.append(_verification_factor(verification))
    computed = max((level for level, _ in factors), key=_RANK.__getitem__)
    reasons = [reason for _, reason in factors]
    if claimed is not None and _RANK[claimed] > _RANK[computed]:
        reasons.append(f"the proposal rates its own risk {claimed.value}")
        reasons.extend(
            f"proposal: {reason.strip()}" for reason in claimed_reasons if reason.strip()
        )
        return claimed, reasons
    return computed, reasons


def _verification_factor(verification: Verification | None) -> tuple[RiskLevel, str]:
    if verification is None:
        return RiskLevel.MEDIUM, "not verified: no regression test was run against the patch"
    if not verification.ran:
        detail = verification.detail or "the regression test did not run"
        return RiskLevel.MEDIUM, f"not verified: {detail}"
    before = verification.before.value if verification.before else "no result"
    after = verification.after.value if verification.after else "no result"
    if verification.fixed:
        return (
            RiskLevel.LOW,
            f"verified: the regression test {before} before the patch, passes after",
        )
    if verification.after != ExecutionStatus.PASSED:
        return RiskLevel.HIGH, f"the regression test still does not pass after the patch ({after})"
    if verification.before == ExecutionStatus.PASSED:
        return RiskLevel.HIGH, "the regression test passed before the patch too: it proves nothing"
    return RiskLevel.MEDIUM, f"the regression test passes after the patch but was {before} before"
