"""Scoped tokens and projects over real HTTP on 127.0.0.1, on SQLite and PostgreSQL (issue 18).

A token says who it is (its principal), what it may do (ingest, read, review, admin) and whose
events it sends (its project); a Sentry DSN's project id is its events' project. The same error
in two projects is two signatures, and a token reads only its own project's.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from immunity.api.app import create_app
from immunity.api.auth import hash_token
from immunity.api.inprocess import ingest_failures
from immunity.cli.main import app as cli
from immunity.examples.sample_service.server import start_server
from immunity.models.db import get_engine
from immunity.models.enums import FixStatus
from immunity.models.heal_tables import FixEvent, FixProposal
from immunity.models.settings import ApiToken, Environment, Settings
from immunity.models.tables import Signature
from tests.flows.heal_support import HealRun, awaiting_proposal, drill, first_bug, wait_for

# name → (token, scopes, project)
TOKENS: dict[str, tuple[str, list[str], str]] = {
    "shop-bot": ("imm_shop_ingest", ["ingest"], "shop"),
    "blog-bot": ("imm_blog_ingest", ["ingest"], "blog"),
    "shop-reader": ("imm_shop_reader", ["read"], "shop"),
    "ann": ("imm_ann_reviews", ["read", "review"], "default"),
    "root": ("imm_root_admin", ["admin"], "default"),
}
DSN_KEYS = {"1": "1" * 32, "2": "2" * 32}


def token(name: str) -> str:
    return TOKENS[name][0]


def settings(production_port: int) -> Settings:
    return Settings(
        _env_file=None,
        api_tokens=[
            ApiToken(hash=hash_token(raw), name=name, scopes=scopes, project=project)  # type: ignore[arg-type]
            for name, (raw, scopes, project) in TOKENS.items()
        ],
        sentry_projects=DSN_KEYS,
        # Tests built here are checked against production after the answer: nothing listens.
        environments={"production": Environment(base_url=f"http://127.0.0.1:{production_port}")},
    )


@dataclass
class Api:
    base_url: str
    port: int
    engine: Engine

    def as_(self, name: str | None) -> httpx.Client:
        """A client presenting `name`'s token (None: no token)."""
        headers = {"Authorization": f"Bearer {token(name)}"} if name else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def signatures(self) -> list[Signature]:
        with Session(self.engine) as session:
            return list(session.exec(select(Signature).order_by(col(Signature.project))).all())


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port held bound but not listening: connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def api(db_url: str, closed_port: int) -> Iterator[Api]:
    engine = get_engine(db_url)
    with start_server(create_app(settings(closed_port), engine)) as server:
        yield Api(server.base_url, server.port, engine)


def checkout_failure(n: int = 1) -> dict[str, Any]:
    """The same error each time: one fingerprint."""
    return {
        "error_type": "KeyError",
        "message": "'sku-1'",
        "frames": [{"module": "shop.cart", "function": "add", "lineno": 42, "in_app": True}],
        "request": {"method": "GET", "url": f"http://shop.test/cart?n={n}"},
        "environment": "production",
    }


def seed_proposal(engine: Engine, signature_id: int, status: str) -> int:
    """A fix proposal for a signature, as the heal flow stores it."""
    with Session(engine) as session:
        proposal = FixProposal(
            signature_id=signature_id, strategy="rule", status=status, root_cause="no guard"
        )
        session.add(proposal)
        session.flush()
        assert proposal.id is not None
        session.add(FixEvent(proposal_id=proposal.id, status=status, actor="immunity"))
        session.commit()
        return proposal.id


def trail(engine: Engine, proposal_id: int) -> list[tuple[str, str]]:
    with Session(engine) as session:
        query = select(FixEvent).where(FixEvent.proposal_id == proposal_id).order_by(FixEvent.id)
        return [(event.status, event.actor) for event in session.exec(query).all()]


def test_an_ingest_token_sends_events_but_gets_403_on_fixes_and_decisions(api: Api) -> None:
    with api.as_("shop-bot") as bot:
        assert bot.post("/api/v1/failures", json=[checkout_failure()]).status_code == 200
        [signature] = api.signatures()
        assert signature.id is not None
        proposal_id = seed_proposal(api.engine, signature.id, FixStatus.AWAITING_APPROVAL)

        listing = bot.get("/api/v1/fixes")
        decision = bot.post(
            f"/api/v1/fixes/{proposal_id}/decision",
            json={"approved": True, "reviewer": "shop-bot"},
        )
        reads = [bot.get(path) for path in ("/api/v1/signatures", "/api/v1/tests")]
        one = bot.get(f"/api/v1/fixes/{proposal_id}")
    print("ingest token:", listing.status_code, listing.json(), decision.status_code)
    assert listing.status_code == 403 and "'read'" in listing.json()["error"]
    assert decision.status_code == 403 and "'review'" in decision.json()["error"]
    assert [r.status_code for r in (*reads, one)] == [403, 403, 403]
    # Nothing was decided: the proposal still waits, its trail unchanged.
    assert trail(api.engine, proposal_id) == [("awaiting_approval", "immunity")]

    with api.as_(None) as anonymous, api.as_("ann") as ann, api.as_("shop-reader") as reader:
        assert anonymous.get("/api/v1/fixes").status_code == 401
        refused = ann.post("/api/v1/failures", json=[checkout_failure()])
        assert refused.status_code == 403 and "'ingest'" in refused.json()["error"]
        not_a_reviewer = reader.post(
            f"/api/v1/fixes/{proposal_id}/decision", json={"approved": False}
        )
        assert not_a_reviewer.status_code == 403
        assert "'review'" in not_a_reviewer.json()["error"]
        assert reader.get("/api/v1/fixes").status_code == 200
    assert len(api.signatures()) == 1  # the refused batch stored nothing


@pytest.mark.usefixtures("prefect_harness")
def test_a_review_tokens_decision_records_its_principal_whatever_the_body_says(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    seeded = drill(first_bug(offline_fixable=True), tmp_path, monkeypatch)
    run = HealRun(seeded.signature_id)
    proposal = wait_for(awaiting_proposal, what="a proposal awaiting approval")
    assert proposal.id is not None
    engine = get_engine(store)
    body = {"approved": False, "reviewer": "someone-else", "notes": "wrong layer"}
    with start_server(create_app(settings(closed_port), engine)) as server:
        api = Api(server.base_url, server.port, engine)
        with api.as_("shop-bot") as bot:
            denied = bot.post(f"/api/v1/fixes/{proposal.id}/decision", json=body)
        assert denied.status_code == 403
        with Session(engine) as session:
            waiting = session.get(FixProposal, proposal.id)
            assert waiting is not None and waiting.status == FixStatus.AWAITING_APPROVAL
        with api.as_("ann") as ann:
            answer = ann.post(f"/api/v1/fixes/{proposal.id}/decision", json=body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["reviewer"] == "ann"
        assert run.result().status == FixStatus.REJECTED
    with Session(engine) as session:
        stored = session.get(FixProposal, proposal.id)
    assert stored is not None
    print("decided:", stored.status, stored.reviewer, trail(engine, proposal.id)[-1])
    assert (stored.status, stored.reviewer, stored.notes) == ("rejected", "ann", "wrong layer")
    assert trail(engine, proposal.id)[-1] == ("rejected", "ann")
    assert all(actor != "someone-else" for _, actor in trail(engine, proposal.id))


def report_through_dsn(dsn: str, error: BaseException) -> None:
    """Send `error` with the real Sentry SDK through `dsn`, and wait until it is delivered."""
    client = sentry_sdk.Client(
        dsn=dsn, default_integrations=False, http_proxy="", auto_session_tracking=False
    )
    with sentry_sdk.new_scope() as scope:
        scope.set_client(client)
        scope.capture_exception(error)
    client.close(timeout=10)


def add_to_cart() -> None:
    raise KeyError("sku-1")


def test_the_same_error_through_two_projects_dsns_is_two_signatures(api: Api) -> None:
    try:
        add_to_cart()
    except KeyError as error:
        for project in ("1", "2", "1"):
            report_through_dsn(f"http://{DSN_KEYS[project]}@127.0.0.1:{api.port}/{project}", error)
    deadline = time.monotonic() + 20
    while sum(s.occurrence_count for s in api.signatures()) < 3:
        assert time.monotonic() < deadline, "the SDK's reports did not all arrive"
        time.sleep(0.1)
    found = api.signatures()
    print("DSN projects:", [(s.project, s.fingerprint[:8], s.occurrence_count) for s in found])
    assert [(s.project, s.occurrence_count) for s in found] == [("1", 2), ("2", 1)]
    assert found[0].fingerprint == found[1].fingerprint  # the same error, namespaced
    with api.as_("root") as root, api.as_("ann") as ann:
        assert len(root.get("/api/v1/signatures").json()["signatures"]) == 2
        assert ann.get("/api/v1/signatures").json()["signatures"] == []  # the default project's


def test_the_same_error_through_two_projects_tokens_is_two_signatures_read_apart(
    api: Api,
) -> None:
    with api.as_("shop-bot") as shop, api.as_("blog-bot") as blog:
        for n in (1, 2, 3):  # the third occurrence builds each project's test
            assert shop.post("/api/v1/failures", json=[checkout_failure(n)]).status_code == 200
        answer = blog.post("/api/v1/failures", json=[checkout_failure(n) for n in (1, 2, 3)])
        assert answer.status_code == 200 and answer.json()["new_signatures"] == 1
    found = api.signatures()
    print("token projects:", [(s.project, s.fingerprint[:8], s.occurrence_count) for s in found])
    assert [(s.project, s.occurrence_count) for s in found] == [("blog", 3), ("shop", 3)]
    blog_signature, shop_signature = found
    assert blog_signature.fingerprint == shop_signature.fingerprint
    assert blog_signature.test_id and shop_signature.test_id
    assert blog_signature.test_id != shop_signature.test_id
    assert shop_signature.id is not None and blog_signature.id is not None
    shop_fix = seed_proposal(api.engine, shop_signature.id, FixStatus.PROPOSED)
    blog_fix = seed_proposal(api.engine, blog_signature.id, FixStatus.PROPOSED)

    with api.as_("shop-reader") as reader, api.as_("root") as root:
        [seen] = reader.get("/api/v1/signatures").json()["signatures"]
        assert seen["id"] == shop_signature.id
        [test] = reader.get("/api/v1/tests").json()["tests"]
        assert test["id"] == shop_signature.test_id
        assert [fix["id"] for fix in reader.get("/api/v1/fixes").json()["fixes"]] == [shop_fix]
        assert reader.get(f"/api/v1/fixes/{shop_fix}").status_code == 200
        assert reader.get(f"/api/v1/fixes/{blog_fix}").status_code == 404  # not its project's
        everything = root.get("/api/v1/signatures").json()["signatures"]
        assert {s["id"] for s in everything} == {shop_signature.id, blog_signature.id}
        assert len(root.get("/api/v1/tests").json()["tests"]) == 2
        assert len(root.get("/api/v1/fixes").json()["fixes"]) == 2
        # Admin decides in any project: this one is not awaiting a decision.
        late = root.post(f"/api/v1/fixes/{blog_fix}/decision", json={"approved": True})
        assert late.status_code == 409


def test_in_process_ingest_is_the_default_project_unless_given(
    engine: Engine, closed_port: int
) -> None:
    config = settings(closed_port)
    ingest_failures([checkout_failure()], settings=config, engine=engine, verify=False)
    ingest_failures([checkout_failure()], settings=config, engine=engine, project="shop")
    with Session(engine) as session:
        found = session.exec(select(Signature.project).order_by(col(Signature.project))).all()
    assert found == ["default", "shop"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_token_create_prints_the_token_once_and_keeps_a_named_scoped_hash(
    tmp_path: Path, db_url: str, closed_port: int
) -> None:
    env = tmp_path / ".env"
    env.write_text("IMMUNITY_API_TOKENS='[\"legacy-token\"]'\n")
    command = ["token", "create", "--scope", "review", "--name", "ann", "--env-file", str(env)]
    result = CliRunner().invoke(cli, command)
    print(result.output)
    assert result.exit_code == 0, result.output
    [raw] = re.findall(r"^imm_\S+$", result.output, re.MULTILINE)
    said = " ".join(result.output.split())  # however the console wrapped it
    assert result.output.count(raw) == 1 and "ann, scopes review, project default" in said
    text = env.read_text()
    assert raw not in text
    [line] = [line for line in text.splitlines() if line.startswith("IMMUNITY_API_TOKENS=")]
    entries = json.loads(line.split("=", 1)[1].strip("'"))
    assert entries == [
        "legacy-token",
        {"hash": hash_token(raw), "name": "ann", "scopes": ["review"], "project": "default"},
    ]
    loaded = Settings(_env_file=env)
    assert loaded.api_tokens[1] == ApiToken(hash=hash_token(raw), name="ann", scopes=["review"])

    # The token works as written: it may decide (404: no such proposal), not read.
    configured = loaded.model_copy(
        update={
            "environments": {"production": Environment(base_url=f"http://127.0.0.1:{closed_port}")}
        }
    )
    with start_server(create_app(configured, get_engine(db_url))) as server:
        auth = {"Authorization": f"Bearer {raw}"}
        decide = httpx.post(
            f"{server.base_url}/api/v1/fixes/7/decision", json={"approved": True}, headers=auth
        )
        read = httpx.get(f"{server.base_url}/api/v1/fixes", headers=auth)
    assert decide.status_code == 404 and read.status_code == 403

    wrong = CliRunner().invoke(
        cli, ["token", "create", "--scope", "decide", "--name", "x", "--env-file", str(env)]
    )
    assert wrong.exit_code != 0 and "unknown scope 'decide'" in " ".join(wrong.output.split())
    assert env.read_text() == text  # a refused command writes nothing
