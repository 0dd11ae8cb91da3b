"""The health rule and alerting against a real store and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.reports import AlertStatus
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.tables import Alert, FailureEvent
from immunity.tasks.health.tasks import (
    FailureRate,
    SignatureWindow,
    count_in_window,
    measure_failure_rate,
    new_critical_signatures,
    should_alert,
)
from immunity.tasks.ingest.pipeline import process_failures, process_successes
from immunity.tasks.shared.alerts import send_alert

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
HOUR_AGO = NOW - timedelta(hours=1)
RULE = {"threshold": 0.5, "min_attempts": 5}


class Receiver:
    """A real webhook receiver: records each JSON body and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # 44 ms per answer otherwise

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.bodies.append(json.loads(raw))
                reply = b'{"ok": true}' if receiver.status < 400 else b"receiver is down"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/secret-token"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def failure(at: datetime, *, kind: str = "DependencyValidationError", **extra: Any) -> dict:
    """A failure event of one bug (one signature per `kind`) received at `at`."""
    return {
        "error_type": kind,
        "message": "dependency validation failed",
        "frames": [{"module": "app.deps", "function": "validate", "in_app": True}],
        "received_at": at.isoformat(),
        **extra,
    }


def success(at: datetime, **extra: Any) -> dict:
    return {"operation": "POST /api/generate", "received_at": at.isoformat(), **extra}


def ingest(
    engine: Engine, failures: Sequence[dict], successes: Sequence[dict] = (), **settings: Any
) -> None:
    config = Settings(**settings)
    if failures:
        assert process_failures(failures, engine=engine, settings=config).accepted == len(failures)
    if successes:
        stored = process_successes(successes, engine=engine, settings=config)
        assert stored.accepted == len(successes)


# The rule itself -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "successes", "alert"),
    [
        (4, 0, False),  # 100 % of 4: too few attempts
        (3, 2, True),  # 60 % of 5: the first that counts
        (5, 5, False),  # exactly 50 %: not above it
        (6, 5, True),  # 6 of 11
        (0, 0, False),
    ],
)
def test_rule_is_strict_at_its_edges(failures: int, successes: int, alert: bool) -> None:
    assert should_alert(FailureRate(failures, successes), **RULE) is alert


@pytest.mark.parametrize(
    ("failures", "successes", "alert"), [(4, 0, False), (3, 2, True), (5, 5, False), (6, 5, True)]
)
def test_rule_on_the_store(engine: Engine, failures: int, successes: int, alert: bool) -> None:
    ingest(
        engine,
        [failure(NOW - timedelta(minutes=n + 1)) for n in range(failures)],
        [success(NOW - timedelta(minutes=n + 1)) for n in range(successes)],
    )
    rate = measure_failure_rate(engine, since=HOUR_AGO)
    assert (rate.failures, rate.successes, rate.attempts) == (
        failures,
        successes,
        failures + successes,
    )
    assert rate.exact
    assert should_alert(rate, **RULE) is alert


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=2, seconds=30)])
def test_an_event_just_outside_the_window_does_not_count(engine: Engine, offset: timedelta) -> None:
    # On the bucket grid, and halfway into a bucket (whose earlier half lies outside the window).
    since = HOUR_AGO + offset
    tick = timedelta(milliseconds=1)
    ingest(
        engine,
        [failure(since - tick), failure(since), failure(since + tick), failure(NOW)],
        [success(since - tick), success(since)],
    )
    rate = measure_failure_rate(engine, since=since)
    assert (rate.failures, rate.successes, rate.exact) == (3, 1, True)
    later = measure_failure_rate(engine, since=since + tick)
    assert (later.failures, later.successes) == (2, 0)


def test_pruned_samples_still_count_exactly(engine: Engine) -> None:
    # Only 5 samples are kept per signature, but the exact per-bucket counts carry the rest.
    old = [failure(NOW - timedelta(hours=3))]
    recent = [failure(NOW - timedelta(minutes=n)) for n in range(12)]
    ingest(engine, old + recent, [success(NOW)] * 3, max_samples_per_signature=5)
    with Session(engine) as session:
        assert len(session.exec(select(FailureEvent)).all()) == 5
    rate = measure_failure_rate(engine, since=HOUR_AGO, max_samples=5)
    assert (rate.failures, rate.successes, rate.exact) == (12, 3, True)


def test_pruned_head_slice_gives_honest_bounds(engine: Engine) -> None:
    since = HOUR_AGO + timedelta(minutes=2, seconds=30)  # inside the bucket 11:00–11:05
    events = (
        [failure(NOW - timedelta(hours=3))]
        + [failure(HOUR_AGO + timedelta(minutes=1, seconds=n)) for n in range(3)]  # before since
        + [failure(since + timedelta(seconds=n)) for n in range(2)]  # the head slice
        + [failure(HOUR_AGO + timedelta(minutes=10 + n)) for n in range(10)]
    )
    ingest(engine, events, [success(NOW)] * 10, max_samples_per_signature=5)
    rate = measure_failure_rate(engine, since=since, max_samples=5)
    # 12 really happened: 10 in whole buckets for sure, the 2 in the head slice were pruned.
    assert (rate.failures, rate.failures_max, rate.exact) == (10, 15, False)
    assert rate.uncertain_signatures == 1
    assert (rate.rate, rate.rate_max) == (10 / 20, 15 / 25)


def test_a_signature_born_in_the_window_is_exact_even_when_pruned(engine: Engine) -> None:
    since = HOUR_AGO + timedelta(minutes=2, seconds=30)
    events = [failure(since + timedelta(seconds=n)) for n in range(8)]
    ingest(engine, events, max_samples_per_signature=5)
    rate = measure_failure_rate(engine, since=since, max_samples=5)
    assert (rate.failures, rate.exact) == (8, True)


def test_counting_rules_per_signature() -> None:
    def bounds(filtered: bool = False, **window: Any) -> tuple[int, int]:
        return count_in_window(SignatureWindow(**window), max_samples=5, filtered=filtered)

    assert bounds(bucketed=3, samples=3, matching=3) == (3, 3)
    assert bounds(bucketed=9, head_bucket=4, samples=5, head_samples=1) == (10, 13)
    assert bounds(bucketed=9, head_bucket=4, samples=5, born_in_window=True) == (13, 13)
    # Rows stored before buckets existed still count.
    assert bounds(samples=2, matching=2) == (2, 2)
    # One environment: samples are exact below the bound; beyond it the buckets give a ceiling.
    assert bounds(True, bucketed=4, samples=4, matching=1) == (1, 1)
    assert bounds(True, bucketed=20, samples=5, matching=3) == (3, 18)


def test_environment_filter_counts_only_that_environment(engine: Engine) -> None:
    at = NOW - timedelta(minutes=5)
    ingest(
        engine,
        [failure(at, environment="production")] * 3 + [failure(at, environment="staging")] * 4,
        [success(at, environment="production")] * 2 + [success(at, environment="staging")],
    )
    production = measure_failure_rate(engine, since=HOUR_AGO, environment="production")
    assert (production.failures, production.successes, production.exact) == (3, 2, True)
    everywhere = measure_failure_rate(engine, since=HOUR_AGO)
    assert (everywhere.failures, everywhere.successes) == (7, 3)


def test_new_critical_signatures_are_those_first_seen_in_the_window(engine: Engine) -> None:
    ingest(
        engine,
        [
            failure(NOW - timedelta(minutes=5), kind="LedgerCorrupted", severity="critical"),
            failure(NOW - timedelta(hours=2), kind="OldCritical", severity="critical"),
            failure(NOW - timedelta(minutes=1), kind="OldCritical", severity="critical"),
            failure(NOW - timedelta(minutes=5), kind="MerelyHigh", severity="high"),
        ],
    )
    found = new_critical_signatures(engine, since=HOUR_AGO)
    assert [s.error_type for s in found] == ["LedgerCorrupted"]
    assert found[0].severity == "critical" and len(found[0].fingerprint) >= 16
    assert new_critical_signatures(engine, since=HOUR_AGO, environment="staging") == []


# Alerts ----------------------------------------------------------------------------------------


def alert(engine: Engine, settings: Settings, key: str = "failure_rate:all", **extra: Any):
    fields = {
        "kind": "failure_rate",
        "severity": "critical",
        "message": "Failure rate 60.0 % over the last 60 min",
        "details": {"failures": 6, "attempts": 10, "seen": NOW},
        **extra,
    }
    return send_alert(engine, settings, key=key, **fields)


def alerts_for(engine: Engine, key: str) -> list[Alert]:
    with Session(engine) as session:
        return list(session.exec(select(Alert).where(Alert.key == key)))


# Alerts delivered outside a flow (as here) run as standalone task runs, whose log lines Prefect
# warns it cannot ship to the API; inside the health flow they can.
STANDALONE_TASK_LOGS = "ignore:Logger 'prefect.task_runs' attempted to send logs:UserWarning"


def needs_prefect(test: Any) -> Any:
    """Mark a test that delivers through Prefect tasks (the session's Prefect server)."""
    marked = pytest.mark.filterwarnings(STANDALONE_TASK_LOGS)(test)
    return pytest.mark.usefixtures("prefect_harness")(marked)


@needs_prefect
def test_a_storm_sends_one_message_per_key(engine: Engine, receiver: Receiver) -> None:
    settings = Settings(alert_webhook_url=receiver.url, alert_cooldown_minutes=30)
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda _: alert(engine, settings), range(20)))
    statuses = sorted(o.status for o in outcomes)
    assert statuses.count(AlertStatus.SENT) == 1
    assert statuses.count(AlertStatus.SUPPRESSED) == 19
    [body] = receiver.bodies
    assert body["key"] == "failure_rate:all" and body["kind"] == "failure_rate"
    assert body["severity"] == "critical" and body["message"].startswith("Failure rate 60.0 %")
    assert body["details"] == {"failures": 6, "attempts": 10, "seen": str(NOW)}
    assert datetime.fromisoformat(body["sent_at"]).tzinfo is not None
    [row] = alerts_for(engine, "failure_rate:all")
    assert row.delivered and row.error is None
    # The channel names where it went without the webhook's secret path.
    assert row.channel == f"webhook:{receiver.url.split('/hooks')[0]}"
    assert "secret-token" not in row.channel

    other = alert(engine, settings, key="critical_signature:abc", kind="critical_signature")
    assert other.status == AlertStatus.SENT and other.delivered
    assert [b["key"] for b in receiver.bodies] == ["failure_rate:all", "critical_signature:abc"]


@needs_prefect
def test_the_key_sends_again_once_the_cooldown_has_passed(
    engine: Engine, receiver: Receiver
) -> None:
    settings = Settings(alert_webhook_url=receiver.url, alert_cooldown_minutes=30)
    with Session(engine) as session:
        for key, minutes in (("cooled", 31), ("cooling", 29)):
            session.add(
                Alert(
                    key=key,
                    kind="failure_rate",
                    severity="critical",
                    message="earlier",
                    delivered=True,
                    sent_at=utcnow() - timedelta(minutes=minutes),
                )
            )
        session.commit()
    assert alert(engine, settings, key="cooled").status == AlertStatus.SENT
    assert alert(engine, settings, key="cooling").status == AlertStatus.SUPPRESSED
    assert [b["key"] for b in receiver.bodies] == ["cooled"]
    assert len(alerts_for(engine, "cooled")) == 2
    # A cooldown given per alert overrides the configured one.
    overridden = alert(engine, settings, key="cooling", cooldown=timedelta(minutes=10))
    assert overridden.status == AlertStatus.SENT


@needs_prefect
def test_delivery_through_a_prefect_notification_block(engine: Engine, receiver: Receiver) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    CustomWebhookNotificationBlock(
        name="immunity",
        url=receiver.url,
        json_data={"title": "{{subject}}", "text": "{{body}}"},
    ).save("immunity-alerts-test", overwrite=True)
    settings = Settings(alert_blocks=["custom-webhook/immunity-alerts-test"])
    outcome = alert(engine, settings)
    assert outcome.status == AlertStatus.SENT, outcome.error
    assert outcome.channel == "block:custom-webhook/immunity-alerts-test"
    [body] = receiver.bodies
    assert body["title"] == "[immunity] critical failure_rate"
    assert (
        body["text"].startswith("Failure rate 60.0 %") and "key: failure_rate:all" in body["text"]
    )
    assert alert(engine, settings).status == AlertStatus.SUPPRESSED
    assert len(receiver.bodies) == 1


@needs_prefect
def test_a_failing_receiver_is_recorded_not_raised(engine: Engine) -> None:
    with Receiver(status=500) as down:
        settings = Settings(alert_webhook_url=down.url)
        outcome = alert(engine, settings)
        assert len(down.bodies) == 3  # tried, then retried twice
    assert outcome.status == AlertStatus.FAILED and not outcome.delivered
    [row] = alerts_for(engine, "failure_rate:all")
    assert not row.delivered
    assert row.error is not None and "HTTP 500" in row.error and "receiver is down" in row.error
    assert "secret-token" not in row.error
    # A failed delivery holds the cooldown too: an outage is not hammered by the storm.
    assert alert(engine, settings).status == AlertStatus.SUPPRESSED


@needs_prefect
def test_one_broken_channel_does_not_stop_the_others(engine: Engine, receiver: Receiver) -> None:
    settings = Settings(
        alert_blocks=["custom-webhook/no-such-block"], alert_webhook_url=receiver.url
    )
    outcome = alert(engine, settings)
    assert outcome.status == AlertStatus.FAILED
    assert outcome.error is not None and "block:custom-webhook/no-such-block" in outcome.error
    assert len(receiver.bodies) == 1
    [row] = alerts_for(engine, "failure_rate:all")
    assert not row.delivered and row.error == outcome.error


def test_without_a_channel_the_alert_is_only_recorded(engine: Engine) -> None:
    outcome = alert(engine, Settings())
    assert outcome.status == AlertStatus.RECORDED
    [row] = alerts_for(engine, "failure_rate:all")
    assert not row.delivered and row.error == "no alert channel configured"
    assert alert(engine, Settings()).status == AlertStatus.SUPPRESSED
