"""What each step of a UI test does in the browser, and how a step that goes wrong ends.

A step either holds, fails (`StepFailed`: an assertion did not hold, an element never came),
breaks (`StepBroken`: the page cannot be reached, the browser failed, a selector is invalid) or
is refused before the browser acts (`StepRefused`: it would submit a form with a method the
environment does not allow, or to another origin; see tasks/ui/policy.py).
Assertions retry until they hold or the step's timeout runs out: the page may still be rendering.
Every message names the step's index, action and selector.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    ElementNotSelectableException,
    InvalidElementStateException,
    InvalidSelectorException,
    JavascriptException,
    MoveTargetOutOfBoundsException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    UnexpectedAlertPresentException,
    UnexpectedTagNameException,
    WebDriverException,
)
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from immunity.models.ui_specs import UiSpec, UiStep
from immunity.tasks.shared.browser_session import Browser
from immunity.tasks.shared.scrub import scrub_text, scrub_url
from immunity.tasks.ui.policy import ENTER_KEYS, SUBMITS_SCRIPT, ReplayPolicy

__all__ = ["PageSteps", "StepBroken", "StepFailed", "StepRefused", "short_error"]

# Seconds between two looks at the page: short at first (most waits end within a few frames),
# then at most 0.1 s so a long wait does not keep the browser busy answering.
_PAUSES = (0.01, 0.02, 0.04, 0.08)
_MAX_PAUSE_S = 0.1
# The element is there but not as the step needs it: the page is wrong, not the browser.
_ELEMENT_TROUBLE = (
    NoSuchElementException,
    InvalidElementStateException,
    ElementNotSelectableException,
    StaleElementReferenceException,
    ElementNotInteractableException,
    ElementClickInterceptedException,
    MoveTargetOutOfBoundsException,
    UnexpectedTagNameException,
    UnexpectedAlertPresentException,
)
# Not there yet, or not usable yet: an action tries again until its timeout.
_NOT_READY = (
    NoSuchElementException,
    StaleElementReferenceException,
    ElementNotInteractableException,
    ElementClickInterceptedException,
)
_SUBMIT = """
const el = arguments[0];
const form = el.tagName === 'FORM' ? el : (el.form || el.closest('form'));
if (!form) { return false; }
if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
return true;
"""


class StepRefused(Exception):
    """The step would send what the environment does not allow; nothing was sent (→ refused)."""


class StepFailed(Exception):
    """A step's check did not hold or its element never came (→ `failed`)."""


class StepBroken(Exception):
    """The page cannot be reached, the browser broke or the test is malformed (→ `error`)."""

    def __init__(self, message: str, *, crashed: bool = False) -> None:
        super().__init__(message)
        self.crashed = crashed


def _attempts(timeout_s: float) -> Iterator[int]:
    """Yield 1, 2, … until `timeout_s` has passed, pausing a little longer each time."""
    deadline = time.monotonic() + timeout_s
    pauses = itertools.chain(_PAUSES, itertools.repeat(_MAX_PAUSE_S))
    for attempt, pause in enumerate(pauses, start=1):
        yield attempt
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(pause, left))


def short_error(exc: BaseException) -> str:
    """Return the first line of an exception's message (Selenium's carry a stack trace)."""
    message = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return message.strip().splitlines()[0][:300]


def _quoted(text: str, limit: int = 200) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _target(step: UiStep) -> str | None:
    return step.path or step.selector or step.text


def _label(index: int, step: UiStep) -> str:
    target = step.path or (repr(step.selector) if step.selector else "")
    return f"step {index} {step.action}" + (f" {target}" if target else "")


def _request_line(record: dict[str, Any]) -> str:
    outcome = record.get("error") or record.get("status")
    return f"{record.get('method', 'GET')} {scrub_url(record.get('url', ''))} → {outcome}"


class PageSteps:
    """The steps of one attempt at one test in one browser, each recorded as a call."""

    def __init__(
        self, browser: Browser, base_url: str, timeout_s: float, policy: ReplayPolicy
    ) -> None:
        self.browser = browser
        self.driver = browser.driver
        self.base_url = base_url
        self.policy = policy
        self.default_timeout_s = timeout_s
        self.calls: list[dict[str, Any]] = []
        self.failed_step: dict[str, Any] | None = None

    def run(self, spec: UiSpec) -> None:
        """Run every step in order; raise at the first that fails or breaks."""
        for index, step in enumerate(spec.steps):
            label = _label(index, step)
            call: dict[str, Any] = {"index": index, "action": step.action, "target": _target(step)}
            self.calls.append(call)
            started = time.perf_counter()
            try:
                self.step(step, label)
            except Exception as exc:
                failure = self.classify(exc, label)
                call.update(ms=round((time.perf_counter() - started) * 1000, 2), ok=False)
                call["error"] = str(failure)
                if isinstance(failure, StepRefused):
                    call["refused"] = True
                self.failed_step = {"index": index, **step.model_dump(exclude_none=True)}
                if failure is exc:
                    raise
                raise failure from exc
            call.update(ms=round((time.perf_counter() - started) * 1000, 2), ok=True)

    @staticmethod
    def classify(exc: Exception, label: str) -> Exception:
        """Return the exception as `StepFailed` or `StepBroken`; others are left as they are."""
        if isinstance(exc, StepFailed | StepBroken | StepRefused):
            return exc
        if isinstance(exc, InvalidSelectorException):
            return StepBroken(f"{label}: invalid selector: {short_error(exc)}")
        if isinstance(exc, _ELEMENT_TROUBLE):
            return StepFailed(f"{label}: {short_error(exc)}")
        if isinstance(exc, JavascriptException):  # one of our scripts, on an odd page
            return StepBroken(f"{label}: {short_error(exc)}")
        if isinstance(exc, TimeoutException):
            return StepBroken(f"{label}: timed out: {short_error(exc)}")
        if isinstance(exc, WebDriverException):
            return StepBroken(f"{label}: the browser failed: {short_error(exc)}", crashed=True)
        return exc

    def step(self, step: UiStep, label: str) -> None:
        """Do one step (`label` names it in messages)."""
        getattr(self, f"_{step.action}")(step, label)

    def timeout(self, step: UiStep) -> float:
        """Return how long the step may wait, in seconds."""
        return step.timeout_s or self.default_timeout_s

    def act(self, step: UiStep, label: str, action: Callable[[WebElement], Any]) -> None:
        """Do `action` on the step's element once it is there and can be used (else `failed`).

        Chromedriver itself refuses to click or type into an element that is hidden, disabled or
        covered; trying again until the timeout waits for the page to get there (cheaper than
        Selenium's visibility script, ~15 ms a call).
        """
        problem: Exception | None = None
        for _ in _attempts(self.timeout(step)):
            try:
                action(self.driver.find_element(*step.locator))
                return
            except _NOT_READY as exc:
                problem = exc
        missing = problem is None or isinstance(problem, NoSuchElementException)
        detail = "no element matches" if missing else short_error(problem)
        raise StepFailed(
            f"{label}: {detail} after {self.timeout(step):g}s (at {self.driver.current_url})"
        ) from problem

    def hold(self, step: UiStep, label: str, expected: str, probe: Callable[[], Any]) -> None:
        """Poll `probe` (→ (holds, what was found)) until it holds or the timeout runs out."""
        found: Any = None
        for _ in _attempts(self.timeout(step)):
            try:
                holds, found = probe()
            except (NoSuchElementException, StaleElementReferenceException):
                holds, found = False, "no element matches"
            if holds:
                return
        raise StepFailed(
            f"{label}: expected {expected}, found {found} after {self.timeout(step):g}s"
        )

    def until(self, step: UiStep, condition: Callable[[Any], Any]) -> bool:
        """Return whether `condition(driver)` came true within the step's timeout."""
        for _ in _attempts(self.timeout(step)):
            try:
                if condition(self.driver):
                    return True
            except (NoSuchElementException, StaleElementReferenceException):
                continue
        return False

    def check(self, step: UiStep, label: str, element: WebElement) -> None:
        """Raise `StepRefused` if acting on `element` would submit a form the policy forbids.

        The form's method is read in the page (`form.method`, or the submit control's
        `formmethod`), so a GET form may be submitted where only safe methods are allowed.
        """
        if step.action == "type" and not any(key in (step.value or "") for key in ENTER_KEYS):
            return
        found = self.driver.execute_script(SUBMITS_SCRIPT, element, step.action)
        if not found:
            return
        form, method, target = found
        verb = "following" if form == "a link" else "submitting"
        what = f"{label} ({verb} {form} to {scrub_url(target)})"
        reason = None if method == "DIALOG" else self.policy.method_refusal(method, what)
        if reason is None and method != "DIALOG" and not self.policy.allows_origin(target):
            reason = (
                f"refused before the browser acted: {what} would send a request to another origin"
                f" than environment {self.policy.environment!r} (add its host to"
                " IMMUNITY_UI_ALLOW_HOSTS to allow it)"
            )
        if reason is not None:
            raise StepRefused(reason)

    def checked(self, step: UiStep, label: str, action: Callable[[WebElement], Any]) -> None:
        """Do `action` on the step's element like `act`, once `check` lets it."""

        def guarded(element: WebElement) -> None:
            self.check(step, label, element)
            action(element)

        self.act(step, label, guarded)

    def led_away(self, what: str) -> str | None:
        """Return why the test is refused if `what` led the tab to an origin it may not reach."""
        self.browser.collect()
        led = self.browser.led_away()
        if led is None:
            return None
        return (
            f"refused: {what} led the browser to {scrub_url(led)}, another origin than"
            f" environment {self.policy.environment!r}; the browser was kept from sending that"
            " request (add its host to IMMUNITY_UI_ALLOW_HOSTS to allow it)"
        )

    def refuse_if_led_away(self, label: str, url: str) -> None:
        """Raise `StepRefused` if opening `url` led the browser to an origin it may not reach."""
        if (reason := self.led_away(f"{label}: {url}")) is not None:
            raise StepRefused(reason)

    # --- actions ------------------------------------------------------------------------------

    def _open(self, step: UiStep, label: str) -> None:
        url = self.base_url.rstrip("/") + (step.path or "/")
        self.browser.visit(url)
        try:
            self.driver.get(url)
        except TimeoutException as exc:
            raise StepBroken(f"{label}: {url} did not load within {self.timeout(step):g}s") from exc
        except WebDriverException as exc:
            if "net::ERR_" not in (exc.msg or ""):
                raise
            self.refuse_if_led_away(label, url)
            code = re.search(r"net::ERR_\w+", exc.msg or "")
            raise StepBroken(f"{label}: {url} cannot be reached ({code and code.group()})") from exc
        script = "return [document.readyState, document.documentURI]"
        state: list[Any] = ["", ""]

        def loaded(driver: Any) -> bool:
            state[:] = driver.execute_script(script)
            return state[0] == "complete"

        if not self.until(step, loaded):
            raise StepBroken(f"{label}: {url} did not finish loading")
        if str(state[1]).startswith("chrome-error:"):
            self.refuse_if_led_away(label, url)
            reasons = [
                record.get("error")
                for record in self.browser.requests.values()
                if record.get("type") == "Document" and record.get("error")
            ]
            reason = reasons[-1] if reasons else "the browser shows its error page"
            raise StepBroken(f"{label}: {url} cannot be reached ({reason})")

    def _click(self, step: UiStep, label: str) -> None:
        self.checked(step, label, lambda element: element.click())

    def _type(self, step: UiStep, label: str) -> None:
        def replace(field: WebElement) -> None:
            field.clear()
            field.send_keys(step.value or "")

        self.checked(step, label, replace)

    def _select(self, step: UiStep, label: str) -> None:
        value = step.value or ""

        def choose(element: WebElement) -> None:
            menu = Select(element)
            try:
                menu.select_by_value(value)
            except NoSuchElementException:
                try:
                    menu.select_by_visible_text(value)
                except NoSuchElementException as exc:
                    raise StepFailed(f"{label}: no option has the value or text {value!r}") from exc
            except NotImplementedError as exc:  # Selenium's word for a disabled option
                raise StepFailed(f"{label}: {exc}") from exc

        self.act(step, label, choose)

    def _submit(self, step: UiStep, label: str) -> None:
        def submit(element: WebElement) -> None:
            if not self.driver.execute_script(_SUBMIT, element):
                raise StepFailed(f"{label}: the element is not in a form")

        self.checked(step, label, submit)

    def _wait(self, step: UiStep, label: str) -> None:
        if step.selector and step.text is not None:
            condition = ec.text_to_be_present_in_element(step.locator, step.text)
            missing = f"text {step.text!r} not in the element"
        elif step.selector:
            condition = ec.visibility_of_element_located(step.locator)
            missing = "no visible element matches"
        else:
            condition = ec.text_to_be_present_in_element(("tag name", "body"), step.text or "")
            missing = f"text {step.text!r} not on the page"
        if not self.until(step, condition):
            raise StepFailed(f"{label}: {missing} after {self.timeout(step):g}s")

    def contains(self, step: UiStep, label: str, where: str, read: Callable[[], str]) -> None:
        """Wait until `read()` contains the step's text (else `failed`, quoting what it read)."""
        text = step.text or ""

        def probe() -> tuple[bool, str]:
            shown = read()
            return text in shown, _quoted(shown)

        self.hold(step, label, f"{text!r} in {where}", probe)

    def _assert_text(self, step: UiStep, label: str) -> None:
        where = step.locator if step.selector else ("tag name", "body")
        name = "the element" if step.selector else "the page"
        self.contains(step, label, name, lambda: self.driver.find_element(*where).text)

    def _assert_title(self, step: UiStep, label: str) -> None:
        self.contains(step, label, "the title", lambda: self.driver.title)

    def _assert_url(self, step: UiStep, label: str) -> None:
        self.contains(step, label, "the URL", lambda: self.driver.current_url)

    def _assert_count(self, step: UiStep, label: str) -> None:
        wanted = [
            *([f"exactly {step.count}"] if step.count is not None else []),
            *([f"at least {step.min_count}"] if step.min_count is not None else []),
        ]

        def probe() -> tuple[bool, int]:
            found = len(self.driver.find_elements(*step.locator))
            exact = step.count is None or found == step.count
            return exact and (step.min_count is None or found >= step.min_count), found

        self.hold(step, label, " and ".join(wanted) + " elements", probe)

    def _assert_no_console_errors(self, step: UiStep, label: str) -> None:
        self.browser.collect()
        errors = self.browser.console_errors()
        if errors:
            shown = "; ".join(scrub_text(error["message"]) for error in errors[:3])
            raise StepFailed(f"{label}: {len(errors)} console error(s): {shown}")

    def _assert_no_failed_requests(self, step: UiStep, label: str) -> None:
        self.browser.collect()
        failed = self.browser.failed_requests()
        if failed:
            shown = "; ".join(_request_line(record) for record in failed[:3])
            raise StepFailed(f"{label}: {len(failed)} failed request(s): {shown}")
