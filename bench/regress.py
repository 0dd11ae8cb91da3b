"""Regression runs: N HTTP tests against the sample service, three ways, in one run.

The sample service runs in a subprocess of its own (its CPU does not share a GIL with ours). The
same N tests, with the same checks (status, min_items, a JSON Schema, body contains), run as:

A. a plain sequential pytest file: generated, one test function per test, one shared
   `httpx.Client`, run by `python -m pytest` in a subprocess;
B. a bare async httpx loop: a semaphore of the runner's concurrency, the checks written inline,
   and the same client set-up as the runner (small pools of 4 connections, one SSL context; one
   big pool costs ~3× more CPU per request): the floor;
C. immunity: (i) the runner alone, `run_cases_sync`; (ii) the Prefect flow `run_regression_suite`
   over the same tests stored in a fresh SQLite store (and PostgreSQL with `--postgres URL`):
   selection, chunk tasks, executions and confidence recorded, JSON + JUnit reports, artifacts.

Targets (the issue's acceptance): immunity ≥ 5× faster than sequential pytest; ≤ 2 ms overhead per
test over the bare loop. Records checks (Great Expectations) are left out of the N tests.

On localhost the service answers in well under a millisecond, so CPU per test decides, not the
latency concurrency hides; `--latency-ms` delays every answer, like a service across a network.
`--sweep` also runs B and C(i) at other concurrencies. Timings are wall clock, best of the runs;
CPU per test is given for the process that ran the tests and for the service.

    uv run python bench/regress.py [--tests 1000] [--repeat 3] [--concurrency 32]
                                   [--postgres postgresql://root@127.0.0.1:5432/postgres]
                                   [--sweep 1,8,32] [--latency-ms 0] [--skip-flow] [--strict]

Every check must pass in every contender against the healthy service, or the run fails (exit 1):
a benchmark that measures failures measures nothing. A missed target exits 0 unless `--strict`.
"""

# ruff: noqa: E402  (Prefect reads its settings when imported: the environment comes first)

from __future__ import annotations

import _prefect_home  # noqa: F401  (first: Prefect reads its settings when imported)

# isort: split
import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from _figures import Figure, figures_table, say
from jsonschema.validators import validator_for
from sqlmodel import Session

from immunity.examples.sample_service.generation import plan_files
from immunity.models.db import get_engine
from immunity.models.settings import get_settings
from immunity.models.specs import Expectations, HttpSpec, TestCase
from immunity.models.tables import RegressionTest
from immunity.tasks.shared.runner import run_cases_sync
from immunity.tasks.shared.schema import upgrade_database

MIN_SPEEDUP = 5.0  # immunity vs sequential pytest
MAX_OVERHEAD_MS = 2.0  # immunity vs the bare loop, per test
ENVIRONMENT = "staging"
START_TIMEOUT_S = 60.0
T = TypeVar("T")

# --- the tests --------------------------------------------------------------------------------

HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "release", "environment", "checks"],
    "properties": {
        "status": {"const": "ok"},
        "release": {"type": "string", "minLength": 1},
        "environment": {"type": "string"},
        "checks": {
            "type": "object",
            "required": ["database"],
            "properties": {"database": {"const": "ok"}},
        },
    },
}
EXECUTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["executions"],
    "properties": {
        "executions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "job_id", "status", "started_at"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "job_id": {"type": "string", "minLength": 1},
                    "status": {"type": "string"},
                    "started_at": {"type": "string", "format": "date-time"},
                },
            },
        }
    },
}
PRODUCTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["items", "total", "limit", "offset"],
    "properties": {
        "items": {"type": "array", "items": {"type": "object", "required": ["id"]}},
        "total": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer"},
        "offset": {"type": "integer"},
    },
}
SCHEMAS = {"HEALTH": HEALTH_SCHEMA, "EXECUTIONS": EXECUTIONS_SCHEMA, "PRODUCTS": PRODUCTS_SCHEMA}
SEEDED_EXECUTIONS = 3  # the sample service starts with three executions (exec-seed-000N)
EXECUTION_LIMITS = (1, 2, 3, 5, 10, 50)
PROMPTS = (
    ("Build recipe website with search", "react"),
    ("A blog with a contact form", "vue"),
    ("Dashboard with login", "react"),
    ("Photo gallery", "html"),
    ("Shopping cart and search", "vue"),
    ("Landing page", "html"),
)


@dataclass(frozen=True)
class Probe:
    """One HTTP test as every contender runs it: a request and what its answer must satisfy."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None
    status: int | None = None
    should_not_fail: bool = False
    min_items: dict[str, int] = field(default_factory=dict)
    schema: str | None = None  # a key of SCHEMAS
    body_contains: tuple[str, ...] = ()

    def expectations(self) -> dict[str, Any]:
        """Return the stored `expectations` column (as `immunity tests add` writes it)."""
        expect = Expectations(
            status=self.status,
            should_not_fail=self.should_not_fail,
            min_items=self.min_items,
            json_schema=SCHEMAS[self.schema] if self.schema else None,
            body_contains=list(self.body_contains),
        )
        return expect.model_dump(mode="json", exclude_defaults=True)

    def spec(self) -> dict[str, Any]:
        """Return the stored `spec` column."""
        spec = HttpSpec(method=self.method, path=self.path, body=self.body)
        return spec.model_dump(mode="json", exclude_defaults=True)


def health(index: int, variant: int) -> Probe:
    return Probe(
        f"bench-{index:04d}-health",
        "GET",
        "/api/health",
        None,
        status=200,
        schema="HEALTH",
        body_contains=('"database":"ok"',),
    )


def executions(index: int, variant: int) -> Probe:
    limit = EXECUTION_LIMITS[variant % len(EXECUTION_LIMITS)]
    return Probe(
        f"bench-{index:04d}-executions-{limit}",
        "GET",
        f"/api/executions?limit={limit}",
        None,
        status=200,
        min_items={"$.executions": min(limit, SEEDED_EXECUTIONS)},
        schema="EXECUTIONS",
        body_contains=("exec-seed-",),
    )


def generate(index: int, variant: int) -> Probe:
    prompt, framework = PROMPTS[variant % len(PROMPTS)]
    return Probe(
        f"bench-{index:04d}-generate-{framework}",
        "POST",
        "/api/generate",
        {"prompt": prompt, "framework": framework},
        should_not_fail=True,
        min_items={"$.files": len(plan_files(prompt, framework))},
        body_contains=(f'"framework":"{framework}"',),
    )


def products(index: int, variant: int) -> Probe:
    return Probe(
        f"bench-{index:04d}-shop-products",
        "GET",
        f"/api/shop/products?limit={10 + variant % 3 * 10}",
        None,
        status=200,
        schema="PRODUCTS",
        body_contains=('"offset":0',),
    )


def build_probes(count: int, shop: bool) -> list[Probe]:
    """Return `count` tests cycling through health, executions, generate (and the shop)."""
    kinds: list[Callable[[int, int], Probe]] = [health, executions, generate]
    if shop:
        kinds.append(products)
    return [kinds[index % len(kinds)](index, index // len(kinds)) for index in range(count)]


def probe_count(probes: Sequence[Probe]) -> str:
    kinds: dict[str, int] = {}
    for probe in probes:
        kind = probe.method + " " + probe.path.split("?", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} × {kind}" for kind, n in kinds.items())


# --- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Wall seconds; CPU seconds of the process that ran the tests, and of the sample service."""

    wall: float
    cpu: float | None = None
    service_cpu: float | None = None


class ServiceProcess:
    """The sample service's process: its CPU time, read from /proc (None elsewhere)."""

    pid: int | None = None

    @classmethod
    def cpu(cls) -> float | None:
        try:
            fields = Path(f"/proc/{cls.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Contender:
    """One way of running the tests: its best time and how many of its tests passed."""

    name: str
    timing: Timing
    passed: str  # "1000/1000 × 3"


def timed(work: Callable[[], T]) -> tuple[T, Timing]:
    service, wall, cpu = ServiceProcess.cpu(), time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = ServiceProcess.cpu()
    return result, Timing(wall, cpu, None if None in (service, after) else after - service)


def checked(label: str, work: Callable[[], int], count: int) -> Timing:
    """Time `work` (which returns how many tests passed); every test must pass."""
    passed, timing = timed(work)
    say(f"  {label}: {describe(count, timing)}; {passed}/{count} passed")
    if passed != count:
        raise SystemExit(f"FAILED: {label}: {count - passed} of {count} tests did not pass")
    return timing


def fastest(timings: Sequence[Timing]) -> Timing:
    return min(timings, key=lambda timing: timing.wall)


def per_test(seconds: float | None, count: int) -> str:
    return "-" if seconds is None else f"{1000 * seconds / count:.2f}"


def describe(count: int, timing: Timing) -> str:
    return (
        f"{timing.wall:.3f} s = {count / timing.wall:,.0f} tests/s, "
        f"{1000 * timing.wall / count:.2f} ms/test (CPU ms/test: client "
        f"{per_test(timing.cpu, count)}, service {per_test(timing.service_cpu, count)})"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (5-min {five:.2f}) on {os.cpu_count()} CPUs"


# --- the sample service in a subprocess -------------------------------------------------------


class Delayed:
    """An ASGI wrapper answering every HTTP request `seconds` later: a service across a network."""

    def __init__(self, app: Any, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(self.seconds)
        await self.app(scope, receive, send)


def serve(latency_ms: float) -> None:
    """In the service subprocess: serve the sample app, print its URL, stop when stdin closes."""
    from immunity.examples.sample_service import create_app, start_server

    app: Any = create_app(None, release="sample@bench", environment=ENVIRONMENT)
    if latency_ms > 0:
        app = Delayed(app, latency_ms / 1000)
    server = start_server(app)
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.stop()


@contextmanager
def sample_service(workdir: Path, latency_ms: float) -> Iterator[str]:
    """Run the sample service in a subprocess; yield its base URL once `/api/health` answers."""
    log_path = workdir / "service.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(latency_ms)]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
    assert process.stdin is not None and process.stdout is not None
    ServiceProcess.pid = process.pid
    try:
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"the sample service did not start:\n{log_path.read_text()}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while httpx.get(f"{base_url}/api/health", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base_url}/api/health did not answer 200")
            time.sleep(0.1)
        yield base_url
    finally:
        ServiceProcess.pid = None
        process.stdin.close()  # the service stops at end of input
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def has_shop(base_url: str) -> bool:
    """Whether this version of the sample service has the shop's product list, as we know it."""
    probe = products(0, 0)
    try:
        response = httpx.get(base_url + probe.path, timeout=5)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return False
    return (
        response.status_code == probe.status
        and validator_for(PRODUCTS_SCHEMA)(PRODUCTS_SCHEMA).is_valid(body)
        and all(text in response.text for text in probe.body_contains)
    )


# --- A: sequential pytest ---------------------------------------------------------------------


def pytest_function(index: int, probe: Probe) -> str:
    """Return one plain pytest test function with the probe's request and asserts."""
    name = re.sub(r"\W", "_", probe.name)
    call = f"client.{probe.method.lower()}({probe.path!r}"
    call += f", json={probe.body!r})" if probe.body is not None else ")"
    lines = [f"def test_{name}(client):", f"    response = {call}"]
    if probe.status is not None:
        lines.append(f"    assert response.status_code == {probe.status}")
    if probe.should_not_fail:
        lines.append("    assert response.status_code < 400")
    lines.append("    body = response.json()")
    for path, least in probe.min_items.items():
        lines.append(f"    assert len(body[{path.removeprefix('$.')!r}]) >= {least}")
    if probe.schema:
        lines.append(f"    {probe.schema}.validate(body)")
    for text in probe.body_contains:
        lines.append(f"    assert {text!r} in response.text")
    return "\n".join(lines) + "\n"


def write_pytest_file(directory: Path, base_url: str, probes: Sequence[Probe]) -> Path:
    header = textwrap.dedent(
        f'''\
        """Generated by bench/regress.py: {len(probes)} HTTP tests, sequential, one client."""

        import httpx
        import pytest
        from jsonschema.validators import validator_for

        BASE_URL = {base_url!r}
        '''
    )
    # Validators built once per schema: `jsonschema.validate` would check the schema on every
    # call (+0.8 ms), which would flatter immunity.
    schemas = [
        f"{key}_SCHEMA = {schema!r}\n{key} = validator_for({key}_SCHEMA)({key}_SCHEMA)\n"
        for key, schema in SCHEMAS.items()
    ]
    fixture = textwrap.dedent(
        """\
        @pytest.fixture(scope="module")
        def client():
            with httpx.Client(base_url=BASE_URL, timeout=10) as shared:
                yield shared
        """
    )
    functions = [pytest_function(index, probe) for index, probe in enumerate(probes)]
    path = directory / "test_generated_regression.py"
    path.write_text("\n\n".join([header, *schemas, fixture, *functions]))
    (directory / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    return path


@dataclass(frozen=True)
class PytestRun:
    wall: float  # the whole subprocess: interpreter, plugins, collection, tests
    own: float  # what pytest reports ("N passed in X s"): collection and tests
    cpu: float
    passed: int
    timing: Timing  # wall, and the service's CPU, over the whole process


def run_pytest(directory: Path, count: int) -> PytestRun:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result, timing = timed(
        lambda: subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=1800)
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    tail = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    passed, own = re.search(r"(\d+) passed", tail), re.search(r" in ([\d.]+)s", tail)
    if result.returncode != 0 or not (passed and own) or "failed" in tail or "error" in tail:
        output = (result.stdout[-4000:] + result.stderr[-2000:]).strip()
        raise SystemExit(f"FAILED: sequential pytest (exit {result.returncode}):\n{output}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    run = PytestRun(timing.wall, float(own.group(1)), cpu, int(passed.group(1)), timing)
    if run.passed != count:
        raise SystemExit(f"FAILED: sequential pytest: {run.passed} of {count} passed ({tail})")
    return run


# --- B: the bare async loop -------------------------------------------------------------------


def bare_loop(
    base_url: str, probes: Sequence[Probe], concurrency: int, timeout_s: float = 10.0
) -> int:
    """Send every probe, `concurrency` at once over pools of 4; return how many passed."""
    return asyncio.run(_bare_loop(base_url, probes, concurrency, timeout_s))


async def _bare_loop(
    base_url: str, probes: Sequence[Probe], concurrency: int, timeout_s: float
) -> int:
    validators = {key: validator_for(schema)(schema) for key, schema in SCHEMAS.items()}
    limit = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, probe: Probe) -> bool:
        async with limit:
            response = await client.request(
                probe.method, base_url + probe.path, json=probe.body, timeout=timeout_s
            )
            if probe.status is not None and response.status_code != probe.status:
                return False
            if probe.should_not_fail and response.status_code >= 400:
                return False
            body = response.json()
            for path, least in probe.min_items.items():
                if len(body[path.removeprefix("$.")]) < least:
                    return False
            if probe.schema and not validators[probe.schema].is_valid(body):
                return False
            text = response.text
            return all(part in text for part in probe.body_contains)

    pools = max(1, -(-concurrency // 4))
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    context = httpx.create_ssl_context()
    clients = [
        httpx.AsyncClient(limits=limits, verify=context, follow_redirects=True)
        for _ in range(pools)
    ]
    try:
        outcomes = await asyncio.gather(
            *(one(clients[i % pools], probe) for i, probe in enumerate(probes))
        )
    finally:
        for client in clients:
            await client.aclose()
    return sum(outcomes)


# --- C: immunity ------------------------------------------------------------------------------


def immunity_cases(base_url: str, probes: Sequence[Probe]) -> list[TestCase]:
    return [
        TestCase(
            test_id=index + 1,
            name=probe.name,
            kind="http",
            spec=probe.spec(),
            expectations=probe.expectations(),
            base_url=base_url,
            environment=ENVIRONMENT,
        )
        for index, probe in enumerate(probes)
    ]


def run_runner(cases: Sequence[TestCase], concurrency: int) -> int:
    """Run the cases with the runner and the options the chunk task uses; return the passes."""
    settings = get_settings()
    results = run_cases_sync(
        cases,
        concurrency=concurrency,
        timeout_s=settings.regression_timeout_s,
        transport_retries=settings.regression_transport_retries,
        reruns=settings.regression_reruns,
    )
    failed = [result for result in results if result.status != "passed"]
    for result in failed[:3]:
        say(f"    {result.name}: {result.status}: {result.error}")
    return len(results) - len(failed)


def store_tests(url: str, probes: Sequence[Probe]) -> None:
    """Migrate the store at `url` and insert the probes as active regression tests."""
    upgrade_database(url)
    rows = [
        RegressionTest(
            name=probe.name,
            kind="http",
            type="regression",
            spec=probe.spec(),
            expectations=probe.expectations(),
            tags=["bench"],
            environment=ENVIRONMENT,
        )
        for probe in probes
    ]
    with Session(get_engine(url)) as session:
        session.add_all(rows)
        session.commit()


@contextmanager
def postgres_store(admin_url: str) -> Iterator[str]:
    name = f"immunity_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    for prefix in ("postgresql://", "postgres://"):
        base = base.replace(prefix, "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def configure(url: str, base_url: str, data_dir: Path, concurrency: int) -> None:
    """Point immunity's settings (what the flow and its tasks read) at this store and service."""
    environments = {ENVIRONMENT: {"base_url": base_url, "is_production": False}}
    os.environ.update(
        IMMUNITY_DATABASE_URL=url,
        IMMUNITY_ENVIRONMENTS=json.dumps(environments),
        IMMUNITY_DATA_DIR=str(data_dir),
        IMMUNITY_REGRESSION_CONCURRENCY=str(concurrency),
    )
    get_settings.cache_clear()


def bench_flow(
    label: str,
    url: str,
    base_url: str,
    probes: Sequence[Probe],
    args: argparse.Namespace,
    workdir: Path,
) -> Timing:
    """Store the probes at `url`, warm up on one test, then time the flow over all of them."""
    from immunity.flows.regress import run_regression_suite

    count = len(probes)
    store_tests(url, probes)
    configure(url, base_url, workdir / f"data-{uuid.uuid4().hex[:6]}", args.concurrency)
    # Untimed: the ephemeral Prefect server's start-up, the store's engine, the flow's first run.
    warm_up, timing = timed(
        lambda: run_regression_suite(environment=ENVIRONMENT, names=[probes[0].name])
    )
    say(f"  warm-up flow run on 1 test (untimed): {timing.wall:.2f} s, {warm_up.passed} passed")
    if warm_up.passed != 1:
        raise SystemExit(f"FAILED: {label} warm-up: {warm_up.model_dump_json()[:4000]}")
    chunks = -(-count // get_settings().regression_chunk_size)
    say(
        f"  {chunks} chunk task(s) of <= {get_settings().regression_chunk_size} tests, each at "
        f"concurrency {args.concurrency}"
    )

    flow_runs: list[Any] = []

    def suite() -> int:
        state = run_regression_suite(environment=ENVIRONMENT, return_state=True)
        flow_runs.append(state.state_details.flow_run_id)
        summary = state.result()
        if summary.passed != count:
            say(f"    {summary.model_dump_json()[:4000]}")
        return summary.passed if summary.total == count else -1

    timings = [checked(f"{label} #{n + 1}", suite, count) for n in range(args.flow_repeat)]
    best = min(range(len(timings)), key=lambda n: timings[n].wall)
    say(f"  where run #{best + 1}'s time went (task runs, from the Prefect API):")
    for line in flow_breakdown(flow_runs[best], timings[best].wall):
        say(f"    {line}")
    return timings[best]


def flow_breakdown(flow_run_id: Any, wall: float) -> list[str]:
    """Return, per task name, how many ran, when they ran within the flow run, for how long."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    if flow_run.start_time is None or flow_run.end_time is None:
        return ["(the flow run has no start or end time)"]
    start = flow_run.start_time
    spans: dict[str, list[tuple[float, float]]] = {}
    for task_run in task_runs:
        if task_run.start_time is None or task_run.end_time is None:
            continue
        name = task_run.name.rsplit("-", 1)[0]  # "run-test-chunk-90c" → "run-test-chunk"
        begin = (task_run.start_time - start).total_seconds()
        spans.setdefault(name, []).append((begin, (task_run.end_time - start).total_seconds()))
    lines = []
    for name, runs in sorted(spans.items(), key=lambda item: min(b for b, _ in item[1])):
        first, last = min(b for b, _ in runs), max(e for _, e in runs)
        busiest = max(e - b for b, e in runs)
        lines.append(
            f"{name:<26} × {len(runs):<2} from {first:6.2f} s to {last:6.2f} s "
            f"(longest {busiest:.2f} s)"
        )
    inside = (flow_run.end_time - start).total_seconds()
    lines.append(
        f"flow run start to end: {inside:.2f} s; around it, in this process: {wall - inside:.2f} s"
    )
    return lines


# --- the run ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=1_000, help="how many tests (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of B and C(i); best counts")
    parser.add_argument("--flow-repeat", type=int, default=2, help="runs of the flow; best counts")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="of B and C (default: the settings' regression_concurrency)",
    )
    parser.add_argument(
        "--sweep",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[],
        metavar="N,N,…",
        help="also run B and C(i) once at each of these concurrencies (information)",
    )
    parser.add_argument("--postgres", metavar="URL", help="also run the flow on PostgreSQL")
    parser.add_argument("--skip-flow", action="store_true", help="the runner alone, no Prefect")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="the service answers every request this much later (default 0: local, sub-ms)",
    )
    parser.add_argument("--serve", type=float, metavar="LATENCY_MS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.tests, args.repeat, args.flow_repeat) < 1:
        parser.error("--tests, --repeat and --flow-repeat must be at least 1")
    return args


def targets(name: str, timing: Timing, pytest_own: float, bare: Timing, count: int) -> list[Figure]:
    """Return the speed-up over sequential pytest and the overhead over the bare loop."""
    speedup = pytest_own / timing.wall
    overhead_ms = 1000 * (timing.wall - bare.wall) / count
    return [
        Figure(
            f"speed-up: {name} vs sequential pytest",
            f"{speedup:.1f}×",
            f">= {MIN_SPEEDUP:.0f}×",
            speedup >= MIN_SPEEDUP,
        ),
        Figure(
            f"overhead: {name} vs the bare loop",
            f"{overhead_ms:+.2f} ms/test",
            f"<= {MAX_OVERHEAD_MS:.0f} ms/test",
            overhead_ms <= MAX_OVERHEAD_MS,
        ),
    ]


def measure(args: argparse.Namespace, workdir: Path, base_url: str) -> list[Contender]:
    """Run every contender against the service at `base_url`; return them, A first, B third."""
    count = args.tests
    shop = has_shop(base_url)
    probes = build_probes(count, shop)
    say(
        f"sample service (subprocess) at {base_url}, added latency {args.latency_ms:g} ms; "
        f"shop endpoints present: {shop}"
    )
    say(f"{count:,} tests: {probe_count(probes)}")
    say("no records (Great Expectations) checks among them")
    say(f"concurrency of B and C: {args.concurrency}; machine load {load()}")

    say("\n[A] sequential pytest + httpx: a generated file, one shared httpx.Client")
    directory = workdir / "pytest"
    directory.mkdir()
    write_pytest_file(directory, base_url, probes)
    run_a = run_pytest(directory, count)
    say(
        f"  {run_a.passed}/{count} passed; pytest's own time {run_a.own:.2f} s, whole process "
        f"{describe(count, Timing(run_a.wall, run_a.cpu, run_a.timing.service_cpu))}"
    )
    passed = f"{run_a.passed}/{count}"
    contenders = [
        Contender("A  sequential pytest (pytest's own time)", Timing(run_a.own), passed),
        Contender(
            "A  sequential pytest (whole process)",
            Timing(run_a.wall, run_a.cpu, run_a.timing.service_cpu),
            passed,
        ),
    ]

    cases = immunity_cases(base_url, probes)

    def bare_run(concurrency: int, label: str, some: int = count) -> Timing:
        return checked(label, lambda: bare_loop(base_url, probes[:some], concurrency), some)

    def runner_run(concurrency: int, label: str, some: int = count) -> Timing:
        return checked(label, lambda: run_runner(cases[:some], concurrency), some)

    warm = min(count, 50)  # untimed: imports, caches, connections of both in-process contenders
    bare_run(args.concurrency, "warm-up: bare loop", warm)
    runner_run(args.concurrency, "warm-up: runner", warm)
    say(f"\n[B] bare async httpx loop, [C(i)] immunity runner: alternating, best of {args.repeat}")
    bare, runner = [], []
    for n in range(1, args.repeat + 1):
        bare.append(bare_run(args.concurrency, f"[B] bare loop #{n}"))
        runner.append(runner_run(args.concurrency, f"[C(i)] run_cases_sync #{n}"))
    passes = f"{count}/{count} × {args.repeat}"
    contenders.append(Contender("B  bare async httpx loop", fastest(bare), passes))
    contenders.append(Contender("C(i)  immunity runner (run_cases_sync)", fastest(runner), passes))

    for concurrency in args.sweep:
        say(f"\n[sweep] concurrency {concurrency} (one run each, not in the targets)")
        bare_run(concurrency, f"[B] bare loop, concurrency {concurrency}")
        runner_run(concurrency, f"[C(i)] runner, concurrency {concurrency}")

    if args.skip_flow:
        return contenders
    stores = [("SQLite", f"sqlite:///{workdir / 'store.db'}")]
    with postgres_store(args.postgres) if args.postgres else _no_store() as postgres_url:
        if postgres_url:
            stores.append(("PostgreSQL", postgres_url))
        for backend, url in stores:
            say(f"\n[C(ii)] immunity flow run_regression_suite, {backend} store, Prefect ephemeral")
            timing = bench_flow(f"[C(ii)] flow {backend}", url, base_url, probes, args, workdir)
            name = f"C(ii)  immunity flow, {backend}"
            contenders.append(Contender(name, timing, f"{count}/{count} × {args.flow_repeat}"))
    return contenders


@contextmanager
def _no_store() -> Iterator[str]:
    yield ""


def print_contenders(contenders: Sequence[Contender], count: int) -> None:
    width = max(len(c.name) for c in contenders)
    say(
        f"\n{'contender (' + format(count, ',') + ' tests)':<{width}}  {'passed':>13}  "
        f"{'time s':>7}  {'tests/s':>7}  {'ms/test':>7}  {'CPU ms/test: client':>19}  "
        f"{'service':>7}"
    )
    for c in contenders:
        t = c.timing
        say(
            f"{c.name:<{width}}  {c.passed:>13}  {t.wall:>7.3f}  {count / t.wall:>7,.0f}  "
            f"{1000 * t.wall / count:>7.2f}  {per_test(t.cpu, count):>19}  "
            f"{per_test(t.service_cpu, count):>7}"
        )


def print_table(figures: Sequence[Figure]) -> None:
    say("\n" + figures_table(figures, ("target", "value", "wanted")))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    if args.concurrency is None:
        args.concurrency = get_settings().regression_concurrency
    workdir = Path(tempfile.mkdtemp(prefix="immunity-bench-regress-"))
    before = load()
    try:
        with sample_service(workdir, args.latency_ms) as base_url:
            contenders = measure(args, workdir, base_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    count = args.tests
    print_contenders(contenders, count)
    pytest_own, pytest_whole, bare = (c.timing for c in contenders[:3])
    figures = []
    for contender in contenders[3:]:
        name = contender.name.split("  ", 1)[1]
        figures += targets(name, contender.timing, pytest_own.wall, bare, count)
    print_table(figures)
    say(
        "\nspeed-up = pytest's own time (collection + tests) / immunity's time; over pytest's "
        f"whole process it is {pytest_whole.wall / contenders[3].timing.wall:.1f}× for the runner."
        "\noverhead = (immunity's time - the bare loop's time) / tests, at the same concurrency."
        "\nPrefect's ephemeral server start-up is outside every timing (a warm-up flow run first)."
    )
    say(f"machine load, 1-min average: {before} before, {load()} after")
    missed = [f for f in figures if f.passed is False]
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
