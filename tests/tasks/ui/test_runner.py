"""The UI runner in real headless Chromium against a small local site: every action and outcome."""

from __future__ import annotations

import json
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from immunity.examples.sample_service import RunningServer, start_server
from immunity.models.enums import ExecutionStatus as S
from immunity.models.settings import Settings
from immunity.models.specs import TestCase
from immunity.models.ui_specs import UiSpec
from immunity.tasks.ui.runner import BrowserPool, chromium_missing, run_ui_cases

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body>{body}</body></html>"
    )


def _site() -> FastAPI:
    app = FastAPI()
    visits: Counter[str] = Counter()

    @app.get("/")
    async def home() -> HTMLResponse:
        items = "".join(f"<li class='item'>Item {n}</li>" for n in range(3))
        hidden = "<button id='hidden' style='display:none'>Hidden</button>"
        return _page("Home", f"<h1 id='title'>Welcome</h1><ul>{items}</ul>{hidden}")

    @app.get("/form")
    async def form() -> HTMLResponse:
        return _page(
            "Order form",
            "<form id='order' action='/hello' method='get'>"
            "<input id='name' name='name' value='placeholder'>"
            "<select id='color' name='color'><option value='r'>Red</option>"
            "<option value='g'>Green</option><option value='b'>Blue</option></select>"
            "<select id='size' name='size'><option value='s'>Small</option>"
            "<option value='l'>Large</option></select>"
            "<button id='send' type='submit'>Send</button></form>",
        )

    @app.get("/hello")
    async def hello(name: str, color: str, size: str) -> HTMLResponse:
        return _page("Hello", f"<p id='greeting'>Hello {name}: color {color}, size {size}</p>")

    @app.get("/boom")
    async def boom() -> HTMLResponse:
        return _page(
            "Boom",
            "<button id='boom'>Press</button><script>document.getElementById('boom')"
            ".addEventListener('click', () => { throw new Error('kaboom from the handler'); });"
            "</script>",
        )

    @app.get("/broken-api")
    async def broken_api() -> HTMLResponse:
        return _page(
            "Dashboard",
            "<p id='status'>loading</p><script>fetch('/api/fail').then(r => "
            "{ document.getElementById('status').textContent = 'loaded ' + r.status; });</script>",
        )

    @app.get("/api/fail")
    async def fail() -> JSONResponse:
        return JSONResponse({"detail": "database is down"}, status_code=500)

    @app.get("/slow")
    async def slow() -> HTMLResponse:
        return _page(
            "Slow",
            "<div id='box'></div><script>setTimeout(() => { const p = document.createElement('p');"
            " p.id = 'late'; p.textContent = 'arrived late';"
            " document.getElementById('box').append(p); }, 300);</script>",
        )

    @app.get("/flaky/{key}")
    async def flaky(key: str) -> HTMLResponse:
        visits[key] += 1
        ready = "<p id='ready'>ready</p>" if visits[key] > 1 else "<p>warming up</p>"
        return _page("Flaky", ready)

    @app.get("/storage")
    async def storage() -> HTMLResponse:
        return _page(
            "Storage",
            "<p id='seen'></p><button id='set'>Set</button><script>"
            "function show() { document.getElementById('seen').textContent = 'cookie=' +"
            " document.cookie + ' local=' + localStorage.getItem('k') + ' session=' +"
            " sessionStorage.getItem('s'); }"
            "document.getElementById('set').addEventListener('click', () => {"
            " document.cookie = 'c=1; path=/'; localStorage.setItem('k', '1');"
            " sessionStorage.setItem('s', '1'); show(); }); show();</script>",
        )

    return app


@pytest.fixture(scope="module")
def site() -> Iterator[RunningServer]:
    with start_server(_site()) as server:
        yield server


@pytest.fixture
def settings(chromium: Settings, tmp_path: Path) -> Settings:
    return chromium.model_copy(
        update={"data_dir": tmp_path, "ui_timeout_s": 3.0, "ui_browsers": 2, "regression_reruns": 0}
    )


@pytest.fixture(scope="module")
def pool(chromium: Settings) -> Iterator[BrowserPool]:
    with BrowserPool.from_settings(chromium.model_copy(update={"ui_timeout_s": 3.0})) as shared:
        yield shared


def _case(name: str, steps: list[dict[str, Any]], base_url: str, test_id: int = 1) -> TestCase:
    spec = UiSpec.model_validate({"steps": steps}).dump()
    return TestCase(
        test_id=test_id,
        name=name,
        kind="ui",
        spec=spec,
        expectations={},
        base_url=base_url,
        environment="staging",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(user_data_dir: str) -> bool:
    found = subprocess.run(["pgrep", "-f", user_data_dir], capture_output=True, text=True)
    return bool(found.stdout.strip())


def test_a_multi_step_test_passes_with_one_call_per_step(
    site: RunningServer, settings: Settings, pool: BrowserPool
) -> None:
    steps = [
        {"action": "open", "path": "/"},
        {"action": "assert_title", "text": "Home"},
        {"action": "assert_count", "selector": "li.item", "count": 3},
        {"action": "assert_count", "selector": "//li[@class='item']", "min_count": 2},
        {"action": "open", "path": "/form"},
        {"action": "type", "selector": "#name", "value": "Ada"},
        {"action": "select", "selector": "#color", "value": "Green"},  # by visible text
        {"action": "select", "selector": "#size", "value": "l"},  # by value
        {"action": "submit", "selector": "#name"},
        {"action": "wait", "text": "Hello Ada"},
        {"action": "assert_url", "text": "/hello?name=Ada"},
        {"action": "assert_text", "selector": "#greeting", "text": "color g, size l"},
        {"action": "open", "path": "/form"},
        {"action": "click", "selector": "#send"},
        {"action": "wait", "selector": "#greeting"},
        {"action": "assert_text", "text": "Hello placeholder"},
        {"action": "open", "path": "/slow"},
        {"action": "wait", "selector": "#late", "text": "arrived"},
        {"action": "open", "path": "/slow"},
        {"action": "click", "selector": "#late"},  # not there yet: the click waits for it
        {"action": "assert_no_console_errors"},
        {"action": "assert_no_failed_requests"},
    ]
    [result] = run_ui_cases([_case("ui_pass", steps, site.base_url)], settings=settings, pool=pool)
    assert result.status == S.PASSED, result.error
    assert result.error is None and result.attempts == 1 and result.artifacts == {}
    assert [call["index"] for call in result.calls] == list(range(len(steps)))
    assert all(call["ok"] and call["ms"] >= 0 for call in result.calls)
    typed = result.calls[5]
    assert typed.keys() == {"index", "action", "target", "ms", "ok"} and typed["target"] == "#name"
    assert result.actual["url"] == f"{site.base_url}/slow" and result.actual["title"] == "Slow"
    assert result.actual["console_errors"] == [] and result.actual["failed_requests"] == []


FAILURES = [
    ("text", {"action": "assert_text", "selector": "#title", "text": "Goodbye"}, "'Welcome'"),
    (
        "page_text",
        {"action": "assert_text", "text": "Nowhere"},
        "expected 'Nowhere' in the page, found '",
    ),
    ("title", {"action": "assert_title", "text": "Checkout"}, "'Home'"),
    ("url", {"action": "assert_url", "text": "/checkout"}, "in the URL"),
    ("count", {"action": "assert_count", "selector": "li.item", "count": 4}, "found 3"),
    ("min_count", {"action": "assert_count", "selector": "li.item", "min_count": 9}, "found 3"),
    ("wait", {"action": "wait", "selector": "#never"}, "no visible element matches after 0.3s"),
    ("wait_text", {"action": "wait", "text": "Never shown"}, "'Never shown' not on the page"),
    ("click", {"action": "click", "selector": "#missing"}, "no element matches"),
    ("hidden", {"action": "click", "selector": "#hidden"}, "element not interactable"),
    ("select", {"action": "select", "selector": "li.item", "value": "x"}, "Select only works"),
]


def test_each_failing_assertion_fails_naming_its_step(
    site: RunningServer, settings: Settings, pool: BrowserPool
) -> None:
    cases = [
        _case(
            f"ui_fail_{name}",
            [{"action": "open", "path": "/"}, step | {"timeout_s": 0.3}],
            site.base_url,
            i,
        )
        for i, (name, step, _) in enumerate(FAILURES)
    ]
    results = run_ui_cases(cases, settings=settings, pool=pool)
    assert [r.name for r in results] == [c.name for c in cases]
    for result, (_, step, found) in zip(results, FAILURES, strict=True):
        assert result.status == S.FAILED, (result.name, result.error)
        label = f"step 1 {step['action']}" + (
            f" {step['selector']!r}" if "selector" in step else ""
        )
        assert result.error is not None and result.error.startswith(label), result.error
        assert found in result.error, result.error
        assert result.calls[-1]["ok"] is False and result.calls[-1]["error"] == result.error
        assert result.expected["failed_step"]["index"] == 1
        assert Path(result.artifacts["screenshot"]).read_bytes().startswith(PNG_MAGIC)


def test_a_javascript_error_is_caught_with_its_evidence_on_disk(
    site: RunningServer, settings: Settings, pool: BrowserPool
) -> None:
    steps = [
        {"action": "open", "path": "/boom"},
        {"action": "click", "selector": "#boom"},
        {"action": "assert_no_console_errors"},
    ]
    [result] = run_ui_cases([_case("ui:boom", steps, site.base_url)], settings=settings, pool=pool)
    assert result.status == S.FAILED
    assert result.error is not None
    assert result.error.startswith("step 2 assert_no_console_errors: 1 console error(s)")
    assert "kaboom from the handler" in result.error
    assert "kaboom" in result.actual["console_errors"][0]["message"]
    files = {kind: Path(path) for kind, path in result.artifacts.items()}
    assert set(files) == {"screenshot", "page_source", "console_log", "network"}
    home = files["screenshot"].parent
    assert home.parent == settings.artifacts_dir / "ui_boom"  # a safe directory name
    assert all(path.parent == home and path.stat().st_size > 0 for path in files.values())
    assert files["screenshot"].name == "screenshot.png"
    assert files["screenshot"].read_bytes().startswith(PNG_MAGIC)
    assert 'id="boom"' in files["page_source"].read_text()
    console = json.loads(files["console_log"].read_text())
    assert any("kaboom" in entry["message"] and entry["level"] == "SEVERE" for entry in console)
    network = json.loads(files["network"].read_text())
    assert any(request["url"].endswith("/boom") for request in network["requests"])


def test_a_failed_request_is_caught_for_this_test_only(
    site: RunningServer, settings: Settings, pool: BrowserPool
) -> None:
    broken = [
        {"action": "open", "path": "/broken-api"},
        {"action": "wait", "text": "loaded 500"},
        {"action": "assert_no_failed_requests"},
    ]
    clean = [{"action": "open", "path": "/"}, {"action": "assert_no_failed_requests"}]
    # One browser: the clean test runs in the session the broken one used, after it.
    one = BrowserPool.from_settings(settings.model_copy(update={"ui_browsers": 1}))
    with one:
        results = run_ui_cases(
            [_case("ui_api", broken, site.base_url), _case("ui_clean", clean, site.base_url)],
            settings=settings,
            pool=one,
        )
    assert [r.status for r in results] == [S.FAILED, S.PASSED], [r.error for r in results]
    assert results[0].error == (
        f"step 2 assert_no_failed_requests: 1 failed request(s): GET {site.base_url}/api/fail → 500"
    )
    [failed] = results[0].actual["failed_requests"]
    assert failed["status"] == 500 and failed["type"] == "Fetch"
    network = json.loads(Path(results[0].artifacts["network"]).read_text())
    assert [r["url"] for r in network["failed"]] == [f"{site.base_url}/api/fail"]


def test_an_unreachable_base_url_is_an_error(settings: Settings, pool: BrowserPool) -> None:
    base_url = f"http://127.0.0.1:{_free_port()}"
    steps = [{"action": "open", "path": "/"}, {"action": "assert_title", "text": "x"}]
    [result] = run_ui_cases([_case("ui_down", steps, base_url)], settings=settings, pool=pool)
    assert result.status == S.ERROR
    assert (
        result.error
        == f"step 0 open /: {base_url}/ cannot be reached (net::ERR_CONNECTION_REFUSED)"
    )
    assert [call["ok"] for call in result.calls] == [False]


def test_a_test_that_passes_on_a_rerun_is_flaky_with_the_first_failures_evidence(
    site: RunningServer, settings: Settings, pool: BrowserPool
) -> None:
    steps = [{"action": "open", "path": "/flaky/one"}, {"action": "wait", "selector": "#ready"}]
    steps[1]["timeout_s"] = 0.3
    case = _case("ui_flaky", steps, site.base_url)
    [result] = run_ui_cases([case], settings=settings, reruns=1, pool=pool)
    assert result.status == S.FLAKY and result.attempts == 2
    assert result.error is not None and result.error.startswith("step 1 wait '#ready'")
    assert Path(result.artifacts["screenshot"]).read_bytes().startswith(PNG_MAGIC)
    kept = list((settings.artifacts_dir / "ui_flaky").iterdir())
    assert kept == [Path(result.artifacts["screenshot"]).parent]
    # Without re-runs a failure stays a failure; a test that always fails uses every re-run.
    [again] = run_ui_cases([_case("ui_flaky", steps, site.base_url)], settings=settings, pool=pool)
    assert again.status == S.PASSED and again.attempts == 1
    never = [
        {"action": "open", "path": "/"},
        {"action": "wait", "selector": "#x", "timeout_s": 0.2},
    ]
    [failed] = run_ui_cases(
        [_case("ui_never", never, site.base_url)], settings=settings, reruns=2, pool=pool
    )
    assert failed.status == S.FAILED and failed.attempts == 3
    assert len(list((settings.artifacts_dir / "ui_never").iterdir())) == 1


def test_browsers_are_reused_clean_and_all_quit(site: RunningServer, settings: Settings) -> None:
    steps = [
        {"action": "open", "path": "/storage"},
        {"action": "assert_text", "selector": "#seen", "text": "cookie= local=null session=null"},
        {"action": "click", "selector": "#set"},
        {"action": "assert_text", "selector": "#seen", "text": "cookie=c=1 local=1 session=1"},
    ]
    cases = [_case(f"ui_storage_{n}", steps, site.base_url, n) for n in range(6)]
    with BrowserPool.from_settings(settings) as pool:
        results = run_ui_cases(cases, settings=settings, pool=pool)
        assert [r.status for r in results] == [S.PASSED] * 6, [r.error for r in results]
        assert pool.started == 2
        profiles = [browser.user_data_dir for browser in pool.sessions]
        assert len(profiles) == 2 and all(_alive(profile) for profile in profiles)
    assert pool.sessions == ()
    assert not any(_alive(profile) for profile in profiles)


def test_a_dead_browser_is_replaced(site: RunningServer, settings: Settings) -> None:
    steps = [{"action": "open", "path": "/"}, {"action": "assert_title", "text": "Home"}]
    with BrowserPool.from_settings(settings.model_copy(update={"ui_browsers": 1})) as pool:
        with pool.lease() as browser:
            browser.driver.quit()  # the session dies under the pool
        [result] = run_ui_cases(
            [_case("ui_after", steps, site.base_url)], settings=settings, pool=pool
        )
        assert result.status == S.PASSED, result.error
        assert pool.started == 2 and len(pool.sessions) == 1
        # One that dies while idle is found out when next leased (after a few idle seconds).
        [idle] = pool.sessions
        idle.driver.quit()
        idle.idle_since -= 60
        assert not _alive(idle.user_data_dir)
        [result] = run_ui_cases(
            [_case("ui_again", steps, site.base_url)], settings=settings, pool=pool
        )
        assert result.status == S.PASSED and pool.started == 3
        assert pool.sessions[0] is not idle


def test_broken_definitions_and_a_missing_browser_are_errors(
    site: RunningServer, settings: Settings, tmp_path: Path
) -> None:
    bad_spec = _case("ui_bad", [{"action": "open", "path": "/"}], site.base_url)
    bad_spec = bad_spec.model_copy(update={"spec": {"steps": [{"action": "click"}]}})
    selector = _case(
        "ui_sel",
        [{"action": "open", "path": "/"}, {"action": "click", "selector": "##"}],
        site.base_url,
    )
    wrong_kind = bad_spec.model_copy(update={"kind": "http"})
    results = run_ui_cases([bad_spec, selector, wrong_kind], settings=settings)
    assert [r.status for r in results] == [S.ERROR] * 3
    assert results[0].error is not None and results[0].error.startswith("invalid test definition")
    assert (
        results[1].error is not None and "step 1 click '##': invalid selector" in results[1].error
    )
    assert results[2].error == "not a UI test: kind 'http'"

    missing = settings.model_copy(update={"chromium_binary": str(tmp_path / "no-chromium")})
    reason = chromium_missing(missing)
    assert reason is not None and "no-chromium" in reason and "apt-get install" in reason
    [result] = run_ui_cases([selector], settings=missing)
    assert result.status == S.ERROR and result.error == f"cannot run UI tests: {reason}"
    assert chromium_missing(settings) is None
