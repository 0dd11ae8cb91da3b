"""Writing a batch of events: one upsert of signatures, one insert of samples, then pruning."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from immunity.models.enums import SignatureStatus
from immunity.models.settings import Settings
from immunity.models.signature_states import SignatureEvent, first_status, status_after
from immunity.models.tables import (
    DEFAULT_PROJECT,
    FailureEvent,
    OccurrenceBucket,
    Signature,
    SuccessEvent,
)
from immunity.tasks.ingest.prepare import PreparedFailure, SignatureDelta, aggregate_signatures

__all__ = ["StoredBatch", "dialect_insert", "store_failures", "store_successes"]

STATEMENT_ROWS = 500
signature_table = Signature.__table__  # type: ignore[attr-defined]
event_table = FailureEvent.__table__  # type: ignore[attr-defined]
success_table = SuccessEvent.__table__  # type: ignore[attr-defined]
bucket_table = OccurrenceBucket.__table__  # type: ignore[attr-defined]
_EVENT_INSERT = event_table.insert()
_SET_MESSAGE = (
    update(signature_table)
    .where(signature_table.c.id == bindparam("signature"))
    .values(message=bindparam("normalized"))
)


@dataclass
class StoredBatch:
    """What a committed batch did: signatures touched, events kept, candidates for a test."""

    signature_ids: dict[str, int] = field(default_factory=dict)
    new_signatures: int = 0
    events_stored: int = 0
    candidates: list[int] = field(default_factory=list)
    tested: list[int] = field(default_factory=list)  # signatures that already have a test
    over_sample_limit: list[int] = field(default_factory=list)


def dialect_insert(engine_or_conn: Engine | Connection, table: Any) -> Any:
    """Return an INSERT for `table` that knows ON CONFLICT on this backend."""
    return _insert_on(engine_or_conn.dialect.name, table)


def _insert_on(name: str, table: Any) -> Any:
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database backend: {name} (use SQLite or PostgreSQL)")


def _severity_rank(column: Any) -> Any:
    return case({"low": 0, "medium": 1, "high": 2, "critical": 3}, value=column, else_=1)


@lru_cache(maxsize=4)  # one per backend: built once, not once per batch
def _upsert_statement(backend: str) -> Any:
    stmt = _insert_on(backend, signature_table)
    current, incoming = signature_table.c, stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[current.project, current.fingerprint],
        set_={
            # Atomic in the database: concurrent writers add, they never overwrite.
            "occurrence_count": current.occurrence_count + incoming.occurrence_count,
            "last_seen": case(
                (incoming.last_seen > current.last_seen, incoming.last_seen),
                else_=current.last_seen,
            ),
            "first_seen": case(
                (incoming.first_seen < current.first_seen, incoming.first_seen),
                else_=current.first_seen,
            ),
            "severity": case(
                (
                    _severity_rank(incoming.severity) > _severity_rank(current.severity),
                    incoming.severity,
                ),
                else_=current.severity,
            ),
            "status": status_after(SignatureEvent.OCCURRENCE, current.status),
        },
    ).returning(
        current.id,
        current.fingerprint,
        current.occurrence_count,
        current.test_id,
        current.status,
        current.created_at,
    )


def _signature_row(delta: SignatureDelta, now: Any, project: str) -> dict[str, Any]:
    return {
        "project": project,
        "fingerprint": delta.fingerprint,
        "error_type": delta.error_type,
        # Only a signature this batch creates keeps its message: written once it is known which
        # (normalising a message costs more than the rest of an event's grouping).
        "message": "",
        "culprit": delta.culprit,
        "category": delta.category,
        "severity": delta.severity,
        "first_seen": delta.first_seen,
        "last_seen": delta.last_seen,
        "occurrence_count": delta.count,
        "status": first_status(delta.count),
        "created_at": now,
    }


def _newest_per_signature(
    prepared: Sequence[PreparedFailure], limit: int
) -> dict[str, list[PreparedFailure]]:
    grouped: dict[str, list[PreparedFailure]] = defaultdict(list)
    for item in prepared:
        grouped[item.fingerprint].append(item)
    for key, items in grouped.items():
        if len(items) > limit:
            items.sort(key=lambda item: item.received_at)
            grouped[key] = items[-limit:]
    return grouped


def store_failures(
    conn: Connection,
    prepared: Sequence[PreparedFailure],
    settings: Settings,
    now: Any,
    project: str = DEFAULT_PROJECT,
) -> StoredBatch:
    """Upsert the batch's signatures in `project`, insert its samples and prune the oldest past
    the bound, inside the caller's transaction (a batch is one project's, so fingerprints name
    its signatures)."""
    result = StoredBatch()
    if not prepared:
        return result
    deltas = aggregate_signatures(prepared, settings.bucket_minutes)
    statement = _upsert_statement(conn.dialect.name)
    created = []
    for start in range(0, len(deltas), STATEMENT_ROWS):
        rows = [_signature_row(d, now, project) for d in deltas[start : start + STATEMENT_ROWS]]
        for row in conn.execute(statement, rows):
            result.signature_ids[row.fingerprint] = row.id
            # created_at is only written on insert, so `now` there means this batch created it.
            if row.created_at == now:
                result.new_signatures += 1
                created.append(row)
            if row.occurrence_count > settings.max_samples_per_signature:
                result.over_sample_limit.append(row.id)
            if (
                row.test_id is None
                and row.status != SignatureStatus.IGNORED
                and row.occurrence_count >= settings.generation_threshold
            ):
                result.candidates.append(row.id)
            elif row.test_id is not None:
                result.tested.append(row.id)
    if created:
        first = {delta.fingerprint: delta.first for delta in deltas}
        messages = [
            {"signature": row.id, "normalized": first[row.fingerprint].normalized_message}
            for row in created
        ]
        conn.execute(_SET_MESSAGE, messages)
    _add_to_buckets(conn, deltas, result.signature_ids)
    events = []
    for key, items in _newest_per_signature(prepared, settings.max_samples_per_signature).items():
        signature_id = result.signature_ids[key]
        for item in items:
            item.row["signature_id"] = signature_id  # the row is the batch's own: no copy
            events.append(item.row)
    for start in range(0, len(events), STATEMENT_ROWS * 4):
        conn.execute(_EVENT_INSERT, events[start : start + STATEMENT_ROWS * 4])
    result.events_stored = len(events)
    _prune_samples(conn, result.over_sample_limit, settings.max_samples_per_signature)
    return result


@lru_cache(maxsize=4)
def _bucket_statement(backend: str) -> Any:
    statement = _insert_on(backend, bucket_table)
    return statement.on_conflict_do_update(
        index_elements=[bucket_table.c.signature_id, bucket_table.c.bucket_start],
        set_={"count": bucket_table.c.count + statement.excluded.count},
    )


def _add_to_buckets(
    conn: Connection, deltas: Sequence[SignatureDelta], signature_ids: dict[str, int]
) -> None:
    counts = sorted(  # one lock order for every writer: by signature, then bucket
        (signature_ids[d.fingerprint], start, n) for d in deltas for start, n in d.buckets.items()
    )
    rows = [{"signature_id": id_, "bucket_start": start, "count": n} for id_, start, n in counts]
    statement = _bucket_statement(conn.dialect.name)
    for start in range(0, len(rows), STATEMENT_ROWS):
        conn.execute(statement, rows[start : start + STATEMENT_ROWS])


def _prune_statement() -> Any:
    # Per signature, newest first along its (signature_id, received_at) index: what lies past
    # the first `keep` goes. One statement per signature reads only that signature's rows.
    beyond_newest = (
        select(event_table.c.id)
        .where(event_table.c.signature_id == bindparam("signature_id"))
        .order_by(event_table.c.received_at.desc(), event_table.c.id.desc())
        .offset(bindparam("keep"))
    )
    return delete(event_table).where(event_table.c.id.in_(beyond_newest))


_PRUNE = _prune_statement()


def _prune_samples(conn: Connection, signature_ids: Sequence[int], keep: int) -> None:
    """Delete all but the newest `keep` samples of each signature, in the caller's transaction.

    The caller holds these signatures' rows locked (it has just upserted them), so no other
    writer prunes or adds to the same signatures until it commits.
    """
    if signature_ids:
        conn.execute(_PRUNE, [{"signature_id": id_, "keep": keep} for id_ in signature_ids])


def store_successes(conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert success events inside the caller's transaction; return how many."""
    for start in range(0, len(rows), STATEMENT_ROWS * 4):
        conn.execute(success_table.insert(), list(rows[start : start + STATEMENT_ROWS * 4]))
    return len(rows)
