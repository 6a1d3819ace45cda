"""The FastAPI application: /health, /ready, /metrics and the versioned API under /api/v1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.engine import Engine
from starlette.middleware.cors import CORSMiddleware

from api import access_log, charging, health, keys, organizations, problems, system
from api.middleware import RequestFrame
from billing_core import database, settings

PREFIX = "/api/v1"
EXPOSED_HEADERS = ["X-Request-ID", "Retry-After", "Idempotent-Replayed"]


@dataclass(frozen=True)
class Engines:
    """The API's two database roles: the app's (keys, organization and system routes) and the service's (charging)."""

    app: Engine
    service: Engine


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the API key's security scheme."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        components = document.setdefault("components", {})
        components["securitySchemes"] = keys.SECURITY_SCHEME
        components.setdefault("schemas", {})["Problem"] = problems.Problem.model_json_schema()
        app.openapi_schema = document
    return app.openapi_schema


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
    url = database_url or database.database_url()
    app.state.database_url = url
    app.state.engines = Engines(database.app_engine(url), database.service_engine(url))
    problems.install(app)
    app.include_router(health.router)
    app.include_router(charging.router)
    app.include_router(organizations.router)
    app.include_router(system.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    origins = settings.api_cors_origins()
    if origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(origins), allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=EXPOSED_HEADERS, max_age=600,
        )
    app.add_middleware(RequestFrame)  # outermost: every answer, even a CORS refusal, carries its request id
    return app
