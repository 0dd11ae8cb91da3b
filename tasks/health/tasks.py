"""The health rule (seed 001's checkHealthMetrics): the failure rate over a window, new criticals.

How failures in a window are counted, exactly where the store allows it:

* `OccurrenceBucket` holds exact counts per signature per `bucket_minutes` bucket, so every bucket
  that starts at or after `since` is counted exactly, whatever the sampling dropped.
* The bucket that straddles `since` also holds occurrences from before the window, so that head
  slice is counted from the stored `FailureEvent` samples instead. Samples are pruned oldest first
  (the newest `max_samples_per_signature` per signature are kept), so when fewer than that many
  samples of a signature lie in the window, none of its in-window samples was pruned and the
  sample count is exact. Only a signature with that many samples in the window (at least 100 by
  default within the hour) can have lost head-slice samples; then the count is a floor, the
  straddling bucket gives the ceiling, and the measurement says it is not exact. A signature
  first seen inside the window has the whole straddling bucket inside it, so it stays exact.
* Buckets are not kept per environment, so a measurement for one environment counts samples only:
  exact while no signature reaches the sample bound in the window, a floor (with the signature's
  bucket counts as its ceiling) otherwise.

The alert decision uses the floor: an alert states what is known, and the report carries both
bounds, so an inexact measurement is visible instead of silently rounded either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from sqlalchemy import Connection, Engine, and_, case, exists, func, select

from immunity.models.db import get_engine
from immunity.models.enums import Severity
from immunity.models.reports import HealthReport
from immunity.models.settings import get_settings
from immunity.models.tables import FailureEvent, OccurrenceBucket, Signature, SuccessEvent
from immunity.tasks.ingest.prepare import bucket_start
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = [
    "HEALTH_ARTIFACT_KEY",
    "FailureRate",
    "NewSignature",
    "SignatureWindow",
    "count_in_window",
    "critical_signature_message",
    "failure_rate_message",
    "find_new_critical_signatures",
    "health_markdown",
    "measure_failure_rate",
    "measure_health",
    "new_critical_signatures",
    "publish_health",
    "should_alert",
]

HEALTH_ARTIFACT_KEY = "health"

events = FailureEvent.__table__  # type: ignore[attr-defined]
buckets = OccurrenceBucket.__table__  # type: ignore[attr-defined]
signatures = Signature.__table__  # type: ignore[attr-defined]
successes = SuccessEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FailureRate:
    """Failures and successes in a window; `failures` is exact unless `failures_max` says more."""

    failures: int
    successes: int
    failures_max: int | None = None  # None: `failures` is exact
    uncertain_signatures: int = 0

    @property
    def attempts(self) -> int:
        return self.failures + self.successes

    @property
    def rate(self) -> float:
        return self.failures / self.attempts if self.attempts else 0.0

    @property
    def exact(self) -> bool:
        return self.failures_max is None or self.failures_max == self.failures

    @property
    def rate_max(self) -> float:
        """The highest rate the store allows (equals `rate` when exact)."""
        most = self.failures if self.failures_max is None else self.failures_max
        return most / (most + self.successes) if most + self.successes else 0.0


def should_alert(rate: FailureRate, *, threshold: float, min_attempts: int) -> bool:
    """Return True when the rate is strictly above `threshold` over at least `min_attempts`."""
    return rate.attempts >= min_attempts and rate.rate > threshold


@dataclass(frozen=True)
class SignatureWindow:
    """What the store holds about one signature's occurrences since the window start."""

    bucketed: int = 0  # exact count in buckets starting at or after `since`
    head_bucket: int = 0  # exact count in the bucket straddling `since` (before and after it)
    samples: int = 0  # stored samples since `since`, every environment
    head_samples: int = 0  # stored samples in the straddling bucket's part of the window
    matching: int = 0  # stored samples since `since` in the environment asked for
    born_in_window: bool = False  # first seen at or after `since`: nothing of it is older


def count_in_window(
    window: SignatureWindow, *, max_samples: int, filtered: bool
) -> tuple[int, int]:
    """Return (floor, ceiling) of the signature's occurrences in the window (equal when exact)."""
    # Pruning drops the oldest samples first, so below the bound nothing in the window was lost.
    complete = window.samples < max_samples
    whole = window.bucketed + window.head_bucket  # every environment, a little before `since` too
    if filtered:
        if complete:
            return window.matching, window.matching
        # What is known to be elsewhere cannot be here.
        return window.matching, max(window.matching, whole - (window.samples - window.matching))
    # max(): samples are real occurrences even where buckets are missing (rows before buckets).
    if window.born_in_window:
        exact = max(whole, window.samples)
        return exact, exact
    floor = max(window.bucketed + window.head_samples, window.samples)
    if complete:
        return floor, floor
    return floor, max(floor, whole)


def _one_snapshot(engine: Engine) -> Connection:
    # Buckets, samples and successes are read in one snapshot, so a batch committed between the
    # statements cannot be counted by one of them and missed by another.
    conn = engine.connect()
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    conn.exec_driver_sql("BEGIN")  # SQLite: a read transaction keeps one WAL snapshot
    return conn


def measure_failure_rate(
    engine: Engine,
    *,
    since: datetime,
    environment: str | None = None,
    max_samples: int | None = None,
    bucket_minutes: int | None = None,
) -> FailureRate:
    """Return failures and successes received at or after `since` (see the module docstring)."""
    settings = get_settings()
    max_samples = max_samples or settings.max_samples_per_signature
    minutes = bucket_minutes or settings.bucket_minutes
    straddling = bucket_start(since, minutes)
    head_end = straddling + timedelta(minutes=minutes) if straddling < since else since

    matching = (
        func.count()
        if environment is None
        else func.sum(case((events.c.environment == environment, 1), else_=0))
    )
    sample_query = (
        select(
            events.c.signature_id,
            func.count().label("samples"),
            func.sum(case((events.c.received_at < head_end, 1), else_=0)).label("head"),
            matching.label("matching"),
            func.max(case((signatures.c.first_seen >= since, 1), else_=0)).label("born"),
        )
        .join(signatures, signatures.c.id == events.c.signature_id)
        .where(events.c.received_at >= since)
        .group_by(events.c.signature_id)
    )
    bucket_query = (
        select(
            buckets.c.signature_id,
            func.sum(case((buckets.c.bucket_start >= since, buckets.c.count), else_=0)).label(
                "bucketed"
            ),
            func.sum(case((buckets.c.bucket_start < since, buckets.c.count), else_=0)).label(
                "head"
            ),
        )
        .where(buckets.c.bucket_start >= straddling)
        .group_by(buckets.c.signature_id)
    )
    success_query = select(func.count()).where(successes.c.received_at >= since)
    if environment is not None:
        success_query = success_query.where(successes.c.environment == environment)

    with _one_snapshot(engine) as conn:
        sampled = {row.signature_id: row for row in conn.execute(sample_query)}
        bucketed = {row.signature_id: row for row in conn.execute(bucket_query)}
        succeeded = int(conn.execute(success_query).scalar_one())
        conn.rollback()

    floor = ceiling = uncertain = 0
    for signature_id in sampled.keys() | bucketed.keys():
        s, b = sampled.get(signature_id), bucketed.get(signature_id)
        low, high = count_in_window(
            SignatureWindow(
                bucketed=int(b.bucketed) if b else 0,
                head_bucket=int(b.head) if b else 0,
                samples=int(s.samples) if s else 0,
                head_samples=int(s.head) if s else 0,
                matching=int(s.matching) if s else 0,
                born_in_window=bool(s.born) if s else False,
            ),
            max_samples=max_samples,
            filtered=environment is not None,
        )
        floor, ceiling = floor + low, ceiling + high
        uncertain += high != low
    return FailureRate(
        failures=floor,
        successes=succeeded,
        failures_max=ceiling if uncertain else None,
        uncertain_signatures=uncertain,
    )


@dataclass(frozen=True)
class NewSignature:
    """A signature first seen inside the window: what it is and how often it has happened."""

    id: int
    fingerprint: str
    error_type: str
    message: str
    culprit: str
    category: str
    severity: str
    first_seen: datetime
    occurrence_count: int


def new_critical_signatures(
    engine: Engine, *, since: datetime, environment: str | None = None
) -> list[NewSignature]:
    """Return critical signatures first seen at or after `since`, oldest first."""
    query = select(signatures).where(
        signatures.c.severity == Severity.CRITICAL.value, signatures.c.first_seen >= since
    )
    if environment is not None:
        # Signatures span environments; a sample there says this one happened there.
        query = query.where(
            exists().where(
                and_(
                    events.c.signature_id == signatures.c.id,
                    events.c.environment == environment,
                )
            )
        )
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(signatures.c.first_seen, signatures.c.id)).all()
    return [
        NewSignature(
            id=row.id,
            fingerprint=row.fingerprint,
            error_type=row.error_type,
            message=row.message,
            culprit=row.culprit,
            category=row.category,
            severity=row.severity,
            first_seen=row.first_seen,
            occurrence_count=row.occurrence_count,
        )
        for row in rows
    ]


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def failure_rate_message(rate: FailureRate, *, window_minutes: int, scope: str) -> str:
    """Return the one-line alert text for a failure rate over the threshold."""
    bound = "" if rate.exact else f" (up to {_percent(rate.rate_max)}: samples were pruned)"
    return (
        f"Failure rate {_percent(rate.rate)}{bound} in {scope} over the last {window_minutes} min: "
        f"{rate.failures} of {rate.attempts} attempts failed."
    )


def critical_signature_message(signature: NewSignature) -> str:
    """Return the one-line alert text for a new critical signature."""
    where = f" at {signature.culprit}" if signature.culprit else ""
    return (
        f"New critical failure {signature.error_type}{where}: {signature.message[:300]} "
        f"({signature.occurrence_count} occurrence(s) since {signature.first_seen:%H:%M} UTC)."
    )


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def health_markdown(report: HealthReport) -> str:
    """Return the report as the markdown the `health` artifact shows."""
    scope = report.environment or "all environments"
    state = "**unhealthy**" if report.unhealthy else "healthy"
    rate, failures = _percent(report.rate), str(report.failures)
    if not report.exact:
        rate += f" to {_percent(report.rate_max)}"
        failures += f" to {report.failures_max} (samples were pruned: a floor and a ceiling)"
    lines = [
        f"# Health: {scope} — {state}",
        "",
        f"Window: the last {report.window_minutes} min (since {report.since:%Y-%m-%d %H:%M} UTC). "
        f"Alert when the failure rate is above {_percent(report.threshold)} "
        f"with at least {report.min_attempts} attempts.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| failure rate | {rate} |",
        f"| attempts | {report.attempts} |",
        f"| failures | {failures} |",
        f"| successes | {report.successes} |",
        f"| new critical signatures | {len(report.critical_signatures)} |",
        f"| alerts sent | {report.alerts_sent} |",
        f"| alerts not delivered | {report.alerts_undelivered} |",
        f"| alerts suppressed (cooldown) | {report.alerts_suppressed} |",
    ]
    if report.alerts:
        lines += ["", "| alert | outcome | channel | error |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(a.key)} | {a.status} | {_cell(a.channel or '—')} | {_cell(a.error or '')} |"
            for a in report.alerts
        ]
    return "\n".join(lines) + "\n"


@task(name="measure-failure-rate", **DB_TASK_OPTIONS)
def measure_health(since: datetime, environment: str | None = None) -> FailureRate:
    """Return the failure rate since `since` in the configured store."""
    return measure_failure_rate(get_engine(), since=since, environment=environment)


@task(name="find-new-critical-signatures", **DB_TASK_OPTIONS)
def find_new_critical_signatures(
    since: datetime, environment: str | None = None
) -> Sequence[NewSignature]:
    """Return the critical signatures first seen since `since` in the configured store."""
    return new_critical_signatures(get_engine(), since=since, environment=environment)


@task(name="publish-health-artifact", retries=2, retry_delay_seconds=2)
def publish_health(report: HealthReport) -> None:
    """Publish the report as the markdown artifact keyed `health`."""
    create_markdown_artifact(
        key=HEALTH_ARTIFACT_KEY,
        markdown=health_markdown(report),
        description="Failure rate over the health window and the alerts it raised.",
    )
