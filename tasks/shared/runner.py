"""The regression runner: many tests at once over one httpx client, each to a CaseResult.

How a test ends:
- `passed` / `failed`: every call was answered and the expectations held / did not.
- `error`: the target could not be asked (down, timed out, connection dropped after the transport's
  retries) or the test itself is broken (a `${name}` nothing captured); the reason says which.
- `flaky`: it failed (or errored), then passed on a re-run.
- `skipped`: refused before anything was sent (a method its environment does not allow).

What is sent is bounded whatever the stored spec says (tasks/shared/replay_policy.py): the
environment's base URL plus a normalised path, never a header that steers routing or the method,
only the allowlisted headers for a generated test, plus the environment's own auth. Redirects
within the origin are followed up to `MAX_REDIRECTS` times and recorded (`redirects`); one to
another origin is never followed: unless the step expects that 3xx, the test ends in `error`.

Nothing raised by one test stops the others: the runner always returns one result per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from immunity.models.enums import ExecutionStatus, TestKind
from immunity.models.results import CaseResult, CheckResult, Observed
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings
from immunity.models.specs import (
    REPLAY_HEADER,
    Expectations,
    HttpSpec,
    ScenarioSpec,
    Step,
    TestCase,
    parse_status,
)
from immunity.tasks.shared.expectations import evaluate, json_values
from immunity.tasks.shared.redirects import MAX_REDIRECTS, send_within_origin
from immunity.tasks.shared.replay_policy import (
    environment_auth,
    pick_headers,
    raw_steps,
    refusal,
    replay_url,
)
from immunity.tasks.shared.scrub import scrub, scrub_text

__all__ = [
    "BODY_EXCERPT",
    "MAX_REDIRECTS",
    "environment_auth",
    "refusal",
    "run_any",
    "run_cases",
    "run_cases_sync",
]

BODY_EXCERPT = 2_000
_POOL_SIZE = 4
_WHOLE_VARIABLE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Broken(Exception):
    """The test cannot go on: a transport failure or a broken definition (→ `error`)."""


class _Failed(Exception):
    """A response did not meet its step's expectations (→ `failed`)."""

    def __init__(self, message: str, checks: list[CheckResult], observed: Observed | None):
        super().__init__(message)
        self.checks = checks
        self.observed = observed


def _substitute(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _WHOLE_VARIABLE.match(value)
        if whole:
            return _lookup(whole.group(1), variables)
        return _VARIABLE.sub(lambda m: str(_lookup(m.group(1), variables)), value)
    if isinstance(value, dict):
        return {key: _substitute(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, variables) for item in value]
    return value


def _lookup(name: str, variables: Mapping[str, Any]) -> Any:
    if name not in variables:
        raise _Broken(f"${{{name}}} is used before any step captured it")
    return variables[name]


def _observe(response: httpx.Response, latency_ms: float) -> Observed:
    text = response.text
    try:
        body, is_json = response.json(), True
    except ValueError:
        body, is_json = None, False
    return Observed(
        status=response.status_code,
        latency_ms=latency_ms,
        text=text,
        json_body=body,
        is_json=is_json,
    )


def _excerpt(observed: Observed) -> Any:
    if observed.is_json and len(observed.text) <= BODY_EXCERPT:
        return scrub(observed.json_body)
    return scrub_text(observed.text[:BODY_EXCERPT])


class _Run:
    """One attempt at one test: the calls it made and the variables it captured."""

    def __init__(
        self,
        case: TestCase,
        client: httpx.AsyncClient,
        timeout_s: float,
        auth: Mapping[str, str] | None = None,
    ) -> None:
        self.case = case
        self.client = client
        self.timeout_s = timeout_s
        self.auth = auth or {}
        self.calls: list[dict[str, Any]] = []
        self.last: Observed | None = None
        self.redirects: list[dict[str, Any]] = []
        self.stopped: str | None = None  # why the last call's redirect was not followed

    def _headers(self, spec: HttpSpec, variables: Mapping[str, Any]) -> dict[str, str]:
        headers = pick_headers(_substitute(spec.headers, variables), self.case.allowed_headers)
        chosen = {name.lower() for name in self.auth}
        headers = {k: v for k, v in headers.items() if k.lower() not in chosen}
        return {**headers, **self.auth, REPLAY_HEADER: self.case.marker}

    async def send(self, spec: HttpSpec, variables: Mapping[str, Any], step: str) -> Observed:
        path = str(_substitute(spec.path, variables))
        body = _substitute(spec.body, variables)
        kwargs: dict[str, Any] = {"headers": self._headers(spec, variables)}
        if isinstance(body, str | bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        call: dict[str, Any] = {"step": step, "method": spec.method, "path": path}
        self.calls.append(call)
        try:
            url = replay_url(self.case.base_url, path)
        except ValueError as exc:
            call["error"] = str(exc)
            raise _Broken(f"{step}: {spec.method} {path}: {exc}") from exc
        timeout = spec.timeout_s or self.timeout_s
        started = time.perf_counter()
        try:
            sent = await send_within_origin(
                self.client, spec.method, url, timeout=timeout, **kwargs
            )
        except httpx.TimeoutException as exc:
            call["error"] = f"timed out after {timeout:g}s"
            raise _Broken(f"{step}: {spec.method} {path} {call['error']}") from exc
        except httpx.HTTPError as exc:
            call["error"] = f"{type(exc).__name__}: {exc}"[:500]
            raise _Broken(f"{step}: {spec.method} {path}: {call['error']}") from exc
        latency = (time.perf_counter() - started) * 1000
        call.update(status=sent.response.status_code, ms=round(latency, 2))
        if sent.redirects:
            call["redirects"] = sent.redirects
            self.redirects += sent.redirects
        self.stopped = sent.stopped
        self.last = _observe(sent.response, latency)
        return self.last

    async def check(
        self, spec: HttpSpec, expect: Expectations, variables: Mapping[str, Any], step: str
    ) -> Observed:
        observed = await self.send(spec, variables, step)
        if self.stopped is not None:
            self._stop_at_redirect(expect, observed, step)
        failed = [check for check in evaluate(expect, observed) if not check.passed]
        if failed:
            reasons = "; ".join(check.message or check.name for check in failed)
            raise _Failed(f"{step}: {reasons}", failed, observed)
        return observed

    def _stop_at_redirect(self, expect: Expectations, observed: Observed, step: str) -> None:
        """Raise `_Broken` for a redirect not followed, unless the step expects that status."""
        if expect.status is not None:
            low, high = parse_status(expect.status)
            if low <= observed.status <= high:
                return  # the test asks for this redirect: judged like any other answer
        hop = self.calls[-1]["redirects"][-1]
        why = "to another origin" if self.stopped == "another origin" else "too many times"
        raise _Broken(
            f"{step}: answered {observed.status}, redirected {why} (not followed):"
            f" {hop['location']}"
        )

    async def http(self) -> None:
        spec = HttpSpec.model_validate(self.case.spec)
        expect = Expectations.model_validate(self.case.expectations)
        await self.check(spec, expect, {}, "request")

    async def scenario(self) -> None:
        scenario = ScenarioSpec.model_validate(self.case.spec)
        final = Expectations.model_validate(self.case.expectations)
        variables: dict[str, Any] = dict(scenario.variables)
        for index, step in enumerate(scenario.steps):
            observed = await self.poll(step, variables)
            for name, path in step.capture.items():
                found = json_values(path, observed.json_body) if observed.is_json else []
                if not found:
                    raise _Failed(
                        f"{step.name}: nothing at {path} to capture as {name}",
                        [CheckResult(name=f"capture {name}", passed=False, expected=path)],
                        observed,
                    )
                variables[name] = found[0]
            if index == len(scenario.steps) - 1 and final != Expectations():
                failed = [check for check in evaluate(final, observed) if not check.passed]
                if failed:
                    reasons = "; ".join(check.message or check.name for check in failed)
                    raise _Failed(f"{step.name}: {reasons}", failed, observed)

    async def poll(self, step: Step, variables: Mapping[str, Any]) -> Observed:
        attempts = step.poll.attempts if step.poll else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self.check(step, step.expect, variables, step.name)
            except _Failed as exc:
                if attempt == attempts:
                    if attempts > 1:
                        exc.args = (f"{exc.args[0]} (after {attempts} polls)",)
                    raise
            assert step.poll is not None
            await asyncio.sleep(step.poll.interval_s)
        raise AssertionError("unreachable")


async def _attempt(
    case: TestCase, client: httpx.AsyncClient, timeout_s: float, auth: Mapping[str, str]
) -> CaseResult:
    started_at, started = utcnow(), time.perf_counter()
    run = _Run(case, client, timeout_s, auth)
    status, error, actual = ExecutionStatus.PASSED, None, {}
    try:
        await (run.scenario() if case.kind == "scenario" else run.http())
    except _Failed as exc:
        status, error = ExecutionStatus.FAILED, str(exc)
        actual = {"failed_checks": [check.model_dump(mode="json") for check in exc.checks]}
        if exc.observed is not None:
            actual |= {"status": exc.observed.status, "body": _excerpt(exc.observed)}
    except _Broken as exc:
        status, error = ExecutionStatus.ERROR, str(exc)
    except ValueError as exc:  # a stored spec that no longer validates, a malformed JSONPath
        status, error = ExecutionStatus.ERROR, f"invalid test definition: {exc}"[:2_000]
    if run.last is not None:
        actual.setdefault("status", run.last.status)
        actual["latency_ms"] = round(run.last.latency_ms, 2)
    if run.redirects:
        actual["redirects"] = run.redirects
    return CaseResult(
        test_id=case.test_id,
        name=case.name,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        error=error,
        expected=case.expectations if case.kind == "http" else _scenario_expected(case),
        actual=actual,
        calls=run.calls,
        started_at=started_at,
    )


def _scenario_expected(case: TestCase) -> dict[str, Any]:
    steps = {step.get("name", "?"): step.get("expect", {}) for step in raw_steps(case)}
    return {"steps": steps, **({"final": case.expectations} if case.expectations else {})}


async def _run_one(
    case: TestCase,
    client: httpx.AsyncClient,
    *,
    timeout_s: float,
    reruns: int,
    auth: Mapping[str, str],
) -> CaseResult:
    reason = refusal(case)
    if reason is not None:
        return CaseResult(
            test_id=case.test_id,
            name=case.name,
            status=ExecutionStatus.SKIPPED,
            error=reason,
            started_at=utcnow(),
        )
    first = await _attempt(case, client, timeout_s, auth)
    result, attempts = first, 1
    while result.status in (ExecutionStatus.FAILED, ExecutionStatus.ERROR) and attempts <= reruns:
        attempts += 1
        result = await _attempt(case, client, timeout_s, auth)
    if result is not first and result.status == ExecutionStatus.PASSED:
        # Passed on a re-run: keep the first failure's evidence, it is what needs explaining.
        result = first.model_copy(update={"status": ExecutionStatus.FLAKY})
    return result.model_copy(update={"attempts": attempts})


async def run_cases(
    cases: Sequence[TestCase],
    *,
    concurrency: int = 32,
    timeout_s: float = 10,
    transport_retries: int = 0,
    reruns: int = 0,
    on_result: Callable[[CaseResult], None] | None = None,
    client: httpx.AsyncClient | None = None,
    auth: Mapping[str, Mapping[str, str]] | None = None,
) -> list[CaseResult]:
    """Return one result per case, in order, running up to `concurrency` at once.

    `auth` maps an environment's base URL to the headers of its own auth, sent with every
    request there (and never stored in a spec).
    """
    limit = asyncio.Semaphore(concurrency)
    by_base = {base.rstrip("/"): dict(headers) for base, headers in (auth or {}).items()}
    if any(_uses_records(case) for case in cases):
        # Great Expectations takes seconds to import: not on the event loop, where idle
        # keep-alive connections would be dropped by the target meanwhile.
        from immunity.tasks.shared.gx_records import warm_up

        await asyncio.to_thread(warm_up)

    async def one(case: TestCase, http: httpx.AsyncClient) -> CaseResult:
        async with limit:
            result = await _run_one(
                case,
                http,
                timeout_s=timeout_s,
                reruns=reruns,
                auth=by_base.get(case.base_url.rstrip("/"), {}),
            )
        if on_result is not None:
            on_result(result)
        return result

    if client is not None:
        return list(await asyncio.gather(*(one(case, client) for case in cases)))
    # Several small pools, not one big one: httpcore's pool scans every connection per request,
    # so one client's cost per request grows with its size (4 connections each stays flat).
    pools = max(1, math.ceil(concurrency / _POOL_SIZE))
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.AsyncHTTPTransport(
                        verify=_ssl_context(),
                        retries=transport_retries,
                        limits=httpx.Limits(
                            max_connections=_POOL_SIZE, max_keepalive_connections=_POOL_SIZE
                        ),
                    ),
                    follow_redirects=False,  # followed by hand, within the origin only
                )
            )
            for _ in range(pools)
        ]
        return list(
            await asyncio.gather(*(one(case, clients[i % pools]) for i, case in enumerate(cases)))
        )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes ~20 ms: once per process, not once per client.
    return httpx.create_ssl_context()


def _uses_records(case: TestCase) -> bool:
    expectations = [case.expectations, *(step.get("expect", {}) for step in raw_steps(case))]
    return any(expect.get("records") for expect in expectations if isinstance(expect, dict))


def run_cases_sync(cases: Sequence[TestCase], **options: Any) -> list[CaseResult]:
    """Return `run_cases(cases, **options)` from synchronous code (a task, a pytest plugin)."""
    return asyncio.run(run_cases(cases, **options))


def run_any(cases: Sequence[TestCase], settings: Settings) -> list[CaseResult]:
    """Return one result per case, in order, whatever their kinds (the pytest plugin's too)."""
    ui = [case for case in cases if case.kind == TestKind.UI]
    http = [case for case in cases if case.kind != TestKind.UI]
    results = run_cases_sync(
        http,
        concurrency=settings.regression_concurrency,
        timeout_s=settings.regression_timeout_s,
        transport_retries=settings.regression_transport_retries,
        reruns=settings.regression_reruns,
        auth=environment_auth(settings),
    )
    if ui:
        from immunity.tasks.ui.runner import run_ui_cases  # Selenium only when a UI test runs

        results += run_ui_cases(ui, settings=settings)
    by_id = {result.test_id: result for result in results}
    return [by_id[case.test_id] for case in cases]
