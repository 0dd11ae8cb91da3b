"""tasks.fix_checks: refusals and sensitive paths, check_diff on a real repository, risk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from immunity.models.enums import ExecutionStatus, RiskLevel
from immunity.models.fixes import DiffCheck, Verification
from immunity.models.settings import Settings
from immunity.tasks.heal.checks import assess_risk, check_diff, check_paths
from tests.tasks.heal.test_git_repo import diff_of, fix_total, git, make_repo

SENSITIVE: list[str] = Settings.model_fields["sensitive_paths"].get_default(
    call_default_factory=True
)
FIXED = Verification(
    ran=True, before=ExecutionStatus.FAILED, after=ExecutionStatus.PASSED, detail="ran"
)


def paths(files: list[str], *, roots: Sequence[str] = (".",), lines: int = 2) -> DiffCheck:
    return check_paths(
        files,
        added=lines // 2,
        removed=lines - lines // 2,
        source_roots=roots,
        sensitive_patterns=SENSITIVE,
        max_lines=200,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def test_paths_inside_the_roots_pass() -> None:
    check = paths(["app/service.py", "app/x..y.py", "./app/util.py"], roots=["app/", "lib"])
    assert check.ok, check.problems
    assert check.sensitive == []
    assert check.files == ["app/service.py", "app/x..y.py", "./app/util.py"]


@pytest.mark.parametrize(
    ("path", "roots", "words"),
    [
        ("lib/util.py", ["app"], "lib/util.py is outside the source roots (app)"),
        ("application/x.py", ["app"], "outside the source roots"),
        ("../x", ["."], "../x climbs out"),
        ("app/../../x.py", ["app"], "climbs out"),
        ("/etc/passwd", ["."], "/etc/passwd is an absolute path"),
        ("C:/Windows/x.py", ["."], "absolute path"),
        (".github/workflows/ci.yml", ["."], ".github/workflows/ci.yml is CI configuration"),
        (".GitHub/workflows/ci.yml", ["."], "CI configuration"),
        ("app/.circleci/config.yml", ["."], "CI configuration"),
        (".gitlab-ci.yml", ["."], "CI configuration"),
        ("Jenkinsfile", ["."], "CI configuration"),
        ("ci/azure-pipelines.yml", ["."], "CI configuration"),
        (".travis.yml", ["."], "CI configuration"),
        (".git/hooks/pre-commit", ["."], "inside git's own folder"),
    ],
)
def test_refused_paths(path: str, roots: list[str], words: str) -> None:
    check = paths(["app/service.py", path], roots=roots)
    assert not check.ok
    assert len(check.problems) == 1
    assert words in check.problems[0]
    assert check.sensitive == []


@pytest.mark.parametrize(
    "path",
    ["app/auth.py", "migrations/versions/x.py", "app/Auth_Tokens.py", "deploy/Dockerfile", ".env"],
)
def test_sensitive_paths_are_flagged_not_refused(path: str) -> None:
    check = paths([path, "app/service.py"])
    assert check.ok
    assert check.sensitive == [path]
    risk, reasons = assess_risk(check, FIXED)
    assert risk is RiskLevel.HIGH
    assert any(path in reason for reason in reasons)


def test_too_many_lines_and_no_file_are_refused() -> None:
    check = check_paths(
        ["app/a.py"],
        added=150,
        removed=51,
        source_roots=["."],
        sensitive_patterns=[],
        max_lines=200,
    )
    assert check.problems == ["the diff changes 201 lines, more than the 200 allowed"]
    assert paths(["app/a.py"], lines=200).ok
    assert paths([]).problems == ["the diff changes no file"]


def test_check_diff_of_a_good_diff(repo: Path) -> None:
    check = check_diff(
        repo,
        diff_of(repo, fix_total),
        source_roots=["app"],
        sensitive_patterns=SENSITIVE,
        max_lines=200,
    )
    assert check.ok
    assert (check.files, check.added, check.removed) == (["app/service.py"], 1, 1)


def test_check_diff_weighs_both_sides_of_a_rename(repo: Path) -> None:
    def edit(repo: Path) -> None:
        (repo / "README.md").rename(repo / "app" / "README.md")

    check = check_diff(
        repo, diff_of(repo, edit), source_roots=["app"], sensitive_patterns=[], max_lines=200
    )
    assert check.problems == ["README.md is outside the source roots (app)"]


def test_check_diff_refuses_binary_and_links_and_flags_modes(repo: Path) -> None:
    def edit(repo: Path) -> None:
        (repo / "app" / "util.py").chmod(0o755)
        (repo / "app" / "blob.bin").write_bytes(b"\0\1")
        (repo / "app" / "link.py").symlink_to("/etc/passwd")

    check = check_diff(
        repo, diff_of(repo, edit), source_roots=["."], sensitive_patterns=[], max_lines=200
    )
    assert check.problems == [
        "the diff changes binary content, which a reviewer cannot read",
        "app/link.py would become a symbolic link or submodule",
    ]
    assert check.sensitive == ["app/util.py"]


def test_check_diff_reports_what_git_cannot_read(repo: Path) -> None:
    check = check_diff(
        repo, "not a diff\n", source_roots=["."], sensitive_patterns=[], max_lines=200
    )
    assert not check.ok
    assert check.files == []
    assert check.problems[0].startswith("the diff does not parse: ")
    assert "No valid patches" in check.problems[0]
    assert git(repo, "status", "--porcelain") == ""


def test_low_only_when_small_verified_and_plain() -> None:
    risk, reasons = assess_risk(paths(["app/service.py"]), FIXED)
    assert risk is RiskLevel.LOW
    assert reasons == ["verified: the regression test failed before the patch, passes after"]


@pytest.mark.parametrize(
    ("check", "verification", "expected", "words"),
    [
        (paths(["app/a.py"], lines=21), FIXED, RiskLevel.MEDIUM, "21 lines"),
        (paths(["app/a.py"], lines=81), FIXED, RiskLevel.HIGH, "81 lines"),
        (
            paths(["app/a.py", "app/b.py", "app/c.py", "app/d.py"]),
            FIXED,
            RiskLevel.MEDIUM,
            "4 files",
        ),
        (paths(["lib/a.py"], roots=["app"]), FIXED, RiskLevel.HIGH, "refused: lib/a.py"),
        (paths(["app/a.py"]), None, RiskLevel.MEDIUM, "not verified: "),
        (
            paths(["app/a.py"]),
            Verification(ran=False, detail="no target command is configured"),
            RiskLevel.MEDIUM,
            "not verified: no target command is configured",
        ),
        (
            paths(["app/a.py"]),
            Verification(ran=True, before=ExecutionStatus.FAILED, after=ExecutionStatus.FAILED),
            RiskLevel.HIGH,
            "still does not pass after the patch (failed)",
        ),
        (
            paths(["app/a.py"]),
            Verification(ran=True, before=ExecutionStatus.PASSED, after=ExecutionStatus.PASSED),
            RiskLevel.HIGH,
            "passed before the patch too",
        ),
        (
            paths(["app/a.py"]),
            Verification(ran=True, before=ExecutionStatus.FLAKY, after=ExecutionStatus.PASSED),
            RiskLevel.MEDIUM,
            "was flaky before",
        ),
    ],
)
def test_each_factor_raises_the_risk(
    check: DiffCheck, verification: Verification | None, expected: RiskLevel, words: str
) -> None:
    risk, reasons = assess_risk(check, verification)
    assert risk is expected
    assert any(words in reason for reason in reasons), reasons


def test_created_and_deleted_files_raise_the_risk() -> None:
    check = paths(["app/new.py", "app/old.py"], lines=5)
    assert assess_risk(check, FIXED)[0] is RiskLevel.LOW
    check.created, check.deleted = ["app/new.py"], ["app/old.py"]
    risk, reasons = assess_risk(check, FIXED)
    assert risk is RiskLevel.MEDIUM
    assert "creates app/new.py" in reasons
    assert "deletes app/old.py" in reasons


def test_never_lower_than_claimed() -> None:
    check = paths(["app/service.py"])
    risk, reasons = assess_risk(
        check, FIXED, claimed=RiskLevel.HIGH, claimed_reasons=["changes error handling", " "]
    )
    assert risk is RiskLevel.HIGH
    assert reasons[-2:] == [
        "the proposal rates its own risk high",
        "proposal: changes error handling",
    ]
    # A claim never lowers what the checks found.
    risk, _ = assess_risk(paths(["app/auth.py"]), FIXED, claimed=RiskLevel.LOW)
    assert risk is RiskLevel.HIGH
