"""The sample shop's web UI over HTTP, its page-error intake, and a page error in a real browser."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from immunity.examples.sample_service import Fault, create_app, start_server
from immunity.examples.sample_service.faults import UI_FAULTS
from immunity.examples.sample_service.ui_events import parse_js_stack
from immunity.models.enums import ExecutionStatus
from immunity.models.schemas import FailureEventIn
from immunity.models.settings import Environment, Settings
from immunity.models.specs import TestCase
from immunity.tasks.generate.uigen import ui_replay_spec
from immunity.tasks.shared.browser import BrowserPool
from immunity.tasks.ui.runner import run_ui_cases
from tests.examples.conftest import Service, wait_until

PAGES = {
    "/": ("home", "welcome"),
    "/products": ("products", "product-list"),
    "/products/2": ("product", "add-to-cart"),
    "/search": ("search", "search-form"),
    "/cart": ("cart", "cart-lines"),
    "/checkout": ("checkout", "checkout-form"),
    "/login": ("login", "login-form"),
    "/orders": ("orders", "orders-rows"),
    "/dashboard": ("dashboard", "widgets"),
    "/settings": ("settings", "settings-form"),
    "/help": ("help", "faq"),
}
V8_STACK = (
    "TypeError: Cannot read properties of undefined (reading 'id')\n"
    "    at addToCart (http://shop.test/static/ui.js:175:16)\n"
    "    at HTMLButtonElement.onAddToCart (http://shop.test/static/ui.js:168:31)\n"
    "    at async loadOrders (http://shop.test/static/ui.js:20:5)\n"
    "    at http://shop.test/products/2:1:9\n"
    "    at Array.forEach (<anonymous>)\n"
    "    at track (https://cdn.example.net/analytics.js:3:1)"
)
CRUMBS = [
    {"action": "select", "selector": "#quantity", "value": "2"},
    {"action": "type", "selector": "#login-password"},
    {"action": "click", "selector": "#add-to-cart"},
]


def _faults_of(page: str) -> set[str]:
    found = re.search(r'<html [^>]*data-faults="([^"]*)"', page)
    assert found is not None
    return set(found.group(1).split())


def test_every_page_renders_with_its_script_and_selectors(service: Service) -> None:
    for path, (page, marker) in PAGES.items():
        response = service.client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        body = response.text
        assert f'data-page="{page}"' in body and f'id="{marker}"' in body, path
        assert '<script src="/static/ui.js">' in body and 'id="page-data"' in body
        assert 'rel="icon" href="data:,"' in body  # no /favicon.ico request to fail
        assert _faults_of(body) == set()
        for link in ("nav-home", "nav-products", "nav-cart", "cart-count", "nav-login"):
            assert f'id="{link}"' in body
    missing = service.client.get("/products/999")
    assert missing.status_code == 404 and 'id="error"' in missing.text
    script = service.client.get("/static/ui.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javas")
    assert "/api/client-errors" in script.text and "unhandledrejection" in script.text
    assert service.client.get("/static/ui.css").headers["content-type"].startswith("text/css")
    assert service.failures() == []


def test_ui_faults_are_rendered_into_every_page(service: Service) -> None:
    service.set_fault(Fault.UI_BUTTON_THROWS.value)
    service.set_fault(Fault.UI_FORM_REJECTS.value)
    service.set_fault(Fault.EXECUTIONS_500.value)  # not a UI fault: pages do not name it
    for path in PAGES:
        assert _faults_of(service.client.get(path).text) == {"ui_button_throws", "ui_form_rejects"}
    service.client.post("/admin/faults/reset")
    for fault in UI_FAULTS:
        service.set_fault(fault.value)
    assert _faults_of(service.client.get("/dashboard").text) == {f.value for f in UI_FAULTS}
    descriptions = service.client.get("/admin/faults").json()["descriptions"]
    assert all(descriptions[fault.value].startswith("UI: ") for fault in UI_FAULTS)


def test_storefront_is_stocked_in_the_shop_once(service: Service) -> None:
    service.client.get("/products")
    service.client.get("/products/1")
    listed = service.client.get("/api/shop/products", params={"category": "storefront"}).json()
    assert listed["total"] == 8
    assert sorted(item["sku"] for item in listed["items"]) == [
        f"STOREFRONT-{n:03d}" for n in range(1, 9)
    ]
    page = service.client.get("/products/1").text
    shop_id = re.search(r'id="stock" data-shop-id="([^"]+)"', page)
    assert shop_id is not None
    assert service.client.get(f"/api/shop/inventory/{shop_id.group(1)}").json()["available"] > 0


def test_login_api_accepts_only_the_demo_account(service: Service) -> None:
    good = service.client.post(
        "/api/ui/login", json={"email": "Demo@Example.com", "password": "demo-password"}
    )
    assert good.status_code == 200
    assert good.json() == {"user": {"email": "demo@example.com", "name": "Demo Shopper"}}
    for email, password in (("demo@example.com", "nope-nope"), ("x@example.com", "demo-password")):
        refused = service.client.post("/api/ui/login", json={"email": email, "password": password})
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Invalid email or password"}
    assert service.client.post("/api/ui/login", json={"email": "a"}).status_code == 422


def test_orders_feed_and_its_fault(service: Service) -> None:
    healthy = service.client.get("/api/ui/orders", params={"limit": 5})
    assert healthy.status_code == 200 and isinstance(healthy.json()["items"], list)
    service.set_fault(Fault.UI_FAILING_API.value)
    broken = service.client.get("/api/ui/orders")
    assert broken.status_code == 500 and broken.json()["error"] == "OrdersFeedError"
    (event,) = service.failures()
    parsed = FailureEventIn.model_validate(event)
    assert (parsed.error_type, parsed.status_code, parsed.source) == (
        "OrdersFeedError",
        500,
        "python",
    )
    assert parsed.context["replica"] == "orders-ro-2"
    assert parsed.frames[-1].get("function") == "_read_orders"


def _report(**overrides: Any) -> dict[str, Any]:
    return {
        "url": "http://shop.test/products/2?ref=home",
        "name": "TypeError",
        "message": "Cannot read properties of undefined (reading 'id')",
        "stack": V8_STACK,
        "breadcrumbs": CRUMBS,
        **overrides,
    }


def test_a_client_error_becomes_a_browser_failure_event(service: Service) -> None:
    response = service.client.post("/api/client-errors", json=_report())
    assert response.status_code == 202 and response.json() == {"accepted": True}
    (event,) = service.failures()
    parsed = FailureEventIn.model_validate(event)
    assert (parsed.error_type, parsed.source) == ("TypeError", "browser")
    assert parsed.message == "Cannot read properties of undefined (reading 'id')"
    assert (parsed.environment, parsed.release) == ("testing", "sample@test")
    assert parsed.tags == {"source": "browser"}
    assert parsed.stacktrace == V8_STACK
    assert parsed.request is not None
    assert parsed.request.model_dump() == {
        "method": "GET", "url": "http://shop.test/products/2?ref=home", "headers": {}, "body": None
    }  # fmt: skip
    assert parsed.context == {"breadcrumbs": CRUMBS, "page": "/products/2"}
    assert [
        (f.get("function"), f.get("filename"), f.get("lineno"), f.get("in_app"))
        for f in parsed.frames
    ] == [
        ("track", "/analytics.js", 3, False),
        ("<anonymous>", "/products/2", 1, True),
        ("loadOrders", "/static/ui.js", 20, True),
        ("HTMLButtonElement.onAddToCart", "/static/ui.js", 168, True),
        ("addToCart", "/static/ui.js", 175, True),
    ]
    # Reporting a page error is not a success of the service's API.
    assert service.successes() == []


def test_client_errors_are_accepted_without_a_reporter() -> None:
    with start_server(create_app()) as server, httpx.Client(base_url=server.base_url) as client:
        assert client.post("/api/client-errors", json=_report()).status_code == 202


def test_a_client_error_without_a_stack_still_reports(service: Service) -> None:
    report = {"url": "http://shop.test/orders", "name": "UnhandledRejection", "message": "nope"}
    assert service.client.post("/api/client-errors", json=report).status_code == 202
    (event,) = service.failures()
    assert event["frames"] == [] and event["stacktrace"] is None
    assert event["context"] == {"breadcrumbs": [], "page": "/orders"}


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "TypeError", "message": "no url"},
        _report(url="file:///tmp/page.html"),
        _report(url="not a url"),
        _report(breadcrumbs=[{"action": "hover", "selector": "#menu"}]),
        _report(breadcrumbs=[{"action": "click"}]),
        _report(name=""),
        ["not", "an", "object"],
    ],
    ids=["no-url", "file-url", "bad-url", "bad-action", "no-selector", "no-name", "a-list"],
)
def test_bad_client_error_payloads_are_refused(service: Service, payload: Any) -> None:
    assert service.client.post("/api/client-errors", json=payload).status_code == 422
    assert service.failures() == []


def test_a_non_json_client_error_is_refused(service: Service) -> None:
    response = service.client.post(
        "/api/client-errors", content=b"oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and service.failures() == []


def test_js_stacks_of_other_engines_parse() -> None:
    gecko = "addToCart@http://shop.test/static/ui.js:175:16\n@http://shop.test/static/ui.js:9:3\n"
    assert parse_js_stack(gecko, "http://shop.test/products/2") == [
        {"function": "<anonymous>", "filename": "/static/ui.js", "lineno": 9, "in_app": True},
        {"function": "addToCart", "filename": "/static/ui.js", "lineno": 175, "in_app": True},
    ]
    assert parse_js_stack("Error: boom\nnot a frame", "http://shop.test/") == []
    construct = "    at new Cart (http://shop.test/static/ui.js:5:1)"
    assert parse_js_stack(construct, "http://shop.test/")[0]["function"] == "Cart"


def test_a_browser_event_replays_as_a_ui_test(service: Service) -> None:
    service.client.post("/api/client-errors", json=_report())
    (event,) = service.failures()
    spec, reason = ui_replay_spec(event["request"], event["context"], None)
    assert reason is None and spec is not None
    assert spec.dump()["steps"] == [
        {"action": "open", "path": "/products/2?ref=home"},
        {"action": "select", "selector": "#quantity", "value": "2"},
        {"action": "type", "selector": "#login-password", "value": ""},
        {"action": "click", "selector": "#add-to-cart"},
        {"action": "assert_no_console_errors"},
    ]


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture
def ui_settings(chromium: Settings, tmp_path: Path) -> Settings:
    return chromium.model_copy(
        update={"ui_browsers": 1, "regression_reruns": 0, "data_dir": tmp_path}
    )


def _browser_events(service: Service) -> list[dict[str, Any]]:
    return [e for e in service.failures() if e["source"] == "browser"]


def test_a_throwing_button_posts_its_error_and_the_replay_reproduces_it(
    service: Service, ui_settings: Settings
) -> None:
    steps = [
        {"action": "open", "path": "/products/2"},
        {"action": "select", "selector": "#quantity", "value": "2"},
        {"action": "click", "selector": "#add-to-cart"},
        {"action": "assert_text", "selector": "#cart-count", "text": "2", "timeout_s": 2},
    ]
    case = TestCase(
        test_id=1,
        name="add_to_cart",
        kind="ui",
        spec={"steps": steps},
        expectations={},
        base_url=service.base_url,
        environment="staging",
    )
    service.set_fault(Fault.UI_BUTTON_THROWS.value)
    (broken,) = run_ui_cases([case], settings=ui_settings)
    assert broken.status == ExecutionStatus.FAILED and "#cart-count" in (broken.error or "")
    assert wait_until(lambda: len(_browser_events(service)) == 1)
    (event,) = _browser_events(service)
    parsed = FailureEventIn.model_validate(event)
    assert parsed.error_type == "TypeError" and "reading 'id'" in parsed.message
    assert parsed.frames[-1].get("function") == "addToCart"
    assert parsed.frames[-1].get("filename") == "/static/ui.js" and parsed.frames[-1].get("in_app")
    assert parsed.request is not None and parsed.request.url == f"{service.base_url}/products/2"
    assert parsed.context == {
        "breadcrumbs": [
            {"action": "select", "selector": "#quantity", "value": "2"},
            {"action": "click", "selector": "#add-to-cart"},
        ],
        "page": "/products/2",
    }
    # The event's breadcrumbs make a UI test that fails while the fault is on and passes after.
    spec, _ = ui_replay_spec(
        event["request"], event["context"], Environment(base_url=service.base_url)
    )
    assert spec is not None
    replay = case.model_copy(update={"name": "replay", "spec": spec.dump()})
    (reproduced,) = run_ui_cases([replay], settings=ui_settings)
    assert reproduced.status == ExecutionStatus.FAILED
    assert "console error" in (reproduced.error or "")
    service.client.post("/admin/faults/reset")
    (fixed,) = run_ui_cases([replay], settings=ui_settings)
    assert fixed.status == ExecutionStatus.PASSED, fixed.error


def test_breadcrumbs_keep_typed_values_but_not_passwords(
    service: Service, ui_settings: Settings
) -> None:
    with BrowserPool.from_settings(ui_settings) as pool, pool.lease() as browser:
        driver = browser.driver
        driver.get(f"{service.base_url}/login")
        driver.find_element("css selector", "#login-email").send_keys("demo@example.com")
        driver.find_element("css selector", "#login-password").send_keys("hunter2-secret")
        driver.find_element("css selector", "#remember-me").click()
        # A page script (WebDriver's own scripts count as foreign) that throws later, outside
        # any handler, and leaves a rejected promise nobody catches.
        driver.execute_script(
            "const script = document.createElement('script');"
            "script.textContent = 'setTimeout(function explode() { null.boom(); }, 0);"
            ' Promise.reject("no reason given");\';'
            "document.body.append(script);"
        )
        assert wait_until(lambda: len(_browser_events(service)) == 2)
    by_type = {event["error_type"]: event for event in _browser_events(service)}
    assert set(by_type) == {"TypeError", "UnhandledRejection"}
    crumbs = by_type["TypeError"]["context"]["breadcrumbs"]
    assert crumbs == [
        {"action": "type", "selector": "#login-email", "value": "demo@example.com"},
        {"action": "type", "selector": "#login-password"},
        {"action": "click", "selector": "#remember-me"},
    ]
    assert "hunter2" not in str(by_type)
    assert by_type["TypeError"]["frames"][-1]["function"] == "explode"
    rejection = by_type["UnhandledRejection"]
    assert rejection["message"] == "no reason given" and rejection["frames"] == []
