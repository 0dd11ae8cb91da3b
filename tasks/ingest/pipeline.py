"""Ingesting batches of events: the one pipeline every entry point shares, and its Prefect tasks.

A batch is validated, classified, scrubbed and fingerprinted, then stored in one transaction
that also keeps the reports of immunity's own replays and, when asked, builds the regression
tests the batch made due and refreshes the captures of tests due for a reproduction check. The
reproduction check itself replays requests, so it runs after the commit: in the flow as its own
task, in the API after the answer (`verify_tests` either way).

The API calls `ingest_events` directly (a flow run per request costs too much); the flows call
the tasks below, which wrap the same function.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlmodel import Session

from immunity.models.db import get_engine
from immunity.models.reports import GeneratedTest
from immunity.models.schemas import FailureEventIn, SuccessEventIn, utcnow
from immunity.models.settings import Settings, get_settings
from immunity.models.tables import DEFAULT_PROJECT
from immunity.tasks.generate.generation import generate_in, publish_in_run
from immunity.tasks.generate.reproduce import (
    record_replay_reports,
    split_replays,
    untrusted_signatures,
)
from immunity.tasks.ingest.gcpause import cyclic_gc_paused
from immunity.tasks.ingest.prepare import (
    PreparedFailure,
    prepare_failure,
    prepare_success,
    storable_failure,
)
from immunity.tasks.ingest.release import release_in_background
from immunity.tasks.ingest.storable import storable
from immunity.tasks.ingest.store import StoredBatch, store_failures, store_successes
from immunity.tasks.ingest.validate import Rejection, validate_events
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = [
    "BatchResult",
    "ingest_events",
    "ingest_failure_batch",
    "ingest_success_batch",
    "process_failures",
    "process_successes",
]

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What one batch did: accepted and rejected events, signatures touched, tests built."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    signatures: int = 0
    new_signatures: int = 0
    candidates: list[int] = field(default_factory=list)
    generated: list[GeneratedTest] = field(default_factory=list)
    verify: list[int] = field(default_factory=list)  # tests due for a reproduction check
    replays: int = 0  # failures immunity's own replays caused: evidence, not occurrences
    # Signatures whose generated test has not reproduced its failure: a new occurrence may carry
    # a better capture, so they are checked again (tasks/generate/reproduce.py).
    rechecks: list[int] = field(default_factory=list)


# Events validated and prepared together. A chunk's objects are still in the CPU's cache when
# they are prepared; a whole batch's are not (measured: a fifth less time per event).
PREPARE_CHUNK = 100


@dataclass
class _PreparedBatch:
    """A batch after validation and preparation, in event order."""

    # The valid events (not replays), kept only to be freed with the rest, off this thread.
    events: list[tuple[int, FailureEventIn]] = field(default_factory=list)
    prepared: list[PreparedFailure] = field(default_factory=list)
    successes: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[Rejection] = field(default_factory=list)
    unprocessable: list[Rejection] = field(default_factory=list)
    replays: list[tuple[str, FailureEventIn]] = field(default_factory=list)

    def add(self, accepted: Sequence[tuple[int, FailureEventIn]], settings: Settings) -> None:
        for index, event in accepted:
            try:
                self.prepared.append(prepare_failure(event, settings))
            except Exception as error:  # one unprocessable event must not sink the batch
                log.exception("event %s could not be processed", index)
                reason = f"(event): could not be processed: {error}"
                self.unprocessable.append(Rejection(index, [reason]))
        self.events.extend(accepted)


def _prepare_batch(
    failures: Sequence[Any],
    successes: Sequence[Any],
    settings: Settings,
    indexes: Sequence[int] | None,
) -> _PreparedBatch:
    batch = _PreparedBatch()
    positions = indexes or range(len(failures))
    for start in range(0, len(failures), PREPARE_CHUNK):
        end = start + PREPARE_CHUNK
        accepted, refused = validate_events(
            failures[start:end], FailureEventIn, indexes=positions[start:end]
        )
        accepted, replays = split_replays(accepted, settings)
        batch.add(accepted, settings)
        batch.invalid.extend(refused)
        batch.replays.extend(replays)
    if successes:
        valid, refused = validate_events(successes, SuccessEventIn, indexes=indexes)
        batch.successes = [prepare_success(event, settings) for _, event in valid]
        batch.invalid.extend(refused)
    return batch


def _follow_up(
    session: Session,
    stored: StoredBatch,
    replays: Sequence[tuple[str, FailureEventIn]],
    settings: Settings,
    generate: bool,
    result: BatchResult,
) -> None:
    """Keep the replays' reports, find the re-checks and (with `generate`) build the tests the
    batch made due, all in the batch's transaction."""
    if replays:
        record_replay_reports(session=session, settings=settings, replays=replays)
    if stored.tested:
        result.rechecks = untrusted_signatures(session=session, signature_ids=stored.tested)
    if not generate or not (stored.candidates or result.rechecks):
        return
    try:
        # After the batch's upsert, so never the transaction's first statement (pysqlite would
        # commit at the savepoint's release) and under the row locks of the batch's signatures.
        with session.begin_nested():
            generation = generate_in(session, stored.candidates + result.rechecks, settings)
    except (OperationalError, InterfaceError):
        # The store went away: the whole batch rolls back and the caller hears so (503, retry).
        raise
    except Exception:
        # A test that cannot be built now does not cost the batch its occurrences: the attempt
        # is rolled back alone, the candidates stay candidates for the next batch or the sweep.
        log.warning("test generation failed; the batch is stored without it", exc_info=True)
        return
    result.generated, result.verify = generation.generated, generation.due


def ingest_events(
    failures: Sequence[Any] = (),
    successes: Sequence[Any] = (),
    *,
    engine: Engine,
    settings: Settings,
    indexes: Sequence[int] | None = None,
    generate: bool = False,
    all_or_nothing: bool = False,
    project: str = DEFAULT_PROJECT,
) -> BatchResult:
    """Return what storing a batch of failure and success events did, in one transaction.

    The failures group into `project`'s signatures (the same error in two projects is two).

    Bad events are rejected by index (`indexes` when the batch holds one kind, such as a file's
    line numbers; their position otherwise) and the good ones kept; with `all_or_nothing`, any
    rejection stores nothing. With `generate`, the tests the batch made due are built in the
    same transaction (their artifact is published when this runs inside a Prefect run), and
    `verify` lists the tests due for a reproduction check.
    """
    with cyclic_gc_paused():  # a batch's objects are short-lived and acyclic: see gcpause
        batch = _prepare_batch(failures, successes, settings, indexes)
        result = BatchResult(
            accepted=len(batch.prepared) + len(batch.successes),
            rejected=batch.invalid + batch.unprocessable,
            replays=len(batch.replays),
        )
        if all_or_nothing and result.rejected:
            result.accepted = 0
            return result
        prepared, rows, replays = batch.prepared, batch.successes, batch.replays
        released = cleaned = False
        while True:
            try:
                with Session(engine) as session, session.begin():
                    conn = session.connection()
                    stored = store_failures(conn, prepared, settings, utcnow(), project)
                    store_successes(conn, rows)
                    # Freed on another thread while the database works (see release): `batch`
                    # and `prepared` held the last references to its events and rows.
                    release_in_background(batch)
                    del batch
                    prepared, released = [], True
                    _follow_up(session, stored, replays, settings, generate, result)
                break
            except (DataError, UnicodeEncodeError):
                if released or cleaned:  # not the batch's text: the caller hears of it
                    raise
                # NUL, lone surrogates or NaN (PostgreSQL refuses them): the transaction rolled
                # back whole, so storing the cleaned batch once more counts every event once.
                prepared = [storable_failure(item) for item in prepared]
                rows = [storable(row) for row in rows]
                cleaned = True
    result.signatures, result.new_signatures = len(stored.signature_ids), stored.new_signatures
    result.candidates = stored.candidates
    publish_in_run(result.generated)
    return result


def process_failures(
    raw_events: Sequence[Any],
    *,
    engine: Engine,
    settings: Settings,
    indexes: Sequence[int] | None = None,
    generate: bool = False,
    project: str = DEFAULT_PROJECT,
) -> BatchResult:
    """Validate, classify, scrub, fingerprint and store a batch of failure events in `project`
    (see `ingest_events`), building the tests it made due when `generate` is set."""
    return ingest_events(
        raw_events,
        engine=engine,
        settings=settings,
        indexes=indexes,
        generate=generate,
        project=project,
    )


def process_successes(
    raw_events: Sequence[Any],
    *,
    engine: Engine,
    settings: Settings,
    indexes: Sequence[int] | None = None,
) -> BatchResult:
    """Validate and store a batch of success events in one transaction."""
    return ingest_events(successes=raw_events, engine=engine, settings=settings, indexes=indexes)


@task(name="ingest-failure-batch", **DB_TASK_OPTIONS)
def ingest_failure_batch(
    raw_events: list[Any], indexes: list[int] | None = None, generate: bool = True
) -> BatchResult:
    """Return the outcome of storing one batch of failure events (and building its tests)."""
    return process_failures(
        raw_events,
        engine=get_engine(),
        settings=get_settings(),
        indexes=indexes,
        generate=generate,
    )


@task(name="ingest-success-batch", **DB_TASK_OPTIONS)
def ingest_success_batch(raw_events: list[Any], indexes: list[int] | None = None) -> BatchResult:
    """Return the outcome of storing one batch of success events."""
    return process_successes(
        raw_events, engine=get_engine(), settings=get_settings(), indexes=indexes
    )
