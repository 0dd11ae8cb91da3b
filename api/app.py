"""The immunity HTTP service: `create_app()` for uvicorn, tests and embedding."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from immunity.api.errors import install_error_handlers
from immunity.api.routes_fixes import router as fixes_router
from immunity.api.routes_ingest import router as ingest_router
from immunity.api.routes_read import router as read_router
from immunity.api.routes_sentry import router as sentry_router
from immunity.models.db import get_engine
from immunity.models.settings import Settings, get_settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Return the API app over a store (default: the configured settings and store)."""
    settings = settings or get_settings()
    app = FastAPI(title="immunity", summary="Failures in, regression tests out.", version="0.1.0")
    app.state.settings = settings
    app.state.engine = engine or get_engine(settings.effective_database_url)
    install_error_handlers(app)
    app.include_router(ingest_router)
    app.include_router(sentry_router)
    app.include_router(fixes_router)
    app.include_router(read_router)
    return app
