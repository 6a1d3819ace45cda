"""Liveness and readiness: /health answers while the process runs; /ready when the database is reachable and
its schema is current (billing_core.migrations.pending)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from api import metrics
from api.problems import problem
from billing_core import migrations
from billing_core.errors import DatabaseUnavailable

router = APIRouter(tags=["health"])


class Status(BaseModel):
    """What a health probe answers."""

    status: str


@router.get("/health", response_model=Status, summary="The process is alive")
def health() -> Status:
    """The process answers."""
    return Status(status="alive")


@router.get("/ready", response_model=Status, summary="The database is reachable and migrated",
            responses={503: {"description": "Not ready: the database is unreachable or migrations are pending"}})
def ready(request: Request) -> Status | Response:
    """Ready when the database answers and every migration and routine file is applied as it is now."""
    try:
        pending = migrations.pending(request.app.state.database_url)
    except DatabaseUnavailable as exc:
        return problem(503, "Not ready", str(exc))
    if pending:
        return problem(503, "Not ready", f"Migrations pending: {', '.join(pending)}; run `billing db migrate`.",
                       pending=pending)
    return Status(status="ready")


@router.get("/metrics", include_in_schema=False)
def metrics_page() -> Response:
    """The Prometheus metrics of every worker."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
