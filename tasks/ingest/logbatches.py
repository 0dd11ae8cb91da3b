"""Streaming the Python tracebacks of a log file in batches of failure events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from immunity.tasks.ingest.logparse import iter_log_failures

__all__ = ["LogBatch", "iter_log_batches"]


@dataclass
class LogBatch:
    """Failure events found in a log, the log line each starts at, and bytes read so far."""

    events: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    bytes_read: int = 0


def iter_log_batches(
    path: Path, batch_size: int, *, environment: str = "production"
) -> Iterator[LogBatch]:
    """Yield batches of up to `batch_size` failure events, one per traceback in the log file.

    Stray non-UTF-8 bytes do not stop the reading: they become U+FFFD. The file is read line by
    line; only the batch being filled is held.
    """
    # errors="replace": a log with stray non-UTF-8 bytes is still read, those bytes become �.
    with path.open(encoding="utf-8", errors="replace") as handle:
        batch = LogBatch()
        for event in iter_log_failures(handle, source_name=str(path), environment=environment):
            batch.events.append(event)
            batch.lines.append(event["context"]["line"])
            if len(batch.events) >= batch_size:
                # The binary buffer's position is read-ahead, not exact: plenty for progress.
                batch.bytes_read = handle.buffer.tell()
                yield batch
                batch = LogBatch()
        if batch.events:
            batch.bytes_read = handle.buffer.tell()
            yield batch
