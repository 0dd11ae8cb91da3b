"""Where reported events go: JSON-lines files in a directory, or immunity's ingest API."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

__all__ = ["FAILURES_ENDPOINT", "SUCCESSES_ENDPOINT", "HttpSink", "JsonlSink", "Sink"]

logger = logging.getLogger(__name__)

FAILURES_ENDPOINT = "/api/v1/failures"
SUCCESSES_ENDPOINT = "/api/v1/successes"

Event = dict[str, Any]


class Sink(Protocol):
    """Receives batches of events from a Reporter's background thread."""

    def write(self, failures: list[Event], successes: list[Event]) -> None:
        """Deliver one batch; must not raise for delivery problems it can log instead."""
        ...

    def close(self) -> None:
        """Release what the sink holds."""
        ...


class JsonlSink:
    """Appends events to `failures.jsonl` and `successes.jsonl` in a directory, one per line."""

    FAILURES_FILE = "failures.jsonl"
    SUCCESSES_FILE = "successes.jsonl"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def failures_path(self) -> Path:
        """The file failure events are appended to."""
        return self.directory / self.FAILURES_FILE

    @property
    def successes_path(self) -> Path:
        """The file success events are appended to."""
        return self.directory / self.SUCCESSES_FILE

    def write(self, failures: list[Event], successes: list[Event]) -> None:
        """Append the batch, each event as one JSON line."""
        with self._lock:
            for path, events in ((self.failures_path, failures), (self.successes_path, successes)):
                if not events:
                    continue
                lines = "".join(
                    json.dumps(event, default=str, ensure_ascii=False) + "\n" for event in events
                )
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(lines)

    @staticmethod
    def _read(path: Path) -> list[Event]:
        if not path.exists():
            return []
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def read_failures(self) -> list[Event]:
        """Return every failure event written so far."""
        with self._lock:
            return self._read(self.failures_path)

    def read_successes(self) -> list[Event]:
        """Return every success event written so far."""
        with self._lock:
            return self._read(self.successes_path)

    def close(self) -> None:
        """Nothing to release: every write opens and closes its file."""


class HttpSink:
    """POSTs batches `{"events": [...]}` to immunity's ingest API with a bearer token."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
        batch_size: int = 500,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.batch_size = max(1, batch_size)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0

    def write(self, failures: list[Event], successes: list[Event]) -> None:
        """Send the batch in chunks; events that cannot be delivered are logged and dropped."""
        with self._lock:
            for endpoint, events in (
                (FAILURES_ENDPOINT, failures),
                (SUCCESSES_ENDPOINT, successes),
            ):
                for start in range(0, len(events), self.batch_size):
                    chunk = events[start : start + self.batch_size]
                    if self._post(endpoint, chunk):
                        self.sent += len(chunk)
                    else:
                        self.dropped += len(chunk)

    def _post(self, endpoint: str, events: list[Event]) -> bool:
        url = self.url + endpoint
        content = json.dumps({"events": events}, default=str, ensure_ascii=False)
        headers = {"Content-Type": "application/json"}
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._client.post(url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code not in (408, 429):
                    logger.error("immunity refused %d events at %s: %s", len(events), url, problem)
                    return False
            if attempt < self.max_attempts:
                logger.warning(
                    "sending %d events to %s failed (attempt %d/%d): %s",
                    len(events),
                    url,
                    attempt,
                    self.max_attempts,
                    problem,
                )
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            else:
                logger.error("dropping %d events for %s: %s", len(events), url, problem)
        return False

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
