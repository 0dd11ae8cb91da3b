"""The exception tree over real HTTP: each branch's status, and no 503 that leaks a host."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from immunity.api.app import create_app
from immunity.api.auth import hash_token
from immunity.api.errors import ApiError
from immunity.examples.sample_service.server import start_server
from immunity.models.enums import FixStatus
from immunity.models.errors import (
    ConflictError,
    ImmunityError,
    InvalidInputError,
    MalformedInputError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.settings import ApiToken, Settings
from immunity.models.tables import Signature

TOKEN = "imm_errors_token"
SECRET_DETAIL = "password=hunter2 at 10.9.8.7:6543"


def _raiser(error: Exception):  # type: ignore[no-untyped-def]
    def route() -> None:
        raise error

    return route


# One route per branch, each raising an error whose text the client may or may not see.
RAISED: dict[str, Exception] = {
    "not-found": NotFoundError("signature 41 does not exist"),
    "invalid": InvalidInputError("environment 'moon' is not configured"),
    "malformed": MalformedInputError("malformed JSON: Expecting value at line 1 column 1"),
    "conflict": ConflictError("fix proposal 3 is verified: there is nothing to decide"),
    "refused": RefusedError("readiness 41 is below the gate of 80"),
    "unavailable": UnavailableError(f"could not connect: {SECRET_DETAIL}"),
    "root": ImmunityError(f"internal state went wrong: {SECRET_DETAIL}"),
    "api-error": ApiError(413, "request body is larger than the limit of 10 bytes"),
    "not-ours": KeyError(SECRET_DETAIL),
}


def _app(engine: Engine) -> FastAPI:
    reviewer = ApiToken(hash=hash_token(TOKEN), name="ana", scopes=["read", "review"])
    app = create_app(Settings(api_tokens=[reviewer]), engine)
    raisers = APIRouter(prefix="/raise")
    for name, error in RAISED.items():
        raisers.add_api_route(f"/{name}", _raiser(error), methods=["GET"])
    app.include_router(raisers)
    return app


@pytest.fixture
def api(engine: Engine) -> Iterator[httpx.Client]:
    with (
        start_server(_app(engine)) as server,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ) as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("name", "status", "shown"),
    [
        ("not-found", 404, True),
        ("invalid", 422, True),
        ("malformed", 400, True),
        ("conflict", 409, True),
        ("refused", 403, True),
        ("api-error", 413, True),
        ("unavailable", 503, False),
        ("root", 500, False),
        ("not-ours", 500, False),
    ],
)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_branch_of_the_tree_answers_with_its_status(
    api: httpx.Client, name: str, status: int, shown: bool
) -> None:
    answer = api.get(f"/raise/{name}")
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    message = answer.json()["error"]
    error = RAISED[name]
    expected = error.detail if isinstance(error, ApiError) else str(error)
    if shown:
        assert message == expected
    else:  # a generic message: the error's own text may name hosts, ports or secrets
        assert message and message != expected
        assert "10.9.8.7" not in answer.text and "6543" not in answer.text
        assert "hunter2" not in answer.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unavailable_says_when_to_retry(api: httpx.Client) -> None:
    answer = api.get("/raise/unavailable")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"


def test_real_routes_answer_not_found_invalid_and_conflict(
    api: httpx.Client, engine: Engine
) -> None:
    with Session(engine) as session:
        now = utcnow()
        signature = Signature(
            fingerprint="f" * 16,
            error_type="OrderFailed",
            message="boom",
            category="unknown",
            severity="high",
            first_seen=now,
            last_seen=now,
        )
        session.add(signature)
        session.flush()
        assert signature.id is not None
        decided = FixProposal(signature_id=signature.id, strategy="rule", status=FixStatus.VERIFIED)
        session.add(decided)
        session.commit()
        decided_id = decided.id
    missing = api.get("/api/v1/fixes/99999")
    assert missing.status_code == 404
    assert missing.json() == {"error": "fix proposal 99999 does not exist"}
    assert api.get("/api/v1/fixes", params={"limit": 0}).status_code == 422
    assert api.get("/api/v1/fixes", params={"status": "pondering"}).status_code == 422
    decision = {"approved": True, "reviewer": "ana"}
    late = api.post(f"/api/v1/fixes/{decided_id}/decision", json=decision)
    assert late.status_code == 409 and "verified" in late.json()["error"]
    unreadable = api.post(
        f"/api/v1/fixes/{decided_id}/decision",
        content=b'{"approved": tr',
        headers={"Content-Type": "application/json"},
    )
    assert unreadable.status_code == 400 and "JSON" in unreadable.json()["error"]
    undecided = api.post(f"/api/v1/fixes/{decided_id}/decision", json={"notes": "hm"})
    assert undecided.status_code == 422 and "approved" in undecided.json()["error"]


def test_unknown_paths_and_missing_tokens_answer_in_the_same_shape(api: httpx.Client) -> None:
    unknown = api.get("/api/v1/nothing-here")
    assert unknown.status_code == 404 and "error" in unknown.json()
    anonymous = httpx.get(f"{api.base_url}/api/v1/fixes", timeout=30)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json() == {"error": "missing bearer token (Authorization: Bearer <token>)"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens here once the socket is closed


def test_a_store_that_cannot_be_reached_is_a_503_naming_no_host_or_port() -> None:
    port = _closed_port()
    url = f"postgresql+psycopg://immunity:s3cret@127.0.0.1:{port}/immunity"
    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with (
            start_server(_app(engine)) as server,
            httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as client,
        ):
            listed = client.get("/api/v1/fixes")
            one = client.get("/api/v1/fixes/1")
    finally:
        engine.dispose()
    for answer in (listed, one):
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "1"
        assert "retry" in answer.json()["error"]
        for leak in ("127.0.0.1", str(port), "s3cret", "immunity:", "psycopg", "connection"):
            assert leak not in answer.text, f"{leak!r} leaked into {answer.text!r}"
