"""The in-process Python API: the pipelines the HTTP API and the flows run, as plain functions.

Each function works on the configured store (`Settings()`, i.e. `IMMUNITY_*` and `.env`) unless
given `settings` or an `engine`; it needs no Prefect server, except `decide_fix`, which resumes
the heal flow run waiting on the proposal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from immunity.models.db import get_engine
from immunity.models.enums import SignatureStatus, TestState
from immunity.models.errors import InvalidInputError
from immunity.models.fixes import Approval
from immunity.models.heal_tables import FixProposal
from immunity.models.reports import IngestReport, RejectedEvent
from immunity.models.settings import Settings, get_settings
from immunity.models.tables import DEFAULT_PROJECT, RegressionTest, Signature
from immunity.tasks.generate.reproduce import verify_tests
from immunity.tasks.heal.approvals import submit_decision
from immunity.tasks.ingest.pipeline import BatchResult, process_failures, process_successes
from immunity.tasks.shared import queries

__all__ = [
    "decide_fix",
    "ingest_failures",
    "ingest_successes",
    "list_signatures",
    "list_tests",
]

log = logging.getLogger(__name__)

Events = Iterable[Mapping[str, Any] | BaseModel]
E = TypeVar("E", bound=StrEnum)


def _store(settings: Settings | None, engine: Engine | None) -> tuple[Settings, Engine]:
    settings = settings or get_settings()
    return settings, engine or get_engine(settings.effective_database_url)


def _raw(events: Events) -> list[Any]:
    return [e.model_dump(mode="json") if isinstance(e, BaseModel) else e for e in events]


def _status(value: str | None, kind: type[E]) -> E | None:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(member.value for member in kind)
        raise InvalidInputError(f"status {value!r} is not one of: {choices}") from None


def _report(result: BatchResult) -> IngestReport:
    return IngestReport(
        accepted=result.accepted,
        rejected=[RejectedEvent(index=r.index, errors=r.errors) for r in result.rejected],
        signatures=result.signatures,
        new_signatures=result.new_signatures,
        candidates=result.candidates,
        rechecks=result.rechecks,
        generated=result.generated,
    )


def ingest_failures(
    events: Events,
    *,
    verify: bool = True,
    settings: Settings | None = None,
    engine: Engine | None = None,
    project: str = DEFAULT_PROJECT,
) -> IngestReport:
    """Return what was stored of a batch of failure events in `project`, and the tests it made.

    The batch is validated, classified, scrubbed, fingerprinted and stored in one transaction
    (bad events are rejected by index, the good ones kept), exactly as `POST /api/v1/failures`
    does; a signature it pushes over the threshold gets its regression test at once. With
    `verify`, each new test then replays once against its environment to check that it
    reproduces the failure (the API does this after answering). For very large volumes, call it
    once per few thousand events, or use the `ingest-file` flow.
    """
    settings, engine = _store(settings, engine)
    result = process_failures(
        _raw(events), engine=engine, settings=settings, generate=True, project=project
    )
    if verify and result.verify:
        try:
            verify_tests(engine, settings, result.verify)
        except Exception:  # the batch is committed; the generation sweep checks these again
            log.exception("reproduction check of tests %s failed", result.verify)
    return _report(result)


def ingest_successes(
    events: Events, *, settings: Settings | None = None, engine: Engine | None = None
) -> IngestReport:
    """Return what was stored of a batch of success events (the failure rate's denominator)."""
    settings, engine = _store(settings, engine)
    return _report(process_successes(_raw(events), engine=engine, settings=settings))


def list_signatures(
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> list[Signature]:
    """Return a page of signatures, most recently seen first (optionally of one status)."""
    _, engine = _store(settings, engine)
    chosen = _status(status, SignatureStatus)
    return list(queries.list_signatures(engine, limit=limit, offset=offset, status=chosen))


def list_tests(
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> list[RegressionTest]:
    """Return a page of regression tests, newest first (active, quarantined or inactive)."""
    _, engine = _store(settings, engine)
    state = _status(status, TestState)
    return list(queries.list_tests(engine, limit=limit, offset=offset, state=state))


def decide_fix(
    proposal_id: int,
    approved: bool,
    reviewer: str,
    notes: str = "",
    *,
    settings: Settings | None = None,
    engine: Engine | None = None,
) -> FixProposal:
    """Return the proposal once its paused heal flow run has been resumed with the decision.

    The flow records the decision itself when it resumes (as from the Prefect UI, the CLI or
    the API), so `PREFECT_API_URL` must name the server that flow runs on. Raises
    `NotFoundError` for an unknown proposal, `ConflictError` for one not awaiting a decision
    and `InvalidInputError` for a decision without a reviewer.
    """
    _, engine = _store(settings, engine)
    try:
        approval = Approval(approved=approved, reviewer=reviewer, notes=notes)
    except ValidationError as error:
        raise InvalidInputError(f"invalid decision: {error}") from None
    return submit_decision(engine, proposal_id, approval)
