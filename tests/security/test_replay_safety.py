"""Acceptance (issue 18): untrusted reports never steer what immunity sends, or where.

Three real listeners on 127.0.0.1 stand in for production, staging and an internal address.
Reports go through the real ingest pipeline (`immunity.api.inprocess.ingest_failures`, which
also runs the reproduction check) naming production, with forged hosts, `//other-host/` paths,
absolute URLs to the internal listener, override and forwarded headers, and a staging endpoint
answering an open redirect to the internal listener. Then the reproduction check and a suite
run: production and internal receive nothing, staging never sees a forbidden header, and the
redirect is recorded, not followed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.api.inprocess import ingest_failures
from immunity.models.db import create_schema
from immunity.models.enums import ExecutionStatus
from immunity.models.settings import Environment, Settings
from immunity.models.specs import REPLAY_HEADER, Selection
from immunity.models.tables import RegressionTest
from immunity.tasks.generate.reproduce import verify_tests
from immunity.tasks.regress.selection import select_cases
from immunity.tasks.shared.replay_marker import verify
from immunity.tasks.shared.runner import run_any

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

FORBIDDEN = {
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-user",
    "x-http-method-override",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-real-ip",
    "upgrade",
    "proxy-authorization",
    "te",
    "cookie",  # not allowlisted for a generated test
}
STAGING_TOKEN = "Bearer staging-only-token"


class Listener:
    """A real HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self, name: str, routes: dict[str, tuple[int, dict[str, str]]] | None = None):
        self.name, self.routes = name, routes or {}
        self.requests: list[dict[str, Any]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                listener.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": [(k.lower(), v) for k, v in self.headers.items()],
                        "body": body.decode("utf-8", "replace"),
                    }
                )
                status, headers = listener.routes.get(self.path.split("?")[0], (500, {}))
                payload = json.dumps({"listener": listener.name, "path": self.path}).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def listeners() -> Iterator[tuple[Listener, Listener, Listener]]:
    with Listener("internal") as internal:
        routes = {
            "/open-redirect": (302, {"location": f"{internal.base_url}/steal?token=x"}),
            "/hop": (302, {"location": "/landing"}),
            "/hop-away": (307, {"location": f"//{internal.netloc}/steal"}),
        }
        with Listener("production") as production, Listener("staging", routes) as staging:
            yield production, staging, internal


def report(
    error_type: str, url: str, method: str = "GET", body: Any = None, **headers: str
) -> dict[str, Any]:
    """A failure report as an attacker would send it: it names production."""
    return {
        "error_type": error_type,
        "message": f"{error_type} in the handler",
        "frames": [{"module": "app.views", "function": error_type.lower(), "in_app": True}],
        "status_code": 500,
        "environment": "production",
        "request": {
            "method": method,
            "url": url,
            "headers": {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "attacker/1.0",
                **headers,
            },
            "body": body,
        },
    }


def attack(production: Listener, internal: Listener) -> list[dict[str, Any]]:
    steering = {
        "Host": internal.netloc,
        "X-Forwarded-Host": internal.netloc,
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-User": "admin",
        "Forwarded": f"for=10.0.0.1;host={internal.netloc}",
        "X-HTTP-Method-Override": "DELETE",
        "X-Method-Override": "DELETE",
        "X-Original-URL": "/admin/delete-all",
        "X-Rewrite-URL": "/admin/delete-all",
        "X-Real-IP": "10.0.0.1",
        "Connection": "Upgrade, keep-alive",
        "Upgrade": "websocket",
        "Proxy-Authorization": "Basic YWRtaW46YWRtaW4=",
        "TE": "trailers",
        "Cookie": "session=someone-elses",
        REPLAY_HEADER: "verify:1",
    }
    reports = [
        report("ForgedHostError", production.base_url + "/api/orders", "POST", {}, **steering),
        report("SchemeRelativeError", f"//{internal.netloc}/admin/users"),
        report("DoubleSlashError", f"{production.base_url}//{internal.netloc}/admin/keys"),
        report("AbsoluteInternalError", f"{internal.base_url}/internal-admin?drop=1"),
        report("OpenRedirectError", f"{production.base_url}/open-redirect"),
        report("SameOriginHopError", f"{production.base_url}/hop"),
        report("RedirectAwayError", f"{production.base_url}/hop-away", "POST", {"b": 2}),
    ]
    return [event for event in reports for _ in range(3)]  # the third makes the test


def _tests(engine: Engine) -> dict[str, RegressionTest]:
    with Session(engine) as session:
        tests = session.exec(select(RegressionTest)).all()
    return {test.description.split(":")[0]: test for test in tests}


def _names(request: dict[str, Any]) -> set[str]:
    return {name for name, _ in request["headers"]}


def test_reports_never_steer_where_replays_go_or_what_they_send(
    engine: Engine, tmp_path: Path, listeners: tuple[Listener, Listener, Listener]
) -> None:
    production, staging, internal = listeners
    create_schema(engine)
    environments = {
        "production": Environment(
            base_url=production.base_url, is_production=True, replay_headers=["X-Forwarded-User"]
        ),
        "staging": Environment(
            base_url=staging.base_url,
            replay_headers=["X-Forwarded-User", "X-Tenant"],  # a forbidden name stays forbidden
            auth_headers={"Authorization": SecretStr(STAGING_TOKEN)},
        ),
    }
    settings = Settings(data_dir=tmp_path, environments=environments)

    # 1. No environment that allows replays is configured for production's failures.
    ingest_failures(attack(production, internal), settings=settings, engine=engine)
    tests = _tests(engine)
    assert len(tests) == 7, sorted(tests)
    for test in tests.values():
        assert test.reproduction == "unverified", (test.name, test.reproduction_evidence)
        reason = test.reproduction_evidence["reason"]
        assert "environment 'production' does not allow replays" in reason, reason
        assert "IMMUNITY_REPRODUCTION_ENVIRONMENT" in reason
    cases, unrunnable = select_cases(engine, settings, Selection(), None)
    assert cases == [] and {r.status for r in unrunnable} == {ExecutionStatus.SKIPPED}
    cases, unrunnable = select_cases(engine, settings, Selection(), "production")
    assert cases == [] and all("does not allow replays" in (r.error or "") for r in unrunnable)
    print("without a replay environment:", unrunnable[0].error)
    assert (production.requests, staging.requests, internal.requests) == ([], [], [])

    # Nothing that steers routing or the method was stored in a spec.
    for test in tests.values():
        stored = {name.lower() for name in test.spec.get("headers", {})}
        assert stored <= {"content-type", "accept", "accept-language", "user-agent"}, stored
        assert test.spec["path"].startswith("/") and not test.spec["path"].startswith("//")
    assert tests["SchemeRelativeError"].spec["path"] == "/admin/users"
    assert tests["DoubleSlashError"].spec["path"] == "/admin/keys"
    assert tests["AbsoluteInternalError"].spec["path"] == "/internal-admin?drop=1"

    # 2. With staging as the reproduction environment: checked there, and run there.
    settings = settings.model_copy(update={"reproduction_environment": "staging"})
    outcomes = {o.name: o for o in verify_tests(engine, settings, [t.id for t in tests.values()])}
    cases, unrunnable = select_cases(engine, settings, Selection(), None)
    assert unrunnable == [] and {case.environment for case in cases} == {"staging"}
    results = {result.name: result for result in run_any(cases, settings)}
    print("reproduction:", {name: o.reproduction.value for name, o in sorted(outcomes.items())})
    print("suite run:", {name: r.status.value for name, r in sorted(results.items())})

    assert production.requests == [], production.requests
    assert internal.requests == [], internal.requests
    assert staging.requests, "the replays went to staging"
    for request in staging.requests:
        assert not _names(request) & FORBIDDEN, request
        assert not any(name.startswith("x-forwarded-") for name in _names(request)), request
        headers = dict(request["headers"])
        assert headers["host"] == staging.netloc
        assert headers["authorization"] == STAGING_TOKEN
        assert headers.get("connection", "keep-alive") == "keep-alive"
        assert verify(headers[REPLAY_HEADER.lower()], settings) is not None  # signed, not forged
        assert request["method"] in ("GET", "POST"), request
    print("staging received:", sorted({(r["method"], r["path"]) for r in staging.requests}))
    assert {r["path"] for r in staging.requests} == {
        "/api/orders",
        "/admin/users",
        "/admin/keys",
        "/internal-admin?drop=1",
        "/open-redirect",
        "/hop",
        "/landing",
        "/hop-away",
    }
    # The environment's auth is sent, never stored.
    with Session(engine) as session:
        rows = session.exec(select(RegressionTest)).all()
        stored = json.dumps([row.model_dump(mode="json") for row in rows])
    assert "staging-only-token" not in stored

    by_type = {test.name: name for name, test in tests.items()}
    outcome = {by_type[name]: o for name, o in outcomes.items()}
    result = {by_type[name]: r for name, r in results.items()}
    # An open redirect to another origin: recorded, never followed, never a pass.
    for error_type, status in (("OpenRedirectError", 302), ("RedirectAwayError", 307)):
        assert outcome[error_type].reproduction == "unverified", outcome[error_type]
        assert "another origin" in (outcome[error_type].reason or "")
        assert result[error_type].status == ExecutionStatus.ERROR, result[error_type]
        [hop] = result[error_type].actual["redirects"]
        assert hop["status"] == status and hop["followed"] is False
        assert hop["location"].startswith(internal.base_url)
    # A redirect within staging is followed and recorded.
    assert outcome["SameOriginHopError"].reproduction == "reproduced"
    hop_result = result["SameOriginHopError"]
    assert hop_result.actual["redirects"] == [
        {"status": 302, "location": f"{staging.base_url}/landing"}
    ]
    assert hop_result.status == ExecutionStatus.FAILED  # /landing answers 500: still failing
    # The replays themselves reproduced where they could.
    assert outcome["ForgedHostError"].reproduction == "reproduced"
    assert outcome["AbsoluteInternalError"].reproduction == "reproduced"


def test_a_test_written_by_a_person_keeps_its_headers_but_never_the_forbidden_ones(
    engine: Engine, tmp_path: Path, listeners: tuple[Listener, Listener, Listener]
) -> None:
    production, staging, internal = listeners
    create_schema(engine)
    settings = Settings(
        data_dir=tmp_path,
        environments={
            "production": Environment(base_url=production.base_url, is_production=True),
            "staging": Environment(base_url=staging.base_url),
        },
    )
    with Session(engine) as session:
        session.add_all(
            [
                RegressionTest(
                    name="manual_staging",
                    environment="staging",
                    spec={
                        "method": "GET",
                        "path": f"//{internal.netloc}/manual",
                        "headers": {
                            "Cookie": "session=test-user",
                            "X-Tenant": "acme",
                            "Host": internal.netloc,
                            "X-Forwarded-Host": internal.netloc,
                            "X-HTTP-Method-Override": "DELETE",
                            "X-Original-URL": "/admin",
                        },
                    },
                    expectations={"status": 500},
                ),
                RegressionTest(
                    name="manual_production_post",
                    environment="production",
                    allow_unsafe=True,
                    spec={"method": "POST", "path": "/api/orders", "body": {"sku": "A"}},
                    expectations={"status": 500},
                ),
            ]
        )
        session.commit()
    cases, unrunnable = select_cases(engine, settings, Selection(), None)
    results = {r.name: r for r in [*unrunnable, *run_any(cases, settings)]}
    assert results["manual_staging"].status == ExecutionStatus.PASSED, results["manual_staging"]
    assert results["manual_production_post"].status == ExecutionStatus.SKIPPED
    assert "production" in (results["manual_production_post"].error or "")
    [request] = staging.requests
    headers = dict(request["headers"])
    assert request["path"] == "/manual" and headers["host"] == staging.netloc
    assert (headers["cookie"], headers["x-tenant"]) == ("session=test-user", "acme")
    assert not _names(request) & FORBIDDEN - {"cookie"}, request
    assert (production.requests, internal.requests) == ([], [])

    # Production that allows replays still takes only safe methods, allow_unsafe or not, once
    # it lists them; without a list, a person's test may allow itself an unsafe one.
    listed = Environment(base_url=production.base_url, is_production=True, replay=True)
    for methods, sent in ((["GET", "HEAD"], []), (None, ["POST"])):
        environment = listed.model_copy(update={"replay_methods": methods})
        allowing = settings.model_copy(
            update={"environments": {**settings.environments, "production": environment}}
        )
        production.requests.clear()
        cases, _ = select_cases(engine, allowing, Selection(names=["manual_production_post"]), None)
        [result] = run_any(cases, allowing)
        assert [r["method"] for r in production.requests] == sent, (methods, result)
    assert internal.requests == []
