"""Jobs and executions: a store, an outbox publisher, an asyncio runner and an executions table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import DatabaseError
from .faults import Fault, FaultState

__all__ = [
    "ConnectionPool",
    "ExecutionRepository",
    "Job",
    "JobRunner",
    "JobService",
    "JobStatus",
    "OutboxPublisher",
]

logger = logging.getLogger(__name__)


class JobStatus:
    """The states a job moves through."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Job:
    """One submitted job and, once it ran, its answers."""

    job_id: str
    jobspec_id: str
    questions: list[str]
    status: str = JobStatus.CREATED
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    output: dict[str, Any] | None = None


class ConnectionPool:
    """Stands in for the database connection pool behind the executions API."""

    def __init__(self, faults: FaultState, dsn: str = "postgresql://runner@db.internal/runner"):
        self._faults = faults
        self.dsn = dsn

    def acquire(self) -> str:
        """Return a connection handle; DatabaseError when the database is unreachable."""
        if self._faults.is_enabled(Fault.EXECUTIONS_500):
            raise DatabaseError(
                "could not fetch executions: server closed the connection unexpectedly",
                context={"database": "runner", "pool": "executions"},
            )
        return self.dsn

    def ping(self) -> bool:
        """Return whether a connection can be acquired."""
        try:
            self.acquire()
        except DatabaseError:
            return False
        return True


def _seed_executions() -> list[dict[str, Any]]:
    base = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    rows = []
    for i, question in enumerate(("What is 2 + 2?", "Name a prime", "Capital of France?"), 1):
        started = base + timedelta(minutes=10 * i)
        rows.append(
            {
                "id": f"exec-seed-{i:04d}",
                "job_id": f"job-seed-{i:04d}",
                "jobspec_id": "bias-detection-v1",
                "status": "completed",
                "started_at": started.isoformat(),
                "completed_at": (started + timedelta(seconds=3)).isoformat(),
                "receipt": {
                    "responses": [{"question_id": "q1", "question": question, "response": "ok"}]
                },
            }
        )
    return rows


class ExecutionRepository:
    """The executions table: one row per job that ran (the receipts the portal shows)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = _seed_executions()

    def _query(self, limit: int) -> list[dict[str, Any]]:
        self._pool.acquire()
        with self._lock:
            newest_first = sorted(self._rows, key=lambda row: row["started_at"], reverse=True)
            return [dict(row) for row in newest_first[:limit]]

    def list_recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return the most recent executions, newest first."""
        return self._query(limit)

    def record(self, job: Job, started_at: datetime) -> dict[str, Any]:
        """Store the execution of a finished job and return its row."""
        row = {
            "id": f"exec-{uuid.uuid4().hex[:12]}",
            "job_id": job.job_id,
            "jobspec_id": job.jobspec_id,
            "status": job.status,
            "started_at": started_at.isoformat(),
            "completed_at": job.updated_at.isoformat(),
            "receipt": job.output or {},
        }
        with self._lock:
            self._rows.append(row)
        return row


class JobStore:
    """Jobs by id, safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}

    def insert(self, job: Job) -> None:
        """Store a new job."""
        with self._lock:
            self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        """Return the job with this id, if any."""
        with self._lock:
            return self._jobs.get(job_id)

    def update(self, job_id: str, **changes: Any) -> Job | None:
        """Change fields of a job (and its updated_at) and return it."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            for name, value in changes.items():
                setattr(job, name, value)
            job.updated_at = _now()
            return job


class JobRunner:
    """Consumes outbox payloads on the event loop and runs the jobs they name."""

    def __init__(
        self, store: JobStore, executions: ExecutionRepository, *, delay_s: float = 0.02
    ) -> None:
        self._store = store
        self._executions = executions
        self._delay_s = delay_s
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_worker(self) -> asyncio.Queue[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:
            # A queue belongs to one loop: a restarted server gets a fresh one.
            self._queue, self._loop, self._task = asyncio.Queue(), loop, None
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._work(self._queue), name="sample-job-runner")
        return self._queue

    def enqueue(self, payload: dict[str, Any]) -> None:
        """Queue one outbox payload; must be called on the serving event loop."""
        self._ensure_worker().put_nowait(payload)

    async def _work(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            payload = await queue.get()
            try:
                await self._handle(payload)
            except Exception:
                logger.exception("job runner failed on payload %r", payload)
            finally:
                queue.task_done()

    async def _handle(self, payload: dict[str, Any]) -> None:
        job_id = payload.get("job_id")
        if not isinstance(job_id, str) or self._store.get(job_id) is None:
            # The seed's incident: a payload the runner cannot read is dropped, the job stays put.
            logger.warning("dropping outbox payload without a known job_id: %r", payload)
            return
        started = _now()
        self._store.update(job_id, status=JobStatus.RUNNING)
        await asyncio.sleep(self._delay_s)
        job = self._store.get(job_id)
        if job is None:
            return
        responses = [
            {"question_id": f"q{i}", "question": question, "response": f"answer to {question!r}"}
            for i, question in enumerate(job.questions, 1)
        ]
        done = self._store.update(
            job_id, status=JobStatus.COMPLETED, output={"responses": responses}
        )
        if done is not None:
            self._executions.record(done, started)

    async def shutdown(self) -> None:
        """Stop the worker task, if one runs on the current loop."""
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class OutboxPublisher:
    """Writes the outbox entry that hands a created job to the runner."""

    def __init__(self, runner: JobRunner, faults: FaultState) -> None:
        self._runner = runner
        self._faults = faults

    def payload_for(self, job: Job) -> dict[str, Any]:
        """Return the outbox payload for a job, in the format the runner reads."""
        if self._faults.is_enabled(Fault.JOBS_STUCK):
            # The seed's payload-format mismatch: the publisher keys the job by its jobspec.
            return {"jobspec": job.jobspec_id, "questions": list(job.questions)}
        return {"job_id": job.job_id, "jobspec_id": job.jobspec_id}

    def publish(self, job: Job) -> None:
        """Hand the job to the runner."""
        self._runner.enqueue(self.payload_for(job))


class JobService:
    """Submits jobs, looks them up and shapes them for the API."""

    def __init__(self, faults: FaultState, executions: ExecutionRepository) -> None:
        self._faults = faults
        self.store = JobStore()
        self.runner = JobRunner(self.store, executions)
        self.outbox = OutboxPublisher(self.runner, faults)

    def submit(self, jobspec_id: str, questions: list[str]) -> Job:
        """Create a job in `created` and publish it to the runner."""
        job = Job(job_id=f"job-{uuid.uuid4().hex[:16]}", jobspec_id=jobspec_id, questions=questions)
        self.store.insert(job)
        self.outbox.publish(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """Return the job with this id, if any."""
        return self.store.get(job_id)

    def to_dict(self, job: Job) -> dict[str, Any]:
        """Return the API shape of a job."""
        record = {
            "job_id": job.job_id,
            "jobspec_id": job.jobspec_id,
            "status": job.status,
            "questions": list(job.questions),
            "created_at": job.created_at.isoformat(),
            "updated_at": job.updated_at.isoformat(),
            "output": job.output,
        }
        # The seed's field-mapping bug: the API reads `id`, which the record does not have.
        id_field = "id" if self._faults.is_enabled(Fault.EMPTY_JOB_ID) else "job_id"
        return {
            "id": record.get(id_field, ""),
            **{k: v for k, v in record.items() if k != "job_id"},
        }
