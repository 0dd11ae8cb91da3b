"""Acceptance (issue 18): browser replays obey the environment's replay rules.

Listeners on 127.0.0.1 stand in for production, staging and an internal service; each counts
every request it receives. Browser error reports go through immunity's real ingest API; their
breadcrumbs type into and submit a form that deletes an account. Immunity's real Chromium must
send production nothing, submit nothing with POST where only GET is allowed, and reach no other
origin than the environment's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from immunity.api.app import create_app
from immunity.api.auth import hash_token
from immunity.examples.sample_service import start_server
from immunity.examples.sample_service.ui_events import ClientErrorIn, browser_failure_event
from immunity.models.db import get_engine
from immunity.models.enums import ExecutionStatus
from immunity.models.settings import Environment, Settings
from immunity.models.specs import TestCase
from immunity.models.tables import RegressionTest
from immunity.tasks.shared.browser import BrowserPool
from immunity.tasks.ui.runner import run_ui_cases

pytestmark = pytest.mark.usefixtures("chromium")

TOKEN = "imm_browser_replays"
DELETE_CRUMBS = [
    {"action": "type", "selector": "#confirm", "value": "DELETE"},
    {"action": "submit", "selector": "form#delete-account"},
]
ACCOUNT_PAGE = """<!doctype html><html><head><title>Account</title></head><body>
<form id="delete-account" method="post" action="/admin/delete-account">
  <input id="confirm" name="confirm"><button id="delete" type="submit">Delete my account</button>
</form>
<form id="search" method="get" action="/results"><input id="q" name="q"></form>
<button id="beacon" type="button"
  onclick="fetch('/admin/delete-account', {method: 'POST', body: 'confirm=DELETE'})">Go</button>
</body></html>"""
WIDGETS_PAGE = """<!doctype html><html><head><title>Widgets</title></head><body>
<p id="status">loading</p><img src="{internal}/pixel.png">
<a id="out" href="{internal}/popup" target="_blank">Status page</a>
<button id="open" type="button" onclick="window.open('{internal}/opened')">Open</button>
<script>fetch('{internal}/secrets').then(() => {{}}, () => {{}})
  .finally(() => {{ document.getElementById('status').textContent = 'done'; }});</script>
</body></html>"""
# A dedicated worker's POST: the in-page guard does not run in workers, the method gate does.
WORKER_PAGE = """<!doctype html><html><head><title>Worker</title></head><body>
<p id="status">waiting</p><script>
const code = "fetch(self.name + '/admin/delete-account', {method: 'POST', body: 'confirm=DELETE'})"
  + ".then(() => postMessage('sent'), () => postMessage('failed'));";
const worker = new Worker(URL.createObjectURL(new Blob([code])), {name: location.origin});
worker.onmessage = (event) => { document.getElementById('status').textContent = event.data; };
</script></body></html>"""
# Ways a staging page leads the browser to the internal listener without a step asking for it.
LEADING_PAGES = {
    "/links": """<!doctype html><html><head><title>Links</title></head><body>
<a id="away" href="/away">Continue</a>
<form id="jump" method="get" action="/jump"><input id="to" name="to"></form></body></html>""",
    "/leave": """<!doctype html><html><head><title>Leaving</title></head><body>
<p id="status">here</p><script>location = '{internal}/x';</script></body></html>""",
}


class Listener:
    """An HTTP server on 127.0.0.1 (port 0) that records every request it receives.

    `redirects` maps a path to the URL it answers `302 Location:` with.
    """

    def __init__(self, pages: dict[str, str], redirects: dict[str, str] | None = None) -> None:
        self.pages = pages
        self.redirects = redirects or {}
        self.requests: list[tuple[str, str, bytes]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                listener.requests.append((self.command, self.path, body))
                if (target := listener.redirects.get(self.path.split("?")[0])) is not None:
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                page = listener.pages.get(self.path.split("?")[0], "<p>ok</p>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self) -> list[tuple[str, str, bytes]]:
        return [request for request in self.requests if request[0] != "GET"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def listeners() -> Iterator[dict[str, Listener]]:
    internal = Listener({})
    widgets = WIDGETS_PAGE.format(internal=internal.url)
    leading = {
        path: page.replace("{internal}", internal.url) for path, page in LEADING_PAGES.items()
    }
    redirects = {path: f"{internal.url}/steal" for path in ("/open-redirect", "/away", "/jump")}
    made = {
        "internal": internal,
        "production": Listener({"/admin/account": ACCOUNT_PAGE}),
        "staging": Listener(
            {
                "/admin/account": ACCOUNT_PAGE,
                "/widgets": widgets,
                "/worker": WORKER_PAGE,
                **leading,
            },
            redirects,
        ),
    }
    try:
        yield made
    finally:
        for listener in made.values():
            listener.close()


def _settings(listeners: dict[str, Listener], tmp_path: Path, **more: Any) -> Settings:
    environments = {
        "production": Environment(base_url=listeners["production"].url, is_production=True),
        "staging": Environment(base_url=listeners["staging"].url, replay_methods=["GET"]),
    }
    return Settings(
        environments=environments,
        data_dir=tmp_path / "data",
        regression_reruns=0,
        ui_browsers=1,
        ui_timeout_s=5,
        **more,
    )


def _reports(page_url: str, environment: str) -> list[dict[str, Any]]:
    """Three reports of one page error, with breadcrumbs that type DELETE and submit the form."""
    report = ClientErrorIn(
        url=page_url,
        name="TypeError",
        message="Cannot read properties of null (reading 'dataset')",
        stack="TypeError: Cannot read properties of null (reading 'dataset')\n"
        f"    at confirmDelete ({page_url.rsplit('/', 2)[0]}/static/account.js:12:5)",
        breadcrumbs=DELETE_CRUMBS,
    )
    return [browser_failure_event(report, environment=environment, release="1.0") for _ in "abc"]


def _reproduction_of(db_url: str, test_id: int) -> RegressionTest:
    """Wait for the API's background reproduction check to record its verdict; return the test."""
    deadline = time.monotonic() + 60
    while True:
        with Session(get_engine(db_url)) as session:
            test = session.get(RegressionTest, test_id)
            assert test is not None
            if test.reproduction != "pending":
                return test
        assert time.monotonic() < deadline, "the reproduction check recorded no verdict"
        time.sleep(0.2)


def _ingest(db_url: str, settings: Settings, events: list[dict[str, Any]]) -> RegressionTest:
    with (
        start_server(create_app(settings, get_engine(db_url))) as server,
        httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as client,
    ):
        answer = client.post("/api/v1/failures", json={"events": events})
        assert answer.status_code == 200, answer.text
        [created] = answer.json()["tests_created"]
        return _reproduction_of(db_url, created["test_id"])


def test_reports_against_production_send_production_nothing(
    db_url: str, listeners: dict[str, Listener], tmp_path: Path
) -> None:
    settings = _settings(listeners, tmp_path, api_tokens=[hash_token(TOKEN)])
    production = listeners["production"]
    test = _ingest(db_url, settings, _reports(f"{production.url}/admin/account", "production"))

    print("production received:", production.requests)
    print("verdict:", test.reproduction, "—", test.reproduction_evidence.get("reason"))
    assert test.kind == "ui" and test.spec["from_report"] is True
    assert [step["action"] for step in test.spec["steps"]][:3] == ["open", "type", "submit"]
    assert production.requests == []  # not even the page's GET
    assert test.reproduction == "unverified"
    assert "'production'" in test.reproduction_evidence["reason"]
    assert "replay" in test.reproduction_evidence["reason"]


def test_a_staging_that_allows_only_get_sees_no_submit(
    db_url: str, listeners: dict[str, Listener], tmp_path: Path
) -> None:
    settings = _settings(listeners, tmp_path, api_tokens=[hash_token(TOKEN)])
    staging = listeners["staging"]
    test = _ingest(db_url, settings, _reports(f"{staging.url}/admin/account", "staging"))

    reason = test.reproduction_evidence["reason"]
    print("staging received:", staging.requests)
    print("verdict:", test.reproduction, "—", reason)
    assert ("GET", "/admin/account", b"") in staging.requests  # GET is allowed: the page opened
    assert staging.posts() == []
    assert not any(b"DELETE" in body for _, _, body in staging.requests)
    assert test.reproduction == "unverified"
    assert "refused before the browser acted" in reason and "'staging'" in reason
    assert "replay_methods" in reason
    [refused] = [call for call in test.reproduction_evidence["calls"] if call.get("refused")]
    assert refused["action"] == "submit"


@pytest.fixture(scope="module")
def pool(chromium: Settings) -> Iterator[BrowserPool]:
    with BrowserPool.from_settings(chromium.model_copy(update={"ui_browsers": 1})) as made:
        yield made


def _case(test_id: int, base_url: str, environment: str, steps: list[dict[str, Any]]) -> TestCase:
    return TestCase(
        test_id=test_id,
        name=f"ui-{test_id}",
        kind="ui",
        spec={"steps": steps, "from_report": True},
        expectations={},
        base_url=base_url,
        environment=environment,
        marker="run",
    )


def test_suite_runs_refuse_submits_but_not_get_forms(
    listeners: dict[str, Listener], tmp_path: Path, pool: BrowserPool
) -> None:
    settings = _settings(listeners, tmp_path)
    staging, production = listeners["staging"], listeners["production"]
    open_account = {"action": "open", "path": "/admin/account"}

    def click(selector: str) -> list[dict[str, Any]]:
        return [open_account, {"action": "click", "selector": selector}]

    cases = [
        _case(1, production.url, "production", [open_account]),
        _case(2, staging.url, "staging", click("#delete")),
        _case(
            3,
            staging.url,
            "staging",
            [open_account, {"action": "type", "selector": "#confirm", "value": "DELETE\n"}],
        ),
        _case(
            4,
            staging.url,
            "staging",
            [
                open_account,
                {"action": "type", "selector": "#q", "value": "shoes"},
                {"action": "submit", "selector": "form#search"},
                {"action": "assert_url", "text": "/results?q=shoes"},
            ],
        ),
        _case(5, staging.url, "staging", click("#beacon")),
    ]
    results = run_ui_cases(cases, settings=settings, pool=pool)
    for result in results:
        print(result.name, result.status, "—", result.error, result.actual.get("refused_requests"))
    print("staging received:", staging.requests)

    refused_run, click, enter, search, script = results
    assert refused_run.status == ExecutionStatus.SKIPPED and production.requests == []
    assert "'production' does not allow replays" in (refused_run.error or "")
    assert click.status == ExecutionStatus.SKIPPED and "step 1 click" in (click.error or "")
    assert enter.status == ExecutionStatus.SKIPPED and "step 1 type" in (enter.error or "")
    assert search.status == ExecutionStatus.PASSED  # a GET form is allowed where GET is
    assert ("GET", "/results?q=shoes", b"") in staging.requests
    # A page script's POST after an allowed click: the guard refuses it, and it is recorded.
    assert script.actual.get("refused_requests"), script.actual
    assert "POST" in script.actual["refused_requests"][0]
    assert staging.posts() == []


def test_the_browser_reaches_no_other_origin(
    listeners: dict[str, Listener], tmp_path: Path, pool: BrowserPool
) -> None:
    settings = _settings(listeners, tmp_path)
    staging, internal = listeners["staging"], listeners["internal"]
    steps = [
        {"action": "open", "path": "/widgets"},
        {"action": "wait", "selector": "#status", "text": "done"},
        {"action": "click", "selector": "#open"},
        {"action": "click", "selector": "#out"},
    ]
    [result] = run_ui_cases([_case(6, staging.url, "staging", steps)], settings=settings, pool=pool)
    blocked = result.actual.get("blocked_requests", [])
    print(result.status, result.error)
    print("blocked:", blocked, "refused:", result.actual.get("refused_requests"))
    print("internal received:", internal.requests)

    assert internal.requests == []
    blocked_urls = {record["url"] for record in blocked}
    assert {f"{internal.url}/secrets", f"{internal.url}/pixel.png"} <= blocked_urls
    assert any("window.open" in what for what in result.actual.get("refused_requests", []))
    # Chromium does not block navigations by pattern: the link is refused before the click.
    assert result.status == ExecutionStatus.SKIPPED
    assert "step 3 click" in (result.error or "") and "another origin" in (result.error or "")


def test_redirects_and_page_scripts_cannot_lead_the_browser_elsewhere(
    listeners: dict[str, Listener], tmp_path: Path, pool: BrowserPool
) -> None:
    settings = _settings(listeners, tmp_path)
    staging, internal = listeners["staging"], listeners["internal"]
    cases = [
        # An open redirect on staging, opened directly.
        _case(11, staging.url, "staging", [{"action": "open", "path": "/open-redirect"}]),
        # A same-origin link and a GET form (both allowed) whose targets redirect elsewhere.
        _case(
            12,
            staging.url,
            "staging",
            [
                {"action": "open", "path": "/links"},
                {"action": "click", "selector": "#away"},
                {"action": "wait", "selector": "#never", "timeout_s": 1},
            ],
        ),
        _case(
            13,
            staging.url,
            "staging",
            [
                {"action": "open", "path": "/links"},
                {"action": "type", "selector": "#to", "value": "x"},
                {"action": "submit", "selector": "form#jump"},
                {"action": "wait", "selector": "#never", "timeout_s": 1},
            ],
        ),
        # The page's own script: location = 'http://127.0.0.1:<internal>/x'.
        _case(
            14,
            staging.url,
            "staging",
            [
                {"action": "open", "path": "/leave"},
                {"action": "wait", "selector": "#never", "timeout_s": 1},
            ],
        ),
    ]
    results = run_ui_cases(cases, settings=settings, pool=pool)
    for result in results:
        print(result.name, result.status, "—", result.error)
        print("  blocked:", result.actual.get("blocked_requests"))
    print("staging received:", staging.requests)
    print("internal received:", internal.requests)

    assert internal.requests == []
    opened, link, form, script = results
    for result, where in ((opened, "/steal"), (link, "/steal"), (form, "/steal"), (script, "/x")):
        blocked = result.actual.get("blocked_requests", [])
        assert {"method": "GET", "url": f"{internal.url}{where}"} in blocked, result.actual
        # Led elsewhere, the test did not run as written: refused (skipped in a suite run).
        assert result.status == ExecutionStatus.SKIPPED, result.error
        assert f"led the browser to {internal.url}{where}" in (result.error or "")
        assert "'staging'" in (result.error or "") and result.attempts == 1
    assert "step 0 open /open-redirect" in (opened.error or "")
    assert ("GET", "/away", b"") in staging.requests  # the allowed click was made
    assert ("GET", "/jump?to=x", b"") in staging.requests  # the allowed GET form was submitted


def test_a_session_is_reused_only_where_it_may_reach(
    listeners: dict[str, Listener], tmp_path: Path, chromium: Settings
) -> None:
    settings = _settings(listeners, tmp_path)
    staging, internal = listeners["staging"], listeners["internal"]
    opening = [{"action": "open", "path": "/widgets"}]
    with BrowserPool.from_settings(chromium.model_copy(update={"ui_browsers": 1})) as one:
        first = run_ui_cases(
            [_case(21, staging.url, "staging", opening)], settings=settings, pool=one
        )
        again = run_ui_cases(
            [_case(22, staging.url, "staging", opening)], settings=settings, pool=one
        )
        reused = one.started
        # The same browser confined to the internal listener's origin must not keep serving
        # staging's tests, nor staging's serve another origin's.
        other = _case(23, internal.url, "internal", [{"action": "open", "path": "/ok"}])
        elsewhere = run_ui_cases([other], settings=settings, pool=one)
        back = run_ui_cases(
            [_case(24, staging.url, "staging", opening)], settings=settings, pool=one
        )
        print(
            "started:", reused, one.started, [r.status for r in (*first, *again, *elsewhere, *back)]
        )

    assert [first[0].status, again[0].status] == [ExecutionStatus.PASSED, ExecutionStatus.PASSED]
    assert reused == 1
    assert elsewhere[0].status == ExecutionStatus.PASSED and one.started == 3
    assert back[0].status == ExecutionStatus.PASSED
    assert ("GET", "/ok", b"") in internal.requests
    assert [path for _, path, _ in internal.requests if path != "/favicon.ico"] == ["/ok"]


def test_a_worker_cannot_send_a_method_the_environment_does_not_allow(
    listeners: dict[str, Listener], tmp_path: Path, pool: BrowserPool
) -> None:
    settings = _settings(listeners, tmp_path)  # staging allows GET only
    staging = listeners["staging"]
    steps = [
        {"action": "open", "path": "/worker"},
        {"action": "wait", "selector": "#status", "text": "failed"},
    ]
    [result] = run_ui_cases(
        [_case(31, staging.url, "staging", steps)], settings=settings, pool=pool
    )
    print(result.status, result.error, result.actual.get("blocked_requests"))
    print("staging received:", staging.requests)

    assert staging.posts() == []
    assert result.status == ExecutionStatus.PASSED  # the worker saw its request fail
    blocked = result.actual.get("blocked_requests", [])
    assert {"method": "POST", "url": f"{staging.url}/admin/delete-account"} in blocked
