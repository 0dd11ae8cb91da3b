"""Errors the API answers with: always JSON `{"error": "<what was wrong>"}` and the right status.

The one exception tree (`immunity.models.errors`) is mapped to HTTP here and nowhere else, so a
route raises what went wrong and never picks a status itself:

    ImmunityError                   500  generic message; the error is logged, never sent
    ├── NotFoundError               404  unknown fix proposal, signature, deployment, …
    ├── InvalidInputError           422  input that cannot be used as given
    │   └── MalformedInputError     400  a body that cannot even be read (JSON, encoding, format)
    ├── ConflictError               409  contradicts the current state (a decided proposal)
    ├── RefusedError                403  immunity will not do this, whoever asks (a deploy below
    │                                    the gate); 403 and not 409 because asking again after
    │                                    the state changes is not what helps, and
    │                                    `immunity.Client` reads 403 back as a RefusedError
    └── UnavailableError            503  a dependency is away; generic message, `Retry-After`

Besides the tree: `ApiError` carries HTTP-only answers (401 no or bad token, 413 too large, 415
wrong media type); a failed request validation is a 422 (400 when the body is not JSON); a store
that cannot be reached (SQLAlchemy `OperationalError`, a pool timeout) is the same 503 as
`UnavailableError`; anything else is a 500 with a generic message. No answer carries a database
error's text, host or port.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from immunity.models.errors import (
    ConflictError,
    ImmunityError,
    InvalidInputError,
    MalformedInputError,
    NotFoundError,
    RefusedError,
    UnavailableError,
)

__all__ = ["ApiError", "ErrorBody", "error_responses", "install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

# Most specific first is not needed: `status_for` walks the error's MRO.
_STATUS: dict[type[ImmunityError], int] = {
    NotFoundError: 404,
    InvalidInputError: 422,
    MalformedInputError: 400,
    ConflictError: 409,
    RefusedError: 403,
    UnavailableError: 503,
    ImmunityError: 500,
}

UNAVAILABLE = "a service immunity depends on is unavailable; nothing was stored, retry later"
INTERNAL = "internal error; it has been logged"


class ErrorBody(BaseModel):
    """Every error answer's body: what was wrong, in words meant for the client."""

    error: str


class ApiError(HTTPException, ImmunityError):
    """An HTTP-only answer (401, 413, 415, …) with a status and a message meant for the client."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status_code, detail=message, headers=headers)


def status_for(error: ImmunityError) -> int:
    """Return the HTTP status of an error of the tree: that of its nearest mapped branch."""
    for kind in type(error).__mro__:
        if kind in _STATUS:
            return _STATUS[kind]
    return 500  # unreachable for an ImmunityError: the root is mapped


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """Return a route's `responses=` documenting these error statuses with the `ErrorBody`."""
    return {status: {"model": ErrorBody} for status in statuses}


def _unavailable() -> JSONResponse:
    # Nothing was committed: saying so lets the client retry without losing or doubling events.
    return JSONResponse({"error": UNAVAILABLE}, status_code=503, headers={"Retry-After": "1"})


async def _immunity_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ImmunityError)
    status = status_for(error)
    if status == 503:
        log.warning("%s %s: unavailable: %s", request.method, request.url.path, error)
        return _unavailable()
    if status == 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": INTERNAL}, status_code=500)
    return JSONResponse({"error": str(error)}, status_code=status)


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
    # A body that is not even JSON is malformed (400), as when a route reads the body itself.
    malformed = any(item["type"] == "json_invalid" for item in error.errors())
    return JSONResponse({"error": "; ".join(problems)}, status_code=400 if malformed else 422)


async def _store_unavailable(request: Request, error: Exception) -> JSONResponse:
    log.warning("%s %s: store unavailable: %s", request.method, request.url.path, error)
    return _unavailable()


async def _internal_error(_: Request, error: Exception) -> JSONResponse:
    # Starlette still re-raises the error after this answer, so the server logs its traceback.
    return JSONResponse({"error": INTERNAL}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app raises answer as JSON with a clear message and the right status."""
    # Starlette's HTTPException covers FastAPI's and routing's own (unknown path, wrong method);
    # an ApiError is also an ImmunityError, but its MRO reaches HTTPException first.
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ImmunityError, _immunity_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _store_unavailable)
    app.add_exception_handler(PoolTimeoutError, _store_unavailable)  # every connection busy
    app.add_exception_handler(Exception, _internal_error)
