"""The health loop (seed 001's checkHealthMetrics) and the readiness score (seed 003)."""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger

from immunity.models.enums import Severity
from immunity.models.readiness import Readiness
from immunity.models.reports import AlertOutcome, HealthReport
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.tasks.deploy.tasks import link_recent_suspect_deployments
from immunity.tasks.health.readiness_tasks import measure, publish_readiness
from immunity.tasks.health.tasks import (
    critical_signature_message,
    failure_rate_message,
    find_new_critical_signatures,
    measure_health,
    publish_health,
    should_alert,
)
from immunity.tasks.shared.alerts import raise_alert

__all__ = ["check_health", "check_readiness"]


@flow(name="health-check")
def check_health(environment: str | None = None) -> HealthReport:
    """Measure the failure rate over the health window and alert on it and on new criticals.

    Alerts (one per key per cooldown): `failure_rate:<environment or all>` when more than
    `health_failure_rate` of at least `health_min_attempts` attempts failed, and
    `critical_signature:<fingerprint>` for each critical signature first seen in the window.

    Args:
        environment: Count only this environment's events (default: every environment).
    """
    settings = get_settings()
    since = utcnow() - timedelta(minutes=settings.health_window_minutes)
    # New signatures soon after a deployment make it their suspect (the heal loop's rollback).
    link_recent_suspect_deployments()
    rate = measure_health(since, environment)
    critical = find_new_critical_signatures(since, environment)
    scope = environment or "all"
    unhealthy = should_alert(
        rate, threshold=settings.health_failure_rate, min_attempts=settings.health_min_attempts
    )
    alerts: list[AlertOutcome] = []
    if unhealthy:
        alerts.append(
            raise_alert(
                key=f"failure_rate:{scope}",
                kind="failure_rate",
                severity=Severity.CRITICAL.value,
                message=failure_rate_message(
                    rate, window_minutes=settings.health_window_minutes, scope=scope
                ),
                details={
                    "environment": scope,
                    "failures": rate.failures,
                    "failures_max": rate.failures_max,
                    "successes": rate.successes,
                    "attempts": rate.attempts,
                    "rate": round(rate.rate, 4),
                    "threshold": settings.health_failure_rate,
                    "window_minutes": settings.health_window_minutes,
                },
            )
        )
    for signature in critical:
        alerts.append(
            raise_alert(
                key=f"critical_signature:{signature.fingerprint}",
                kind="critical_signature",
                severity=signature.severity,
                message=critical_signature_message(signature),
                details={
                    "signature_id": signature.id,
                    "fingerprint": signature.fingerprint,
                    "error_type": signature.error_type,
                    "category": signature.category,
                    "culprit": signature.culprit,
                    "occurrences": signature.occurrence_count,
                    "first_seen": signature.first_seen.isoformat(),
                },
                # A signature stays "new" for the whole window: one alert for it, not one per
                # cooldown while it is still inside the window.
                cooldown_minutes=max(
                    settings.alert_cooldown_minutes, settings.health_window_minutes
                ),
            )
        )
    report = HealthReport(
        environment=environment,
        since=since,
        window_minutes=settings.health_window_minutes,
        failures=rate.failures,
        failures_max=rate.failures_max,
        successes=rate.successes,
        attempts=rate.attempts,
        rate=rate.rate,
        rate_max=rate.rate_max,
        exact=rate.exact,
        threshold=settings.health_failure_rate,
        min_attempts=settings.health_min_attempts,
        unhealthy=unhealthy,
        critical_signatures=[signature.fingerprint for signature in critical],
        alerts=alerts,
    )
    publish_health(report)
    logger = get_run_logger()
    logger.info(
        "failure rate %.1f%% (%d of %d attempts)%s; %d new critical signature(s); "
        "alerts: %d sent, %d not delivered, %d suppressed",
        100 * rate.rate,
        rate.failures,
        rate.attempts,
        "" if rate.exact else f", up to {100 * rate.rate_max:.1f}% (samples pruned)",
        len(critical),
        report.alerts_sent,
        report.alerts_undelivered,
        report.alerts_suppressed,
    )
    for outcome in alerts:
        if outcome.error:
            logger.warning("alert %s: %s", outcome.key, outcome.error)
    return report


@flow(name="readiness-check")
def check_readiness(environment: str | None = None) -> Readiness:
    """Score production readiness 0–100 and publish it as the `readiness` artifact.

    Parts (seed 003's weights, `IMMUNITY_READINESS_WEIGHTS`): workflow and scenario tests, UI
    tests, service health, the database, the queue. A part that cannot be measured gives its weight
    to the others, and the readiness says so in its notes.

    Args:
        environment: Judge the tests by their latest run there (default: their latest anywhere).
    """
    readiness = measure(environment)
    publish_readiness(readiness)
    logger = get_run_logger()
    logger.info(
        "readiness %.1f (%s); %d critical test(s) failing",
        readiness.score,
        readiness.band,
        len(readiness.critical_failures),
    )
    for note in readiness.notes:
        logger.info("note: %s", note)
    return readiness
