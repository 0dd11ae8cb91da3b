"""The health-check flow end to end: real store, real Prefect server, real webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlmodel import Session, select

from immunity.flows.health import check_health
from immunity.models.db import get_engine
from immunity.models.reports import AlertStatus
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.models.tables import Alert, Signature
from immunity.tasks.health.tasks import HEALTH_ARTIFACT_KEY
from immunity.tasks.ingest.pipeline import process_failures, process_successes
from tests.tasks.test_health_alerts import Receiver, failure, success

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def receiver(store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A webhook receiver the configured settings alert to."""
    with Receiver() as running:
        monkeypatch.setenv("IMMUNITY_ALERT_WEBHOOK_URL", running.url)
        get_settings.cache_clear()
        yield running
    get_settings.cache_clear()


def test_unhealthy_store_alerts_once_then_cools_down(store: str, receiver: Receiver) -> None:
    engine, settings = get_engine(store), get_settings()
    at = utcnow() - timedelta(minutes=10)
    failures = [failure(at + timedelta(seconds=n)) for n in range(5)]
    failures.append(failure(at, kind="LedgerCorrupted", severity="critical"))
    process_failures(failures, engine=engine, settings=settings)
    process_successes([success(at)] * 4, engine=engine, settings=settings)
    # Outside the hour: neither counts nor is new.
    old = utcnow() - timedelta(minutes=61)
    process_failures(
        [failure(old, kind="Ancient", severity="critical")], engine=engine, settings=settings
    )
    process_successes([success(old)], engine=engine, settings=settings)
    with Session(engine) as session:
        critical = session.exec(
            select(Signature).where(Signature.error_type == "LedgerCorrupted")
        ).one()

    report = check_health()
    assert (report.failures, report.successes, report.attempts) == (6, 4, 10)
    assert report.rate == pytest.approx(0.6) and report.exact and report.unhealthy
    assert report.critical_signatures == [critical.fingerprint]
    keys = {"failure_rate:all", f"critical_signature:{critical.fingerprint}"}
    assert {a.key for a in report.alerts} == keys
    assert all(a.status == AlertStatus.SENT for a in report.alerts)
    assert {b["key"] for b in receiver.bodies} == keys and len(receiver.bodies) == 2
    by_key = {b["key"]: b for b in receiver.bodies}
    assert by_key["failure_rate:all"]["details"]["attempts"] == 10
    assert "LedgerCorrupted" in by_key[f"critical_signature:{critical.fingerprint}"]["message"]
    with Session(engine) as session:
        rows = session.exec(select(Alert)).all()
    assert {r.key for r in rows} == keys and all(r.delivered for r in rows)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[HEALTH_ARTIFACT_KEY]))
        )
    assert any("60.0 %" in str(a.data) and "unhealthy" in str(a.data) for a in artifacts)

    again = check_health()
    assert again.unhealthy
    assert [a.status for a in again.alerts] == [AlertStatus.SUPPRESSED] * 2
    assert again.alerts_suppressed == 2 and again.alerts_sent == 0
    assert len(receiver.bodies) == 2

    elsewhere = check_health(environment="staging")
    assert (elsewhere.attempts, elsewhere.unhealthy, elsewhere.alerts) == (0, False, [])


def test_healthy_store_alerts_nothing(store: str, receiver: Receiver) -> None:
    engine, settings = get_engine(store), get_settings()
    at = utcnow() - timedelta(minutes=5)
    process_failures([failure(at)] * 5, engine=engine, settings=settings)
    process_successes([success(at)] * 5, engine=engine, settings=settings)  # exactly 50 %
    report = check_health()
    assert (report.failures, report.attempts, report.unhealthy) == (5, 10, False)
    assert report.alerts == [] and receiver.bodies == []
