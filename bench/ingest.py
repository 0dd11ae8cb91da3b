"""Ingest throughput and memory, each against a baseline measured in the same run.

1. Per backend: realistic events through `process_failures` (batches on an empty store) against a
   bare batched upsert of the same, already-prepared batches into a second empty store (each
   batch's signature counts, then its event rows); the two alternate for a few rounds and the
   best of each counts. Then the same events as JSONL through the Prefect flow `ingest_file`
   (for information).
2. Memory: a large JSONL file streamed through `ingest_file` in a separate process; its peak RSS.

    uv run python bench/ingest.py [--events 50000] [--memory-events 1000000] [--rounds 3]
                                  [--backends sqlite,postgres] [--skip-memory] [--profile]

It reports; it does not gate: the exit code is 0 unless something crashed.
"""

# ruff: noqa: E402  (Prefect reads its settings when imported: the environment comes first)

from __future__ import annotations

import _prefect_home  # noqa: F401  (first: Prefect reads its settings when imported)

# isort: split
import argparse
import cProfile
import json
import os
import pstats
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from _figures import Figure, figures_table, say
from sqlalchemy import Engine, func, select

from immunity.examples.synthetic import synthetic_events
from immunity.models.db import create_schema, get_engine
from immunity.models.schemas import FailureEventIn
from immunity.models.settings import Settings, get_settings
from immunity.models.tables import FailureEvent, Signature
from immunity.tasks.ingest.pipeline import process_failures
from immunity.tasks.ingest.prepare import PreparedFailure, prepare_failure
from immunity.tasks.ingest.store import dialect_insert

BATCH_EVENTS = 2_000  # events per process_failures call / per raw transaction
RAW_STATEMENT_ROWS = 500  # rows per INSERT … ON CONFLICT DO NOTHING in the baseline
BUGS = 200
MIN_RATIO = 0.50
MIN_RATE = 5_000.0
MAX_PEAK_MB = 300.0
POLL_SECONDS = 15.0
RESULT_MARK = "BENCH-RESULT "
event_table = FailureEvent.__table__  # type: ignore[attr-defined]
signature_table = Signature.__table__  # type: ignore[attr-defined]
T = TypeVar("T")


@dataclass(frozen=True)
class Timing:
    """Wall seconds, and CPU seconds of this process (a PostgreSQL server's work is not in it)."""

    wall: float
    cpu: float

    def describe(self, count: int, unit: str) -> str:
        return (
            f"{count:,} {unit} in {self.wall:.2f} s = {rate(count, self.wall):,.0f} {unit}/s "
            f"(this process's CPU {self.cpu:.2f} s)"
        )


def timed(work: Callable[[], T]) -> tuple[T, Timing]:
    """Return what `work` returns and how long it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, Timing(time.perf_counter() - wall, time.process_time() - cpu)


def rate(events: int, seconds: float) -> float:
    return events / seconds if seconds > 0 else float("inf")


# --- stores -----------------------------------------------------------------------------------


@contextmanager
def temporary_store(backend: str, workdir: Path, admin_url: str) -> Iterator[str]:
    """Yield the URL of a new, empty store with its schema; drop it afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir / f'store-{uuid.uuid4().hex[:8]}.db'}"
        try:
            create_schema(get_engine(url))
            yield url
        finally:
            get_engine(url).dispose()
        return
    name = f"immunity_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    try:
        create_schema(get_engine(url))
        yield url
    finally:
        get_engine(url).dispose()
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_reachable(admin_url: str) -> bool:
    try:
        with psycopg.connect(admin_url, connect_timeout=5):
            return True
    except psycopg.OperationalError as error:
        say(f"PostgreSQL unreachable at {admin_url}: {error}")
        return False


def stored_counts(url: str) -> tuple[int, int, int]:
    """Return (signatures, summed occurrence counts, event rows) in a store."""
    with get_engine(url).connect() as conn:
        signatures, occurrences = conn.execute(
            select(func.count(), func.coalesce(func.sum(signature_table.c.occurrence_count), 0))
        ).one()
        events = conn.execute(select(func.count()).select_from(event_table)).scalar_one()
    return int(signatures), int(occurrences), int(events)


# --- the pipeline and its baseline ------------------------------------------------------------


def ingest_all(url: str, events: Sequence[dict[str, Any]], settings: Settings) -> None:
    """Run `events` through `process_failures`, batch by batch."""
    engine = get_engine(url)
    for start in range(0, len(events), BATCH_EVENTS):
        process_failures(events[start : start + BATCH_EVENTS], engine=engine, settings=settings)


def prepare_all(events: Iterable[dict[str, Any]], settings: Settings) -> list[PreparedFailure]:
    return [prepare_failure(FailureEventIn.model_validate(raw), settings) for raw in events]


@dataclass(frozen=True)
class RawBatch:
    """One batch as the baseline writes it: its signatures with their counts, its event rows."""

    signatures: list[dict[str, Any]]
    rows: list[tuple[str, dict[str, Any]]]  # (fingerprint, row)


def raw_batch(events: Sequence[dict[str, Any]], settings: Settings) -> RawBatch:
    """Prepare a batch for the baseline (untimed): what the pipeline would write, ready."""
    prepared = prepare_all(events, settings)
    counts = Counter(item.fingerprint for item in prepared)
    first = {item.fingerprint: item for item in reversed(prepared)}
    signatures = [
        {
            "fingerprint": item.fingerprint,
            "error_type": item.error_type,
            "message": item.normalized_message,
            "culprit": item.culprit,
            "category": item.category,
            "severity": item.severity,
            "first_seen": item.received_at,
            "last_seen": item.received_at,
            "occurrence_count": counts[item.fingerprint],
        }
        for item in first.values()
    ]
    return RawBatch(signatures, [(item.fingerprint, item.row) for item in prepared])


def raw_statements(engine: Engine) -> tuple[Any, Any]:
    """Return the baseline's two statements: add to signatures' counts, insert event rows."""
    insert = dialect_insert(engine, signature_table)
    upsert = insert.on_conflict_do_update(
        index_elements=[signature_table.c.project, signature_table.c.fingerprint],
        set_={
            "occurrence_count": signature_table.c.occurrence_count
            + insert.excluded.occurrence_count
        },
    ).returning(signature_table.c.fingerprint, signature_table.c.id)
    return upsert, dialect_insert(engine, event_table).on_conflict_do_nothing()


def raw_upsert(engine: Engine, statements: tuple[Any, Any], batch: RawBatch) -> None:
    """Write one batch bare, in one transaction: INSERT … ON CONFLICT DO UPDATE its signatures'
    counts (RETURNING their ids), then INSERT … ON CONFLICT DO NOTHING its rows."""
    upsert, insert = statements
    with engine.begin() as conn:
        ids = {fingerprint: id_ for fingerprint, id_ in conn.execute(upsert, batch.signatures)}
        rows = []
        for fingerprint, row in batch.rows:
            row["signature_id"] = ids[fingerprint]
            rows.append(row)
        for start in range(0, len(rows), RAW_STATEMENT_ROWS):
            conn.execute(insert, rows[start : start + RAW_STATEMENT_ROWS])


# --- the Prefect flow -------------------------------------------------------------------------


def write_jsonl(path: Path, events: Iterable[dict[str, Any]], progress_every: int = 0) -> int:
    """Stream `events` to `path`, one JSON object a line; return how many were written."""
    written = 0
    with path.open("w", encoding="utf-8", buffering=1 << 20) as handle:
        for written, event in enumerate(events, start=1):
            handle.write(json.dumps(event, separators=(",", ":")))
            handle.write("\n")
            if progress_every and written % progress_every == 0:
                say(f"  written {written:,} events ({path.stat().st_size / 2**20:,.0f} MB)")
    return written


def use_store(url: str) -> None:
    """Point the configured store (what flows and tasks read) at `url`."""
    os.environ["IMMUNITY_DATABASE_URL"] = url
    get_settings.cache_clear()


def warm_prefect() -> None:
    """Start the ephemeral server and the client with a trivial flow, outside any timing."""
    from prefect import flow

    @flow(name="bench-warm-up")
    def warm_up() -> int:
        return 1

    warm_up()


def flow_ingest(url: str, path: Path) -> int:
    """Stream `path` through the `ingest_file` flow into `url`; return the events accepted."""
    from immunity.flows.ingest import ingest_file

    use_store(url)
    return ingest_file(str(path), generate=False, batch_size=BATCH_EVENTS).accepted


# --- section 1: throughput --------------------------------------------------------------------


def paired_round(
    backend: str, events: list[dict[str, Any]], workdir: Path, admin_url: str, number: int
) -> tuple[float, float]:
    """Time the pipeline and the baseline batch by batch, alternating, each into its own empty
    store; return the seconds of each. Alternating batch by batch, a slow spell of a shared
    machine hits both alike. A batch is prepared for the baseline only after the pipeline has
    had it, so the pipeline never meets an event the baseline's preparation has seen first."""
    ingest_s = raw_s = 0.0
    with (
        temporary_store(backend, workdir, admin_url) as ingest_url,
        temporary_store(backend, workdir, admin_url) as raw_url,
    ):
        settings = Settings(database_url=ingest_url)
        ingest_engine, raw_engine = get_engine(ingest_url), get_engine(raw_url)
        statements = raw_statements(raw_engine)
        for start in range(0, len(events), BATCH_EVENTS):
            batch = events[start : start + BATCH_EVENTS]
            ingest_s += timed(
                partial(process_failures, batch, engine=ingest_engine, settings=settings)
            )[1].wall
            prepared = raw_batch(batch, settings)
            raw_s += timed(partial(raw_upsert, raw_engine, statements, prepared))[1].wall
        signatures, occurrences, kept = stored_counts(ingest_url)
        _, raw_occurrences, inserted = stored_counts(raw_url)
    count = len(events)
    say(
        f"  round {number}: ingest {count:,} events in {ingest_s:.2f} s = "
        f"{rate(count, ingest_s):,.0f} ev/s ({signatures} signatures, {occurrences:,} "
        f"occurrences, {kept:,} samples kept); raw upsert {rate(count, raw_s):,.0f} rows/s "
        f"({raw_occurrences:,} occurrences, {inserted:,} rows); ratio {raw_s / ingest_s:.2f}"
    )
    return ingest_s, raw_s


def bench_backend(
    backend: str, events: list[dict[str, Any]], workdir: Path, admin_url: str, rounds: int
) -> list[Figure]:
    """Measure one backend: pipeline against bare upsert of the same rows, then the flow.

    The ratio is the median of the rounds' ratios; the rates are those of that round.
    """
    results = [
        paired_round(backend, events, workdir, admin_url, number) for number in range(1, rounds + 1)
    ]
    ingest_s, raw_s = sorted(results, key=lambda pair: pair[1] / pair[0])[len(results) // 2]

    path = workdir / f"events-{backend}.jsonl"
    write_jsonl(path, events)
    with temporary_store(backend, workdir, admin_url) as url:
        accepted, timing = timed(lambda: flow_ingest(url, path))
    path.unlink()
    flow_rate = rate(accepted, timing.wall)
    say(f"  flow ingest_file: {timing.describe(accepted, 'events')}")

    count = len(events)
    ingest_rate, raw_rate = rate(count, ingest_s), rate(count, raw_s)
    ratio = raw_s / ingest_s
    spread = ", ".join(f"{raw / ingest:.2f}" for ingest, raw in results)
    return [
        Figure(
            f"{backend}: ingest (process_failures)",
            f"{ingest_rate:,.0f} ev/s",
            f">= {MIN_RATE:,.0f} ev/s",
            ingest_rate >= MIN_RATE,
        ),
        Figure(f"{backend}: raw batched upsert", f"{raw_rate:,.0f} rows/s"),
        Figure(
            f"{backend}: ratio ingest/raw",
            f"{ratio:.2f}",
            f">= {MIN_RATIO:.2f}",
            ratio >= MIN_RATIO,
        ),
        Figure(f"{backend}: ratio of each round (info)", spread),
        Figure(f"{backend}: flow ingest_file (info)", f"{flow_rate:,.0f} ev/s"),
    ]


# --- section 2: memory ------------------------------------------------------------------------


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """Return a memory field (VmRSS, VmHWM) of /proc/<pid>/status in MB, 0 if unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def child_ingest(path: str, url: str) -> None:
    """In the memory subprocess: stream `path` through `ingest_file`, print figures as JSON."""
    create_schema(get_engine(url))  # idempotent; the tables as this process's code knows them
    warm_prefect()
    baseline = proc_status_mb("VmRSS")
    accepted, timing = timed(lambda: flow_ingest(url, Path(path)))
    result = {
        "seconds": timing.wall,
        "accepted": accepted,
        "baseline_mb": baseline,
        "peak_mb": proc_status_mb("VmHWM"),
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def sqlite_occurrences(url: str) -> int | None:
    """Return the events counted so far in a SQLite store (None while it cannot be read)."""
    query = "SELECT COALESCE(SUM(occurrence_count), 0) FROM signature"
    try:
        with closing(sqlite3.connect(f"file:{url.split('///', 1)[1]}?mode=ro", uri=True)) as conn:
            return int(conn.execute(query).fetchone()[0])
    except sqlite3.Error:
        return None


def watch(process: subprocess.Popen[str], url: str, total: int) -> None:
    """Print the child's progress (events counted in the store) and RSS until it exits."""
    started = time.perf_counter()
    while process.poll() is None:
        time.sleep(POLL_SECONDS)
        if process.poll() is not None:
            break
        done = sqlite_occurrences(url)
        stored = "?" if done is None else f"{done:,} ({100 * done / total:.0f}%)"
        say(
            f"  {time.perf_counter() - started:5.0f} s: {stored} of {total:,} events stored, "
            f"child RSS {proc_status_mb('VmRSS', process.pid):,.0f} MB, "
            f"peak {proc_status_mb('VmHWM', process.pid):,.0f} MB"
        )


def run_child(path: Path, url: str, total: int, workdir: Path) -> dict[str, Any]:
    """Run `child_ingest` in a subprocess; return its figures plus RUSAGE_CHILDREN's max RSS."""
    log_path = workdir / "memory-child.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-ingest",
        str(path),
        "--child-url",
        url,
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        watch(process, url, total)
        output, _ = process.communicate()
    if process.returncode != 0 or RESULT_MARK not in output:
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(f"memory subprocess failed ({process.returncode}):\n{output}\n{tail}")
    result = json.loads(output.rsplit(RESULT_MARK, 1)[1])
    result["rusage_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def bench_memory(count: int, workdir: Path) -> list[Figure]:
    """Stream `count` events from a JSONL file through `ingest_file` in a subprocess."""
    path = workdir / "memory-events.jsonl"
    say(f"writing {count:,} events to {path} …")
    started = time.perf_counter()
    write_jsonl(path, synthetic_events(count, bugs=BUGS, variant=1), progress_every=count // 10)
    size_mb = path.stat().st_size / 2**20
    say(f"  {size_mb:,.0f} MB in {time.perf_counter() - started:.0f} s")
    with temporary_store("sqlite", workdir, "") as url:
        say("streaming it through ingest_file in a subprocess (SQLite store) …")
        result = run_child(path, url, count, workdir)
    path.unlink()
    flow_rate = rate(result["accepted"], result["seconds"])
    say(
        f"  {result['accepted']:,} events in {result['seconds']:.0f} s = {flow_rate:,.0f} ev/s; "
        f"RSS after warm-up {result['baseline_mb']:.0f} MB, peak {result['peak_mb']:.0f} MB"
    )
    return [
        Figure(
            f"memory: {count:,} events ({size_mb:,.0f} MB JSONL), peak RSS",
            f"{result['peak_mb']:,.0f} MB",
            f"< {MAX_PEAK_MB:.0f} MB",
            result["peak_mb"] < MAX_PEAK_MB,
        ),
        Figure("memory: RSS after Prefect warm-up (info)", f"{result['baseline_mb']:,.0f} MB"),
        Figure(
            "memory: max RSS child + its server (info)", f"{result['rusage_children_mb']:,.0f} MB"
        ),
        Figure("memory: flow ingest_file rate (info)", f"{flow_rate:,.0f} ev/s"),
    ]


# --- profile and report -----------------------------------------------------------------------


def profile_ingest(events: list[dict[str, Any]], workdir: Path, top: int = 15) -> None:
    """Print the top functions by cumulative time of `process_failures` on SQLite."""
    with temporary_store("sqlite", workdir, "") as url:
        settings = Settings(database_url=url)
        profiler = cProfile.Profile()
        profiler.runcall(ingest_all, url, events, settings)
    say(f"\ncProfile: process_failures, {len(events):,} events, SQLite, top {top} cumulative")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(top)


def print_table(figures: Sequence[Figure]) -> None:
    say("\n" + figures_table(figures, ("figure", "value", "target")))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds of pipeline and baseline per backend; the best of each counts",
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of process_failures on 10,000 events (SQLite)",
    )
    parser.add_argument("--postgres-admin-url", default="postgresql://root@127.0.0.1:5432/postgres")
    parser.add_argument("--child-ingest", help=argparse.SUPPRESS)
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    figures: list[Figure] = []
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if backends:
        say(f"generating {args.events:,} events over {BUGS} bugs (untimed) …")
        events = list(synthetic_events(args.events, bugs=BUGS))
        say("warming Prefect (ephemeral server, untimed) …")
        warm_prefect()
        for backend in backends:
            if backend == "postgres" and not postgres_reachable(args.postgres_admin_url):
                figures.append(Figure("postgres", "skipped: unreachable"))
                continue
            say(f"\n[{backend}]")
            figures.extend(
                bench_backend(backend, events, workdir, args.postgres_admin_url, args.rounds)
            )
        if args.profile:
            profile_ingest(events[:10_000], workdir)
        del events
    if not args.skip_memory:
        say("\n[memory]")
        figures.extend(bench_memory(args.memory_events, workdir))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_ingest:
        child_ingest(args.child_ingest, args.child_url)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="immunity-bench-"))
    load_before = os.getloadavg()[0]
    try:
        figures = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Other work on the machine skews every absolute figure: say how busy it was.
    load = f"{load_before:.1f} → {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    figures.append(Figure("machine load, 1-min average (info)", load))
    if figures:
        print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
