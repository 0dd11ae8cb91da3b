"""The runner against a real HTTP server: captures, polling, re-runs, refusals and breakage."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse

from immunity.examples.sample_service import start_server
from immunity.models.enums import ExecutionStatus as S
from immunity.models.specs import TestCase
from immunity.tasks.shared.runner import MAX_REDIRECTS, refusal, run_cases_sync

SEEN: list[tuple[str, dict[str, str]]] = []  # what /headers received


def _app() -> FastAPI:
    app = FastAPI()
    orders: dict[int, dict[str, Any]] = {}
    counter = itertools.count(1)
    flips = itertools.count()

    @app.post("/customers", status_code=201)
    async def customer(body: dict[str, Any]) -> dict[str, Any]:
        return {"id": next(counter), "name": body["name"]}

    @app.post("/orders", status_code=201)
    async def order(body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body.get("customer_id"), int):
            raise HTTPException(422, "customer_id must be an integer")
        order_id = next(counter)
        orders[order_id] = {"id": order_id, "status": "created", "polls": 0, **body}
        return orders[order_id]

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int) -> dict[str, Any]:
        order = orders[order_id]
        order["polls"] += 1
        if order["polls"] >= 3:
            order["status"] = "shipped"
        return order

    @app.get("/flip")
    async def flip() -> Response:
        return Response(status_code=500 if next(flips) % 2 == 0 else 200)

    @app.get("/loop/{n}")
    async def loop(n: int) -> RedirectResponse:
        return RedirectResponse(f"/loop/{n + 1}", status_code=302)

    @app.get("/sso")
    async def sso() -> RedirectResponse:
        return RedirectResponse("http://127.0.0.1:9/login", status_code=302)

    @app.get("/headers")
    async def headers(request: Request) -> dict[str, str]:
        SEEN.append((request.url.path, dict(request.headers)))
        return {"ok": "yes"}

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = start_server(_app())
    try:
        yield server.base_url
    finally:
        server.stop()


def case(
    base_url: str, kind: str, spec: dict, expectations: dict | None = None, **extra
) -> TestCase:
    return TestCase(
        test_id=1,
        name="t",
        kind=kind,
        spec=spec,
        expectations=expectations or {},
        base_url=base_url,
        environment="staging",
        **extra,
    )


ORDER_FLOW = {
    "steps": [
        {
            "name": "customer",
            "method": "POST",
            "path": "/customers",
            "body": {"name": "Ada"},
            "capture": {"customer": "$.id"},
            "expect": {"status": 201},
        },
        {
            "name": "order",
            "method": "POST",
            "path": "/orders",
            "body": {"customer_id": "${customer}", "note": "for ${customer}"},
            "capture": {"order": "$.id"},
            "expect": {"status": 201, "json_schema": {"required": ["customer_id"]}},
        },
        {
            "name": "shipped",
            "path": "/orders/${order}",
            "poll": {"attempts": 5, "interval_s": 0},
            "expect": {"body_contains": ["shipped"]},
        },
    ]
}


def test_a_scenario_captures_typed_values_and_polls(base_url: str) -> None:
    (result,) = run_cases_sync([case(base_url, "scenario", ORDER_FLOW)])
    assert result.status == S.PASSED, result.error
    assert [call["step"] for call in result.calls] == ["customer", "order"] + ["shipped"] * 3
    # `${customer}` alone kept its integer type (the service refuses a string) and, inside a
    # string, was formatted into it; `${order}` was filled into the path.
    assert re.fullmatch(r"/orders/\d+", result.calls[2]["path"])


def test_polling_gives_up_and_says_so(base_url: str) -> None:
    spec = {**ORDER_FLOW, "steps": [*ORDER_FLOW["steps"][:2], {**ORDER_FLOW["steps"][2]}]}
    spec["steps"][2]["poll"] = {"attempts": 2, "interval_s": 0}
    (result,) = run_cases_sync([case(base_url, "scenario", spec)])
    assert result.status == S.FAILED
    assert "after 2 polls" in (result.error or "") and "shipped" in (result.error or "")


def test_a_variable_nothing_captured_is_an_error_not_a_crash(base_url: str) -> None:
    spec = {"steps": [{"name": "get", "path": "/orders/${missing}"}]}
    (result,) = run_cases_sync([case(base_url, "scenario", spec)])
    assert result.status == S.ERROR and "${missing}" in (result.error or "")


def test_a_pass_on_rerun_is_flaky_and_keeps_the_first_failure(base_url: str) -> None:
    spec = {"method": "GET", "path": "/flip"}
    (result,) = run_cases_sync([case(base_url, "http", spec, {"status": 200})], reruns=1)
    assert (result.status, result.attempts) == (S.FLAKY, 2)
    assert result.actual["status"] == 500


def test_unsafe_methods_are_refused_against_production(base_url: str) -> None:
    unsafe = case(base_url, "scenario", ORDER_FLOW, is_production=True)
    assert "POST" in (refusal(unsafe) or "")
    assert refusal(unsafe.model_copy(update={"allow_unsafe": True})) is None
    safe = case(base_url, "http", {"method": "GET", "path": "/flip"}, is_production=True)
    assert refusal(safe) is None
    (result,) = run_cases_sync([unsafe])
    assert result.status == S.SKIPPED and result.calls == []


def test_a_stored_spec_that_no_longer_validates_is_an_error(base_url: str) -> None:
    (result,) = run_cases_sync([case(base_url, "http", {"method": "FETCH", "path": "/"})])
    assert result.status == S.ERROR and "invalid test definition" in (result.error or "")


def test_many_tests_run_concurrently_one_result_each(base_url: str) -> None:
    cases = [
        case(base_url, "scenario", ORDER_FLOW).model_copy(update={"test_id": n}) for n in range(40)
    ]
    results = run_cases_sync(cases, concurrency=8)
    assert [r.test_id for r in results] == list(range(40))
    assert {r.status for r in results} == {S.PASSED}


def test_redirects_stay_in_the_origin_and_are_bounded(base_url: str) -> None:
    loop = case(base_url, "http", {"path": "/loop/0"})
    (result,) = run_cases_sync([loop])
    assert result.status == S.ERROR and "too many times" in (result.error or "")
    assert len(result.actual["redirects"]) == MAX_REDIRECTS + 1
    assert [c["path"] for c in result.calls] == ["/loop/0"]
    # A redirect to another origin is the answer: an error, unless the test expects it.
    (result,) = run_cases_sync(
        [case(base_url, "http", {"path": "/sso"}, {"should_not_fail": True})]
    )
    assert result.status == S.ERROR and "another origin" in (result.error or "")
    assert result.actual["status"] == 302
    (result,) = run_cases_sync([case(base_url, "http", {"path": "/sso"}, {"status": "3xx"})])
    assert result.status == S.PASSED, result.error
    assert (
        result.actual.get("redirects") is None or result.actual["redirects"][0]["followed"] is False
    )


def test_headers_are_bounded_and_the_environment_auth_is_added(base_url: str) -> None:
    spec = {
        "path": "//example.invalid/headers",
        "headers": {
            "X-Forwarded-Host": "evil",
            "X-HTTP-Method-Override": "DELETE",
            "Authorization": "Bearer captured",
            "X-Tenant": "acme",
            "Accept": "application/json",
        },
    }
    written = case(base_url, "http", spec, {"status": 200})
    generated = written.model_copy(update={"test_id": 2, "allowed_headers": ["accept"]})
    SEEN.clear()
    results = run_cases_sync(
        [written, generated], auth={base_url: {"Authorization": "Bearer environment"}}
    )
    assert [r.status for r in results] == [S.PASSED, S.PASSED], results
    assert results[0].calls[0]["path"] == "//example.invalid/headers"  # as stored
    assert [path for path, _ in SEEN] == ["/headers", "/headers"]  # as sent: same origin
    (_, by_person), (_, by_report) = sorted(SEEN, key=lambda seen: "x-tenant" not in seen[1])
    assert by_person["x-tenant"] == "acme" and by_report.get("x-tenant") is None
    for sent in (by_person, by_report):
        assert sent["authorization"] == "Bearer environment"
        assert sent["host"] == base_url.removeprefix("http://")
        assert "x-forwarded-host" not in sent and "x-http-method-override" not in sent
