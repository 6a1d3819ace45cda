"""Charging many metered events in one database call (the HTTP API's batch endpoint).

Each event is charged as `charging.charge_usage` would charge it, on its own: a refused event leaves the others
charged, and each is idempotent on its own request id (sql/routines/111_charging_batch.sql).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import fetch
from billing_core.errors import BillingError, InvalidInput, translate
from billing_core.moments import aware
from billing_core.pricing import Usage, explanation

MAX_EVENTS = 1000


@dataclass(frozen=True)
class Event:
    """One metered event of a batch: who, which organization (None: charging_org_for's), what, its request id."""

    user_id: str
    usage: Usage
    org_id: str | None = None
    request_id: str | None = None
    metadata: Mapping[str, Any] | None = None
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What one event of a batch got: its charge, or the refusal that left it uncharged."""

    position: int
    org_id: str | None
    credits: Decimal | None
    remaining: Decimal | None
    explanation: dict[str, Any] | None
    replayed: bool | None
    refusal: BillingError | None


def _number(value: Amount, what: str) -> str:
    return str(to_decimal(value, what))


def _event(event: Event) -> dict[str, Any]:
    counts = event.usage
    moment = aware(event.occurred_at, "Usage time")
    return {
        "user_id": event.user_id,
        "org_id": event.org_id,
        "service_type": counts.service_type,
        "service_name": counts.service_name,
        "input_tokens": _number(counts.input_tokens, "Input tokens"),
        "output_tokens": _number(counts.output_tokens, "Output tokens"),
        "images": _number(counts.images, "Images"),
        "requests": _number(counts.requests, "Requests"),
        "byok": bool(counts.byok),
        "request_id": event.request_id,
        "metadata": dict(event.metadata or {}),
        "occurred_at": moment.isoformat() if moment else None,
    }


def charge_batch(db: Engine, events: Sequence[Event], *, allowed_orgs: Sequence[str] | None = None) -> list[Outcome]:
    """Charge each event on its own, in one database call; one outcome per event, in order.

    `allowed_orgs` (None: any) limits the organizations that may be charged; an event outside them is refused.
    """
    if not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInput(f"A batch holds 1 to {MAX_EVENTS:,} events (got {len(events):,}).")
    encoded = json.dumps([_event(event) for event in events])
    if "\\u0000" in encoded:
        raise InvalidInput("An event of the batch contains a NUL character (\\x00), which cannot be stored.")
    rows = fetch(
        db,
        "select position, org_id, credits, remaining, explanation::text as explanation, replayed, code, message"
        " from charge_usage_batch(cast(:events as jsonb), :allowed_orgs)",
        {"events": encoded, "allowed_orgs": list(allowed_orgs) if allowed_orgs is not None else None},
    )
    return [
        Outcome(row.position, row.org_id, row.credits, row.remaining, explanation(row.explanation), row.replayed,
                None if row.code is None else (translate(row.code, row.message) or InvalidInput(row.message)))
        for row in rows
    ]
