"""Sentry-compatible ingest: an app using the official Sentry SDK reports here by changing its DSN.

`sentry_sdk.init(dsn="http://<key>@<immunity host>/<project id>")` makes the SDK post envelopes to
`/api/<project id>/envelope/` (older SDKs: one JSON event to `/store/`). The project id must be in
`settings.sentry_projects` (404 otherwise) and the DSN key must match it (401); the project id
is the project the events' signatures belong to (the same error in two projects is two). Error
events go through the same pipeline as native failures, ended sessions become success events,
and a 200 `{"id": <event id>}` (Sentry's answer) means everything in the request is committed.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from immunity.api.auth import sentry_key
from immunity.api.body import read_body
from immunity.api.errors import ApiError, error_responses
from immunity.api.ingest_openapi import SENTRY_ENVELOPE_BODY, SENTRY_EVENT_BODY, SentryAnswer
from immunity.api.reproduction import reproduction_check
from immunity.tasks.ingest.pipeline import ingest_events
from immunity.tasks.ingest.sentry import SentryBatch, envelope_to_batch, store_to_batch

__all__ = ["router"]

router = APIRouter(tags=["sentry"])

_SENTRY_ROUTE: dict[str, Any] = {
    "response_model": SentryAnswer,
    "responses": error_responses(400, 401, 404, 413, 415, 503),
}


def _authorize(request: Request, project_id: str) -> None:
    expected = request.app.state.settings.sentry_projects.get(project_id)
    if expected is None:
        raise ApiError(404, f"unknown Sentry project {project_id[:64]!r}")
    presented = sentry_key(request)
    if not presented:
        raise ApiError(401, "missing DSN key (X-Sentry-Auth: Sentry sentry_key=<key>, …)")
    # Bytes, because compare_digest refuses non-ASCII str and a header may carry anything.
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise ApiError(401, f"invalid DSN key for project {project_id[:64]!r}")


def _ingest(
    data: bytes, parse: Callable[[bytes], SentryBatch], state: Any, project: str
) -> tuple[dict[str, Any], list[int]]:
    """Return the answer after committing one Sentry request, and the tests due for a check.

    A malformed request is a SentryFormatError (400). Its failures and successes are stored in
    one transaction, all or nothing: any event the pipeline would reject refuses the request.
    """
    batch = parse(data)
    result = ingest_events(
        batch.failures,
        batch.successes,
        engine=state.engine,
        settings=state.settings,
        generate=True,
        all_or_nothing=True,
        project=project,
    )
    if result.rejected:
        raise ApiError(400, "; ".join(str(r) for r in result.rejected)[:2_000])
    answer: dict[str, Any] = {"id": batch.event_id}
    if batch.successes or batch.session_failures or batch.sessions_dropped:
        # Failed sessions are reported, not stored: their error events are the failures.
        answer["sessions"] = {
            "successes": len(batch.successes),
            "dropped": batch.sessions_dropped,
            **{kind: batch.session_failures[kind] for kind in ("crashed", "errored", "abnormal")},
        }
    return answer, result.verify


@router.post(
    "/api/{project_id}/envelope/",
    openapi_extra={"requestBody": SENTRY_ENVELOPE_BODY},
    **_SENTRY_ROUTE,
)
@router.post("/api/{project_id}/envelope", include_in_schema=False)
async def post_envelope(project_id: str, request: Request) -> JSONResponse:
    """Take a Sentry envelope (any content type, gzip/deflate); 200 means it is committed."""
    _authorize(request, project_id)
    data = await read_body(request, request.app.state.settings.max_request_bytes)
    state = request.app.state
    answer, verify = await run_in_threadpool(_ingest, data, envelope_to_batch, state, project_id)
    return JSONResponse(answer, background=reproduction_check(state, verify))


@router.post(
    "/api/{project_id}/store/", openapi_extra={"requestBody": SENTRY_EVENT_BODY}, **_SENTRY_ROUTE
)
@router.post("/api/{project_id}/store", include_in_schema=False)
async def post_store(project_id: str, request: Request) -> JSONResponse:
    """Take one Sentry event as JSON (the legacy endpoint); 200 means it is committed."""
    _authorize(request, project_id)
    data = await read_body(request, request.app.state.settings.max_request_bytes)
    state = request.app.state
    answer, verify = await run_in_threadpool(_ingest, data, store_to_batch, state, project_id)
    # Sentry answers every stored event with an id, generated when the client sent none.
    return JSONResponse(
        {**answer, "id": answer["id"] or uuid.uuid4().hex},
        background=reproduction_check(state, verify),
    )
