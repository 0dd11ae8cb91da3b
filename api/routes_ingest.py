"""Native ingest: batches of failure and success events, bearer-token auth, and health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.background import BackgroundTask

from immunity.api.auth import require_token
from immunity.api.body import decode_json, read_body
from immunity.api.errors import ApiError
from immunity.api.reproduction import reproduction_check
from immunity.tasks.ingest.pipeline import ingest_and_generate, process_successes

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


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


def _answer(
    accepted: int, rejected: list[Any], background: BackgroundTask | None = None, **extra: Any
) -> JSONResponse:
    content = {
        "accepted": accepted,
        "rejected": [{"index": r.index, "errors": r.errors} for r in rejected],
        **extra,
    }
    # Nothing accepted means nothing stored: a 4xx, so no client mistakes it for success.
    return JSONResponse(content, status_code=200 if accepted else 400, background=background)


@router.post("/failures", dependencies=[Depends(require_token)])
async def post_failures(request: Request) -> JSONResponse:
    """Store a batch of failure events; a 2xx means the accepted ones are committed."""
    events = await _events(request)
    state = request.app.state
    result, generated = await run_in_threadpool(
        ingest_and_generate, events, engine=state.engine, settings=state.settings
    )
    return _answer(
        result.accepted,
        result.rejected,
        background=reproduction_check(state, result.verify),
        signatures=result.signatures,
        new_signatures=result.new_signatures,
        tests_created=[
            {"signature_id": g.signature_id, "test_id": g.test_id} for g in generated if g.created
        ],
    )


@router.post("/successes", dependencies=[Depends(require_token)])
async def post_successes(request: Request) -> JSONResponse:
    """Store a batch of success events (the failure rate's denominator)."""
    events = await _events(request)
    state = request.app.state
    result = await run_in_threadpool(
        process_successes, events, engine=state.engine, settings=state.settings
    )
    return _answer(result.accepted, result.rejected)


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Say whether the API and its store are up (no token needed)."""

    def ping() -> None:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception as error:  # any failure to reach the store makes the service unhealthy
        return JSONResponse({"status": "unavailable", "database": str(error)[:200]}, 503)
    return JSONResponse({"status": "ok", "database": "ok"})
