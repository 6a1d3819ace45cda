"""The FastAPI application: /health, /ready, /metrics and the versioned API under /api/v1."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from api import access_log, health, problems
from api.middleware import RequestFrame
from billing_core import database, settings

PREFIX = "/api/v1"
EXPOSED_HEADERS = ["X-Request-ID", "Retry-After", "Idempotent-Replayed"]


def create_app(database_url: str | None = None) -> FastAPI:
    """The API application on the database at `database_url` (default: billing_core's database)."""
    access_log.configure()
    app = FastAPI(
        title="Organization billing API",
        version="1",
        summary="Charge metered calls against prepaid organization credit pools; read and manage organizations.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.state.database_url = database_url or database.database_url()
    problems.install(app)
    app.include_router(health.router)
    origins = settings.api_cors_origins()
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS, max_age=600,
        )
    app.add_middleware(RequestFrame)  # outermost: every answer, even a CORS refusal, carries its request id
    return app
