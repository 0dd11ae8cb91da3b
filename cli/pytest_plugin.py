"""pytest plugin: the store's regression tests as pytest items (`pytest --immunity-db URL`).

Every pytest run loads it (a pytest11 entry point), so at import it needs only pytest and the
standard library, and it does nothing unless `--immunity-db` is given. It runs inside other
people's projects: settings come from `IMMUNITY_*` variables, and from a dotenv file only when one
is named (`--immunity-env-file`, or `IMMUNITY_ENV_FILE`), never from the project's own `.env`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from immunity.models.errors import UnavailableError

if TYPE_CHECKING:
    from immunity.models.results import CaseResult, SuiteSummary
    from immunity.models.settings import Settings
    from immunity.models.specs import Selection, TestCase

__all__ = ["ImmunityCollector", "ImmunityItem", "StoreUnavailableError"]

_NARROWING = ("tag", "type", "kind", "name")
_MARKABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_Wrapper = Generator[None, Any, Any]


@dataclass
class _State:
    """What one session knows: the store, the selection, and what ran."""

    settings: Settings
    selection: Selection
    environment: str | None
    record: bool
    results: dict[int, CaseResult] | None = None
    ran: list[CaseResult] = field(default_factory=list)
    summary: SuiteSummary | None = None
    problem: str | None = None


_STATE = pytest.StashKey[_State]()


class StoreUnavailableError(UnavailableError):
    """The store could not be read; the message names where it is, never its password."""


class _CaseFailed(Exception):
    """A stored test failed or errored (args: its CaseResult); repr_failure explains it."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the `--immunity-*` options (group "immunity")."""
    group = parser.getgroup("immunity", "immunity: run the store's regression tests")
    group.addoption("--immunity-db", metavar="URL", help="Store to read tests from (turns it on).")
    group.addoption("--immunity-env", metavar="NAME", help="Run every test in this environment.")
    for name in _NARROWING:
        text = f"Only tests with this {name} (repeatable: any)."
        group.addoption(
            f"--immunity-{name}", action="append", default=[], metavar=name.upper(), help=text
        )
    group.addoption("--immunity-no-record", action="store_true", help="Do not record results.")
    group.addoption(
        "--immunity-env-file",
        metavar="PATH",
        help="Also read IMMUNITY_* settings from this dotenv file (default: none, not ./.env).",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Check the options and keep the session's state; inert without `--immunity-db`."""
    url = config.getoption("immunity_db")
    if not url:
        given = [n for n in (*_NARROWING, "env", "env_file") if config.getoption(f"immunity_{n}")]
        if given:
            flag = given[0].replace("_", "-")
            raise pytest.UsageError(f"--immunity-{flag} needs --immunity-db URL")
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from immunity.models.settings import Settings
    from immunity.models.specs import Selection
    from immunity.tasks.regress.selection import UnknownEnvironmentError

    env_file = config.getoption("immunity_env_file") or os.environ.get("IMMUNITY_ENV_FILE") or None
    if env_file is not None and not os.path.isfile(env_file):
        raise pytest.UsageError(f"immunity env file not found: {env_file}")
    try:
        settings = Settings(_env_file=env_file, database_url=url)  # type: ignore[call-arg]
        make_url(settings.database_url)
    except ArgumentError:
        raise pytest.UsageError("--immunity-db: not a URL like postgresql://user@host/db") from None
    except ValueError as exc:  # pydantic's errors, and malformed JSON in IMMUNITY_* variables
        raise pytest.UsageError(f"immunity settings are invalid: {exc}") from None
    environment = config.getoption("immunity_env")
    if environment is not None and environment not in settings.environments:
        error = UnknownEnvironmentError(environment, list(settings.environments))
        raise pytest.UsageError(f"--immunity-env: {error}")
    selection = Selection(**{f"{n}s": config.getoption(f"immunity_{n}") for n in _NARROWING})
    config.addinivalue_line("markers", "immunity: a regression test from the immunity store")
    record = not config.getoption("immunity_no_record")
    config.stash[_STATE] = _State(settings, selection, environment, record)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> _Wrapper:
    """Return the collect report, with the `immunity` node beside the session's paths."""
    report: pytest.CollectReport = yield
    if isinstance(collector, pytest.Session) and report.passed and _STATE in collector.config.stash:
        node = ImmunityCollector.from_parent(collector, name="immunity", nodeid="immunity")
        report.result.append(node)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> _Wrapper:
    """Return the report; a refused test's skip names the test, not a line of this plugin."""
    report: pytest.TestReport = yield
    if isinstance(item, ImmunityItem) and report.skipped and isinstance(report.longrepr, tuple):
        report.longrepr = (item.nodeid, None, report.longrepr[2])  # type: ignore[assignment]
    return report


def _store_error(url: str, exc: Exception) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    if "no such table" in reason or 'relation "' in reason:
        reason += " (has `immunity db upgrade` run on it?)"
    return f"cannot use the immunity store {parsed.render_as_string(hide_password=True)}: {reason}"


class ImmunityCollector(pytest.Collector):
    """The `immunity` node: one item per selected stored test."""

    def collect(self) -> Iterator[ImmunityItem]:
        """Yield an item per selected test, in id order (unrunnable ones carry their error)."""
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import Session, col, select

        from immunity.models.db import get_engine
        from immunity.models.specs import TestCase
        from immunity.models.tables import RegressionTest
        from immunity.tasks.regress.selection import select_cases

        state = self.config.stash[_STATE]
        settings, engine = state.settings, get_engine(state.settings.database_url)
        try:
            cases, unrunnable = select_cases(engine, settings, state.selection, state.environment)
            query = select(RegressionTest.id, RegressionTest.tags, col(RegressionTest.quarantined))
            with Session(engine) as session:
                meta = {row[0]: (row[1] or [], row[2]) for row in session.exec(query)}
        except SQLAlchemyError as exc:
            raise StoreUnavailableError(_store_error(settings.database_url, exc)) from None
        known = {line.split(":")[0].split("(")[0].strip() for line in self.config.getini("markers")}
        # Only tags nobody registered become marks (a tag `skip` must not skip); registering them
        # first keeps --strict-markers and the unknown-mark warning quiet.
        ours = {tag for tags, _ in meta.values() for tag in tags if _MARKABLE.match(tag)} - known
        for tag in sorted(ours):
            self.config.addinivalue_line("markers", f"{tag}: immunity test tag")
        for entry in sorted([*cases, *unrunnable], key=lambda entry: entry.test_id):
            tags, quarantined = meta.get(entry.test_id, ([], False))
            item = ImmunityItem.from_parent(self, name=entry.name)
            item.test_id, item.quarantined = entry.test_id, bool(quarantined)
            item.case, item.preset = (entry, None) if isinstance(entry, TestCase) else (None, entry)
            item.add_marker("immunity")
            item.extra_keyword_matches.update(tags)
            for tag in sorted(ours.intersection(tags)):
                item.add_marker(tag)
            yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:
        """Return the store problem as one line, or pytest's usual report for anything else."""
        if isinstance(excinfo.value, StoreUnavailableError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class ImmunityItem(pytest.Item):
    """One stored regression test; the first to run runs them all."""

    case: TestCase | None = None  # None: it cannot run, `preset` says why
    preset: CaseResult | None = None
    test_id: int = 0
    quarantined: bool = False

    def runtest(self) -> None:
        """Pass, skip, xfail (quarantined) or fail with this test's result from the batch."""
        state = self.config.stash[_STATE]
        results = _run_batch(self.session, state) if state.results is None else state.results
        result = self.preset or results[self.test_id]
        status = result.status.value
        self.user_properties.append(("immunity_status", status))
        if status == "skipped":
            pytest.skip(result.error or "skipped")
        if status not in ("passed", "flaky") and self.quarantined:
            pytest.xfail(f"quarantined: {result.error or status}")
        if status not in ("passed", "flaky"):
            raise _CaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """Return the error, expected vs actual and the calls made (no traceback)."""
        if isinstance(excinfo.value, _CaseFailed):
            return _describe(excinfo.value.args[0], self.case)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """Return where the report says this test lives: the store, by name."""
        return self.path, None, f"immunity::{self.name}"


def _run_batch(session: pytest.Session, state: _State) -> dict[int, CaseResult]:
    from immunity.tasks.shared.runner import run_any

    # Everything collected and not deselected runs now, together; later items read the cache.
    batch = [item for item in session.items if isinstance(item, ImmunityItem)]
    results = run_any([item.case for item in batch if item.case is not None], state.settings)
    state.results = {result.test_id: result for result in results}
    state.ran = [item.preset for item in batch if item.preset is not None] + results
    return state.results


def _short(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(result: CaseResult, case: TestCase | None) -> str:
    where = f" against {case.environment} ({case.base_url})" if case else ""
    lines = [f"{result.name} {result.status.value}{where}: {result.error or 'no detail'}"]
    for check in result.actual.get("failed_checks", []):
        got = "" if check.get("actual") is None else f", got {_short(check['actual'])}"
        lines.append(f"  x {check.get('name')}: expected {_short(check.get('expected'))}{got}")
    lines += [f"expected: {_short(result.expected)}"] if result.expected else []
    actual = {key: value for key, value in result.actual.items() if key != "failed_checks"}
    lines += [f"actual:   {_short(actual)}"] if actual else []
    lines += ["calls:"] if result.calls else []
    for call in result.calls:
        answer = call.get("status", call.get("error", "no answer"))
        answer = f"{answer} in {call['ms']} ms" if "ms" in call else answer
        lines.append(f"  {call.get('step')}: {call.get('method')} {call.get('path')} -> {answer}")
    lines += [f"attempts: {result.attempts}"] if result.attempts > 1 else []
    return "\n".join(lines)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Record what ran as a `ci` suite run (unless --immunity-no-record)."""
    state = session.config.stash.get(_STATE, None)
    if state is None or not state.ran or not state.record:
        return
    from sqlalchemy.exc import SQLAlchemyError

    from immunity.models.db import get_engine
    from immunity.models.enums import Trigger
    from immunity.tasks.regress.store import close_suite_run, open_suite_run, record_results

    settings, engine = state.settings, get_engine(state.settings.database_url)
    try:
        where: dict[str, Any] = {"trigger": Trigger.CI.value, "environment": state.environment}
        suite_id = open_suite_run(engine, selection=state.selection, flow_run_id=None, **where)
        transitions, critical, size = [], [], settings.regression_chunk_size
        # In chunks as the flow records them: no transaction locks every test row of the suite.
        for start in range(0, len(state.ran), size):
            chunk = state.ran[start : start + size]
            outcome = record_results(
                engine, settings, suite_run_id=suite_id, results=chunk, **where
            )
            transitions += outcome.transitions
            critical += outcome.critical_failures
        state.summary = close_suite_run(
            engine, suite_run_id=suite_id, critical_failures=critical, transitions=transitions
        )
    except SQLAlchemyError as exc:
        state.problem = "results NOT recorded: " + _store_error(settings.database_url, exc)
    finally:
        engine.dispose()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the suite run id, its totals and what it changed."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.ran:
        return
    write = terminalreporter.write_line
    if state.problem:
        write(f"immunity: {state.problem}", red=True)
    if not state.record:
        write(f"immunity: {len(state.ran)} test(s) ran; not recorded (--immunity-no-record)")
    if (summary := state.summary) is None:
        return
    where = summary.environment or "each test's environment"
    counts = ", ".join(
        f"{getattr(summary, n)} {n}" for n in ("passed", "failed", "errors", "flaky")
    )
    gate = "passed" if summary.gate_passed else "FAILED"
    line = f"{summary.total} total, {counts}, {summary.skipped} skipped; gate {gate}"
    write(f"immunity: suite run {summary.suite_run_id} (ci, {where}): {line}")
    for transition in summary.transitions:
        write(f"immunity:   {transition.kind}: {transition.message}")
