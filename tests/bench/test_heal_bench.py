"""bench/heal.py: a bug the rules heal, one only a rollback heals, and the shares' arithmetic."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sqlmodel import Session, col, select

from immunity.examples.heal_drill import trigger
from immunity.models.db import get_engine
from immunity.models.enums import FixStatus
from immunity.models.heal_tables import FixProposal
from immunity.models.settings import get_settings
from immunity.tasks.shared.target import running_target
from tests.flows.heal_support import bug_named

BENCH = Path(__file__).resolve().parents[2] / "bench"
# What each bug's heal really comes to (tests/examples/test_seeded_bugs.py pins the rules).
EXPECTED = {
    "catalog-search-without-query": ("rule", "none_attribute"),
    "analytics-counter-import-dropped": ("rollback", None),
}


@pytest.fixture(scope="module")
def heal_bench() -> ModuleType:
    """bench/heal.py as a module, without its Prefect home: the session's harness serves."""
    # Its siblings (_figures) import as top-level modules, as when it runs as a script.
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_heal", BENCH / "heal.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while being made
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str | None], None]]:
    """The bench's settings go through monkeypatch: undone, with the cached settings, after."""

    def set_or_unset(name: str, value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)

    yield set_or_unset
    get_settings.cache_clear()


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("name", list(EXPECTED))
def test_one_bug_is_healed_offline_and_recorded_as_it_really_went(
    heal_bench: ModuleType,
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setenv: Callable[[str, str | None], None],
) -> None:
    bug = bug_named(name)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-be-used")  # the bench unsets it
    outcome = heal_bench.run_bug(bug, tmp_path, setenv=setenv)

    assert get_settings().llm_api_key is None
    assert outcome.error is None
    assert (outcome.strategy, outcome.rule) == EXPECTED[name]
    assert outcome.before in ("failed", "error") and outcome.after == "passed"
    assert outcome.green
    assert outcome.green_by_rules is bug.offline_fixable
    assert outcome.seconds >= outcome.heal_seconds > 0
    # The store says the same as the bench's reading of it.
    with Session(get_engine()) as session:
        proposals = list(session.exec(select(FixProposal).order_by(col(FixProposal.id))).all())
    [chosen] = [p for p in proposals if p.status == FixStatus.AWAITING_APPROVAL]
    assert chosen.strategy == outcome.strategy
    assert len(outcome.refused) == sum(p.status == FixStatus.REFUSED for p in proposals)
    # And the service agrees: the chosen diff on the bugged copy makes the trigger answer again.
    repo = tmp_path / "repo"
    subprocess.run(["git", "apply", "-"], cwd=repo, input=chosen.diff, text=True, check=True)
    if outcome.strategy == "rollback":
        assert bug.correct in (repo / bug.path).read_text(encoding="utf-8")
    command = get_settings().target_command
    with running_target(repo, command=command, health_path="/api/health", timeout_s=30) as url:
        assert trigger(url, bug) < 500


def test_the_shares_count_what_each_bug_came_to(heal_bench: ModuleType) -> None:
    def outcome(fixable: bool, strategy: str | None, green: bool, **extra: object) -> object:
        return heal_bench.BugOutcome(
            "bug", "KeyError", fixable, strategy=strategy, green=green, **extra
        )

    outcomes = [
        outcome(True, "rule", True, seconds=10.0),
        outcome(True, "pattern", True, seconds=20.0),
        outcome(False, "rollback", True, seconds=30.0),
        outcome(True, "rollback", True, seconds=40.0),  # the rules missed a declared one
        outcome(False, None, False, seconds=50.0),  # nothing passed validation
        outcome(True, "rule", False, seconds=60.0),  # shown, but its test never ran
        outcome(False, None, False, seconds=70.0, error="RuntimeError()"),  # the drill broke
    ]
    counts = heal_bench.shares(outcomes)
    assert counts == heal_bench.Shares(
        bugs=7, green=4, green_by_rules=2, declared=4, agree=5, broken=1
    )
    figures = {figure.name: figure for figure in heal_bench.figures(outcomes)}
    healed = figures["healed offline: applies, test red → green (any)"]
    by_rules = figures["healed by rule/pattern alone (no rollback)"]
    assert healed.value == "4/7 = 57%"
    assert (by_rules.value, by_rules.target) == ("2/7 = 29%", "4/7 declared")
    assert by_rules.passed is False  # two declared bugs were not healed by the rules
    assert figures["time per bug: mean"].value == "40.0 s"
    assert figures["time per bug: median"].value == "40.0 s"
    assert figures["time per bug: slowest (bug)"].value == "70.0 s"

    agreeing = heal_bench.figures(outcomes[:3])
    assert [f.value for f in agreeing[:2]] == ["3/3 = 100%", "2/3 = 67%"]
    assert agreeing[1].passed is True
    assert heal_bench.Shares.percent(0, 0) == "0/0"
