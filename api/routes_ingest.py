"""Native ingest: batches of failure and success events (a token with the `ingest` scope; the
failures go to the token's project), and health."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.background import BackgroundTask

from immunity.api.body import decode_json, read_body
from immunity.api.deps import IngesterDep
from immunity.api.errors import ApiError, error_responses
from immunity.api.ingest_openapi import FAILURES_BODY, SUCCESSES_BODY
from immunity.api.public import CreatedTest, HealthAnswer, IngestAnswer
from immunity.api.reproduction import reproduction_check
from immunity.models.reports import RejectedEvent
from immunity.tasks.ingest.pipeline import BatchResult, process_failures, process_successes

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["ingest"])

_NOTHING_ACCEPTED = {
    "model": IngestAnswer,
    "description": (
        "Nothing accepted (every event rejected, each by index), or a body that cannot be read"
        ' (`{"error": ...}`): nothing is stored.'
    ),
}
_INGEST_ROUTE: dict[str, Any] = {
    "response_model": IngestAnswer,
    "responses": {400: _NOTHING_ACCEPTED, **error_responses(401, 403, 413, 415, 503)},
}


async def _events(request: Request) -> list[Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    body = decode_json(await read_body(request, request.app.state.settings.max_request_bytes))
    events = body.get("events") if isinstance(body, dict) else body
    if not isinstance(events, list):
        raise ApiError(400, 'body must be a JSON array of events or {"events": [...]}')
    if not events:
        raise ApiError(400, "the batch holds no events")
    return events


def _answer(result: BatchResult, background: BackgroundTask | None = None) -> JSONResponse:
    answer = IngestAnswer(
        accepted=result.accepted,
        rejected=[RejectedEvent(index=r.index, errors=r.errors) for r in result.rejected],
        signatures=result.signatures,
        new_signatures=result.new_signatures,
        tests_created=[
            CreatedTest(signature_id=g.signature_id, test_id=g.test_id)
            for g in result.generated
            if g.created and g.test_id is not None
        ],
    )
    # Nothing accepted means nothing stored: a 4xx, so no client mistakes it for success.
    return JSONResponse(
        answer.model_dump(mode="json"),
        status_code=200 if result.accepted else 400,
        background=background,
    )


@router.post("/failures", openapi_extra={"requestBody": FAILURES_BODY}, **_INGEST_ROUTE)
async def post_failures(request: Request, principal: IngesterDep) -> JSONResponse:
    """Store a batch of failure events and build the tests it made due; a 2xx means the
    accepted ones are committed (the new tests' reproduction check runs after the answer)."""
    events = await _events(request)
    state = request.app.state
    result = await run_in_threadpool(
        process_failures,
        events,
        engine=state.engine,
        settings=state.settings,
        generate=True,
        project=principal.project,
    )
    return _answer(result, background=reproduction_check(state, result.verify))


@router.post("/successes", openapi_extra={"requestBody": SUCCESSES_BODY}, **_INGEST_ROUTE)
async def post_successes(request: Request, principal: IngesterDep) -> JSONResponse:
    """Store a batch of success events (the failure rate's denominator)."""
    events = await _events(request)
    state = request.app.state
    result = await run_in_threadpool(
        process_successes, events, engine=state.engine, settings=state.settings
    )
    return _answer(result)


@router.get("/health", response_model=HealthAnswer, responses={503: {"model": HealthAnswer}})
async def health(request: Request) -> JSONResponse:
    """Say whether the API and its store are up (no token needed)."""

    def ping() -> None:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception:  # any failure to reach the store makes the service unhealthy
        # Unauthenticated: say only that it is away, never the error (it names host and port).
        log.warning("health check: the store is unavailable", exc_info=True)
        return JSONResponse({"status": "unavailable", "database": "unavailable"}, 503)
    return JSONResponse({"status": "ok", "database": "ok"})
