"""Request ids: the caller's X-Request-ID when it is a usable one, else a fresh one."""

from __future__ import annotations

import uuid

from billing_core.errors import InvalidInput

HEADER = "X-Request-ID"
MAX_LENGTH = 200


def new_request_id() -> str:
    """A fresh request id."""
    return f"req_{uuid.uuid4().hex}"


def accepted_request_id(sent: str | None) -> str:
    """The caller's request id (1-200 printable characters), or a fresh one when none was sent."""
    if sent is None:
        return new_request_id()
    if not 0 < len(sent) <= MAX_LENGTH or not sent.isprintable() or not sent.isascii():
        raise InvalidInput(
            f"{HEADER} must be 1 to {MAX_LENGTH} printable ASCII characters (got {len(sent)} characters"
            f"{', some not printable' if not sent.isprintable() or not sent.isascii() else ''}): send another or none."
        )
    return sent
