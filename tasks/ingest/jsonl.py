"""Streaming a JSONL file of events in batches, without holding the file in memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from immunity.tasks.ingest.validate import Rejection

__all__ = ["JsonlBatch", "iter_jsonl_batches"]


@dataclass
class JsonlBatch:
    """Parsed events with their line numbers, lines that were not JSON, and bytes read so far."""

    events: list[Any] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    malformed: list[Rejection] = field(default_factory=list)
    bytes_read: int = 0

    def __len__(self) -> int:
        return len(self.events) + len(self.malformed)


def _not_json(name: str) -> None:
    # NaN/Infinity are not JSON, and PostgreSQL's jsonb refuses them: reject the line up front.
    raise ValueError(f"{name} is not a JSON value")


def iter_jsonl_batches(path: Path, batch_size: int) -> Iterator[JsonlBatch]:
    """Yield batches of up to `batch_size` non-blank lines; rejections carry line numbers."""
    with path.open("rb") as handle:
        batch = JsonlBatch()
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            try:
                batch.events.append(json.loads(stripped, parse_constant=_not_json))
                batch.lines.append(number)
            except (ValueError, UnicodeDecodeError) as error:
                batch.malformed.append(Rejection(number, [f"invalid JSON: {error}"]))
            if len(batch) >= batch_size:
                batch.bytes_read = handle.tell()
                yield batch
                batch = JsonlBatch()
        if len(batch):
            batch.bytes_read = handle.tell()
            yield batch
