"""Alerts: one message per key per cooldown, through Prefect notification blocks and a webhook.

The cooldown is claimed before anything is sent: the check for a recent alert and the insert of
the new one run in one transaction that first takes a lock for the key (an advisory lock on
PostgreSQL, the database write lock on SQLite), so concurrent callers, threads or processes
sharing the store, send one message per key per cooldown. What remains: delivery happens after
the claim commits, so a process that dies between the two leaves an undelivered alert that still
holds the cooldown (at most once, never twice); a failed delivery also holds it, so an outage is
not hammered by a storm. Cooldowns are measured on the callers' clocks, so skew between machines
shifts the boundary by that much.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from prefect import task
from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, text, update
from sqlmodel import Session, col, select

from immunity.models.db import get_engine, session_scope
from immunity.models.reports import AlertOutcome, AlertStatus
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings, get_settings
from immunity.models.tables import Alert
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = [
    "alert_payload",
    "claim_alert",
    "deliver_to_block",
    "deliver_to_webhook",
    "list_alerts",
    "raise_alert",
    "send_alert",
]

MAX_KEY = 200
MAX_ERROR = 2_000
_URL = re.compile(r"https?://[^\s'\"<>]+")


@dataclass(frozen=True)
class _Channel:
    label: str  # what the Alert row and the CLI show: never a secret
    block: str | None = None
    url: str | None = None


def _origin(url: str) -> str:
    # Webhook URLs often carry their secret in the path (Slack, Teams): keep only the origin.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _redact(message: str) -> str:
    return _URL.sub(lambda match: _origin(match.group(0)) + "/…", message)


def _channels(settings: Settings) -> list[_Channel]:
    channels = [_Channel(label=f"block:{name}", block=name) for name in settings.alert_blocks]
    if settings.alert_webhook_url:
        url = settings.alert_webhook_url
        channels.append(_Channel(label=f"webhook:{_origin(url)}", url=url))
    return channels


def _describe(error: BaseException | None) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        response = error.response
        text_ = f"HTTP {response.status_code} {response.reason_phrase}: {response.text[:300]}"
    elif isinstance(error, NotificationError):
        text_ = f"notification failed: {error.log.strip()[:500]}"
    else:
        text_ = f"{type(error).__name__}: {error}"
    return _redact(text_.strip())[:MAX_ERROR]


def alert_payload(
    *, key: str, kind: str, severity: str, message: str, details: dict[str, Any], sent_at: datetime
) -> dict[str, Any]:
    """Return the JSON body the plain webhook receives."""
    return {
        "key": key,
        "kind": kind,
        "severity": severity,
        "message": message,
        "details": details,
        "sent_at": sent_at.isoformat(),
    }


def _block_text(payload: dict[str, Any]) -> tuple[str, str]:
    subject = f"[immunity] {payload['severity']} {payload['kind']}"
    lines = [payload["message"], "", f"key: {payload['key']}"]
    lines += [f"{name}: {value}" for name, value in payload["details"].items()]
    return "\n".join(lines), subject


def _lock_key(session: Session, key: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        # Released at commit or rollback; a hash collision only serialises two unrelated keys.
        number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), signed=True)
        session.connection().execute(
            text("SELECT pg_advisory_xact_lock(:number)"), {"number": number}
        )
    else:
        # SQLite has one writer: taking the write lock now makes check-then-insert atomic.
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")


def claim_alert(
    engine: Engine,
    *,
    key: str,
    kind: str,
    severity: str,
    message: str,
    details: dict[str, Any],
    channel: str,
    cooldown: timedelta,
) -> Alert | None:
    """Return the new Alert row, or None when one with this key was sent within `cooldown`."""
    with session_scope(engine) as session:
        _lock_key(session, key)
        now = utcnow()  # read under the lock, so the winner's row is visible to the check
        recent = session.exec(
            select(Alert.id).where(Alert.key == key, col(Alert.sent_at) > now - cooldown).limit(1)
        ).first()
        if recent is not None:
            return None
        alert = Alert(
            key=key,
            kind=kind,
            severity=severity,
            message=message,
            details=details,
            channel=channel[:200],
            sent_at=now,
        )
        session.add(alert)
    return alert


def _record_delivery(engine: Engine, alert_id: int, *, delivered: bool, error: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(Alert).where(col(Alert.id) == alert_id).values(delivered=delivered, error=error)
        )


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Return True for outages (5xx, 429, lost connections); a refused or bad request fails now."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500 or error.response.status_code == 429
    return isinstance(error, httpx.TransportError | NotificationError)


_DELIVERY_OPTIONS: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [0.5, 2],
    "retry_condition_fn": _worth_retrying,
    "cache_policy": NO_CACHE,
}


@task(name="deliver-alert-webhook", **_DELIVERY_OPTIONS)
def deliver_to_webhook(url: str, payload: dict[str, Any]) -> None:
    """POST the alert's JSON to the webhook; raise when it is not accepted."""
    response = httpx.post(url, json=payload, timeout=10)
    response.raise_for_status()


@task(name="deliver-alert-block", **_DELIVERY_OPTIONS)
def deliver_to_block(name: str, body: str, subject: str) -> None:
    """Send the alert through the Prefect notification block `name` (`<type-slug>/<name>`)."""
    if "/" not in name:
        raise ValueError(f"block {name!r}: name it <block-type-slug>/<name> (slack-webhook/ops)")
    block = Block.load(name)
    if not isinstance(block, NotificationBlock):
        raise TypeError(f"block {name!r} is a {type(block).__name__}, not a notification block")
    # Apprise-based blocks (Slack, Teams) only log a failure unless asked to raise.
    with block.raise_on_failure():
        block.notify(body, subject)


def send_alert(
    engine: Engine,
    settings: Settings,
    *,
    key: str,
    kind: str,
    severity: str,
    message: str,
    details: dict[str, Any] | None = None,
    cooldown: timedelta | None = None,
) -> AlertOutcome:
    """Return what became of the alert: claimed under the key's cooldown, delivered, recorded.

    Delivery failures are recorded on the Alert row (delivered False, error) and never raised.
    `cooldown` overrides `alert_cooldown_minutes` for this alert.
    """
    if len(key) > MAX_KEY:
        raise ValueError(f"alert key longer than {MAX_KEY} characters: {key[:60]}…")
    channels = _channels(settings)
    # Round-tripped so the row, the webhook and the block all get plain JSON.
    plain = json.loads(json.dumps(details or {}, default=str))
    window = timedelta(minutes=settings.alert_cooldown_minutes) if cooldown is None else cooldown
    alert = claim_alert(
        engine,
        key=key,
        kind=kind,
        severity=severity,
        message=message,
        details=plain,
        channel=", ".join(channel.label for channel in channels),
        cooldown=window,
    )
    if alert is None or alert.id is None:
        return AlertOutcome(key=key, kind=kind, status=AlertStatus.SUPPRESSED)
    payload = alert_payload(
        key=key, kind=kind, severity=severity, message=message, details=plain, sent_at=alert.sent_at
    )
    body, subject = _block_text(payload)
    errors = []
    for channel in channels:
        if channel.url is not None:
            state = deliver_to_webhook(channel.url, payload, return_state=True)
        else:
            state = deliver_to_block(str(channel.block), body, subject, return_state=True)
        if not state.is_completed():
            errors.append(f"{channel.label}: {_describe(state.result(raise_on_failure=False))}")
    if not channels:
        status, error = AlertStatus.RECORDED, "no alert channel configured"
    else:
        status = AlertStatus.FAILED if errors else AlertStatus.SENT
        error = "; ".join(errors) or None
    _record_delivery(engine, alert.id, delivered=status == AlertStatus.SENT, error=error)
    return AlertOutcome(
        key=key, kind=kind, status=status, alert_id=alert.id, channel=alert.channel, error=error
    )


@task(name="send-alert", **DB_TASK_OPTIONS)
def raise_alert(
    key: str,
    kind: str,
    severity: str,
    message: str,
    details: dict[str, Any] | None = None,
    cooldown_minutes: float | None = None,
) -> AlertOutcome:
    """Return the outcome of alerting through the configured store and channels."""
    # A retry after the claim committed finds it and reports `suppressed`: never a second send.
    cooldown = None if cooldown_minutes is None else timedelta(minutes=cooldown_minutes)
    return send_alert(
        get_engine(),
        get_settings(),
        key=key,
        kind=kind,
        severity=severity,
        message=message,
        details=details,
        cooldown=cooldown,
    )


def list_alerts(engine: Engine, *, limit: int = 50) -> Sequence[Alert]:
    """Return the most recent alerts, newest first."""
    with Session(engine) as session:
        query = select(Alert).order_by(col(Alert.sent_at).desc(), col(Alert.id).desc()).limit(limit)
        return session.exec(query).all()
