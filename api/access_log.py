"""The access log: one JSON line per request, never the key itself (its public prefix only)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

log = logging.getLogger("billing.api.access")


def configure() -> None:
    """Send the access log to stderr as bare JSON lines (once per process)."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def write(method: str, route: str, status: int, ms: float, request_id: str, key_prefix: str | None) -> None:
    """Log one answered request."""
    log.info(json.dumps({
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "method": method,
        "route": route,
        "status": status,
        "ms": round(ms, 2),
        "request_id": request_id,
        "key_prefix": key_prefix,
    }))
