"""The readiness score (seed 003): five weighted parts, 0–100, a band, and the deploy gate.

The parts and how each is measured (`measure_readiness`):

* workflow — active, non-quarantined `http` and `scenario` tests: the share whose latest run
  (in the environment asked for, if any) passed. A `flaky` run counts as passed: the behaviour
  worked on re-run, and flakiness already costs the test confidence and, when chronic, puts it in
  quarantine, which takes it out of this share. Skipped runs are not results and are ignored.
  Not measured when none of these tests has a result.
* ui — the same over `ui` tests.
* health — the share of configured HTTP probes that answered the expected status in time; with no
  probes, 100 × (1 − failure rate) over the health window, once it holds at least
  `health_min_attempts` attempts (the rate's ceiling, when pruning left it inexact).
* database — 100 when the store answers `SELECT 1`, else 0.
* queue — 100 when `queue_address` accepts a TCP connection, else 0; not measured without one.

A part that is not measured gives its weight to the measured ones in proportion to theirs, and a
note says so. A store that does not answer is not "not measured": what lives in it (test results,
the failure rate) scores 0, because a gate must fail closed rather than pass on what it cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import Engine, and_, select

from immunity.models.enums import ExecutionStatus, TestKind
from immunity.models.readiness import ProbeResult, Readiness, ReadinessBand, ReadinessPart
from immunity.models.schemas import utcnow
from immunity.models.tables import RegressionTest, TestExecution
from immunity.tasks.health.probes import database_probe, http_probe, tcp_probe
from immunity.tasks.health.tasks import measure_failure_rate
from immunity.tasks.regress.selection import UnknownEnvironmentError, is_critical_type
from immunity.tasks.regress.store import ranked_runs

if TYPE_CHECKING:
    from immunity.models.settings import Settings

__all__ = [
    "LatestResult",
    "band",
    "gate_failures",
    "latest_results",
    "measure_readiness",
    "readiness_score",
    "tests_part",
]

executions = TestExecution.__table__  # type: ignore[attr-defined]
tests = RegressionTest.__table__  # type: ignore[attr-defined]

_PASSING = (ExecutionStatus.PASSED.value, ExecutionStatus.FLAKY.value)
_FAILING = (ExecutionStatus.FAILED.value, ExecutionStatus.ERROR.value)
_WORKFLOW_KINDS = (TestKind.HTTP.value, TestKind.SCENARIO.value)
_STORE_DOWN = "the store is unreachable: {what} unknown"


def band(score: float) -> ReadinessBand:
    """Return the seed's band: 95–100 ready, 80–94 mostly ready, 60–79 needs work, else not."""
    if score >= 95:
        return ReadinessBand.READY
    if score >= 80:
        return ReadinessBand.MOSTLY_READY
    if score >= 60:
        return ReadinessBand.NEEDS_WORK
    return ReadinessBand.NOT_READY


def _pct(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def readiness_score(
    parts: Sequence[ReadinessPart],
    weights: Mapping[str, float],
    *,
    critical_failures: Iterable[str] = (),
    probes: Iterable[ProbeResult] = (),
    environment: str | None = None,
    measured_at: datetime | None = None,
) -> Readiness:
    """Return the weighted score of `parts`, a missing part's weight given to the measured ones.

    Weights are relative (40/30/20/5/5 or 0.4/0.3/…); each part's `weight` comes back as its
    percent share, `effective_weight` as the share it really carried. A weight naming no part is
    ignored with a note. Nothing measured: score 0, not ready.
    """
    if any(weight < 0 for weight in weights.values()):
        raise ValueError(f"readiness weights must not be negative: {dict(weights)}")
    names = {part.name for part in parts}
    total = sum(weights.get(name, 0) for name in names)
    if total <= 0:
        raise ValueError(f"readiness weights give no part any weight: {dict(weights)}")
    notes = [
        f"the weight of {name!r} was ignored: there is no such part"
        for name in sorted(set(weights) - names)
    ]
    share = {name: 100 * weights.get(name, 0) / total for name in names}
    carried = sum(share[part.name] for part in parts if part.score is not None)
    effective = {
        part.name: 100 * share[part.name] / carried if part.score is not None and carried else 0.0
        for part in parts
    }
    for part in parts:
        if part.score is None and share[part.name] > 0:
            moved = f": its {_pct(share[part.name])} % weight went to the others" if carried else ""
            notes.append(f"{part.name} not measured ({part.detail or 'no data'}){moved}")
    if 0 < carried < 100 - 1e-9:  # float sums of shares may fall a hair short
        notes.append(f"the measured parts carry {_pct(carried)} % of the configured weight")
    if carried:
        exact = sum(p.score * effective[p.name] for p in parts if p.score is not None) / 100
        score = min(100.0, max(0.0, round(exact, 1)))
    else:
        score = 0.0
        notes.append("nothing that carries weight could be measured: the score is 0")
    scored = [
        part.model_copy(
            update={
                "weight": round(share[part.name], 4),
                "effective_weight": round(effective[part.name], 4),
            }
        )
        for part in parts
    ]
    return Readiness(
        score=score,
        band=band(score),
        parts=scored,
        notes=notes,
        critical_failures=sorted(critical_failures),
        probes=list(probes),
        environment=environment,
        measured_at=measured_at or utcnow(),
    )


def gate_failures(readiness: Readiness, min_readiness: float) -> list[str]:
    """Return why a deploy must not go ahead (empty: it may)."""
    reasons = []
    if readiness.score < min_readiness:
        reasons.append(
            f"readiness {_pct(readiness.score)} ({readiness.band}) is below {_pct(min_readiness)}"
        )
    if readiness.critical_failures:
        reasons.append(
            f"{len(readiness.critical_failures)} critical test(s) failed: "
            + ", ".join(readiness.critical_failures)
        )
    return reasons


@dataclass(frozen=True)
class LatestResult:
    """An active, non-quarantined test and the status of its latest run (None: never ran)."""

    name: str
    kind: str
    type: str
    tags: tuple[str, ...]
    status: str | None


def latest_results(
    engine: Engine, *, environment: str | None = None, exclude_test_ids: Sequence[int] = ()
) -> list[LatestResult]:
    """Return every active, non-quarantined test with its latest non-skipped run's status."""
    conditions = [] if environment is None else [executions.c.environment == environment]
    ranked = ranked_runs(*conditions)
    query = (
        select(tests.c.name, tests.c.kind, tests.c.type, tests.c.tags, ranked.c.status)
        .outerjoin(ranked, and_(ranked.c.test_id == tests.c.id, ranked.c.rank == 1))
        .where(tests.c.is_active.is_(True), tests.c.quarantined.is_(False))
        .order_by(tests.c.name)
    )
    if exclude_test_ids:
        query = query.where(tests.c.id.not_in(list(exclude_test_ids)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        LatestResult(row.name, row.kind, row.type, tuple(row.tags or ()), row.status)
        for row in rows
    ]


def tests_part(name: str, label: str, results: Sequence[LatestResult]) -> ReadinessPart:
    """Return the part scored by the share of `results` whose latest run passed (flaky passes)."""
    ran = [result for result in results if result.status is not None]
    never = len(results) - len(ran)
    unrun = f"; {never} never ran" if never else ""
    if not ran:
        what = f"no {label} test has a result" if results else f"no active {label} tests"
        return ReadinessPart(name=name, detail=what + unrun)
    passed = sum(result.status in _PASSING for result in ran)
    flaky = sum(result.status == ExecutionStatus.FLAKY.value for result in ran)
    return ReadinessPart(
        name=name,
        score=100 * passed / len(ran),
        detail=f"{passed} of {len(ran)} {label} tests passed"
        + (f" ({flaky} flaky)" if flaky else "")
        + unrun,
    )


def _critical(results: Sequence[LatestResult], settings: Settings) -> list[str]:
    return [
        result.name
        for result in results
        if result.status in _FAILING and is_critical_type(result.type, result.tags, settings)
    ]


def _http_probes(settings: Settings, client: httpx.Client | None) -> list[ProbeResult]:
    if not settings.health_probes:
        return []

    def run(http: httpx.Client) -> list[ProbeResult]:
        # Probes wait up to twice their limit each; side by side the check takes the longest one.
        workers = min(8, len(settings.health_probes))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
            return list(pool.map(lambda probe: http_probe(probe, http), settings.health_probes))

    if client is not None:
        return run(client)
    with httpx.Client() as owned:
        return run(owned)


def _health_part(
    engine: Engine,
    settings: Settings,
    probes: Sequence[ProbeResult],
    *,
    store_up: bool,
    environment: str | None,
) -> ReadinessPart:
    if probes:
        ok = sum(probe.ok for probe in probes)
        failing = "; ".join(f"{p.name}: {p.detail}" for p in probes if not p.ok)
        return ReadinessPart(
            name="health",
            score=100 * ok / len(probes),
            detail=f"{ok} of {len(probes)} probes ok" + (f"; failing {failing}" if failing else ""),
        )
    if not store_up:
        return ReadinessPart(name="health", score=0, detail=_STORE_DOWN.format(what="failures"))
    minutes = settings.health_window_minutes
    rate = measure_failure_rate(
        engine, since=utcnow() - timedelta(minutes=minutes), environment=environment
    )
    if rate.attempts < settings.health_min_attempts:
        return ReadinessPart(
            name="health",
            detail=f"no probes configured and {rate.attempts} attempt(s) in the last {minutes} min"
            f" (fewer than {settings.health_min_attempts})",
        )
    ceiling = "" if rate.exact else f" (up to {100 * rate.rate_max:.1f} %: samples were pruned)"
    return ReadinessPart(
        name="health",
        score=100 * (1 - rate.rate_max),
        detail=f"no probes configured; failure rate {100 * rate.rate:.1f} %{ceiling} over "
        f"{rate.attempts} attempts in the last {minutes} min",
    )


def _probe_part(name: str, probe: ProbeResult) -> ReadinessPart:
    return ReadinessPart(name=name, score=100 if probe.ok else 0, detail=probe.detail)


def measure_readiness(
    engine: Engine,
    settings: Settings,
    environment: str | None = None,
    *,
    exclude_test_ids: Sequence[int] = (),
    client: httpx.Client | None = None,
) -> Readiness:
    """Return the readiness of `environment` (default: every environment) as the store sees it.

    `exclude_test_ids` leaves tests out of the score and the critical failures (a fix being
    deployed excuses its own test, which fails until the fix is out). Raises
    UnknownEnvironmentError for an environment the settings do not define.
    """
    if environment is not None and environment not in settings.environments:
        raise UnknownEnvironmentError(environment, list(settings.environments))
    store = database_probe(engine)
    probes = [store]
    critical: list[str] = []
    if store.ok:
        results = latest_results(engine, environment=environment, exclude_test_ids=exclude_test_ids)
        workflow = tests_part(
            "workflow", "workflow", [r for r in results if r.kind in _WORKFLOW_KINDS]
        )
        ui = tests_part("ui", "UI", [r for r in results if r.kind == TestKind.UI.value])
        critical = _critical(results, settings)
    else:
        down = _STORE_DOWN.format(what="test results")
        workflow = ReadinessPart(name="workflow", score=0, detail=down)
        ui = ReadinessPart(name="ui", score=0, detail=down)
    http = _http_probes(settings, client)
    probes += http
    health = _health_part(engine, settings, http, store_up=store.ok, environment=environment)
    if settings.queue_address:
        queue_probe = tcp_probe(settings.queue_address)
        probes.append(queue_probe)
        queue = _probe_part("queue", queue_probe)
    else:
        queue = ReadinessPart(name="queue", detail="IMMUNITY_QUEUE_ADDRESS is not set")
    return readiness_score(
        [workflow, ui, health, _probe_part("database", store), queue],
        settings.readiness_weights,
        critical_failures=critical,
        probes=probes,
        environment=environment,
    )
