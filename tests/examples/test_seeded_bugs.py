"""Seeded bugs in a real git copy of the sample service, run as a subprocess on 127.0.0.1.

Each planted bug turns its trigger request into a 500 with the expected exception in the failure
event; the offline rules, given that event's frames, fix the bugs marked fixable (the patched
copy answers again) and propose nothing for the others.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from immunity.examples.seeded_bugs import SEEDED_BUGS, SeededBug, apply_bug, seed_repo
from immunity.models.fixes import SourceLocation
from immunity.tasks.heal.rules import propose_rule_fix
from immunity.tasks.heal.source_context import locations
from immunity.tasks.shared.target import running_target

# Which offline rule is expected to fix each fixable bug.
EXPECTED_RULE = {
    "average-order-value-without-orders": "zero_division",
    "catalog-search-without-query": "none_attribute",
    "catalog-page-offset-optional": "none_operand",
    "storefront-threshold-required": "key_default",
    "quality-report-last-completed": "index_guard",
}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CopiedService:
    """A copy of the sample service serving from its own directory, reporting to JSON lines."""

    reports: Path
    base_url: str

    def send(self, bug: SeededBug) -> httpx.Response:
        """Send the bug's trigger request."""
        return httpx.request(bug.method, self.base_url + bug.url_path, json=bug.body, timeout=10)

    def failures(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Return the failure events, waiting for the reporter's flush to write one."""
        path = self.reports / "failures.jsonl"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists() and path.read_text(encoding="utf-8").strip():
                break
            time.sleep(0.05)
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@contextmanager
def serve_copy(repo: Path, reports: Path) -> Iterator[CopiedService]:
    """Run `python -m examples.sample_service` from the copy until the block ends."""
    command = (
        "{python} -m examples.sample_service --port {port}"
        f" --report-dir {shlex.quote(str(reports))} --flush-interval 0.2"
    )
    with running_target(repo, command=command, health_path="/api/health", timeout_s=30) as url:
        yield CopiedService(reports, url)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CopiedService]:
    """One running copy of the unbugged service."""
    root = tmp_path_factory.mktemp("pristine")
    seed_repo(root / "repo")
    with serve_copy(root / "repo", root / "reports") as service:
        yield service


def test_the_catalogue_has_enough_bugs_of_both_kinds() -> None:
    assert 6 <= len(SEEDED_BUGS) <= 8
    assert len({bug.name for bug in SEEDED_BUGS}) == len(SEEDED_BUGS)
    assert sum(not bug.offline_fixable for bug in SEEDED_BUGS) >= 2
    assert {bug.name for bug in SEEDED_BUGS if bug.offline_fixable} == set(EXPECTED_RULE)


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=lambda bug: bug.name)
def test_each_bug_is_one_exact_replacement_that_can_be_undone(bug: SeededBug) -> None:
    pristine_text = (PROJECT_ROOT / bug.path).read_text(encoding="utf-8")
    bugged = apply_bug(pristine_text, bug)
    assert bugged != pristine_text
    assert bugged.count(bug.buggy) == 1
    assert bugged.replace(bug.buggy, bug.correct, 1) == pristine_text


def test_apply_bug_refuses_a_snippet_that_is_not_there_exactly_once() -> None:
    bug = SEEDED_BUGS[0]
    assert apply_bug(f"a\n{bug.correct}\nb\n", bug) == f"a\n{bug.buggy}\nb\n"
    with pytest.raises(ValueError, match="0 times"):
        apply_bug("nothing here\n", bug)
    with pytest.raises(ValueError, match="2 times"):
        apply_bug(f"{bug.correct}\n{bug.correct}\n", bug)


def test_seed_repo_commits_the_pristine_copy_then_the_bug(tmp_path: Path) -> None:
    bug = SEEDED_BUGS[1]
    head = seed_repo(tmp_path / "repo", bug)

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path / "repo", capture_output=True, text=True)
        return done.stdout

    assert git("rev-parse", "HEAD").strip() == head
    assert git("log", "--format=%s").splitlines() == [f"Introduce {bug.name}", "Sample service"]
    assert git("status", "--porcelain") == ""
    assert git("diff", "--name-only", "HEAD~1", "HEAD").split() == [bug.path]
    assert "__pycache__" not in git("ls-files")
    pristine_text = git("show", f"HEAD~1:{bug.path}")
    assert pristine_text == (PROJECT_ROOT / bug.path).read_text(encoding="utf-8")


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=lambda bug: bug.name)
def test_the_pristine_service_answers_each_trigger(pristine: CopiedService, bug: SeededBug) -> None:
    response = pristine.send(bug)
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=lambda bug: bug.name)
def test_seeded_bug_fails_and_the_offline_rules_fix_what_they_should(
    bug: SeededBug, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    seed_repo(repo, bug)
    with serve_copy(repo, tmp_path / "reports-bugged") as service:
        response = service.send(bug)
        assert response.status_code == 500, response.text
        failures = service.failures()
    assert len(failures) == 1
    event = failures[0]
    assert event["error_type"] == bug.error_type

    # The copy ran, not the project: every in-app frame is a file of the copy.
    in_app = [frame for frame in event["frames"] if frame["in_app"]]
    assert in_app and all(Path(f["filename"]).is_relative_to(repo.resolve()) for f in in_app)
    found = locations(event["frames"], repo, ["."])
    innermost = Path(in_app[-1]["filename"]).relative_to(repo.resolve()).as_posix()
    assert found[0].path == innermost
    assert found[0].lineno == in_app[-1]["lineno"]

    fix = propose_rule_fix(event["error_type"], event["message"], found)
    if not bug.offline_fixable:
        assert fix is None, fix
        return
    assert fix is not None
    assert fix.rule == EXPECTED_RULE[bug.name]
    applied = subprocess.run(
        ["git", "apply", "-"], cwd=repo, input=fix.diff, capture_output=True, text=True
    )
    assert applied.returncode == 0, applied.stderr + fix.diff
    changed = subprocess.run(
        ["git", "diff", "--name-only"], cwd=repo, capture_output=True, text=True, check=True
    )
    assert changed.stdout.split() == [fix.path]

    with serve_copy(repo, tmp_path / "reports-fixed") as service:
        response = service.send(bug)
        assert response.status_code < 500, response.text + fix.diff


def test_the_storefront_fix_stops_the_500_but_leaves_the_threshold_unset(tmp_path: Path) -> None:
    """key_default cannot know the default was 5: the page works, low-stock alerts then fail."""
    bug = next(bug for bug in SEEDED_BUGS if bug.name == "storefront-threshold-required")
    repo = tmp_path / "repo"
    seed_repo(repo, bug)
    text = (repo / bug.path).read_text(encoding="utf-8")
    lineno = text[: text.index(bug.buggy)].count("\n") + 1
    location = SourceLocation(path=bug.path, lineno=lineno, function="create", text=text)
    fix = propose_rule_fix("KeyError", "'low_stock_threshold'", [location])
    assert fix is not None and 'fields.get("low_stock_threshold")' in fix.diff
    applied = subprocess.run(["git", "apply", "-"], cwd=repo, input=fix.diff, text=True)
    assert applied.returncode == 0

    with serve_copy(repo, tmp_path / "reports") as service:
        assert service.send(bug).status_code == 200
        alerts = httpx.get(f"{service.base_url}/api/shop/inventory/low-stock", timeout=10)
        assert alerts.status_code == 500
        assert alerts.json()["error"] == "TypeError"
