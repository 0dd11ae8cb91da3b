"""The sample target service: a FastAPI app standing in for the user's production system."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool

from .errors import status_for_exception
from .faults import FAULT_DESCRIPTIONS, FaultState, UnknownFaultError
from .generation import GenerationService
from .jobs import ConnectionPool, ExecutionRepository, JobService
from .reporter import Reporter, ReportingMiddleware
from .shop import Shop
from .shop_routes import router as shop_router
from .ui_pages import router as ui_router

__all__ = ["Services", "create_app"]


@dataclass
class Services:
    """Everything the handlers use, built once per app."""

    faults: FaultState
    generation: GenerationService
    pool: ConnectionPool
    executions: ExecutionRepository
    jobs: JobService
    release: str
    environment: str
    shop: Shop

    @classmethod
    def build(cls, faults: FaultState, release: str, environment: str) -> Services:
        """Wire the services of one app around its fault state."""
        pool = ConnectionPool(faults)
        executions = ExecutionRepository(pool)
        return cls(
            faults=faults,
            generation=GenerationService(faults),
            pool=pool,
            executions=executions,
            jobs=JobService(faults, executions),
            release=release,
            environment=environment,
            shop=Shop(faults),
        )


async def get_services(request: Request) -> Services:
    """Return the services of the app serving this request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class GenerateRequest(BaseModel):
    """Ask for a generated project."""

    prompt: str = Field(min_length=1, max_length=10_000)
    framework: Literal["html", "react", "vue"] = "react"


class GeneratedFileOut(BaseModel):
    """One generated file."""

    path: str
    content: str


class GenerateResponse(BaseModel):
    """A generated project."""

    project_id: str
    framework: str
    files: list[GeneratedFileOut]


class JobRequest(BaseModel):
    """Submit a job: a jobspec and the questions to run it on."""

    jobspec_id: str = Field(min_length=1, max_length=200)
    questions: list[str] = Field(min_length=1, max_length=100)


class FaultToggle(BaseModel):
    """Switch a fault on or off."""

    enabled: StrictBool


api = APIRouter(prefix="/api")
admin = APIRouter(prefix="/admin")


@api.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateRequest, services: ServicesDep) -> GenerateResponse:
    """Generate a project from a prompt."""
    project = await services.generation.generate(body.prompt, body.framework)
    return GenerateResponse(
        project_id=project.project_id,
        framework=project.framework,
        files=[GeneratedFileOut(path=f.path, content=f.content) for f in project.files],
    )


@api.post("/jobs", status_code=202)
async def submit_job(body: JobRequest, services: ServicesDep) -> JSONResponse:
    """Accept a job; it runs in the background and moves from `created` to `completed`."""
    job = services.jobs.submit(body.jobspec_id, list(body.questions))
    shaped = services.jobs.to_dict(job)
    return JSONResponse(
        {"id": shaped["id"], "jobspec_id": shaped["jobspec_id"], "status": shaped["status"]},
        status_code=202,
    )


@api.get("/jobs/{job_id}")
async def get_job(job_id: str, services: ServicesDep) -> dict[str, Any]:
    """Return one job with its status and, once completed, its answers."""
    job = services.jobs.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id!r} not found")
    return services.jobs.to_dict(job)


@api.get("/executions")
async def list_executions(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    """Return the most recent executions (the receipts), newest first."""
    return {"executions": services.executions.list_recent(limit)}


@api.get("/health")
async def health(services: ServicesDep) -> JSONResponse:
    """Report whether the service and its database answer; 503 when degraded."""
    database_ok = services.pool.ping()
    body = {
        "status": "ok" if database_ok else "degraded",
        "release": services.release,
        "environment": services.environment,
        "checks": {"database": "ok" if database_ok else "error"},
    }
    return JSONResponse(body, status_code=200 if database_ok else 503)


def _fault_state(services: Services) -> dict[str, Any]:
    return {"faults": services.faults.snapshot()}


@admin.get("/faults")
async def list_faults(services: ServicesDep) -> dict[str, Any]:
    """Return every fault with whether it is on, and what each one breaks."""
    return {
        **_fault_state(services),
        "descriptions": {fault.value: text for fault, text in FAULT_DESCRIPTIONS.items()},
    }


@admin.put("/faults/{name}")
async def set_fault(name: str, body: FaultToggle, services: ServicesDep) -> dict[str, Any]:
    """Switch one fault on or off; 404 for an unknown fault."""
    try:
        fault = services.faults.set(name, body.enabled)
    except UnknownFaultError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return {"name": fault.value, "enabled": body.enabled, **_fault_state(services)}


@admin.post("/faults/reset")
async def reset_faults(services: ServicesDep) -> dict[str, Any]:
    """Switch every fault off."""
    services.faults.reset()
    return _fault_state(services)


def create_app(
    reporter: Reporter | None = None,
    *,
    release: str = "sample@1.0.0",
    environment: str = "production",
    faults: FaultState | None = None,
    propagate_errors: bool = False,
) -> FastAPI:
    """Return the sample service; with a reporter, failures and API successes are reported.

    `propagate_errors` lets unhandled exceptions reach an error SDK's own middleware (an app
    instrumented with sentry-sdk), which captures them and answers 500.
    """
    services = Services.build(faults or FaultState(), release, environment)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await services.jobs.runner.shutdown()
            if reporter is not None:
                await asyncio.to_thread(reporter.flush)

    app = FastAPI(title="Sample service", version=release, lifespan=lifespan)
    app.state.services = services
    app.state.faults = services.faults
    app.state.reporter = reporter
    app.include_router(api)
    app.include_router(admin)
    app.include_router(shop_router)
    app.include_router(ui_router)
    app.add_middleware(
        ReportingMiddleware,
        reporter=reporter,
        environment=environment,
        release=release,
        status_for=status_for_exception,
        tags={"service": "sample"},
        # A page's error report is not a success of the service's API.
        ignore_paths=frozenset({"/api/health", "/api/client-errors"}),
        propagate_errors=propagate_errors,
    )
    return app
