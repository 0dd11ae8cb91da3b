"""Concurrent ingest clients with bounded retries: shared by `bench/ingest_http.py` and the
store-outage test (`tests/api/test_store_outage.py`).

Each simulated client posts its batches one after another on its own connection. A 503 (the
store is unavailable; the API promises nothing was stored) or a connection error is retried with
capped exponential backoff and jitter, within a bounded number of attempts and a per-batch
deadline. Any other answer ends the batch. Only a 2xx answer counts: its `accepted` is what the
server says it committed.

Accounting of ambiguous fates: a connection error before the request was sent (connect refused
or timed out) is safe to retry. Any other transport error (reset or timeout after the request
was sent) leaves the batch's fate unknown: the server may have committed it. Such attempts are
retried like the rest but flagged `ambiguous`, so a caller can bound the double counting they
may cause (at most the sizes of the ambiguous attempts) instead of mistaking it for a bug. The
read timeout is kept far above any request's duration so that the client never abandons a
request the server is still committing.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "Attempt",
    "BatchOutcome",
    "EncodedBatch",
    "LoadResult",
    "Progress",
    "RetryPolicy",
    "encode_batches",
    "percentile",
    "run_load",
]

FAILURES_PATH = "/api/v1/failures"
RETRY_STATUSES = frozenset({503})
# The request never reached the server: retrying cannot double anything.
UNSENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a client tries: bounded in attempts and in time, per batch."""

    max_attempts: int = 40
    first_delay_s: float = 0.05
    max_delay_s: float = 1.0
    batch_deadline_s: float = 60.0
    timeout_s: float = 120.0


@dataclass(frozen=True)
class EncodedBatch:
    """One request body, ready to send, and what it carries."""

    body: bytes
    size: int
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt: its status (None on a transport error) and how long it took."""

    status: int | None
    seconds: float
    error: str | None = None
    ambiguous: bool = False


@dataclass
class BatchOutcome:
    """Everything that happened to one batch, from the first attempt to the final answer."""

    client: int
    index: int
    batch: EncodedBatch
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None
    accepted: int = 0
    tests_created: int = 0
    seconds: float = 0.0
    answer: str = ""

    @property
    def acknowledged(self) -> bool:
        """True when the server answered 2xx: the accepted events are committed."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Progress:
    """Live counters a monitor can watch while the load runs."""

    batches_total: int
    batches_done: int = 0
    failed_attempts: int = 0


@dataclass
class LoadResult:
    """The outcome of every batch of every client, and the wall time of the whole load."""

    outcomes: list[BatchOutcome]
    seconds: float

    @property
    def accepted(self) -> int:
        """Events the server acknowledged as committed (2xx answers only)."""
        return sum(o.accepted for o in self.outcomes if o.acknowledged)

    @property
    def attempts(self) -> list[Attempt]:
        return [a for o in self.outcomes for a in o.attempts]

    @property
    def failed_attempts(self) -> list[Attempt]:
        return [a for a in self.attempts if a.status is None or a.status >= 300]

    @property
    def ambiguous_attempts(self) -> list[tuple[BatchOutcome, Attempt]]:
        return [(o, a) for o in self.outcomes for a in o.attempts if a.ambiguous]

    @property
    def unfinished(self) -> list[BatchOutcome]:
        """Batches that never got a 2xx (gave up, or ended on a non-retryable answer)."""
        return [o for o in self.outcomes if not o.acknowledged]

    def answers(self) -> Counter[str]:
        """How many attempts ended each way: `200`, `503`, `ConnectError`, ..."""
        return Counter(
            str(a.status) if a.status is not None else str(a.error) for a in self.attempts
        )


def encode_batches(
    events: Sequence[dict[str, Any]], batch_size: int, id_key: str | None = None
) -> list[EncodedBatch]:
    """Split events into request bodies of `batch_size`; `id_key` names a tag holding an id."""
    batches = []
    for start in range(0, len(events), batch_size):
        chunk = events[start : start + batch_size]
        ids = tuple(str(e["tags"][id_key]) for e in chunk) if id_key else ()
        body = json.dumps({"events": chunk}, separators=(",", ":")).encode()
        batches.append(EncodedBatch(body, len(chunk), ids))
    return batches


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _retry_delay(attempt: int, policy: RetryPolicy, retry_after: str | None) -> float:
    backoff = min(policy.max_delay_s, policy.first_delay_s * 2 ** (attempt - 1))
    delay = backoff * random.uniform(0.5, 1.0)  # jitter: clients do not retry in lockstep
    if retry_after and retry_after.isdigit():
        delay = max(delay, min(float(retry_after), policy.max_delay_s))
    return delay


def _read_answer(outcome: BatchOutcome, response: httpx.Response) -> None:
    outcome.answer = response.text[:500]
    if 200 <= response.status_code < 300:
        body = response.json()
        outcome.accepted = int(body.get("accepted", 0))
        outcome.tests_created = len(body.get("tests_created") or [])


async def _send(
    client: httpx.AsyncClient, outcome: BatchOutcome, policy: RetryPolicy, progress: Progress
) -> None:
    """Post one batch until it gets a final answer or the policy's bounds run out."""
    started = time.perf_counter()
    deadline = started + policy.batch_deadline_s
    for number in range(1, policy.max_attempts + 1):
        began = time.perf_counter()
        retry_after: str | None = None
        try:
            response = await client.post(FAILURES_PATH, content=outcome.batch.body)
        except httpx.TransportError as error:
            unsent = isinstance(error, UNSENT_ERRORS)
            took = time.perf_counter() - began
            attempt = Attempt(None, took, type(error).__name__, ambiguous=not unsent)
            outcome.attempts.append(attempt)
        else:
            outcome.attempts.append(Attempt(response.status_code, time.perf_counter() - began))
            if response.status_code not in RETRY_STATUSES:
                outcome.status = response.status_code
                _read_answer(outcome, response)
                break
            outcome.answer = response.text[:500]
            retry_after = response.headers.get("retry-after")
        progress.failed_attempts += 1
        delay = _retry_delay(number, policy, retry_after)
        if number == policy.max_attempts or time.perf_counter() + delay > deadline:
            break
        await asyncio.sleep(delay)
    outcome.seconds = time.perf_counter() - started
    progress.batches_done += 1


async def _client(
    number: int,
    base_url: str,
    token: str,
    batches: Sequence[EncodedBatch],
    policy: RetryPolicy,
    progress: Progress,
) -> list[BatchOutcome]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    outcomes = []
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=policy.timeout_s, limits=limits
    ) as client:
        for index, batch in enumerate(batches):
            outcome = BatchOutcome(number, index, batch)
            await _send(client, outcome, policy, progress)
            outcomes.append(outcome)
    return outcomes


async def run_load(
    base_url: str,
    token: str,
    per_client: Sequence[Sequence[EncodedBatch]],
    policy: RetryPolicy,
    progress: Progress | None = None,
) -> LoadResult:
    """Run one client per entry of `per_client`, all at once; return every batch's outcome."""
    progress = progress or Progress(sum(len(b) for b in per_client))
    started = time.perf_counter()
    results = await asyncio.gather(
        *(
            _client(number, base_url, token, batches, policy, progress)
            for number, batches in enumerate(per_client)
        )
    )
    return LoadResult([o for outcomes in results for o in outcomes], time.perf_counter() - started)
