"""Headless Chromium for UI tests: a pool that starts, reuses and quits sessions, and its options.

Only Debian's `chromium` and `chromedriver` are used, by explicit path: a bare `Service()` would
start Selenium Manager, which downloads drivers. Starting a session costs ~0.7 s and a local page
~40 ms, so sessions are reused across tests and cleaned between them instead of restarted.

A session leased with a `reach` (what a UI test may reach: `host:port` entries and host names)
sends every other request, navigations and redirects included, to a proxy on a 127.0.0.1 port
that the pool holds bound and never listens on: the connection is refused and nothing of the
request leaves the browser. Proxy rules are fixed when Chromium starts, so idle sessions are
reused only for the same `reach`; a session started for another one is replaced when needed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from immunity.models.settings import Settings
from immunity.tasks.shared.browser_session import Browser

__all__ = ["BrowserPool", "chromium_missing", "chromium_options"]

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)
_INSTALL_HINT = "install Debian's packages: apt-get install -y chromium chromium-driver"
_IDLE_CHECK_S = 5.0
# What a `reach` entry may hold: a host name, an IP address (IPv6 in brackets), a port, a `*`.
_REACH_ENTRY = re.compile(r"[A-Za-z0-9.*\[\]:-]+")


def _executable(path: str) -> bool:
    found = shutil.which(path)
    return found is not None and os.access(found, os.X_OK)


def chromium_missing(settings: Settings) -> str | None:
    """Return why UI tests cannot run here (no Chromium or no chromedriver), or None."""
    missing = [
        f"{what} not found at {path!r}"
        for what, path in (
            ("Chromium", settings.chromium_binary),
            ("chromedriver", settings.chromedriver),
        )
        if not _executable(path)
    ]
    return f"{'; '.join(missing)} ({_INSTALL_HINT})" if missing else None


def chromium_options(
    chromium_binary: str,
    allow_hosts: Sequence[str] = (),
    reach: Sequence[str] | None = None,
    refusing_port: int | None = None,
) -> webdriver.ChromeOptions:
    """Return headless Chromium options that resolve no host but 127.0.0.1 and `allow_hosts`.

    With `reach` (`host:port` entries and host names, any port), every request to anything else
    goes to the proxy at 127.0.0.1:`refusing_port`, a port that must refuse connections.
    """
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary
    for flag in _FLAGS:
        options.add_argument(flag)
    # Every other name maps to NOTFOUND, so the browser makes no DNS look-ups of its own
    # (safe browsing, updates, fonts); the hosts under test are excluded from the rule.
    excluded = "".join(f" , EXCLUDE {host}" for host in dict.fromkeys(["127.0.0.1", *allow_hosts]))
    options.add_argument(f"--host-resolver-rules=MAP * ~NOTFOUND{excluded}")
    if reach is not None:
        if refusing_port is None:
            raise ValueError("a confined browser needs a refusing port")
        if bad := [entry for entry in reach if not _REACH_ENTRY.fullmatch(entry)]:
            raise ValueError(f"not a host or host:port: {bad!r}")
        # No fallback to a direct connection; `<-loopback>` ends Chromium's implicit bypass of
        # 127.0.0.1 and localhost, so other ports there go to the proxy as well.
        options.add_argument(f"--proxy-server=http://127.0.0.1:{refusing_port}")
        options.add_argument(f"--proxy-bypass-list={';'.join(['<-loopback>', *reach])}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # Network events only: page events would multiply the log drained after every test.
    options.add_experimental_option(
        "perfLoggingPrefs", {"enableNetwork": True, "enablePage": False}
    )
    return options


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _quit(driver: WebDriver) -> None:
    process = getattr(driver.service, "process", None)
    pids = _descendants(process.pid) if process is not None and Path("/proc").is_dir() else []
    with contextlib.suppress(Exception):  # a crashed session still has processes to end
        driver.quit()
    # chromedriver ends its Chromium on quit; if it crashed, the browser outlives it.
    for pid in pids:
        try:
            if "chrom" in Path(f"/proc/{pid}/comm").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            continue


class BrowserPool:
    """Up to `size` Chrome sessions, started when first needed, reused and cleaned between tests.

    `started` counts the sessions started (replacements included). Every session is quit on exit.
    With `reuse=False` every session serves one lease and is quit: a new browser per test.
    """

    def __init__(
        self,
        size: int,
        *,
        chromium_binary: str,
        chromedriver: str,
        timeout_s: float,
        allow_hosts: Sequence[str] = (),
        reuse: bool = True,
    ) -> None:
        self.size = max(1, size)
        self.reuse = reuse
        self.chromium_binary = chromium_binary
        self.chromedriver = chromedriver
        self.timeout_s = timeout_s
        self.allow_hosts = tuple(allow_hosts)
        self.started = 0
        self._idle: list[Browser] = []
        self._live: set[Browser] = set()
        self._starting = 0
        self._closed = False
        self._changed = threading.Condition()
        self._refusing: socket.socket | None = None  # bound, never listening

    @property
    def sessions(self) -> tuple[Browser, ...]:
        """The sessions alive now, leased or idle."""
        with self._changed:
            return tuple(self._live)

    @classmethod
    def from_settings(cls, settings: Settings, allow_hosts: Sequence[str] = ()) -> BrowserPool:
        """Return a pool sized and configured by the settings."""
        return cls(
            settings.ui_browsers,
            chromium_binary=settings.chromium_binary,
            chromedriver=settings.chromedriver,
            timeout_s=settings.ui_timeout_s,
            allow_hosts=[*settings.ui_allow_hosts, *allow_hosts],
        )

    def __enter__(self) -> BrowserPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _refusing_port(self) -> int:
        with self._changed:
            if self._refusing is None:
                held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.bind(("127.0.0.1", 0))  # no listen(): every connection is refused
                self._refusing = held
            return int(self._refusing.getsockname()[1])

    def _start(self, reach: tuple[str, ...] | None) -> Browser:
        if not (_executable(self.chromium_binary) and _executable(self.chromedriver)):
            raise RuntimeError(
                f"Chromium ({self.chromium_binary}) or chromedriver ({self.chromedriver}) is "
                f"missing ({_INSTALL_HINT})"
            )
        port = self._refusing_port() if reach is not None else None
        options = chromium_options(self.chromium_binary, self.allow_hosts, reach, port)
        driver = webdriver.Chrome(service=Service(self.chromedriver), options=options)
        try:
            driver.set_page_load_timeout(self.timeout_s)
            driver.set_script_timeout(self.timeout_s)
        except Exception:
            _quit(driver)
            raise
        with self._changed:
            self.started += 1
            return Browser(driver, self.started, reach)

    def _take(self, reach: tuple[str, ...] | None) -> tuple[Browser | None, Browser | None]:
        """Under the lock: (an idle session for `reach`, None) or (None, one to replace or None).

        (None, …) means a new session may start (counted in `_starting`); waits while none can.
        """
        while True:
            if self._closed:
                raise RuntimeError("the browser pool is closed")
            for browser in reversed(self._idle):
                if browser.reach == reach:
                    self._idle.remove(browser)
                    return browser, None
            if len(self._live) + self._starting < self.size:
                self._starting += 1
                return None, None
            if self._idle:  # all idle sessions reach elsewhere: replace the longest idle
                stale = self._idle.pop(0)
                self._live.discard(stale)
                self._starting += 1
                return None, stale
            self._changed.wait()

    def acquire(self, reach: Sequence[str] | None = None) -> Browser:
        """Return an idle session, a new one while fewer than `size` run, or wait for one.

        With `reach`, the session sends requests only there (see the module's docstring).
        """
        wanted = None if reach is None else tuple(dict.fromkeys(reach))
        while True:
            with self._changed:
                browser, stale = self._take(wanted)
            if stale is not None:
                stale.disconnect()
                _quit(stale.driver)
            if browser is None:
                try:
                    browser = self._start(wanted)
                finally:
                    with self._changed:
                        self._starting -= 1
                        self._changed.notify_all()
                with self._changed:
                    closed = self._closed
                    if not closed:
                        self._live.add(browser)
                if closed:  # closed while this one was starting: it would outlive the pool
                    _quit(browser.driver)
                    raise RuntimeError("the browser pool is closed")
            elif time.monotonic() - browser.idle_since > _IDLE_CHECK_S and not browser.alive():
                # It died while idle (a crash, an OOM kill): replace it. One cleaned a moment
                # ago answered then; asking again would cost every test a round trip.
                self._discard(browser)
                continue
            browser.begin()
            return browser

    def release(self, browser: Browser) -> None:
        """Take a session back: cleaned for the next test, or quit and forgotten if it broke."""
        if self.reuse and not browser.broken:
            try:
                browser.reset()
            except Exception:  # a session that cannot be cleaned is replaced
                browser.broken = True
        if browser.broken or not self.reuse:
            self._discard(browser)
            return
        browser.idle_since = time.monotonic()
        with self._changed:
            self._idle.append(browser)
            self._changed.notify_all()

    @contextlib.contextmanager
    def lease(self, reach: Sequence[str] | None = None) -> Iterator[Browser]:
        """Yield a session for one test (confined to `reach`, if given) and take it back."""
        browser = self.acquire(reach)
        try:
            yield browser
        finally:
            self.release(browser)

    def _discard(self, browser: Browser) -> None:
        with self._changed:
            self._live.discard(browser)
            self._changed.notify_all()
        browser.disconnect()
        _quit(browser.driver)

    def close(self) -> None:
        """Quit every session, leased or idle."""
        with self._changed:
            self._closed = True
            browsers, self._idle = list(self._live), []
            self._live.clear()
            self._changed.notify_all()
        for browser in browsers:
            browser.disconnect()
            _quit(browser.driver)
        with self._changed:
            refusing, self._refusing = self._refusing, None
        if refusing is not None:  # after the browsers: none may find the port taken by another
            refusing.close()
