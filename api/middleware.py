"""Every request's frame: its request id (accepted or made, echoed), its timing, access log line and metrics."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import access_log, metrics
from api.problems import refusal
from api.request_ids import HEADER, accepted_request_id, new_request_id
from billing_core.errors import InvalidInput

_HEADER_KEY = HEADER.lower().encode("latin-1")


def _route(scope: Scope) -> str:
    """The route template that answered (`/api/v1/holds/{request_id}/settle`), or 'unmatched'."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"


class RequestFrame:
    """Pure ASGI middleware: request ids, the access log and the request metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        sent = next((value for name, value in scope["headers"] if name == _HEADER_KEY), None)
        status = {"code": 500}
        try:
            request_id = accepted_request_id(sent.decode("latin-1") if sent is not None else None)
            refused = None
        except InvalidInput as exc:
            request_id, refused = new_request_id(), exc
        state["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (_HEADER_KEY, request_id.encode("latin-1"))]
            await send(message)

        try:
            if refused is not None:
                await refusal(refused)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            method, route = scope["method"], _route(scope)
            metrics.REQUESTS.labels(method, route, str(status["code"])).inc()
            metrics.LATENCY.labels(method, route).observe(elapsed)
            if status["code"] >= 400:
                metrics.refused(state.get("refusal_code"))
            access_log.write(method, route, status["code"], elapsed * 1000, request_id, state.get("key_prefix"))
