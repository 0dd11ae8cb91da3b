"""The native ingest API over real HTTP on 127.0.0.1, against a real store."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator

import brotli
import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from immunity.api.app import create_app
from immunity.api.auth import hash_token
from immunity.examples.sample_service.server import start_server
from immunity.models.db import get_engine
from immunity.models.settings import Environment, Settings
from immunity.models.tables import FailureEvent, RegressionTest, Signature, SuccessEvent
from immunity.tasks.shared.target import free_port
from tests.tasks.ingest.test_pipeline import recipe_failure

TOKEN = "imm_test_token"
LIMIT = 64 * 1024


@pytest.fixture
def api(db_url: str) -> Iterator[httpx.Client]:
    settings = Settings(
        api_tokens=[hash_token(TOKEN), "plain-legacy-token"],
        max_request_bytes=LIMIT,
        environments={"production": Environment(base_url="https://shop.example.com")},
    )
    with (
        start_server(create_app(settings, get_engine(db_url))) as server,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client,
    ):
        client.db_url = db_url  # type: ignore[attr-defined]
        yield client


def _count(db_url: str, model: type) -> int:
    with Session(get_engine(db_url)) as session:
        return session.exec(select(func.count()).select_from(model)).scalar_one()  # type: ignore[attr-defined]


def test_third_failure_over_http_creates_the_test_in_the_same_response(api: httpx.Client) -> None:
    first = api.post("/api/v1/failures", json={"events": [recipe_failure(1), recipe_failure(2)]})
    assert first.status_code == 200 and first.json()["tests_created"] == []
    third = api.post("/api/v1/failures", json=[recipe_failure(3)])
    assert third.status_code == 200
    [created] = third.json()["tests_created"]
    with Session(get_engine(api.db_url)) as session:  # type: ignore[attr-defined]
        test = session.get(RegressionTest, created["test_id"])
    assert test is not None and test.spec["path"] == "/api/generate"


def test_partial_batch_reports_exactly_which_events_were_rejected(api: httpx.Client) -> None:
    response = api.post(
        "/api/v1/failures", json={"events": [recipe_failure(1), {"message": "x"}, 7]}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]
    assert body["rejected"][0]["errors"][0].startswith("error_type")
    assert _count(api.db_url, FailureEvent) == 1  # type: ignore[attr-defined]


def test_a_batch_with_nothing_valid_is_a_400_and_stores_nothing(api: httpx.Client) -> None:
    response = api.post("/api/v1/failures", json=[{"message": "no type"}])
    assert response.status_code == 400 and response.json()["rejected"][0]["index"] == 0
    assert _count(api.db_url, Signature) == 0  # type: ignore[attr-defined]


def test_successes_are_stored(api: httpx.Client) -> None:
    response = api.post("/api/v1/successes", json={"events": [{"operation": "GET /x"}] * 3})
    assert response.status_code == 200 and response.json()["accepted"] == 3
    assert _count(api.db_url, SuccessEvent) == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "content", "status", "says"),
    [
        ({"Content-Type": "application/json"}, b"{not json", 400, "malformed JSON"),
        ({"Content-Type": "text/plain"}, b"[]", 415, "application/json"),
        ({"Content-Type": "application/json"}, b"\xff\xfe[]", 400, "UTF-8"),
        (
            {"Content-Type": "application/json"},
            b'[{"error_type": "E", "context": {"a": NaN}}]',
            400,
            "NaN",
        ),
        ({"Content-Type": "application/json"}, b'{"events": 3}', 400, "array of events"),
        ({"Content-Type": "application/json"}, b"[]", 400, "no events"),
        (
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            b"not gzip",
            400,
            "gzip",
        ),
        ({"Content-Type": "application/json", "Content-Encoding": "zstd"}, b"[]", 415, "gzip"),
        ({"Content-Type": "application/json", "Content-Encoding": "br"}, b"not br", 400, "br"),
        ({"Content-Type": "application/json"}, b"[" + b" " * LIMIT + b"]", 413, "limit"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    api: httpx.Client, headers: dict[str, str], content: bytes, status: int, says: str
) -> None:
    response = api.post("/api/v1/failures", content=content, headers=headers)
    assert response.status_code == status
    assert says in response.json()["error"]
    assert _count(api.db_url, FailureEvent) == 0  # type: ignore[attr-defined]


def test_compressed_bodies_are_accepted_and_bombs_refused(api: httpx.Client) -> None:
    payload = json.dumps([recipe_failure(1)]).encode()
    headers = {"Content-Type": "application/json"}
    for encoding, data in (
        ("gzip", gzip.compress(payload)),
        ("deflate", zlib.compress(payload)),
        ("br", brotli.compress(payload)),
    ):
        response = api.post(
            "/api/v1/failures", content=data, headers={**headers, "Content-Encoding": encoding}
        )
        assert response.status_code == 200, response.text
    huge = b"[" + b" " * (LIMIT * 50) + b"]"
    for encoding, bomb in (("gzip", gzip.compress(huge)), ("br", brotli.compress(huge))):
        assert len(bomb) < LIMIT
        response = api.post(
            "/api/v1/failures", content=bomb, headers={**headers, "Content-Encoding": encoding}
        )
        assert response.status_code == 413


def test_tokens_are_required_and_checked(api: httpx.Client) -> None:
    url = f"{api.base_url}/api/v1/failures"
    assert httpx.post(url, json=[recipe_failure(1)]).status_code == 401
    wrong = httpx.post(url, json=[recipe_failure(1)], headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid token"
    legacy = httpx.post(
        url, json=[recipe_failure(1)], headers={"Authorization": "Bearer plain-legacy-token"}
    )
    assert legacy.status_code == 200
    assert httpx.get(f"{api.base_url}/api/v1/health").json() == {"status": "ok", "database": "ok"}


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
_event = st.fixed_dictionaries(
    {"error_type": st.text(max_size=30) | st.integers()},
    optional={
        "message": _json,
        "frames": _json,
        "request": _json,
        "status_code": _json,
        "received_at": _json,
        "tags": _json,
        "context": _json,
        "user": _json,
    },
)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(_event | _json, min_size=1, max_size=5))
def test_fuzzed_payloads_never_crash_and_accounting_is_exact(
    api: httpx.Client, batch: list
) -> None:
    before = _count(api.db_url, FailureEvent)  # type: ignore[attr-defined]
    response = api.post("/api/v1/failures", json=batch)
    assert response.status_code in (200, 400), response.text
    body = response.json()
    assert body["accepted"] + len(body["rejected"]) == len(batch)
    stored = _count(api.db_url, FailureEvent) - before  # type: ignore[attr-defined]
    assert stored == body["accepted"]


def _schema(openapi: dict, node: dict) -> dict:
    ref = node.get("$ref")
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else node


def test_openapi_describes_the_ingest_bodies_and_answers(api: httpx.Client) -> None:
    openapi = api.get("/openapi.json").json()
    paths = openapi["paths"]
    for path, field in (("/api/v1/failures", "error_type"), ("/api/v1/successes", "operation")):
        post = paths[path]["post"]
        events, wrapped = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
        assert events["type"] == "array" and field in events["items"]["required"]
        assert wrapped["properties"]["events"] == events
        assert "$ref" not in json.dumps(events)  # inlined: nothing points at a missing $defs
        answer = _schema(openapi, post["responses"]["200"]["content"]["application/json"]["schema"])
        assert {"accepted", "rejected", "tests_created"} <= set(answer["properties"])
        assert "400" in post["responses"] and "401" in post["responses"]
    failure = paths["/api/v1/failures"]["post"]["requestBody"]["content"]["application/json"]
    request = failure["schema"]["oneOf"][0]["items"]["properties"]["request"]
    assert any(option.get("properties", {}).get("method") for option in request["anyOf"])

    envelope = paths["/api/{project_id}/envelope/"]["post"]
    assert "application/x-sentry-envelope" in envelope["requestBody"]["content"]
    store = paths["/api/{project_id}/store/"]["post"]
    assert (
        "exception" in store["requestBody"]["content"]["application/json"]["schema"]["properties"]
    )
    for route in (envelope, store):
        answer = route["responses"]["200"]["content"]["application/json"]["schema"]
        assert {"id", "sessions"} <= set(_schema(openapi, answer)["properties"])


def test_health_says_unavailable_and_never_where_the_store_is() -> None:
    # Nothing listens on this port: the store is away, and the answer must not say where it was.
    port = free_port()
    url = f"postgresql+psycopg://secret_user:secret_pw@127.0.0.1:{port}/immunity?connect_timeout=2"
    with start_server(create_app(Settings(), get_engine(url))) as server:
        answer = httpx.get(f"{server.base_url}/api/v1/health", timeout=30)
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "database": "unavailable"}
    assert str(port) not in answer.text and "secret" not in answer.text
