"""Failure ingestion: validate → classify → scrub → fingerprint → upsert → samples → generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.utilities.annotations import quote

from immunity.flows.generate import generate_regression_tests
from immunity.models.reports import IngestReport, RejectedEvent
from immunity.models.settings import get_settings
from immunity.tasks.ingest.jsonl import iter_jsonl_batches
from immunity.tasks.ingest.pipeline import BatchResult, ingest_failure_batch, ingest_success_batch

__all__ = ["ingest_failures", "ingest_file", "ingest_successes"]

# Batches go to tasks `quote`d: otherwise Prefect walks every nested value of every event looking
# for futures, which costs several times the ingestion itself.


def _add(report: IngestReport, result: BatchResult) -> None:
    report.accepted += result.accepted
    report.rejected.extend(RejectedEvent(index=r.index, errors=r.errors) for r in result.rejected)
    report.signatures += result.signatures
    report.new_signatures += result.new_signatures
    report.candidates = sorted(set(report.candidates) | set(result.candidates))
    report.rechecks = sorted(set(report.rechecks) | set(result.rechecks))


def _finish(report: IngestReport, generate: bool) -> IngestReport:
    if generate and (report.candidates or report.rechecks):
        report.generated = generate_regression_tests(
            sorted(set(report.candidates) | set(report.rechecks))
        )
    logger = get_run_logger()
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
    report = IngestReport()
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        _add(report, ingest_failure_batch(quote(chunk), list(range(start, start + len(chunk)))))
    return _finish(report, generate)


@flow(name="ingest-successes")
def ingest_successes(events: list[dict[str, Any]], batch_size: int | None = None) -> IngestReport:
    """Store success events (operation, duration, list counts): the failure rate's denominator."""
    size = batch_size or get_settings().ingest_batch_size
    report = IngestReport()
    for start in range(0, len(events), size):
        chunk = events[start : start + size]
        _add(report, ingest_success_batch(quote(chunk), list(range(start, start + len(chunk)))))
    return _finish(report, generate=False)


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
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such file: {source}")
    total = source.stat().st_size or 1
    size = batch_size or get_settings().ingest_batch_size
    batch_task = ingest_failure_batch if kind == "failures" else ingest_success_batch
    logger = get_run_logger()
    report = IngestReport()
    for number, batch in enumerate(iter_jsonl_batches(source, size), start=1):
        report.rejected.extend(
            RejectedEvent(index=r.index, errors=r.errors) for r in batch.malformed
        )
        if batch.events:
            _add(report, batch_task(quote(batch.events), batch.lines))
        if number % 10 == 0:
            logger.info(
                "%.0f%% read, %d events accepted", 100 * batch.bytes_read / total, report.accepted
            )
    return _finish(report, generate and kind == "failures")
