"""Failure ingestion: validate → classify → scrub → fingerprint → upsert → samples → tests → check.

Every flow here feeds batches to the same task (`ingest_failure_batch`, which wraps the pipeline
the API calls), sums what they did and runs the reproduction check of the tests they built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from immunity.models.reports import IngestReport, RejectedEvent
from immunity.models.settings import get_settings
from immunity.tasks.generate.reproduce import verify_reproductions
from immunity.tasks.ingest.jsonl import iter_jsonl_batches
from immunity.tasks.ingest.logbatches import iter_log_batches
from immunity.tasks.ingest.pipeline import BatchResult, ingest_failure_batch, ingest_success_batch

__all__ = ["ingest_failures", "ingest_file", "ingest_log", "ingest_successes"]

# Batches go to tasks `quote`d: otherwise Prefect walks every nested value of every event looking
# for futures, which costs several times the ingestion itself.
PROGRESS_EVERY = 10  # batches between progress lines of a file's ingestion


class _Totals:
    """The sum of a run's batches, and the tests they left due for a reproduction check."""

    def __init__(self) -> None:
        self.report = IngestReport()
        self.due: set[int] = set()

    def add(self, result: BatchResult) -> None:
        report = self.report
        report.accepted += result.accepted
        report.rejected.extend(
            RejectedEvent(index=r.index, errors=r.errors) for r in result.rejected
        )
        report.signatures += result.signatures
        report.new_signatures += result.new_signatures
        report.candidates = sorted(set(report.candidates) | set(result.candidates))
        report.rechecks = sorted(set(report.rechecks) | set(result.rechecks))
        # A signature left without a test is a candidate again in every later batch: its latest
        # outcome counts, and one that got its test keeps it.
        outcomes = {item.signature_id: item for item in report.generated}
        for item in result.generated:
            known = outcomes.get(item.signature_id)
            if known is None or not known.created:
                outcomes[item.signature_id] = item
        report.generated = list(outcomes.values())
        self.due.update(result.verify)

    def progress(self, number: int, bytes_read: int, total: int) -> None:
        if number % PROGRESS_EVERY == 0:
            get_run_logger().info(
                "%.0f%% read, %d events accepted", 100 * bytes_read / total, self.report.accepted
            )

    def finish(self) -> IngestReport:
        """Check the new tests' reproduction, log the outcome and return the report."""
        report, logger = self.report, get_run_logger()
        if self.due:
            for outcome in verify_reproductions(sorted(self.due)):
                logger.info("%s: %s — %s", outcome.name, outcome.reproduction.value, outcome.reason)
        logger.info(
            "accepted %d, rejected %d; %d signature(s) touched, %d new; %d test(s) created",
            report.accepted,
            len(report.rejected),
            report.signatures,
            report.new_signatures,
            report.tests_created,
        )
        for rejection in report.rejected[:20]:
            logger.warning("rejected event %d: %s", rejection.index, "; ".join(rejection.errors))
        return report


@flow(name="ingest-failures")
def ingest_failures(
    events: list[dict[str, Any]], generate: bool = True, batch_size: int | None = None
) -> IngestReport:
    """Store failure events in batches and build tests for signatures that cross the threshold.

    Prefect caps a run's parameters at 512 KB (a few hundred events): stream larger volumes
    with `ingest_file` or send them to the ingest API.

    Args:
        events: Failure events (error_type, message, frames, request, …); bad ones are
            rejected by index, the good ones are kept.
        generate: Build regression tests for signatures that crossed the threshold.
        batch_size: Events per task run (default: the configured ingest batch size).
    """
    size = batch_size or get_settings().ingest_batch_size
    totals = _Totals()
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        indexes = list(range(start, start + len(chunk)))
        totals.add(ingest_failure_batch(quote(chunk), indexes, generate))
    return totals.finish()


@flow(name="ingest-successes")
def ingest_successes(events: list[dict[str, Any]], batch_size: int | None = None) -> IngestReport:
    """Store success events (operation, duration, list counts): the failure rate's denominator."""
    size = batch_size or get_settings().ingest_batch_size
    totals = _Totals()
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        totals.add(ingest_success_batch(quote(chunk), list(range(start, start + len(chunk)))))
    return totals.finish()


def _existing(path: str) -> tuple[Path, int]:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    return source, source.stat().st_size or 1


@flow(name="ingest-file")
def ingest_file(
    path: str,
    kind: Literal["failures", "successes"] = "failures",
    generate: bool = True,
    batch_size: int | None = None,
) -> IngestReport:
    """Stream a JSONL file of events in batches; rejections name the line.

    Args:
        path: A file with one JSON event per line.
        kind: Whether the lines are failure or success events.
        generate: Build regression tests for signatures that crossed the threshold.
        batch_size: Lines per task run (default: the configured ingest batch size).
    """
    source, total = _existing(path)
    size = batch_size or get_settings().ingest_batch_size
    totals = _Totals()
    for number, batch in enumerate(iter_jsonl_batches(source, size), start=1):
        totals.report.rejected.extend(
            RejectedEvent(index=r.index, errors=r.errors) for r in batch.malformed
        )
        if batch.events and kind == "failures":
            totals.add(ingest_failure_batch(quote(batch.events), batch.lines, generate))
        elif batch.events:
            totals.add(ingest_success_batch(quote(batch.events), batch.lines))
        totals.progress(number, batch.bytes_read, total)
    return totals.finish()


@flow(name="ingest-log")
def ingest_log(
    path: str,
    environment: str = "production",
    generate: bool = True,
    batch_size: int | None = None,
) -> IngestReport:
    """Ingest each Python traceback of a log file as a failure event; rejections name the line.

    Args:
        path: A log file with Python tracebacks in it (any logging format; stray non-UTF-8
            bytes are read as U+FFFD).
        environment: The environment the log comes from.
        generate: Build regression tests for signatures that crossed the threshold.
        batch_size: Tracebacks per task run (default: the configured ingest batch size).
    """
    source, total = _existing(path)
    size = batch_size or get_settings().ingest_batch_size
    totals = _Totals()
    batches = iter_log_batches(source, size, environment=environment)
    for number, batch in enumerate(batches, start=1):
        totals.add(ingest_failure_batch(quote(batch.events), batch.lines, generate))
        totals.progress(number, batch.bytes_read, total)
    return totals.finish()
