"""Ingest over real HTTP: many concurrent clients against the API on a fresh PostgreSQL database.

    uv run python bench/ingest_http.py [--clients 50] [--events 2000] [--batch 100]
                                       [--workers 2] [--bugs 200]

A fresh database `immunity_bench_<random>` on 127.0.0.1:5432 (role root, trust auth) is migrated
with alembic; the API runs as a real uvicorn server in a separate process; every client posts its
realistic synthetic events in batches and retries on 503 and connection errors (bounded). Then the
store is checked against what the clients were told:

1. the events acknowledged (Σ `accepted` of 2xx answers) equal Σ Signature.occurrence_count;
2. every signature seen ≥ threshold times has exactly one RegressionTest, and its test_id is set.

Workers: on 2 cores (shared with other jobs), 1 to 4 uvicorn workers gave 600-970 events/s with
no reliable winner; the load is bound by row locks on the hot signature rows and the deadlocks
around them, not by CPU. Two workers is the default: the one that can use both cores once that
contention goes.

It reports; it does not gate: the exit code is 0 unless something crashed.
"""

# ruff: noqa: E402  (Prefect reads its settings when imported: the environment comes first)

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import argparse
import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from _outage_load import EncodedBatch, LoadResult, RetryPolicy, encode_batches, percentile, run_load
from sqlalchemy import Engine, func, select, text

from immunity.api.auth import hash_token, new_token
from immunity.examples.synthetic import synthetic_events
from immunity.models.db import get_engine
from immunity.models.settings import Settings
from immunity.models.tables import OccurrenceBucket, RegressionTest, Signature
from immunity.tasks.shared.schema import upgrade_database

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "IMMUNITY_BENCH_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres"
)
DEFAULT_MAX_REQUEST_BYTES = Settings.model_fields["max_request_bytes"].default
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
TRACEBACK = "Traceback (most recent call last)"


# --- the store -------------------------------------------------------------------------------


def _database_url(name: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


@contextmanager
def bench_database() -> Iterator[str]:
    """Yield the URL of a fresh database migrated to head; drop it (forcefully) afterwards."""
    name = f"immunity_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    try:
        upgrade_database(url)
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the API server --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(url: str, token: str, max_request_bytes: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        IMMUNITY_DATABASE_URL=url,
        # Settings may hold the token's hash rather than the secret itself.
        IMMUNITY_API_TOKENS=json.dumps([hash_token(token)]),
        IMMUNITY_MAX_REQUEST_BYTES=str(max_request_bytes),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    return env


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited during start-up (code {process.returncode})")
        try:
            if httpx.get(f"{base_url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API on {base_url} was not healthy within {STARTUP_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # uvicorn's supervisor stops its workers on SIGTERM
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its own session, started above
        process.wait(STOP_TIMEOUT_S)


@contextmanager
def api_server(
    url: str, token: str, workers: int, max_request_bytes: int, log_path: Path
) -> Iterator[str]:
    """Run `uvicorn --factory api.app:create_app` on a free port; yield its base URL."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "immunity.api.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "info",  # lifecycle lines only (no access log): a worker killed as hung shows up
        "--no-access-log",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=_server_env(url, token, max_request_bytes),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, process)
        yield base_url
    finally:
        _stop(process)


# --- the load --------------------------------------------------------------------------------


def build_batches(clients: int, events: int, batch: int, bugs: int) -> list[list[EncodedBatch]]:
    """Return each client's request bodies: the same bugs, different occurrences per client."""
    return [
        encode_batches(list(synthetic_events(events, bugs=bugs, seed=0, variant=n)), batch)
        for n in range(clients)
    ]


# --- the checks ------------------------------------------------------------------------------


@dataclass
class StoreReport:
    """What the store holds after the load, and how the two invariants came out."""

    occurrences: int = 0
    bucket_occurrences: int = 0
    signatures: int = 0
    qualifying: int = 0
    tests: int = 0
    deadlocks: int = 0
    problems: list[str] = field(default_factory=list)


def _test_problems(engine: Engine, threshold: int) -> tuple[int, int, list[str]]:
    with engine.connect() as conn:
        qualifying = conn.execute(
            select(Signature.id, Signature.test_id, Signature.untestable_reason).where(
                Signature.occurrence_count >= threshold
            )
        ).all()
        per_signature = {
            row.signature: (row.tests, row.first)
            for row in conn.execute(
                select(
                    RegressionTest.created_from_signature_id.label("signature"),
                    func.count().label("tests"),
                    func.min(RegressionTest.id).label("first"),
                ).group_by(RegressionTest.created_from_signature_id)
            )
        }
        tests = conn.execute(select(func.count()).select_from(RegressionTest)).scalar_one()
    problems = []
    for signature_id, test_id, untestable in qualifying:
        count, first = per_signature.get(signature_id, (0, None))
        if count != 1:
            problems.append(f"signature {signature_id}: {count} tests ({untestable or 'testable'})")
        elif test_id != first:
            problems.append(f"signature {signature_id}: test_id={test_id}, its test is {first}")
    return len(qualifying), tests, problems


def check_store(url: str, threshold: int) -> StoreReport:
    """Read the totals and check that each qualifying signature has exactly its one test."""
    engine = get_engine(url)
    with engine.connect() as conn:
        occurrences = conn.execute(
            select(func.coalesce(func.sum(Signature.occurrence_count), 0))
        ).scalar_one()
        buckets = conn.execute(
            select(func.coalesce(func.sum(OccurrenceBucket.count), 0))
        ).scalar_one()
        signatures = conn.execute(select(func.count()).select_from(Signature)).scalar_one()
        deadlocks = conn.execute(
            text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()
    qualifying, tests, problems = _test_problems(engine, threshold)
    return StoreReport(
        int(occurrences), int(buckets), signatures, qualifying, tests, int(deadlocks), problems
    )


# --- the report ------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def _first_traceback(content: str) -> str:
    """The first traceback's project frames and its exception lines (the rest is framework)."""
    start = content.find(TRACEBACK)
    if start < 0:
        return ""
    lines = content[start:].splitlines()
    end = next(
        (n for n, line in enumerate(lines[1:], 1) if line and not line[0].isspace()), len(lines)
    )
    frames = [
        f"{line}\n  {lines[n + 1].strip()}"
        for n, line in enumerate(lines[:end])
        if line.lstrip().startswith("File") and str(ROOT) in line and "/.venv/" not in line
    ]
    exception = [line for line in lines[end : end + 6] if line.strip()]
    return "\n".join([lines[0], *frames, *exception])


def print_load(result: LoadResult, batch: int) -> None:
    ok = [o for o in result.outcomes if o.acknowledged]
    attempt_latency = [a.seconds for a in result.attempts if a.status and a.status < 300]
    batch_latency = [o.seconds for o in ok]
    print(f"\nload: {len(result.outcomes)} batches in {result.seconds:.1f} s")
    print(f"  events acknowledged      {result.accepted:>10,}")
    print(f"  throughput               {result.accepted / result.seconds:>10,.0f} events/s")
    print(f"  requests/s (2xx)         {len(ok) / result.seconds:>10,.1f}")
    print(f"  attempts by answer       {dict(sorted(result.answers().items()))}")
    print(f"  batches never acked      {len(result.unfinished):>10}")
    print(f"  ambiguous attempts       {len(result.ambiguous_attempts):>10}")
    print(f"  tests reported created   {sum(o.tests_created for o in ok):>10}")
    odd = result.unfinished + [o for o, _ in result.ambiguous_attempts]
    for outcome in odd[:5]:
        steps = " → ".join(str(a.status or a.error) for a in outcome.attempts)
        print(f"    client {outcome.client} batch {outcome.index}: {steps}  {outcome.answer[:120]}")
    for name, values in (
        ("request (2xx attempt)", attempt_latency),
        ("batch incl. retries", batch_latency),
    ):
        print(f"  {name:<24} p50 {_ms(percentile(values, 50))}  p99 {_ms(percentile(values, 99))}")
    # An event waits exactly as long as the request carrying it; what differs is the cost share.
    print(
        f"  per event (request/{batch})   p50 {_ms(percentile(attempt_latency, 50) / batch)}"
        f"  p99 {_ms(percentile(attempt_latency, 99) / batch)}  (amortised; an event's own"
        " latency is its request's)"
    )


def _explain_surplus(result: LoadResult, surplus: int, batch: int) -> None:
    # Events whose fate the client could not know: ambiguous attempts, batches never acknowledged.
    unknown = sum(o.batch.size for o, _ in result.ambiguous_attempts)
    unknown += sum(o.batch.size for o in result.unfinished)
    print(f"    {surplus:,} stored events ({surplus / batch:.1f} batches) were never acknowledged;")
    print(f"    {unknown:,} events had an unknown fate (ambiguous attempt or never acknowledged)")
    if surplus > unknown:
        print(
            f"    so at least {surplus - unknown:,} were stored by an attempt answered 503"
            " ('nothing was stored') and stored again by the retry"
        )


def print_invariants(result: LoadResult, store: StoreReport, threshold: int, batch: int) -> None:
    counted = result.accepted == store.occurrences
    print("\nstore:")
    print(f"  signatures               {store.signatures:>10,}")
    print(f"  Σ occurrence_count       {store.occurrences:>10,}")
    print(f"  Σ occurrence buckets     {store.bucket_occurrences:>10,}")
    print(f"  signatures seen ≥ {threshold}      {store.qualifying:>10,}")
    print(f"  regression tests         {store.tests:>10,}")
    print(f"  deadlocks (pg_stat)      {store.deadlocks:>10,}")
    difference = store.occurrences - result.accepted
    print(
        f"\n[{'PASS' if counted else 'FAIL'}] acknowledged events == Σ occurrence_count"
        f"  ({result.accepted:,} vs {store.occurrences:,}; store − acknowledged = {difference:+,})"
    )
    if difference > 0:
        _explain_surplus(result, difference, batch)
    tested = not store.problems
    print(
        f"[{'PASS' if tested else 'FAIL'}] every signature seen ≥ {threshold} times has exactly one"
        f" test and its test_id  ({store.qualifying - len(store.problems)}/{store.qualifying})"
    )
    for problem in store.problems[:10]:
        print(f"    {problem}")


def print_server_log(log_path: Path) -> None:
    content = log_path.read_text(errors="replace")
    kinds = Counter(re.findall(r"^(\w+(?:\.\w+)*(?:Error|Exception))\b", content, re.MULTILINE))
    print(f"\nserver log: {content.count(TRACEBACK)} traceback(s) {dict(kinds) if kinds else ''}")
    died = re.findall(r"Child process \[\d+\] died", content)
    print(f"  uvicorn workers that died and were replaced: {len(died)}")
    first = _first_traceback(content)
    if first:
        print("  first traceback (project frames and the error):")
        print("\n".join("    " + line[:300] for line in first.splitlines()))


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--events", type=int, default=2000, help="events per client")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--bugs", type=int, default=200, help="distinct bugs (signatures)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threshold = Settings().generation_threshold
    token = new_token()
    print(
        f"ingest over HTTP: {args.clients} clients × {args.events:,} events in batches of"
        f" {args.batch}, {args.bugs} bugs, uvicorn --workers {args.workers}, {os.cpu_count()} CPUs"
    )
    started = time.perf_counter()
    per_client = build_batches(args.clients, args.events, args.batch, args.bugs)
    largest = max(len(b.body) for batches in per_client for b in batches)
    max_request_bytes = max(DEFAULT_MAX_REQUEST_BYTES, 2 * largest)
    print(f"events generated and encoded in {time.perf_counter() - started:.1f} s")
    policy = RetryPolicy(max_attempts=40, batch_deadline_s=120.0, timeout_s=300.0)
    with tempfile.TemporaryDirectory(prefix="immunity-bench-http-") as tmp, bench_database() as url:
        log_path = Path(tmp) / "uvicorn.log"
        with api_server(url, token, args.workers, max_request_bytes, log_path) as base_url:
            print(f"API on {base_url}, store {url.rsplit('/', 1)[-1]}")
            result = asyncio.run(run_load(base_url, token, per_client, policy))
        print_load(result, args.batch)
        store = check_store(url, threshold)
        print_invariants(result, store, threshold, args.batch)
        print_server_log(log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
