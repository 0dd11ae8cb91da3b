"""Choosing a suite run's tests: which stored tests run where, which gate, which are trusted.

Where a test replays is configuration, never input: only an environment that allows replays
(`Environment.allows_replay`) receives any. A test's own environment (for a generated test, the
one its failure report named) only chooses among those; otherwise it replays in
`reproduction_environment`, or nowhere (`skipped`, with what to configure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from immunity.models.enums import ExecutionStatus, Reproduction
from immunity.models.errors import InvalidInputError
from immunity.models.results import CaseResult
from immunity.models.schemas import utcnow
from immunity.models.settings import SAFE_METHODS, Environment, Settings
from immunity.models.specs import Selection, TestCase
from immunity.models.tables import RegressionTest
from immunity.tasks.shared.replay_marker import sign
from immunity.tasks.shared.replay_policy import allowed_headers

__all__ = [
    "ReplayTarget",
    "UnknownEnvironmentError",
    "case_for",
    "is_critical",
    "is_critical_type",
    "is_trusted",
    "replay_target",
    "select_cases",
]


class UnknownEnvironmentError(InvalidInputError):
    """A run asked for an environment the settings do not define."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(
            f"unknown environment {name!r}; configured: {', '.join(sorted(known)) or 'none'}"
            " (set IMMUNITY_ENVIRONMENTS)"
        )


@dataclass(frozen=True)
class ReplayTarget:
    """Where a test replays (`environment` set), or why nowhere (`reason`)."""

    name: str | None
    environment: Environment | None
    reason: str = ""
    unknown: bool = False  # the asked environment is not configured at all


def replay_target(settings: Settings, wanted: str) -> ReplayTarget:
    """Return the environment a test asking for `wanted` replays in, or why there is none.

    `wanted` if it allows replays; else `reproduction_environment` if that does; else none.
    """
    own = settings.environments.get(wanted)
    if own is not None and own.allows_replay:
        return ReplayTarget(wanted, own)
    fallback = settings.reproduction_environment
    chosen = settings.environments.get(fallback) if fallback else None
    if chosen is not None and chosen.allows_replay:
        return ReplayTarget(fallback, chosen)
    if own is None:
        reason = str(UnknownEnvironmentError(wanted, list(settings.environments)))
    else:
        reason = f"environment {wanted!r} does not allow replays"
    if fallback is None and own is not None:
        reason += (
            ": set IMMUNITY_REPRODUCTION_ENVIRONMENT to an environment that allows replays,"
            " or configure one (an environment with `replay: true`, or not `is_production`)"
        )
    elif fallback is not None and chosen is None:
        reason += f"; IMMUNITY_REPRODUCTION_ENVIRONMENT {fallback!r} is not configured either"
    elif fallback is not None:
        reason += f"; IMMUNITY_REPRODUCTION_ENVIRONMENT {fallback!r} does not allow them either"
    return ReplayTarget(None, None, reason, unknown=own is None)


def _refused_in(name: str) -> str:
    return (
        f"environment {name!r} does not allow replays"
        " (set `replay: true` on it in IMMUNITY_ENVIRONMENTS to allow them)"
    )


def is_critical(test: RegressionTest, settings: Settings) -> bool:
    """Return True when the test's failure gates a deploy (critical type or tag)."""
    return is_critical_type(test.type, test.tags, settings)


def is_critical_type(type_: str, tags: Sequence[str] | None, settings: Settings) -> bool:
    """Return True for a critical type or a test carrying a critical tag."""
    return type_ in settings.critical_types or bool(set(tags or ()) & set(settings.critical_tags))


def is_trusted(test: RegressionTest) -> bool:
    """Return True when the test's results may move its signature.

    Not while quarantined (flaky), nor while a generated test has not reproduced its failure: a
    replay that passes because the capture lost the body must never mark a live bug `fixed`.
    """
    return not test.quarantined and test.reproduction in (None, Reproduction.REPRODUCED)


def _selected(test: RegressionTest, selection: Selection) -> bool:
    if selection.tags and not set(test.tags or ()) & set(selection.tags):
        return False
    return True


def select_cases(
    engine: Engine, settings: Settings, selection: Selection, environment: str | None
) -> tuple[list[TestCase], list[CaseResult]]:
    """Return the selected tests resolved against their environment, and those that cannot run.

    With `environment`, every test runs there (`skipped`, all of them, if it does not allow
    replays); otherwise each runs where `replay_target` says, and one with nowhere to run comes
    back as a result instead of a case: `error` when its environment is not configured,
    `skipped` when it does not allow replays.
    """
    if environment is not None and environment not in settings.environments:
        raise UnknownEnvironmentError(environment, list(settings.environments))
    query = select(RegressionTest).order_by(col(RegressionTest.id))
    if not selection.include_inactive:
        query = query.where(col(RegressionTest.is_active).is_(True))
    if selection.ids:
        query = query.where(col(RegressionTest.id).in_(selection.ids))
    if selection.names:
        query = query.where(col(RegressionTest.name).in_(selection.names))
    if selection.types:
        query = query.where(col(RegressionTest.type).in_(selection.types))
    if selection.kinds:
        query = query.where(col(RegressionTest.kind).in_(selection.kinds))
    with Session(engine) as session:
        tests = [test for test in session.exec(query).all() if _selected(test, selection)]
    cases, unrunnable = [], []
    for test in tests:
        assert test.id is not None
        if environment is None:
            target = replay_target(settings, test.environment)
        elif settings.environments[environment].allows_replay:
            target = ReplayTarget(environment, settings.environments[environment])
        else:
            target = ReplayTarget(None, None, _refused_in(environment))
        if target.name is None or target.environment is None:
            unrunnable.append(
                CaseResult(
                    test_id=test.id,
                    name=test.name,
                    status=ExecutionStatus.ERROR if target.unknown else ExecutionStatus.SKIPPED,
                    error=target.reason if target.unknown else f"refused: {target.reason}",
                    started_at=utcnow(),
                )
            )
            continue
        marker = sign("run", test.id, settings)
        cases.append(case_for(test, target.name, target.environment, marker=marker))
    return cases, unrunnable


def case_for(
    test: RegressionTest,
    name: str,
    environment: Environment,
    *,
    marker: str = "run",
    allow_unsafe: bool | None = None,
) -> TestCase:
    """Return the stored test resolved against one environment, as the runner takes it.

    The environment's `replay_methods` bound the methods; where it lists none, a production
    environment takes only safe methods unless the test (one a person wrote, never a generated
    one) or the caller allows unsafe ones. A generated test sends only the allowed headers.
    """
    assert test.id is not None
    generated = test.created_from_signature_id is not None
    unsafe = (test.allow_unsafe and not generated) if allow_unsafe is None else allow_unsafe
    if environment.replay_methods is not None:
        methods: list[str] | None = sorted({m.upper() for m in environment.replay_methods})
    elif environment.is_production and not unsafe:
        methods = list(SAFE_METHODS)
    else:
        methods = None
    return TestCase(
        test_id=test.id,
        name=test.name,
        kind=test.kind,
        spec=test.spec,
        expectations=test.expectations,
        base_url=environment.base_url,
        environment=name,
        is_production=environment.is_production,
        allow_unsafe=unsafe,
        marker=marker,
        allowed_methods=methods,
        allowed_headers=sorted(allowed_headers(environment)) if generated else None,
    )
