"""Read-only views over HTTP: signatures and regression tests, a page at a time.

A token needs the `read` scope and sees its own project's (every project's with `admin`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from immunity.api.deps import EngineDep, ReaderDep
from immunity.api.errors import error_responses
from immunity.api.public import SignaturePage, SignaturePublic, TestPage, TestPublic
from immunity.models.enums import SignatureStatus, TestState
from immunity.tasks.shared.queries import list_signatures, list_tests, state_of_test

__all__ = ["router"]

router = APIRouter(
    prefix="/api/v1",
    tags=["read"],
    responses=error_responses(401, 403, 422, 503),
)

Limit = Annotated[int, Query(ge=1, le=500, description="How many to return (1–500).")]
Offset = Annotated[int, Query(ge=0, description="How many to skip: the next page's start.")]


@router.get("/signatures", response_model=SignaturePage)
async def get_signatures(
    engine: EngineDep,
    principal: ReaderDep,
    status: Annotated[SignatureStatus | None, Query(description="Only this status.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> SignaturePage:
    """List signatures, most recently seen first; `offset` pages through them."""
    found = await run_in_threadpool(
        list_signatures,
        engine,
        limit=limit,
        offset=offset,
        status=status,
        project=principal.visible_project,
    )
    return SignaturePage(
        signatures=[SignaturePublic.model_validate(row) for row in found],
        limit=limit,
        offset=offset,
    )


@router.get("/tests", response_model=TestPage)
async def get_tests(
    engine: EngineDep,
    principal: ReaderDep,
    status: Annotated[
        TestState | None, Query(description="Only active, quarantined or inactive tests.")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> TestPage:
    """List regression tests, newest first; `offset` pages through them."""
    found = await run_in_threadpool(
        list_tests,
        engine,
        limit=limit,
        offset=offset,
        state=status,
        project=principal.visible_project,
    )
    return TestPage(
        tests=[
            TestPublic.model_validate({**row.model_dump(), "state": state_of_test(row)})
            for row in found
        ],
        limit=limit,
        offset=offset,
    )
