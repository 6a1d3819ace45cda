"""Refusals as application/problem+json (RFC 9457): type, title, status, detail, and the ledger's CB code.

Each billing_core refusal maps to one HTTP status by its SQLSTATE, here only; `detail` is the database's message,
written for a person to act on. FastAPI's own validation errors and unknown routes get the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.amounts import decimal_text
from billing_core.errors import BillingError, DatabaseUnavailable, InsufficientCredits, RateLimited

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("billing.api")


# code -> (HTTP status, title); the README's error table lists the same
STATUS_BY_CODE: dict[str, tuple[int, str]] = {
    "CB001": (422, "Invalid amount"),
    "CB002": (404, "Not found"),
    "CB003": (404, "Not a member"),
    "CB004": (402, "Insufficient pool credits"),
    "CB005": (402, "Insufficient credits"),
    "CB006": (409, "Allocation inactive"),
    "CB007": (409, "Request id conflict"),
    "CB008": (403, "Permission denied"),
    "CB009": (422, "Invalid input"),
    "CB010": (409, "Already exists"),
    "CB011": (403, "Organization inactive"),
    "CB012": (409, "Rule violation"),
    "CB013": (429, "Rate limited"),
    "CB014": (409, "Hold not open"),
    "CB015": (401, "Unauthenticated"),
}


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, for a person (detail) and a program (status, code)."""

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None


_DESCRIPTIONS = {
    401: "Unauthenticated: no API key, or one that is malformed, unknown or revoked",
    402: "Insufficient credits (remaining and needed in the body)",
    403: "The key (or its user) may not do this here",
    404: "Unknown organization, user or record",
    409: "Conflict: a request id reused with other figures, a hold not open, a rule",
    422: "Invalid input",
    429: "Rate limited: retry after the Retry-After header's seconds",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of a route's refusals: problem+json bodies with these statuses."""
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {status: {"description": _DESCRIPTIONS[status], "content": content} for status in statuses}


def problem_type(title: str) -> str:
    """The problem's type URI: a URN naming it (no page to fetch)."""
    return "urn:org-billing:problem:" + title.lower().replace(" ", "-")


class ProblemResponse(JSONResponse):
    """A JSON response with the problem+json media type."""

    media_type = MEDIA_TYPE


def problem(status: int, title: str, detail: str, code: str | None = None, **extra: Any) -> ProblemResponse:
    """A problem+json response."""
    body = {"type": problem_type(title), "title": title, "status": status, "detail": detail, "code": code, **extra}
    headers = {"WWW-Authenticate": 'Bearer realm="billing"'} if status == 401 else None
    return ProblemResponse(body, status_code=status, headers=headers)


def refusal(exc: BillingError) -> ProblemResponse:
    """The problem+json answer to a billing_core refusal."""
    if isinstance(exc, DatabaseUnavailable):
        return problem(503, "Database unavailable", "The database is unreachable; try again shortly.")
    status, title = STATUS_BY_CODE.get(exc.sqlstate or "", (422, "Refused"))
    extra: dict[str, Any] = {}
    response_headers: dict[str, str] = {}
    if isinstance(exc, InsufficientCredits):
        extra.update({name: decimal_text(figure) for name, figure in
                      (("remaining", exc.remaining), ("needed", exc.needed)) if figure is not None})
    if isinstance(exc, RateLimited):
        retry_after = exc.retry_after
        if retry_after is not None:
            extra["retry_after"] = retry_after
            response_headers["Retry-After"] = str(retry_after)
    response = problem(status, title, str(exc), exc.sqlstate, **extra)
    response.headers.update(response_headers)
    return response


def _location(error: dict[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"


def install(app: FastAPI) -> None:
    """Answer refusals, validation errors, HTTP errors and unexpected faults as problem+json."""

    @app.exception_handler(BillingError)
    async def _billing_error(request: Request, exc: BillingError) -> ProblemResponse:
        request.state.refusal_code = exc.sqlstate
        return refusal(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = [{"field": _location(e), "message": str(e.get("msg", "")).removeprefix("Value error, ")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "The request is not valid."
        request.state.refusal_code = "CB009"
        return problem(422, "Invalid input", detail, "CB009", errors=errors)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> ProblemResponse:
        titles = {404: "Not found", 405: "Method not allowed"}
        response = problem(exc.status_code, titles.get(exc.status_code, "HTTP error"), str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> ProblemResponse:
        log.exception("unexpected error", extra={"request_id": getattr(request.state, "request_id", None)})
        return problem(500, "Internal error", "An unexpected error occurred; it was logged with the request id.")
