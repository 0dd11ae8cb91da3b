"""A seeded bug in a real git repository, its failures ingested: the heal loop's starting point."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from immunity.api.auth import hash_token
from immunity.examples.heal_drill import capture_failures
from immunity.examples.seeded_bugs import SEEDED_BUGS, SeededBug, seed_repo
from immunity.flows.heal import propose_fix
from immunity.flows.ingest import ingest_failures
from immunity.models.db import get_engine
from immunity.models.enums import FixStatus
from immunity.models.fixes import HealOutcome
from immunity.models.heal_tables import FixProposal
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest, Signature

TOKEN = "heal-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# IMMUNITY_API_TOKENS: TOKEN sends, reads and decides; its decisions are recorded as ann's.
API_TOKENS = json.dumps(
    [{"hash": hash_token(TOKEN), "name": "ann", "scopes": ["ingest", "read", "review"]}]
)
SOURCE_ROOTS = ["examples/sample_service"]


def bug_named(name: str) -> SeededBug:
    return next(bug for bug in SEEDED_BUGS if bug.name == name)


def first_bug(*, offline_fixable: bool) -> SeededBug:
    return next(bug for bug in SEEDED_BUGS if bug.offline_fixable is offline_fixable)


@dataclass
class Drill:
    repo: Path
    bug: SeededBug
    signature_id: int
    test_id: int
    events: list[dict[str, Any]] = field(default_factory=list)


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo: Path, **extra: str) -> None:
    """Point the heal settings at `repo` (and anything else given as IMMUNITY_<NAME>=value)."""
    monkeypatch.setenv("IMMUNITY_REPO_PATH", str(repo))
    monkeypatch.setenv("IMMUNITY_SOURCE_ROOTS", json.dumps(SOURCE_ROOTS))
    monkeypatch.setenv("IMMUNITY_APPROVAL_POLL_S", "1")
    monkeypatch.setenv("IMMUNITY_API_TOKENS", API_TOKENS)
    monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
    # Production is not reachable from the tests: the reproduction check records `unverified`.
    production = {"production": {"base_url": "http://127.0.0.1:9", "is_production": True}}
    monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(production))
    for name, value in extra.items():
        monkeypatch.setenv(f"IMMUNITY_{name.upper()}", value)
    get_settings.cache_clear()


def drill(
    bug: SeededBug,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    headers: dict[str, str] | None = None,
    **extra: str,
) -> Drill:
    """Seed the bug in a fresh repository, hit it 3 times, ingest: one signature, one test."""
    repo = tmp_path / "repo"
    seed_repo(repo, bug)
    events = capture_failures(repo, bug, headers=headers)
    configure(monkeypatch, tmp_path, repo, **extra)
    report = ingest_failures(events)
    assert report.tests_created == 1, report
    with Session(get_engine()) as session:
        signature = session.exec(select(Signature)).one()
        test = session.exec(select(RegressionTest)).one()
    assert signature.error_type == bug.error_type
    assert signature.id is not None and test.id is not None
    return Drill(repo, bug, signature.id, test.id, events)


class HealRun:
    """`propose_fix` in a thread, as a deployment's run would be, so the test can decide it."""

    def __init__(self, signature_id: int, **options: Any) -> None:
        self.outcome: HealOutcome | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(signature_id, options))
        self._thread.start()

    def _run(self, signature_id: int, options: dict[str, Any]) -> None:
        try:
            self.outcome = propose_fix(signature_id, **options)
        except BaseException as error:  # reported by result()
            self.error = error

    def result(self, timeout_s: float = 240) -> HealOutcome:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the heal flow did not finish"
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


def wait_for(check: Callable[[], Any], timeout_s: float = 240, what: str = "condition") -> Any:
    """Return check()'s first truthy value, polling; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def awaiting_proposal() -> FixProposal | None:
    with Session(get_engine()) as session:
        query = select(FixProposal).where(FixProposal.status == FixStatus.AWAITING_APPROVAL)
        return session.exec(query).first()
