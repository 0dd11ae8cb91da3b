"""`immunity.Client` and `AsyncClient` against the real API over HTTP on 127.0.0.1, real store."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

import immunity
from immunity.api.app import create_app
from immunity.api.auth import hash_token
from immunity.api.client import (
    ApiAuthError,
    ApiConflictError,
    ApiInvalidInputError,
    ApiNotFoundError,
    ApiResponseError,
    ApiUnavailableError,
    ApiUnreachableError,
    AsyncClient,
    Client,
)
from immunity.examples.sample_service.server import start_server
from immunity.models.db import create_schema, get_engine
from immunity.models.enums import FixStatus
from immunity.models.errors import (
    ConflictError,
    ImmunityError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)
from immunity.models.heal_tables import FixEvent, FixProposal
from immunity.models.settings import ApiToken, Environment, Settings
from immunity.models.tables import SuccessEvent
from tests.flows.heal_support import HealRun, awaiting_proposal, drill, first_bug, wait_for
from tests.tasks.ingest.test_pipeline import recipe_failure

TOKEN = "imm_client_test_token"
# Sends, reads and decides: the client's every call works with it.
CLIENT_TOKEN = ApiToken(
    hash=hash_token(TOKEN), name="client-test", scopes=["ingest", "read", "review"]
)


@dataclass
class Api:
    base_url: str
    engine: Engine


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port held bound but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite store with the schema in place."""
    url = f"sqlite:///{tmp_path / 'immunity.db'}"
    create_schema(get_engine(url))
    return url


@pytest.fixture
def api(sqlite_url: str, closed_port: int) -> Iterator[Api]:
    # Generated tests replay against `production` after the answer: nothing listens there.
    settings = Settings(
        _env_file=None,
        api_tokens=[CLIENT_TOKEN],
        environments={"production": Environment(base_url=f"http://127.0.0.1:{closed_port}")},
    )
    engine = get_engine(sqlite_url)
    with start_server(create_app(settings, engine)) as server:
        yield Api(server.base_url, engine)


@pytest.fixture
def client(api: Api) -> Iterator[Client]:
    with Client(api.base_url, TOKEN) as client:
        yield client


def other_failure(n: int) -> dict[str, object]:
    """A failure of another kind than the recipe's: a second signature."""
    return {**recipe_failure(n), "error_type": "RateLimitError", "message": "429 from upstream"}


def test_failures_in_signatures_and_tests_out(client: Client) -> None:
    first = client.send_failures([recipe_failure(1), recipe_failure(2)])
    assert (first.accepted, first.new_signatures, first.tests_created) == (2, 1, [])
    third = client.send_failures([recipe_failure(3)], idempotency_key="batch-3")
    [created] = third.tests_created

    [signature] = client.signatures()
    assert signature.id == created.signature_id and signature.test_id == created.test_id
    assert signature.occurrence_count == 3 and signature.error_type == "DependencyValidationError"
    assert client.signatures(status="tested") == [signature]
    assert client.signatures(status="ignored") == []
    [test] = client.tests()
    assert test.id == created.test_id and test.created_from_signature_id == signature.id
    assert test.state == "active" and test.spec["path"] == "/api/generate"
    assert client.tests(status="active") == [test] and client.tests(status="inactive") == []


def test_signatures_page_with_limit_and_offset(client: Client) -> None:
    client.send_failures([recipe_failure(1), other_failure(2)])
    first, second = client.signatures(limit=1), client.signatures(limit=1, offset=1)
    assert len(first) == len(second) == 1
    assert {first[0].error_type, second[0].error_type} == {
        "DependencyValidationError",
        "RateLimitError",
    }
    assert client.signatures(offset=2) == []


def test_successes_are_stored(client: Client, api: Api) -> None:
    answer = client.send_successes([{"operation": "GET /api/recipes", "duration_ms": 12}] * 3)
    assert answer.accepted == 3 and answer.rejected == []
    with Session(api.engine) as session:
        assert session.exec(select(func.count()).select_from(SuccessEvent)).one() == (3,)


def test_a_malformed_event_is_rejected_by_index_with_its_field_named(client: Client) -> None:
    partial = client.send_failures([recipe_failure(1), {"message": "no type"}])
    assert partial.accepted == 1
    [rejected] = partial.rejected
    assert rejected.index == 1 and rejected.errors[0].startswith("error_type")

    with pytest.raises(ApiInvalidInputError) as refused:
        client.send_failures([{"message": "no type"}])
    assert refused.value.status == 400 and isinstance(refused.value, InvalidInputError)
    assert refused.value.detail.startswith("event 0: error_type")


def test_a_bad_query_is_refused_naming_the_parameter(client: Client) -> None:
    with pytest.raises(ApiInvalidInputError, match="status") as refused:
        client.tests(status="broken")
    assert refused.value.status == 422
    with pytest.raises(ApiInvalidInputError, match="limit"):
        client.signatures(limit=0)


def test_a_bad_or_missing_token_is_an_auth_error(api: Api) -> None:
    for token in ("not-the-token", None):
        with Client(api.base_url, token) as stranger:
            with pytest.raises(ApiAuthError) as refused:
                stranger.signatures()
            assert stranger.health().ok  # health asks for no token
        assert refused.value.status == 401 and isinstance(refused.value, RefusedError)
        assert isinstance(refused.value, ImmunityError)


def test_no_server_is_unreachable_not_a_response(closed_port: int) -> None:
    with Client(f"http://127.0.0.1:{closed_port}", TOKEN, timeout=5) as client:
        with pytest.raises(ApiUnreachableError) as gone:
            client.health()
    assert isinstance(gone.value, UnavailableError) and str(closed_port) in str(gone.value)


def seed_proposal(engine: Engine, signature_id: int, test_id: int) -> int:
    """A proposal as the heal flow stores it before asking for approval (status `proposed`)."""
    with Session(engine) as session:
        proposal = FixProposal(
            signature_id=signature_id,
            test_id=test_id,
            strategy="pattern",
            root_cause="project ids are not validated",
            diff="--- a/app/deps.py\n+++ b/app/deps.py\n",
            confidence=0.8,
            risk_level="low",
        )
        session.add(proposal)
        session.flush()
        assert proposal.id is not None
        session.add(FixEvent(proposal_id=proposal.id, status=proposal.status, actor="immunity"))
        session.commit()
        return proposal.id


def test_fixes_are_listed_and_read_and_a_decision_needs_one_awaiting(
    client: Client, api: Api
) -> None:
    [created] = client.send_failures([recipe_failure(n) for n in (1, 2, 3)]).tests_created
    proposal_id = seed_proposal(api.engine, created.signature_id, created.test_id)

    [listed] = client.fixes()
    assert listed.id == proposal_id and listed.status == FixStatus.PROPOSED
    assert client.fixes(status="proposed") == [listed] and client.fixes(status="approved") == []
    shown = client.fix(proposal_id)
    assert shown.root_cause == "project ids are not validated"
    assert [event.status for event in shown.events] == ["proposed"]

    with pytest.raises(ApiConflictError, match="nothing to decide") as conflict:
        client.decide_fix(proposal_id, approved=True, reviewer="ann")
    assert conflict.value.status == 409 and isinstance(conflict.value, ConflictError)
    with pytest.raises(ApiNotFoundError, match="999") as missing:
        client.decide_fix(999, approved=False, reviewer="ann", notes="no such fix")
    assert isinstance(missing.value, NotFoundError) and isinstance(missing.value, LookupError)
    with pytest.raises(ApiNotFoundError):
        client.fix(999)


def test_the_async_client_does_the_same(api: Api) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.base_url, TOKEN) as client:
            assert (await client.health()).ok
            answer = await client.send_failures([recipe_failure(n) for n in (1, 2, 3)])
            [created] = answer.tests_created
            assert (await client.send_successes([{"operation": "GET /"}])).accepted == 1
            [signature] = await client.signatures()
            [test] = await client.tests(status="active")
            assert (signature.test_id, test.id) == (created.test_id, created.test_id)
            assert await client.fixes() == []
            with pytest.raises(ApiNotFoundError):
                await client.decide_fix(999, approved=True, reviewer="ann")
        async with AsyncClient(api.base_url, "wrong") as stranger:
            with pytest.raises(ApiAuthError):
                await stranger.tests()

    asyncio.run(scenario())


def test_an_injected_http_client_is_used_and_left_open(api: Api) -> None:
    sent: list[httpx.Request] = []
    with httpx.Client(event_hooks={"request": [sent.append]}, timeout=30) as http:
        with Client(api.base_url + "/", TOKEN, http=http) as client:
            client.send_failures([recipe_failure(1)], idempotency_key="retry-7")
        assert not http.is_closed
        [request] = sent
        assert request.url == httpx.URL(api.base_url + "/api/v1/failures")
        assert request.headers["Idempotency-Key"] == "retry-7"
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_an_answer_that_is_not_the_apis_is_an_error_not_a_crash() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/health":
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, text="<html>please log in</html>")

    transport = httpx.MockTransport(proxy)
    with Client("http://immunity.internal", TOKEN, transport=transport) as client:
        with pytest.raises(ApiResponseError, match="unexpected answer") as odd:
            client.signatures()
        assert odd.value.status == 200 and not isinstance(odd.value, ApiInvalidInputError)
        with pytest.raises(ApiUnavailableError, match="bad gateway") as away:
            client.health()
        assert away.value.status == 502 and isinstance(away.value, UnavailableError)


def test_openapi_describes_the_read_endpoints(api: Api) -> None:
    spec = httpx.get(api.base_url + "/openapi.json", timeout=30).json()
    for path, page in (("/api/v1/signatures", "SignaturePage"), ("/api/v1/tests", "TestPage")):
        route = spec["paths"][path]["get"]
        schema = route["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(f"/{page}")
        assert {p["name"] for p in route["parameters"]} == {"status", "limit", "offset"}
    assert "occurrence_count" in spec["components"]["schemas"]["SignaturePublic"]["properties"]
    assert "state" in spec["components"]["schemas"]["TestPublic"]["properties"]


def test_the_package_exports_the_client() -> None:
    assert immunity.Client is Client and immunity.AsyncClient is AsyncClient
    assert issubclass(immunity.ApiResponseError, immunity.ImmunityError)
    assert Path(immunity.__file__).name == "__init__.py"


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_reviewer_rejects_a_waiting_fix_through_the_client_and_the_flow_records_it(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = drill(first_bug(offline_fixable=True), tmp_path, monkeypatch)
    run = HealRun(seeded.signature_id)
    proposal = wait_for(awaiting_proposal, what="a proposal awaiting approval")
    # The decision is recorded as the token's principal.
    carol = ApiToken(hash=hash_token(TOKEN), name="carol", scopes=["read", "review"])
    settings = Settings(_env_file=None, api_tokens=[carol])
    with (
        start_server(create_app(settings, get_engine(store))) as server,
        Client(server.base_url, TOKEN) as client,
    ):
        [waiting] = client.fixes(status="awaiting_approval")
        assert waiting.id == proposal.id and waiting.signature_id == seeded.signature_id
        answer = client.decide_fix(proposal.id, False, "carol", notes="not this way")
        assert answer.resumed and answer.flow_run_id == proposal.flow_run_id
        assert run.result().status == FixStatus.REJECTED
        shown = client.fix(proposal.id)
        assert (shown.status, shown.reviewer, shown.notes) == ("rejected", "carol", "not this way")
        with pytest.raises(ApiConflictError, match="nothing to decide"):
            client.decide_fix(proposal.id, True, "carol")
