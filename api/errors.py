"""Errors the API answers with: always JSON `{"error": "<what was wrong>"}` and the right status.

ApiError (HTTPException)
├── 400 bad request: malformed JSON, bad compression, wrong shape
├── 401 unauthorized: missing or wrong token / DSN key
├── 404 not found: unknown project, fix proposal
├── 409 conflict: a fix proposal that is not awaiting a decision (decided, expired, run gone)
├── 413 too large: body over the configured limit (before or after decompression)
├── 415 unsupported media type: wrong Content-Type or Content-Encoding
└── 503 unavailable: the store cannot be reached; the client should retry
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

__all__ = ["ApiError", "install_error_handlers"]


class ApiError(HTTPException):
    """An error with a status and a message meant for the client."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return JSONResponse(
        {"error": error.detail}, status_code=error.status_code, headers=error.headers
    )


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
    ]
    return JSONResponse({"error": "; ".join(problems)}, status_code=422)


async def _store_unavailable(_: Request, error: Exception) -> JSONResponse:
    # Nothing was committed: saying so lets the client retry without losing or doubling events.
    return JSONResponse(
        {"error": "the store is unavailable; nothing was stored, retry later"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app raises answer as JSON with a clear message."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _store_unavailable)
    app.add_exception_handler(PoolTimeoutError, _store_unavailable)  # every connection busy
