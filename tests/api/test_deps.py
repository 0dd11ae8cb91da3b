"""The request's session and principal, and the fixes routes' documented bodies, over real HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from immunity.api.app import create_app
from immunity.api.auth import LEGACY_SCOPES, hash_token
from immunity.api.deps import PrincipalDep, SessionDep
from immunity.examples.sample_service.server import start_server
from immunity.models.errors import ConflictError
from immunity.models.heal_tables import ErrorPattern
from immunity.models.settings import Settings

HASHED = "imm_hashed_token"
PLAIN = "plain-legacy-token"


def _pattern(name: str) -> ErrorPattern:
    return ErrorPattern(name=name, error_type="OrderFailed")


def _probe_router() -> APIRouter:
    router = APIRouter(prefix="/probe")

    @router.post("/keep/{name}")
    def keep(name: str, session: SessionDep) -> dict[str, str]:
        session.add(_pattern(name))
        return {"kept": name}

    @router.post("/drop/{name}")
    def drop(name: str, session: SessionDep) -> dict[str, str]:
        session.add(_pattern(name))
        session.flush()  # written, then the route fails: the request's rollback must undo it
        raise ConflictError(f"{name} contradicts the store")

    @router.get("/whoami")
    def whoami(principal: PrincipalDep) -> dict[str, object]:
        return {"name": principal.name, "scopes": sorted(principal.scopes)}

    return router


def _app(engine: Engine) -> FastAPI:
    app = create_app(Settings(api_tokens=[hash_token(HASHED), PLAIN]), engine)
    app.include_router(_probe_router())
    return app


@pytest.fixture
def base_url(engine: Engine) -> Iterator[str]:
    with start_server(_app(engine)) as server:
        yield server.base_url


def _patterns(engine: Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(ErrorPattern)).one()


def test_the_request_commits_what_its_route_wrote_and_rolls_back_when_it_raises(
    base_url: str, engine: Engine
) -> None:
    kept = httpx.post(f"{base_url}/probe/keep/first", timeout=30)
    assert kept.status_code == 200 and kept.json() == {"kept": "first"}
    assert _patterns(engine) == 1
    dropped = httpx.post(f"{base_url}/probe/drop/second", timeout=30)
    assert dropped.status_code == 409
    assert _patterns(engine) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("token", [HASHED, PLAIN])
def test_a_bare_token_is_a_principal_named_by_a_prefix_of_its_hash(
    base_url: str, token: str
) -> None:
    answer = httpx.get(
        f"{base_url}/probe/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert answer.status_code == 200
    digest = hashlib.sha256(token.encode()).hexdigest()
    # Bare tokens predate scopes: they may send events and read, not decide.
    assert answer.json() == {"name": f"token:{digest[:8]}", "scopes": sorted(LEGACY_SCOPES)}
    assert token not in answer.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_principal_needs_a_valid_bearer_token(base_url: str) -> None:
    wrong = httpx.get(
        f"{base_url}/probe/whoami", headers={"Authorization": "Bearer nope"}, timeout=30
    )
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid token"}
    basic = httpx.get(f"{base_url}/probe/whoami", headers={"Authorization": "Basic x"}, timeout=30)
    assert basic.status_code == 401 and basic.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_openapi_describes_every_fixes_body_and_its_errors(base_url: str) -> None:
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    expected = {
        ("/api/v1/fixes", "get"): ("200", "FixList", {"401", "403", "422", "503"}),
        ("/api/v1/fixes/{proposal_id}", "get"): (
            "200",
            "FixDetail",
            {"401", "403", "404", "503"},
        ),
        ("/api/v1/fixes/{proposal_id}/decision", "post"): (
            "202",
            "DecisionAnswer",
            {"401", "403", "404", "409", "422", "503"},
        ),
    }
    for (path, method), (ok, model, errors) in expected.items():
        responses = spec["paths"][path][method]["responses"]
        body = responses[ok]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{model}"}, (path, body)
        for status in errors:
            error = responses[status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, (path, status, error)
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["error"]
