"""The UI runner: Selenium suites in headless Chromium, each test to a CaseResult.

How a test ends (as in `tasks.runner`):
- `passed` / `failed`: every step ran and held / an assertion did not hold or an element never
  appeared; the error names the step's index, action and selector.
- `error`: the page could not be reached or did not load, the browser crashed, no browser could
  be started, or the test itself is broken (an invalid spec or selector).
- `flaky`: it failed (or errored), then passed on a re-run; the first failure's evidence is kept.
- `skipped`: refused by the environment's replay rules (tasks/ui/policy.py): the environment
  allows no replays (no browser is started), or a step would submit a form with a method it
  does not allow (refused before the browser acts). In a reproduction check (`verify:` marker)
  a refusal is an `error`, which the check records as `unverified` with the reason.

The browser sends nothing to another origin than the environment's base URL and
`ui_allow_hosts`, navigations and redirects included: such requests are blocked in the browser
and listed in `actual` (`blocked_requests`), as are the requests of the page's scripts the guard
refused (`refused_requests`). A test whose page was led elsewhere (a redirect, a script) is
refused. Where the environment allows only some methods, the tab's requests with any other
method (workers' included) fail before they are sent (tasks/shared/browser_gate.py).

Up to `ui_browsers` tests run at once, one thread and one reused browser each (Selenium blocks).
A failed attempt keeps a screenshot, the page source, the console and the network log under
`artifacts_dir/<test name>/<UTC timestamp>/`. Nothing raised by one test stops the others: the
runner returns one result per test, in order.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from selenium.common.exceptions import WebDriverException

from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.specs import TestCase
from immunity.models.ui_specs import UiSpec
from immunity.tasks.shared.browser import BrowserPool, chromium_missing
from immunity.tasks.shared.scrub import scrub_text, scrub_url
from immunity.tasks.ui.policy import ReplayPolicy, policy_for
from immunity.tasks.ui.steps import PageSteps, StepBroken, StepFailed, StepRefused, short_error

__all__ = ["PAGE_SOURCE_BYTES", "BrowserPool", "chromium_missing", "run_ui_cases"]

PAGE_SOURCE_BYTES = 200_000
_LISTED = 20  # console errors and failed requests kept in `actual`
_LOGGED = 1_000  # entries kept in console.json and network.json


def _observe(steps: PageSteps) -> dict[str, Any]:
    """Return where the browser ended and what went wrong on the way (bounded, scrubbed)."""
    browser = steps.browser
    actual: dict[str, Any] = {}
    if not browser.broken:
        try:
            browser.collect()
            actual = {"url": scrub_url(browser.driver.current_url), "title": browser.driver.title}
        except WebDriverException:
            browser.broken = True
    errors, failed = browser.console_errors(), browser.failed_requests()
    actual["console_errors"] = [
        {**error, "message": scrub_text(error["message"])} for error in errors[:_LISTED]
    ]
    actual["failed_requests"] = [
        {**record, "url": scrub_url(record["url"])} for record in failed[:_LISTED]
    ]
    if len(errors) > _LISTED or len(failed) > _LISTED:
        actual["totals"] = {"console_errors": len(errors), "failed_requests": len(failed)}
    blocked, refused = browser.blocked_requests(), browser.refused_by_guard()
    if blocked:
        actual["blocked_requests"] = [
            {"method": record["method"], "url": scrub_url(record["url"])}
            for record in blocked[:_LISTED]
        ]
    if refused:
        actual["refused_requests"] = [scrub_text(what) for what in refused[:_LISTED]]
    return actual


def _keep(steps: PageSteps, directory: Path) -> dict[str, str]:
    """Write the attempt's evidence under `directory`; return each file's path by kind."""
    browser = steps.browser
    directory.mkdir(parents=True, exist_ok=True)
    kept: dict[str, str] = {}
    if not browser.broken:  # a crashed session has no page to show, only what it logged
        try:
            png = directory / "screenshot.png"
            png.write_bytes(browser.driver.get_screenshot_as_png())
            kept["screenshot"] = str(png)
            source = browser.driver.page_source.encode("utf-8", "replace")
            cut = source[:PAGE_SOURCE_BYTES].decode("utf-8", "ignore")
            if len(source) > PAGE_SOURCE_BYTES:
                cut += f"\n<!-- truncated by immunity: {len(source):,} bytes in all -->\n"
            page = directory / "page.html"
            page.write_text(cut, encoding="utf-8")
            kept["page_source"] = str(page)
        except WebDriverException:
            browser.broken = True
    console = directory / "console.json"
    console.write_text(json.dumps(browser.console[-_LOGGED:], indent=1, default=str))
    kept["console_log"] = str(console)
    requests = list(browser.requests.values())
    network = directory / "network.json"
    body = {"failed": browser.failed_requests()[:_LOGGED], "requests": requests[-_LOGGED:]}
    network.write_text(json.dumps(body, indent=1, default=str))
    kept["network"] = str(network)
    return kept


def _artifact_dir(settings: Settings, name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "test"
    return settings.artifacts_dir / safe / utcnow().strftime("%Y%m%dT%H%M%S.%fZ")


def _refused_status(case: TestCase) -> ExecutionStatus:
    # The reproduction check records an `error` as `unverified` with its reason; a suite run
    # records a refusal as `skipped`, which counts neither as a pass nor as a failure.
    return ExecutionStatus.ERROR if case.marker.startswith("verify:") else ExecutionStatus.SKIPPED


def _attempt(
    case: TestCase, spec: UiSpec, pool: BrowserPool, settings: Settings, policy: ReplayPolicy
) -> CaseResult:
    started_at, started = utcnow(), time.perf_counter()
    status, error = ExecutionStatus.PASSED, None
    calls: list[dict[str, Any]] = []
    actual: dict[str, Any] = {}
    artifacts: dict[str, str] = {}
    expected: dict[str, Any] = {"steps": len(spec.steps)}
    try:
        with pool.lease(policy.reach()) as browser:
            browser.mark(case.marker)
            browser.confine(policy.blocked_url_patterns(), policy.guard(), policy.methods)
            steps = PageSteps(browser, case.base_url, settings.ui_timeout_s, policy)
            calls = steps.calls
            try:
                steps.run(spec)
            except StepRefused as exc:
                status, error = _refused_status(case), str(exc)
                actual["refused"] = str(exc)
            except StepFailed as exc:
                status, error = ExecutionStatus.FAILED, str(exc)
            except StepBroken as exc:
                status, error = ExecutionStatus.ERROR, str(exc)
                browser.broken = browser.broken or exc.crashed
            except Exception as exc:  # whatever one test does, the others run
                status, error = ExecutionStatus.ERROR, f"{type(exc).__name__}: {exc}"[:2_000]
                browser.broken = True
            if status in (ExecutionStatus.PASSED, ExecutionStatus.FAILED) and not browser.broken:
                # A click or a page's script that led the tab elsewhere: the test did not run
                # as written, so neither its pass nor its failure counts.
                with suppress(WebDriverException):
                    if (led := steps.led_away("the test's page")) is not None:
                        status, error = _refused_status(case), led
                        actual["refused"] = led
            actual = {**_observe(steps), **actual}
            if steps.failed_step is not None:
                expected["failed_step"] = steps.failed_step
            if status != ExecutionStatus.PASSED:
                try:
                    artifacts = _keep(steps, _artifact_dir(settings, case.name))
                except OSError as exc:
                    artifacts = {"error": f"artifacts not written: {exc}"}
    except Exception as exc:  # no browser could be started or leased
        status = ExecutionStatus.ERROR
        error = f"no browser: {type(exc).__name__}: {short_error(exc)}"
    return CaseResult(
        test_id=case.test_id,
        name=case.name,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        error=error,
        expected=expected,
        actual=actual,
        calls=calls,
        artifacts=artifacts,
        started_at=started_at,
    )


def _error(
    case: TestCase, reason: str, status: ExecutionStatus = ExecutionStatus.ERROR
) -> CaseResult:
    return CaseResult(
        test_id=case.test_id, name=case.name, status=status, error=reason, started_at=utcnow()
    )


def _artifacts_home(result: CaseResult) -> Path | None:
    console = result.artifacts.get("console_log")
    return Path(console).parent if console else None


def _run_case(case: TestCase, pool: BrowserPool, settings: Settings, reruns: int) -> CaseResult:
    if case.kind != "ui":
        return _error(case, f"not a UI test: kind {case.kind!r}")
    try:
        spec = UiSpec.model_validate(case.spec)
    except ValidationError as exc:
        return _error(case, f"invalid test definition: {exc}"[:2_000])
    policy = policy_for(case, spec, settings)
    if (refused := policy.refusal()) is not None:
        return _error(case, refused, _refused_status(case))
    first = _attempt(case, spec, pool, settings, policy)
    results = [first]
    while results[-1].status in (ExecutionStatus.FAILED, ExecutionStatus.ERROR):
        if len(results) > reruns or "refused" in results[-1].actual:
            break
        results.append(_attempt(case, spec, pool, settings, policy))
    result = results[-1]
    if result is not first and result.status == ExecutionStatus.PASSED:
        # Passed on a re-run: keep the first failure's evidence, it is what needs explaining.
        result = first.model_copy(update={"status": ExecutionStatus.FLAKY})
    # Only the kept attempt's evidence stays on disk: the others would never be looked at.
    kept = _artifacts_home(result)
    for other in results:
        home = _artifacts_home(other)
        if home is not None and home != kept:
            shutil.rmtree(home, ignore_errors=True)
    return result.model_copy(update={"attempts": len(results)})


def run_ui_cases(
    cases: Sequence[TestCase],
    *,
    settings: Settings,
    reruns: int | None = None,
    pool: BrowserPool | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Return one result per case, in order, running up to `settings.ui_browsers` at once.

    Without `pool`, a pool of `settings.ui_browsers` sessions lives for this call; pass one to
    reuse its sessions across calls (it is not closed here). `reruns` defaults to
    `settings.regression_reruns`.
    """
    if not cases:
        return []
    reruns = settings.regression_reruns if reruns is None else reruns
    if pool is None and (missing := chromium_missing(settings)):
        return [_error(case, f"cannot run UI tests: {missing}") for case in cases]
    with ExitStack() as stack:
        if pool is None:
            hosts = sorted({urlsplit(case.base_url).hostname or "" for case in cases} - {""})
            pool = stack.enter_context(BrowserPool.from_settings(settings, allow_hosts=hosts))
        active = pool

        def one(case: TestCase) -> CaseResult:
            result = _run_case(case, active, settings, reruns)
            if on_result is not None:
                on_result(result)
            return result

        with ThreadPoolExecutor(min(active.size, len(cases)), thread_name_prefix="ui") as workers:
            return list(workers.map(one, cases))
