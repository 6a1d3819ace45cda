"""Authentication: every /api/v1 route checks its API key before FastAPI reads its parameters or its body.

`KeyRoute` wraps each route's handler: the bearer token is authorized by billing_core.api_keys (which counts the
request in the key's rate class, across processes) before the body is validated, so a bad key gets 401 even when
the body is invalid too, and the grant (who the key acts as) is what the handler then acts with.
A route names its rate class and where its organization comes from in its OpenAPI extension `x-key`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from billing_core import api_keys, database
from billing_core.api_keys import KeyGrant
from billing_core.errors import PermissionDenied, Unauthenticated

SECURITY_SCHEME = {"ApiKey": {"type": "http", "scheme": "bearer", "description": "An API key: cbk_<prefix>_<secret>"}}


def key(use: str, scope: str = "path") -> dict[str, Any]:
    """A route's OpenAPI extra: its rate class (`use`) and where its organization comes from.

    scope 'path': the path's {org_id}; 'fields': org_id and user_id of the JSON body or the query;
    'batch': the organizations the body's events name; 'none': no organization (system routes).
    """
    return {"x-key": {"use": use, "scope": scope}, "security": [{"ApiKey": []}]}


def bearer_token(request: Request) -> str:
    """The API key the request sends as `Authorization: Bearer <key>`; Unauthenticated without one."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("This request needs an API key: send it as `Authorization: Bearer cbk_...`.")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send the API key as `Authorization: Bearer cbk_...` (the Bearer scheme).")
    return token.strip()


async def _json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is none (FastAPI's validation then says what is wrong)."""
    raw = await request.body()  # cached: FastAPI reads the same bytes afterwards
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _authorize(request: Request, token: str, use: str, scope: str, body: dict[str, Any]) -> KeyGrant:
    db = request.app.state.engines.app
    if scope == "path":
        return api_keys.authorize(db, token, use, org_id=request.path_params.get("org_id"))  # type: ignore[arg-type]
    if scope == "fields":
        org_id = _text(body.get("org_id")) or request.query_params.get("org_id")
        user_id = _text(body.get("user_id")) or request.query_params.get("user_id")
        return api_keys.authorize(db, token, use, org_id=org_id, user_id=user_id)  # type: ignore[arg-type]
    if scope == "batch":
        return _authorize_batch(request, db, token, use, body)
    return api_keys.authorize(db, token, use)  # type: ignore[arg-type]


def _authorize_batch(request: Request, db: Any, token: str, use: str, body: dict[str, Any]) -> KeyGrant:
    """A batch: the key must cover every organization its events name; events naming none need a platform-wide
    key. The organizations allowed are kept for the batch's own check of each event (request.state.allowed_orgs)."""
    events = body.get("events") if isinstance(body.get("events"), list) else []
    named = sorted({org for org in (_text(e.get("org_id")) for e in events if isinstance(e, dict)) if org})
    unnamed = not events or any(not (isinstance(e, dict) and _text(e.get("org_id"))) for e in events)
    if unnamed:
        grant = api_keys.authorize(db, token, use)  # type: ignore[arg-type]
        request.state.allowed_orgs = None  # a platform-wide key: any organization
        return grant
    grants = [api_keys.authorize(db, token, use, org_id=org) for org in named]  # type: ignore[arg-type]
    request.state.allowed_orgs = named
    return grants[0]


class KeyRoute(APIRoute):
    """A route whose API key is authorized (and counted) before its parameters and body are read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        spec = (self.openapi_extra or {}).get("x-key")
        if spec is None:
            return handler
        use, scope = spec["use"], spec["scope"]

        async def authenticated(request: Request) -> Response:
            token = bearer_token(request)
            request.state.key_prefix = api_keys.prefix_of(token)
            body = await _json_object(request) if scope in ("fields", "batch") else {}
            request.state.grant = await run_in_threadpool(_authorize, request, token, use, scope, body)
            return await handler(request)

        return authenticated


def grant_of(request: Request) -> KeyGrant:
    """The request's grant (a dependency of the routes behind KeyRoute)."""
    grant = getattr(request.state, "grant", None)
    if grant is None:  # a route outside KeyRoute asked for one: a programming error, refused rather than open
        raise PermissionDenied("This route is not behind an API key check.")
    return grant


def acting(grant: KeyGrant) -> Any:
    """The context every billing_core call of a request runs in: attributed to the request's key."""
    return database.acting_through_key(grant.key_id)
