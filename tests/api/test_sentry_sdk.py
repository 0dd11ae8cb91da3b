"""Acceptance: an app instrumented with the real sentry-sdk reports to immunity by changing its DSN.

Everything runs over real HTTP on 127.0.0.1: immunity's API (with the Sentry-compatible router), and
a FastAPI "shop" instrumented with `sentry_sdk.init(dsn="http://<key>@127.0.0.1:<port>/42")` and
the SDK's own Starlette/FastAPI integrations, transport and compression (brotli: the brotli
package is installed, so the SDK picks it, as it would in a team's environment).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from immunity.api.app import create_app
from immunity.examples.sample_service.server import RunningServer, start_server
from immunity.models.db import get_engine
from immunity.models.settings import Environment, Settings
from immunity.models.tables import FailureEvent, RegressionTest, Signature, SuccessEvent
from tests.tasks.ingest.test_sentry import BACKGROUND_RANDOM, sentry_like, session_like

KEY = "5f0c6d2a9b8e4f7a8c1d2e3f4a5b6c7d"
PROJECT = "42"
LIMIT = 256 * 1024


class OrderFailed(Exception):
    """The shop's bug: orders for the BROKEN sku fail."""


@dataclass
class Immunity:
    """immunity's API on 127.0.0.1 and its store."""

    server: RunningServer
    app: FastAPI
    engine: Engine

    def url(self, path: str) -> str:
        return self.server.base_url + path

    def count(self, model: type) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(model)).scalar_one()  # type: ignore[attr-defined]

    def all(self, model: type) -> list[Any]:
        with Session(self.engine) as session:
            return list(session.exec(select(model)).scalars())  # type: ignore[attr-defined]


@pytest.fixture
def immunity(db_url: str) -> Iterator[Immunity]:
    settings = Settings(
        sentry_projects={PROJECT: KEY},
        max_request_bytes=LIMIT,
        environments={"production": Environment(base_url="http://127.0.0.1:9")},
    )
    engine = get_engine(db_url)
    app = create_app(settings=settings, engine=engine)
    with start_server(app) as server:
        yield Immunity(server, app, engine)


def shop_app() -> FastAPI:
    """A small real service; built after sentry_sdk.init so the FastAPI integration wraps it."""
    app = FastAPI()

    @app.post("/api/orders/{order_id}")
    async def create_order(order_id: int, request: Request) -> dict[str, Any]:
        order = await request.json()
        if order.get("sku") == "BROKEN":
            raise OrderFailed(f"order {order_id} failed for sku {order['sku']}")
        return {"order_id": order_id, "status": "created"}

    return app


@pytest.fixture
def shop(immunity: Immunity) -> Iterator[httpx.Client]:
    """The shop, reporting to immunity through the real sentry-sdk; SDK state reset afterwards."""
    own_requests = immunity.server.base_url

    def not_immunitys_own(event: Any, hint: Any) -> Any:
        # immunity's API runs in this process too, so the SDK's integrations see its requests.
        return (
            None if str(event.get("request", {}).get("url", "")).startswith(own_requests) else event
        )

    sentry_sdk.init(
        dsn=f"http://{KEY}@127.0.0.1:{immunity.server.port}/{PROJECT}",
        send_default_pii=True,
        default_integrations=False,
        integrations=[StarletteIntegration(), FastApiIntegration()],
        traces_sample_rate=0,
        auto_session_tracking=True,
        release="shop@1.2.3",
        before_send=not_immunitys_own,
        http_proxy="",  # never a proxy from the environment: only 127.0.0.1 is reachable
    )
    try:
        # No keep-alive: uvicorn drops a connection after an unhandled error, racing its reuse.
        no_reuse = httpx.Limits(max_keepalive_connections=0)
        with (
            start_server(shop_app()) as server,
            httpx.Client(base_url=server.base_url, limits=no_reuse) as client,
        ):
            settings = immunity.app.state.settings
            immunity.app.state.settings = settings.model_copy(
                update={"environments": {"production": Environment(base_url=server.base_url)}}
            )
            yield client
    finally:
        sentry_sdk.get_client().close(timeout=5)
        sentry_sdk.get_global_scope().set_client(None)


def settle(immunity: Immunity, model: type, expected: int, timeout_s: float = 20) -> None:
    """Flush the SDK until immunity has stored `expected` rows of `model` and has answered."""
    deadline = time.monotonic() + timeout_s
    # The shop answers 500 before the SDK's middleware captures, so one flush may come too early.
    while (found := immunity.count(model)) < expected:
        assert time.monotonic() < deadline, f"{found} of {expected} {model.__name__} rows arrived"
        sentry_sdk.flush(timeout=5)
        time.sleep(0.05)
    # Stored is not yet answered (tests are generated after the commit): wait for the answers.
    sentry_sdk.flush(timeout=5)


def order(shop: httpx.Client, order_id: int, sku: str = "BROKEN") -> httpx.Response:
    return shop.post(
        f"/api/orders/{order_id}?channel=web",
        json={"sku": sku, "qty": 2, "password": "hunter2"},
        headers={"Authorization": "Bearer s3cr3t-token", "Cookie": "sid=abc123", "X-Trace": "t-1"},
    )


def test_the_sdk_reports_failures_and_three_make_a_regression_test(
    immunity: Immunity, shop: httpx.Client
) -> None:
    assert order(shop, 6, sku="OK").status_code == 200
    assert order(shop, 7).status_code == 500
    settle(immunity, FailureEvent, 1)

    [signature] = immunity.all(Signature)
    assert (signature.error_type, signature.occurrence_count) == ("OrderFailed", 1)
    assert signature.culprit == f"{__name__} in create_order"  # pytest names the module
    [event] = immunity.all(FailureEvent)
    assert (event.source, event.environment, event.release) == (
        "sentry",
        "production",
        "shop@1.2.3",
    )
    assert event.message == "order 7 failed for sku BROKEN" and event.status_code == 500
    assert event.severity == "high" and event.frames[-1]["function"] == "create_order"
    request = event.request
    assert request["method"] == "POST"
    assert request["url"] == f"{shop.base_url}/api/orders/7?channel=web"
    assert request["headers"]["x-trace"] == "t-1"
    assert "s3cr3t" not in json.dumps(request) and "abc123" not in json.dumps(request)
    # FastApiIntegration sends the parsed JSON body (the SDK itself filters "password").
    assert request["body"] == {"sku": "BROKEN", "qty": 2, "password": "[Filtered]"}
    assert immunity.count(RegressionTest) == 0

    assert order(shop, 8).status_code == 500 and order(shop, 9).status_code == 500
    settle(immunity, FailureEvent, 3)
    [test] = immunity.all(RegressionTest)
    [signature] = immunity.all(Signature)
    assert signature.occurrence_count == 3 and signature.test_id == test.id
    assert test.spec["method"] == "POST"
    assert test.spec["path"].startswith("/api/orders/") and test.spec["path"].endswith(
        "?channel=web"
    )
    assert test.spec["body"]["sku"] == "BROKEN"
    # The test replays what failed: against the still-broken shop it fails the same way.
    replay = shop.request(test.spec["method"], test.spec["path"], json=test.spec["body"])
    assert replay.status_code == 500


def test_release_health_sessions_become_successes(immunity: Immunity, shop: httpx.Client) -> None:
    assert order(shop, 1, sku="OK").status_code == 200
    assert order(shop, 2, sku="OK").status_code == 200
    settle(immunity, SuccessEvent, 2)
    sessions = immunity.all(SuccessEvent)
    assert {s.operation for s in sessions} == {"session"}
    assert {s.meta["release"] for s in sessions} == {"shop@1.2.3"}


def envelope_bytes(*items: tuple[str, dict[str, Any]], event_id: str | None = None) -> bytes:
    envelope = Envelope(headers={"event_id": event_id} if event_id else {})
    for kind, payload in items:
        if kind == "event":
            envelope.add_event(payload)
        else:
            envelope.add_sessions(payload)
    return envelope.serialize()


AUTH = {"X-Sentry-Auth": f"Sentry sentry_key={KEY}, sentry_version=7"}
EVENT = {
    "event_id": "0123456789abcdef0123456789abcdef",
    "level": "error",
    "exception": {"values": [{"type": "ValueError", "value": "bad", "stacktrace": {"frames": []}}]},
    "request": {"method": "GET", "url": "http://shop.test/x"},
}


def test_envelopes_answer_like_sentry_and_report_session_counts(immunity: Immunity) -> None:
    sessions = {"attrs": {"release": "r"}, "aggregates": [{"exited": 3, "crashed": 2}]}
    body = envelope_bytes(("event", EVENT), ("sessions", sessions), event_id=EVENT["event_id"])
    response = httpx.post(
        immunity.url(f"/api/{PROJECT}/envelope/"),
        content=gzip.compress(body),
        headers={
            **AUTH,
            "Content-Encoding": "gzip",
            "Content-Type": "application/x-sentry-envelope",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": EVENT["event_id"],
        "sessions": {"successes": 3, "dropped": 0, "crashed": 2, "errored": 0, "abnormal": 0},
    }
    # 200 means committed: both are in the store as the answer arrives.
    assert (immunity.count(FailureEvent), immunity.count(SuccessEvent)) == (1, 3)


def test_the_legacy_store_endpoint_and_the_key_in_the_query(immunity: Immunity) -> None:
    url = immunity.url(f"/api/{PROJECT}/store/?sentry_key={KEY}")
    # A client that does not filter headers itself: immunity scrubs them before storing.
    headers = {"Authorization": "Bearer raw-secret", "Cookie": "sid=raw-cookie", "X-Id": "7"}
    event = {**EVENT, "request": {**EVENT["request"], "headers": headers}}
    del event["event_id"]
    response = httpx.post(url, json=event)
    assert response.status_code == 200 and len(response.json()["id"]) == 32
    [stored] = immunity.all(FailureEvent)
    assert stored.request["headers"]["X-Id"] == "7" and "raw-" not in json.dumps(stored.request)
    malformed = httpx.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]


def post(
    immunity: Immunity, content: bytes, project: str = PROJECT, **headers: str
) -> httpx.Response:
    return httpx.post(
        immunity.url(f"/api/{project}/envelope/"), content=content, headers={**AUTH, **headers}
    )


def test_refusals_say_why_and_store_nothing(immunity: Immunity) -> None:
    good = envelope_bytes(("event", EVENT))
    wrong_key = {"X-Sentry-Auth": "Sentry sentry_key=not-the-key, sentry_version=7"}
    cases = [
        (post(immunity, good, project="7"), 404, "unknown Sentry project"),
        (httpx.post(immunity.url(f"/api/{PROJECT}/envelope/"), content=good), 401, "missing"),
        (post(immunity, good, **wrong_key), 401, "invalid DSN key"),
        (
            post(immunity, good, **{"X-Sentry-Auth": "Sentry sentry_key=ключ".encode()}),
            401,
            "invalid",
        ),
        (post(immunity, b"\x00\xffgarbage\n\x01"), 400, "the envelope header is not valid UTF-8"),
        (post(immunity, b"{}\n{}\n"), 400, "item 1's header has no type"),
        (post(immunity, b"\x1f\x8bnot gzip", **{"Content-Encoding": "gzip"}), 400, "gzip"),
        (post(immunity, gzip.compress(b"\0" * LIMIT * 8), **{"Content-Encoding": "gzip"}), 413, ""),
        (post(immunity, b"x" * (LIMIT + 1)), 413, "larger than the limit"),
        (post(immunity, b"not brotli", **{"Content-Encoding": "br"}), 400, "br"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
    # A good event beside a malformed session item: all refused, nothing half-stored.
    mixed = good + b'{"type":"sessions"}\n{"aggregates":[{"exited":-1}]}\n'
    response = post(immunity, mixed)
    assert response.status_code == 400 and "item 2 (sessions)" in response.json()["error"]
    assert immunity.count(FailureEvent) == immunity.count(SuccessEvent) == 0


@BACKGROUND_RANDOM
@hsettings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(event=sentry_like, sessions=session_like, garbage=st.binary(max_size=64))
def test_fuzzed_requests_are_stored_or_refused_never_a_server_error(
    immunity: Immunity, event: dict[str, Any], sessions: dict[str, Any], garbage: bytes
) -> None:
    before = immunity.count(FailureEvent)
    body = json.dumps(event).encode()
    envelope = b"{}\n" + json.dumps({"type": "event", "length": len(body)}).encode() + b"\n" + body
    envelope += b'\n{"type":"session"}\n' + json.dumps(sessions).encode()
    response = post(immunity, envelope)
    assert response.status_code in (200, 400), response.text
    assert immunity.count(FailureEvent) == before + (response.status_code == 200)
    assert post(immunity, garbage).status_code in (200, 400)
    store = httpx.post(immunity.url(f"/api/{PROJECT}/store/"), content=body, headers=AUTH)
    assert store.status_code in (200, 400), store.text
