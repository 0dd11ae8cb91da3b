"""Ingesting batches of events: the pipeline every entry point shares, and its Prefect tasks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from sqlalchemy import Engine
from sqlalchemy.exc import DataError

from immunity.models.db import get_engine
from immunity.models.schemas import FailureEventIn, SuccessEventIn, utcnow
from immunity.models.settings import Settings, get_settings
from immunity.tasks.generate.generation import GenerationOutcome, create_regression_tests
from immunity.tasks.generate.reproduce import (
    find_due,
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
    "ingest_and_generate",
    "ingest_failure_batch",
    "ingest_success_batch",
    "process_failures",
    "process_successes",
]

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """What one batch did: accepted and rejected events, signatures touched, test candidates."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    signatures: int = 0
    new_signatures: int = 0
    candidates: list[int] = field(default_factory=list)
    verify: list[int] = field(default_factory=list)  # tests due for a reproduction check
    replays: int = 0  # failures immunity's own replays caused: evidence, not occurrences
    # Signatures whose generated test has not reproduced its failure: a new occurrence may carry
    # a better capture, so they are checked again (tasks/reproduce.py).
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
    raw_events: Sequence[Any], settings: Settings, indexes: Sequence[int] | None
) -> _PreparedBatch:
    positions = indexes or range(len(raw_events))
    batch = _PreparedBatch()
    for start in range(0, len(raw_events), PREPARE_CHUNK):
        end = start + PREPARE_CHUNK
        chunk = raw_events[start:end]
        accepted, invalid = validate_events(chunk, FailureEventIn, indexes=positions[start:end])
        accepted, replays = split_replays(accepted)
        batch.add(accepted, settings)
        batch.invalid.extend(invalid)
        batch.replays.extend(replays)
    return batch


def _after_commit(
    engine: Engine,
    settings: Settings,
    tested: Sequence[int],
    replays: Sequence[tuple[str, FailureEventIn]],
) -> list[int]:
    """Return the signatures to re-check, and keep replays' reports: never failing the batch.

    The batch is committed: an error here must not reach the caller, or its retry would count
    every event twice. What is lost is recovered later (the generation sweep re-checks).
    """
    try:
        if replays:
            record_replay_reports(engine, settings, replays)
        return untrusted_signatures(engine, tested) if tested else []
    except Exception:
        log.warning("reproduction bookkeeping skipped after a store error", exc_info=True)
        return []


def _store_batch(
    raw_events: Sequence[Any], engine: Engine, settings: Settings, indexes: Sequence[int] | None
) -> tuple[StoredBatch, int, list[Rejection], list[tuple[str, FailureEventIn]]]:
    """Validate, prepare and store one batch in one transaction; return what the caller needs.

    Once written, the batch's events and rows are freed on another thread while the database
    commits (see release), not by this one after it.
    """
    batch = _prepare_batch(raw_events, settings, indexes)
    prepared, count, released = batch.prepared, len(batch.prepared), False
    rejected, replays = batch.invalid + batch.unprocessable, batch.replays
    try:
        with engine.begin() as conn:
            stored = store_failures(conn, prepared, settings, utcnow())
            release_in_background(batch)
            del batch  # with `prepared`, the last references to the batch's objects
            prepared, released = [], True
    except (DataError, UnicodeEncodeError):
        if released:  # the commit itself refused it: nothing is stored, the caller must retry
            raise
        # NUL, lone surrogates or NaN (PostgreSQL refuses them): the transaction rolled back
        # whole, so storing the cleaned batch once more counts every event exactly once.
        prepared = [storable_failure(item) for item in prepared]
        with engine.begin() as conn:
            stored = store_failures(conn, prepared, settings, utcnow())
    return stored, count, rejected, replays


def process_failures(
    raw_events: Sequence[Any],
    *,
    engine: Engine,
    settings: Settings,
    indexes: Sequence[int] | None = None,
) -> BatchResult:
    """Validate, classify, scrub, fingerprint and store a batch in one transaction."""
    with cyclic_gc_paused():  # a batch's objects are short-lived and acyclic: see gcpause
        stored, accepted, rejected, replays = _store_batch(raw_events, engine, settings, indexes)
    rechecks = _after_commit(engine, settings, stored.tested, replays)
    return BatchResult(
        replays=len(replays),
        rechecks=rechecks,
        accepted=accepted,
        rejected=rejected,
        signatures=len(stored.signature_ids),
        new_signatures=stored.new_signatures,
        candidates=stored.candidates,
    )


def ingest_and_generate(
    raw_events: Sequence[Any], *, engine: Engine, settings: Settings
) -> tuple[BatchResult, list[GenerationOutcome]]:
    """Store a batch, then at once build the tests of signatures it pushed over the threshold.

    The result's `verify` lists the tests due for a reproduction check (new ones, and untrusted
    ones this batch brought a new occurrence of); the caller runs it without holding a client.
    """
    result = process_failures(raw_events, engine=engine, settings=settings)
    if not result.candidates and not result.rechecks:
        return result, []
    try:
        outcomes = create_regression_tests(result.candidates, engine=engine, settings=settings)
        result.verify = find_due(engine, settings, result.candidates + result.rechecks)
    except Exception:
        # The batch is committed: its caller must hear so, or a retry would count it twice.
        # Candidates stay candidates; the next batch or the generation sweep builds the test.
        log.warning("test generation deferred after an error", exc_info=True)
        return result, []
    return result, outcomes


def process_successes(
    raw_events: Sequence[Any],
    *,
    engine: Engine,
    settings: Settings,
    indexes: Sequence[int] | None = None,
) -> BatchResult:
    """Validate and store a batch of success events in one transaction."""
    with cyclic_gc_paused():
        accepted, rejected = validate_events(raw_events, SuccessEventIn, indexes=indexes)
        rows = [prepare_success(event, settings) for _, event in accepted]
    try:
        with engine.begin() as conn:
            store_successes(conn, rows)
    except (DataError, UnicodeEncodeError):  # as for failures: clean, then store once more
        rows = [storable(row) for row in rows]
        with engine.begin() as conn:
            store_successes(conn, rows)
    return BatchResult(accepted=len(rows), rejected=rejected)


@task(name="ingest-failure-batch", **DB_TASK_OPTIONS)
def ingest_failure_batch(raw_events: list[Any], indexes: list[int] | None = None) -> BatchResult:
    """Return the outcome of storing one batch of failure events."""
    return process_failures(
        raw_events, engine=get_engine(), settings=get_settings(), indexes=indexes
    )


@task(name="ingest-success-batch", **DB_TASK_OPTIONS)
def ingest_success_batch(raw_events: list[Any], indexes: list[int] | None = None) -> BatchResult:
    """Return the outcome of storing one batch of success events."""
    return process_successes(
        raw_events, engine=get_engine(), settings=get_settings(), indexes=indexes
    )
