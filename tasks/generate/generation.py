"""Building regression tests in the store for signatures that crossed the threshold."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.context import FlowRunContext, TaskRunContext
from sqlalchemy import Connection, Engine, select, update
from sqlmodel import Session

from immunity.models.db import get_engine, session_scope
from immunity.models.enums import EventSource, SignatureStatus
from immunity.models.reports import GeneratedTest
from immunity.models.settings import Settings, get_settings
from immunity.models.signature_states import SignatureEvent, status_after
from immunity.models.tables import (
    DEFAULT_PROJECT,
    FailureEvent,
    OccurrenceBucket,
    RegressionTest,
    Signature,
    SuccessEvent,
)
from immunity.tasks.generate.capture import most_complete
from immunity.tasks.generate.reproduce import find_due
from immunity.tasks.generate.testgen import (
    crossed_threshold,
    operation_matches,
    replay_spec,
    test_fields,
    ui_test_fields,
)
from immunity.tasks.generate.uigen import ui_replay_spec
from immunity.tasks.ingest.prepare import bucket_start
from immunity.tasks.ingest.store import dialect_insert
from immunity.tasks.shared.dashboards import publish_generation
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = [
    "Generation",
    "find_candidates",
    "generate_in",
    "generate_tests",
    "publish_in_run",
    "sweep",
]

signatures = Signature.__table__  # type: ignore[attr-defined]
events = FailureEvent.__table__  # type: ignore[attr-defined]
successes = SuccessEvent.__table__  # type: ignore[attr-defined]
tests = RegressionTest.__table__  # type: ignore[attr-defined]
buckets = OccurrenceBucket.__table__  # type: ignore[attr-defined]

_TESTED_STATUS = status_after(SignatureEvent.TEST_CREATED, signatures.c.status)
SAMPLES_LOOKED_AT = 20
SUCCESSES_LOOKED_AT = 200


@dataclass
class Generation:
    """What generation did: each qualifying signature's test (or why it has none), and the
    generated tests now due for a reproduction check."""

    generated: list[GeneratedTest] = field(default_factory=list)
    due: list[int] = field(default_factory=list)


def find_candidates(
    conn: Connection, settings: Settings, signature_ids: Sequence[int] | None = None
) -> list[Any]:
    """Return signatures without a test that were seen ≥ threshold times within the window."""
    query = select(signatures).where(
        signatures.c.test_id.is_(None),
        signatures.c.status != SignatureStatus.IGNORED,
        signatures.c.occurrence_count >= settings.generation_threshold,
    )
    if signature_ids is not None:
        query = query.where(signatures.c.id.in_(sorted(set(signature_ids))))
    rows = list(conn.execute(query.order_by(signatures.c.id)))
    if not rows:
        return []
    window = timedelta(days=settings.generation_window_days)
    earliest = bucket_start(min(row.last_seen for row in rows) - window, settings.bucket_minutes)
    recent: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    counted = select(buckets.c.signature_id, buckets.c.bucket_start, buckets.c.count).where(
        buckets.c.signature_id.in_([row.id for row in rows]), buckets.c.bucket_start >= earliest
    )
    for signature_id, start, count in conn.execute(counted):
        recent[signature_id].append((start, count))
    return [
        row
        for row in rows
        if crossed_threshold(
            recent[row.id],
            row.last_seen,
            threshold=settings.generation_threshold,
            window=window,
            bucket_minutes=settings.bucket_minutes,
        )
    ]


def _latest_request_sample(conn: Connection, signature_id: int) -> Any | None:
    query = (
        select(events.c.request, events.c.environment, events.c.context, events.c.source)
        .where(events.c.signature_id == signature_id, events.c.request.is_not(None))
        .order_by(events.c.received_at.desc(), events.c.id.desc())
        .limit(SAMPLES_LOOKED_AT)
    )
    samples = list(conn.execute(query))
    best = most_complete(samples, lambda sample: sample.request)
    return best if best is not None else (samples[0] if samples else None)


def _success_list_counts(conn: Connection, method: str, path: str) -> list[dict[str, int]]:
    query = (
        select(successes.c.operation, successes.c.list_counts)
        .where(successes.c.operation.like(f"{method.upper()} %"))
        .order_by(successes.c.id.desc())
        .limit(SUCCESSES_LOOKED_AT)
    )
    return [
        dict(row.list_counts or {})
        for row in conn.execute(query)
        if operation_matches(row.operation, method, path)
    ]


def _fields(
    conn: Connection, signature: Any, sample: Any, settings: Settings
) -> tuple[dict[str, Any] | None, str | None]:
    """Return the new test's columns from the signature's best sample, or why there are none."""
    environment = sample.environment if sample is not None else "production"
    target = settings.environments.get(environment)
    common = {
        "signature_id": signature.id,
        "fingerprint": signature.fingerprint,
        "error_type": signature.error_type,
        "category": signature.category,
        "message": signature.message,
        "environment": environment,
        "confidence": settings.initial_confidence,
    }
    if sample is not None and sample.source == EventSource.BROWSER:
        steps, reason = ui_replay_spec(sample.request, sample.context, target)
        if steps is None:
            return None, reason
        return ui_test_fields(**common, steps=steps, captured=sample.request), None
    spec, reason = replay_spec(sample.request if sample is not None else None, target)
    if spec is None:
        return None, reason
    return test_fields(
        **common,
        spec=spec,
        list_counts=_success_list_counts(conn, spec.method, spec.path),
        captured=sample.request,
    ), None


def _generate_one(conn: Connection, signature: Any, settings: Settings) -> GeneratedTest:
    sample = _latest_request_sample(conn, signature.id)
    fields, reason = _fields(conn, signature, sample, settings)
    if fields is None:
        conn.execute(
            update(signatures)
            .where(signatures.c.id == signature.id)
            .values(untestable_reason=reason)
        )
        return GeneratedTest(signature_id=signature.id, reason=reason)
    if signature.project != DEFAULT_PROJECT:
        # The same error in two projects is two signatures: their tests' names say whose.
        project = re.sub(r"[^a-z0-9]+", "_", signature.project.lower()).strip("_")
        fields["name"] = f"{fields['name']}_{project[:64] or 'project'}"
    # The unique key on the signature makes a concurrent second insert a no-op, not a duplicate.
    inserted = conn.execute(
        dialect_insert(conn, tests).values(**fields).on_conflict_do_nothing().returning(tests.c.id)
    ).scalar()
    test_id = conn.execute(
        select(tests.c.id).where(tests.c.created_from_signature_id == signature.id)
    ).scalar()
    if test_id is None:
        reason = f"test name {fields['name']} is taken"
        return GeneratedTest(signature_id=signature.id, reason=reason)
    conn.execute(
        update(signatures)
        .where(signatures.c.id == signature.id, signatures.c.test_id.is_(None))
        .values(
            test_id=test_id,
            untestable_reason=None,
            status=_TESTED_STATUS,
        )
    )
    return GeneratedTest(signature_id=signature.id, test_id=test_id, created=inserted is not None)


def generate_in(session: Session, signature_ids: Sequence[int], settings: Settings) -> Generation:
    """Return the tests built for the qualifying signatures among `signature_ids` and the tests
    of those signatures due for a reproduction check, in the caller's transaction.

    The caller must already hold these signatures' rows (an ingest batch that has just upserted
    them): a test is built while nobody else can count an occurrence or build another one.
    """
    conn = session.connection()
    generated = [
        _generate_one(conn, row, settings) for row in find_candidates(conn, settings, signature_ids)
    ]
    return Generation(
        generated, find_due(session=session, settings=settings, signature_ids=signature_ids)
    )


def sweep(signature_ids: Sequence[int] | None, *, engine: Engine, settings: Settings) -> Generation:
    """Give every qualifying signature (all of them when `signature_ids` is None) its one test;
    return what was built and the tests due for a reproduction check."""
    with engine.connect() as conn:
        candidates = find_candidates(conn, settings, signature_ids)
    generation = Generation()
    for row in candidates:
        # One transaction per signature: it locks one signature row at a time, so it cannot
        # deadlock with an ingest batch that locks many of them in fingerprint order.
        with engine.begin() as conn:
            generation.generated.append(_generate_one(conn, row, settings))
    with session_scope(engine) as session:
        generation.due = find_due(session=session, settings=settings, signature_ids=signature_ids)
    publish_in_run(generation.generated)
    return generation


def publish_in_run(generated: Sequence[GeneratedTest]) -> None:
    """Publish the generation artifact when called inside a Prefect flow or task run.

    Outside a run (the API, a script) there is nowhere to publish it: nothing is done. Its
    failure is the artifact task's own (retried, shown in the UI), never the caller's: the
    tests it describes are committed.
    """
    if generated and (FlowRunContext.get() is not None or TaskRunContext.get() is not None):
        publish_generation(list(generated), return_state=True)


@task(name="generate-regression-tests", **DB_TASK_OPTIONS)
def generate_tests(signature_ids: list[int] | None = None) -> Generation:
    """Return what generation did for each qualifying signature (all when ids is None)."""
    return sweep(signature_ids, engine=get_engine(), settings=get_settings())
