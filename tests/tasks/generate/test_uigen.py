"""A page's JavaScript error that recurs becomes a UI test replaying its breadcrumbs."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.db import create_schema
from immunity.models.settings import Environment, Settings
from immunity.models.tables import RegressionTest
from immunity.tasks.generate.uigen import ui_replay_spec
from immunity.tasks.ingest.pipeline import process_failures

STAGING = Environment(base_url="http://127.0.0.1:8123")
CRUMBS = [
    {"action": "click", "selector": "#add-to-cart"},
    {"action": "type", "selector": "#qty", "value": "2"},
    {"action": "type", "selector": "#password"},  # no value kept for passwords
    {"action": "hover", "selector": "#menu"},  # not an action a test replays
    {"action": "click"},  # no selector
    {"action": "submit", "selector": "form#checkout"},
]


def test_breadcrumbs_become_steps_ending_with_no_console_error() -> None:
    spec, reason = ui_replay_spec(
        {"method": "GET", "url": "http://127.0.0.1:8123/products/2?ref=home"},
        {"breadcrumbs": CRUMBS},
        STAGING,
    )
    assert reason is None and spec is not None
    assert spec.dump()["steps"] == [
        {"action": "open", "path": "/products/2?ref=home"},
        {"action": "click", "selector": "#add-to-cart"},
        {"action": "type", "selector": "#qty", "value": "2"},
        {"action": "type", "selector": "#password", "value": ""},
        {"action": "submit", "selector": "form#checkout"},
        {"action": "assert_no_console_errors"},
    ]


def test_an_error_without_a_page_url_is_untestable() -> None:
    spec, reason = ui_replay_spec({"method": "GET"}, {}, STAGING)
    assert spec is None and "page URL" in (reason or "")
    spec, reason = ui_replay_spec({"url": "file:///tmp/x.html"}, {}, STAGING)
    assert spec is None and "not an HTTP URL" in (reason or "")


def browser_error(n: int) -> dict:
    return {
        "error_type": "TypeError",
        "message": f"Cannot read properties of undefined (reading 'price') #{n}",
        "stacktrace": None,
        "frames": [
            {"function": "addToCart", "filename": "/static/cart.js", "lineno": 12, "in_app": True}
        ],
        "environment": "staging",
        "source": "browser",
        "request": {"method": "GET", "url": "http://127.0.0.1:8123/products/2", "headers": {}},
        "context": {"breadcrumbs": CRUMBS[:1], "page": "/products/2"},
        "tags": {"source": "browser"},
    }


def test_a_recurring_page_error_gets_one_ui_regression_test(engine: Engine) -> None:
    create_schema(engine)
    settings = Settings(environments={"staging": STAGING})
    result = process_failures(
        [browser_error(n) for n in range(3)], engine=engine, settings=settings, generate=True
    )
    [created] = [o for o in result.generated if o.created]
    with Session(engine) as session:
        test = session.exec(select(RegressionTest)).one()
    assert test.id == created.test_id and result.verify == [test.id]
    assert (test.kind, test.type, test.reproduction) == ("ui", "regression", "pending")
    assert test.name.startswith("regression_type_error_") and "ui" in test.tags
    assert test.spec["steps"] == [
        {"action": "open", "path": "/products/2"},
        {"action": "click", "selector": "#add-to-cart"},
        {"action": "assert_no_console_errors"},
    ]
