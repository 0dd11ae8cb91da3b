"""The UI loop end to end: a page error recurs, becomes a UI test, fails with evidence, passes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from sqlmodel import Session, select

from immunity.examples.sample_service import JsonlSink, Reporter, create_app, start_server
from immunity.flows.ingest import ingest_failures
from immunity.flows.ui import run_ui_suite
from immunity.models.db import get_engine
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest, Signature, TestExecution
from immunity.tasks.shared.browser import BrowserPool

pytestmark = pytest.mark.usefixtures("prefect_harness", "chromium")


@pytest.fixture
def shop(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Reporter, JsonlSink]]:
    """The sample service on staging, reporting its page errors to a JSON-lines sink."""
    sink = JsonlSink(tmp_path / "events")
    reporter = Reporter(sink, flush_interval_s=0.05)
    with start_server(create_app(reporter, environment="staging")) as server:
        environments = {"staging": {"base_url": server.base_url, "is_production": False}}
        monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
        monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("IMMUNITY_REGRESSION_RERUNS", "0")
        monkeypatch.setenv("IMMUNITY_UI_BROWSERS", "1")
        get_settings.cache_clear()
        try:
            yield server.base_url, reporter, sink
        finally:
            reporter.close()
            get_settings.cache_clear()


def fault(base_url: str, enabled: bool) -> None:
    httpx.put(
        f"{base_url}/admin/faults/ui_button_throws", json={"enabled": enabled}
    ).raise_for_status()


def a_user_adds_to_cart(base_url: str, reporter: Reporter, sink: JsonlSink, times: int) -> None:
    """A real user's browser (not immunity's replay): each click throws and is reported."""
    with BrowserPool.from_settings(get_settings()) as pool, pool.lease() as browser:
        for n in range(1, times + 1):
            browser.driver.get(f"{base_url}/products/1")
            browser.driver.find_element(By.CSS_SELECTOR, "#add-to-cart").click()
            deadline = time.monotonic() + 10
            while len(sink.read_failures()) < n:
                assert time.monotonic() < deadline, "the page error was not reported"
                reporter.flush()
                time.sleep(0.05)


def test_a_page_error_becomes_a_ui_test_that_fails_with_evidence_then_passes(
    store: str, shop: tuple[str, Reporter, JsonlSink]
) -> None:
    base_url, reporter, sink = shop
    fault(base_url, True)
    a_user_adds_to_cart(base_url, reporter, sink, times=3)
    events = sink.read_failures()
    assert {e["error_type"] for e in events} == {"TypeError"}
    assert events[0]["context"]["breadcrumbs"][-1]["selector"] == "#add-to-cart"

    report = ingest_failures(events)
    assert report.tests_created == 1
    engine = get_engine(store)
    with Session(engine) as session:
        test = session.exec(select(RegressionTest)).one()
    assert test.kind == "ui" and test.spec["steps"][0] == {"action": "open", "path": "/products/1"}
    # Its replay raised the page error again: trusted.
    assert test.reproduction == "reproduced", test.reproduction_evidence

    summary = run_ui_suite(environment="staging")
    assert (summary.total, summary.failed) == (1, 1)
    with Session(engine) as session:
        failed = session.exec(select(TestExecution)).one()
    assert "console" in (failed.error or "")
    screenshot = Path(failed.artifacts["screenshot"])
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    console = json.loads(Path(failed.artifacts["console_log"]).read_text())
    assert any("TypeError" in json.dumps(entry) for entry in console)

    fault(base_url, False)
    summary = run_ui_suite(environment="staging")
    assert (summary.passed, summary.failed) == (1, 0)
    with Session(engine) as session:
        assert session.exec(select(Signature)).one().status == "fixed"
    # The page reported the errors of immunity's own replays too (the check and the failed run),
    # marked as replays by the browser immunity drove: ingested, they are not occurrences.
    reporter.flush()
    replayed = sink.read_failures()[3:]
    assert len(replayed) >= 2
    assert all("x-immunity-replay" in e["request"]["headers"] for e in replayed), replayed
    assert ingest_failures(replayed).accepted == 0
    with Session(engine) as session:
        assert session.exec(select(Signature)).one().occurrence_count == 3
