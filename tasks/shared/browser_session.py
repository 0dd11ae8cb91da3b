"""One headless Chrome session: what it saw during a lease, and how it is cleaned for the next."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from urllib.parse import urlsplit

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver

from immunity.models.specs import REPLAY_HEADER
from immunity.tasks.shared.browser_gate import MethodGate

__all__ = ["BLOCKED_ELSEWHERE", "REFUSED_PREFIX", "Browser"]

_MAX_TEXT = 500
_LEAVE = "location.replace('about:blank')"
_LEFT = "return document.URL === 'about:blank' && document.readyState === 'complete'"
_LEAVE_TIMEOUT_S = 2.0
# What the guard script of `confine` logs when it refuses something the page's scripts asked for.
REFUSED_PREFIX = "immunity refused: "
# How Chromium fails a request a confined browser sends to its refusing proxy (every origin it
# may not reach, see tasks/shared/browser.py): nothing of it left the browser.
_REFUSING_PROXY_ERROR = "net::ERR_PROXY_CONNECTION_FAILED"
BLOCKED_ELSEWHERE = "another origin"
BLOCKED_METHOD = "method"
_GATE_ERROR = "net::ERR_BLOCKED_BY_CLIENT"  # how a request the method gate failed ends


def _favicon(url: str) -> bool:
    # Chromium asks every origin for /favicon.ico by itself; its 404 is not the page's failure.
    return urlsplit(url).path == "/favicon.ico"


class Browser:
    """One Chrome session, with the console entries and requests seen since its lease began.

    `reach` is what the browser was started to reach (None: any host it can resolve).
    """

    def __init__(
        self, driver: WebDriver, number: int, reach: tuple[str, ...] | None = None
    ) -> None:
        self.driver = driver
        self.number = number
        self.reach = reach
        self.broken = False
        self.idle_since = time.monotonic()
        self.console: list[dict[str, Any]] = []
        self.requests: dict[str, dict[str, Any]] = {}
        self.origins: set[str] = set()
        self._guard: str | None = None  # the identifier of `confine`'s script
        self._main_frame: str | None = None  # the tab's top frame (it keeps its id)
        self._gate: MethodGate | None = None

    @property
    def user_data_dir(self) -> str:
        """The session's temporary profile directory (it names its processes' command lines)."""
        return str(self.driver.capabilities.get("chrome", {}).get("userDataDir", ""))

    def mark(self, marker: str) -> None:
        """Send `X-Immunity-Replay: marker` with every request of this test's pages.

        A target that reports its page errors back passes the mark on, so the errors immunity's
        own replays cause are not counted as occurrences (see tasks/reproduce.py).
        """
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {REPLAY_HEADER: marker}}
        )

    def confine(
        self,
        blocked_url_patterns: list[dict[str, Any]],
        guard: str,
        methods: list[str] | None = None,
    ) -> None:
        """Block requests by `Network.setBlockedURLs` patterns; run `guard` in every new document.

        With `methods`, every request of the tab (navigations and its workers' included) with
        another method fails too (`MethodGate`). All hold for this tab until the session is
        reset: a blocked request fails in the browser (recorded with `blocked`), nothing is sent.
        """
        if methods is not None:
            if self._gate is None:
                address = self.driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
                self._gate = MethodGate(address, self.driver.current_window_handle)
            self._gate.allow(methods)
        self.driver.execute_cdp_cmd("Network.enable", {})
        self.driver.execute_cdp_cmd("Network.setBlockedURLs", {"urlPatterns": blocked_url_patterns})
        self._forget_guard()
        self.driver.execute_cdp_cmd("Page.enable", {})
        added = self.driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": guard}
        )
        self._guard = added["identifier"]
        if self._main_frame is None:
            tree = self.driver.execute_cdp_cmd("Page.getFrameTree", {})
            self._main_frame = tree["frameTree"]["frame"]["id"]

    def _forget_guard(self) -> None:
        if self._guard is not None:
            self.driver.execute_cdp_cmd(
                "Page.removeScriptToEvaluateOnNewDocument", {"identifier": self._guard}
            )
            self._guard = None

    def visit(self, url: str) -> None:
        """Remember the origin of a page the test opens, so its storage is cleared afterwards."""
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            self.origins.add(f"{parts.scheme}://{parts.netloc}")

    def collect(self) -> None:
        """Drain the browser's console and network logs into this lease's records."""
        self.console.extend(self.driver.get_log("browser"))
        for entry in self.driver.get_log("performance"):
            try:
                message = json.loads(entry["message"])["message"]
            except (KeyError, TypeError, ValueError):
                continue
            self._network(message.get("method", ""), message.get("params", {}))

    def _network(self, method: str, params: dict[str, Any]) -> None:
        request_id = params.get("requestId")
        if not request_id:
            return
        if method == "Network.requestWillBeSent":
            request = params.get("request", {})
            self.requests[request_id] = {
                "url": str(request.get("url", ""))[:_MAX_TEXT],
                "method": request.get("method", "GET"),
                "type": params.get("type", "Other"),
                "frame": params.get("frameId"),
            }
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            record = self.requests.setdefault(
                request_id, {"url": str(response.get("url", ""))[:_MAX_TEXT], "method": "GET"}
            )
            record.update(status=response.get("status"), type=params.get("type", "Other"))
        elif method == "Network.loadingFailed":
            record = self.requests.setdefault(request_id, {"url": "", "method": "GET"})
            record.update(error=params.get("errorText", "failed"), canceled=params.get("canceled"))
            if params.get("blockedReason"):
                record.update(blocked=params["blockedReason"], error="blocked by immunity")
            elif params.get("errorText") == _REFUSING_PROXY_ERROR:
                record.update(blocked=BLOCKED_ELSEWHERE, error="blocked by immunity")
            elif params.get("errorText") == _GATE_ERROR and self._gate is not None:
                record.update(blocked=BLOCKED_METHOD, error="blocked by immunity")

    def console_errors(self) -> list[dict[str, Any]]:
        """Return the SEVERE console entries of this lease (the favicon's 404 left out)."""
        return [
            {"source": entry.get("source"), "message": str(entry.get("message", ""))[:_MAX_TEXT]}
            for entry in self.console
            if entry.get("level") == "SEVERE" and "/favicon.ico - " not in entry.get("message", "")
        ]

    def failed_requests(self) -> list[dict[str, Any]]:
        """Return this lease's requests that failed or were answered ≥ 400."""
        failed = []
        for record in self.requests.values():
            if _favicon(record["url"]) or record.get("canceled"):
                continue  # a request cut short by the next navigation did not fail
            if record.get("error") or (record.get("status") or 0) >= 400:
                failed.append(record)
        return failed

    def blocked_requests(self) -> list[dict[str, Any]]:
        """Return this lease's requests the browser was kept from sending, each once.

        Sub-requests are blocked by `confine`; navigations and redirects by the browser's
        refusing proxy (chromedriver tries a failed navigation again: one entry for them all);
        methods by the gate (workers' requests included, which the network log does not show).
        """
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for record in self.requests.values():
            if record.get("blocked"):
                seen.setdefault((record["method"], record["url"]), record)
        for gated in self._gate.blocked if self._gate is not None else []:
            seen.setdefault((gated["method"], gated["url"]), {**gated, "blocked": BLOCKED_METHOD})
        return list(seen.values())

    def led_away(self) -> str | None:
        """Return the last URL this lease's tab was kept from navigating to, or None.

        Frames inside the page do not count: a blocked embed leaves the page where it was.
        """
        for record in reversed(self.requests.values()):
            top = self._main_frame is None or record.get("frame") == self._main_frame
            if record.get("blocked") and record.get("type") == "Document" and top:
                return str(record["url"])
        return None

    def refused_by_guard(self) -> list[str]:
        """Return what `confine`'s guard refused the page's scripts this lease, in order."""
        return [
            message.split(REFUSED_PREFIX, 1)[1].rstrip('"')[:_MAX_TEXT]
            for entry in self.console
            if REFUSED_PREFIX in (message := str(entry.get("message", "")))
        ]

    def alive(self) -> bool:
        """Whether the session still answers."""
        try:
            self.driver.execute_script("return 1")
        except Exception:  # any failure means the session is gone
            return False
        return True

    def reset(self) -> None:
        """Forget the last test: extra windows, the page, cookies, storage, the logs."""
        driver = self.driver
        handles = driver.window_handles
        if len(handles) > 1:
            for handle in handles[1:]:
                driver.switch_to.window(handle)
                driver.close()
            driver.switch_to.window(handles[0])
        # Leave the page first: its timers and unload handlers may still write storage or log.
        self._leave_page()
        self.collect()
        for record in self.requests.values():  # pages reached by links, not only by `open`
            if record.get("type") == "Document":
                self.visit(record["url"])
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urlPatterns": []})
        if self._gate is not None:
            self._gate.allow(None)
        self._forget_guard()
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        for origin in self.origins:  # local and session storage, IndexedDB, caches, workers
            driver.execute_cdp_cmd(
                "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"}
            )
        self.begin()

    def _leave_page(self) -> None:
        # As the page itself would: the blank page stays in the page's renderer, ~30 ms cheaper
        # than `get("about:blank")`, which swaps renderers there and back for the next test.
        driver = self.driver
        with contextlib.suppress(WebDriverException):
            driver.execute_script(_LEAVE)
            deadline = time.monotonic() + _LEAVE_TIMEOUT_S
            while time.monotonic() < deadline:
                if driver.execute_script(_LEFT):
                    return
                time.sleep(0.005)
        driver.get("about:blank")  # a page that would not let go (an error page, a dialog)

    def begin(self) -> None:
        """Start a new lease: nothing seen yet."""
        self.console, self.requests, self.origins = [], {}, set()
        if self._gate is not None:
            self._gate.blocked = []

    def disconnect(self) -> None:
        """Close this session's own DevTools connection, if it has one (before quitting)."""
        if self._gate is not None:
            self._gate.close()
            self._gate = None
