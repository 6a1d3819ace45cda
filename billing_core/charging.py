"""Charging metered calls: price and deduct at once, or hold credits first and settle afterwards.

Metered services call these as trusted callers (no acting user), like
`credits.deduct`. Each is one stored function call in one transaction
(sql/routines/110_charging.sql). A retry with the same request id answers as
the first call did (`replayed` is True). With no organization named, the
user's default organization pays, else the first they joined, else their
individual balance (a personal organization created by its first top-up).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import call, fetch, fetch_frame, record
from billing_core.moments import aware
from billing_core.pricing import Usage, explanation, usage_counts


@dataclass(frozen=True)
class Charge:
    """A priced and charged call: who paid, how much, what remains, and the arithmetic."""

    org_id: str
    credits: Decimal
    remaining: Decimal
    explanation: dict[str, Any]
    replayed: bool


@dataclass(frozen=True)
class Hold:
    """Credits held for a call in progress until it is settled, released or expires."""

    org_id: str
    request_id: str
    credits: Decimal
    expires_at: datetime
    remaining: Decimal  # what the member can still spend beside the hold
    replayed: bool


@dataclass(frozen=True)
class HoldEnd:
    """A hold settled (credits charged) or released (credits freed), and what the member can spend after."""

    credits: Decimal
    remaining: Decimal
    replayed: bool


def _metadata(metadata: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(metadata or {}))


def charging_org(db: Engine, user_id: str, org_id: str | None = None) -> str:
    """The organization a user's call is charged to: `org_id`, else default, else first, else their balance."""
    return call(db, "select charging_org_for(:user_id, :org_id)", {"user_id": user_id, "org_id": org_id})


def charge_usage(
    db: Engine,
    user_id: str,
    usage: Usage,
    *,
    org_id: str | None = None,
    request_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> Charge:
    """Price one call and charge it to the member, in one transaction; the explanation goes into attribution."""
    rows = fetch(
        db,
        "select org_id, credits, remaining, explanation::text as explanation, replayed from charge_usage(:org_id,"
        " :user_id, :service_type, :service_name, :input_tokens, :output_tokens, :images, :requests, :byok,"
        " :request_id, cast(:metadata as jsonb), cast(:occurred_at as timestamptz))",
        {
            "org_id": org_id,
            "user_id": user_id,
            **usage.params(),
            "request_id": request_id,
            "metadata": _metadata(metadata),
            "occurred_at": aware(occurred_at, "Usage time"),
        },
    )
    charge = rows[0]
    return Charge(charge.org_id, charge.credits, charge.remaining, explanation(charge.explanation), charge.replayed)


@dataclass(frozen=True)
class CreditCharge:
    """A fixed number of credits charged: who paid, what remains, and whether it was a retry's answer."""

    org_id: str
    credits: Decimal
    remaining: Decimal
    replayed: bool


def charge_credits(
    db: Engine,
    user_id: str,
    credits: Amount,
    service_type: str,
    service_name: str,
    *,
    org_id: str | None = None,
    request_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> CreditCharge:
    """Charge a fixed number of credits (`credits.deduct`), saying whether the request id was already charged."""
    rows = fetch(
        db,
        "select org_id, credits, remaining, replayed from charge_credits(:org_id, :user_id, :credits,"
        " :service_type, :service_name, :request_id, cast(:metadata as jsonb), cast(:occurred_at as timestamptz))",
        {
            "org_id": org_id,
            "user_id": user_id,
            "credits": to_decimal(credits, "Credits to charge"),
            "service_type": service_type,
            "service_name": service_name,
            "request_id": request_id,
            "metadata": _metadata(metadata),
            "occurred_at": aware(occurred_at, "Usage time"),
        },
    )
    return record(CreditCharge, rows[0])


def reserve(
    db: Engine,
    user_id: str,
    credits: Amount,
    request_id: str,
    service_type: str,
    service_name: str,
    *,
    org_id: str | None = None,
    ttl_seconds: int | None = None,
) -> Hold:
    """Hold up to `credits` of the member's allocation for a call in progress (default lifetime: platform rule)."""
    rows = fetch(
        db,
        "select org_id, request_id, credits, expires_at, remaining, replayed from reserve_credits(:org_id, :user_id,"
        " :credits, :request_id, :service_type, :service_name, :ttl)",
        {
            "org_id": org_id,
            "user_id": user_id,
            "credits": to_decimal(credits, "Credits to hold"),
            "request_id": request_id,
            "service_type": service_type,
            "service_name": service_name,
            "ttl": ttl_seconds,
        },
    )
    return record(Hold, rows[0])


def settle(
    db: Engine, org_id: str, request_id: str, actual_credits: Amount, *, metadata: Mapping[str, Any] | None = None
) -> HoldEnd:
    """Charge the actual credits of a held call (0: nothing used) and free the rest of the hold."""
    rows = fetch(
        db,
        "select credits, remaining, replayed from settle_hold(:org_id, :request_id, :actual, cast(:metadata as jsonb))",
        {
            "org_id": org_id,
            "request_id": request_id,
            "actual": to_decimal(actual_credits, "Actual credits"),
            "metadata": _metadata(metadata),
        },
    )
    return record(HoldEnd, rows[0])


def settle_usage(
    db: Engine,
    org_id: str,
    request_id: str,
    *,
    input_tokens: Amount = 0,
    output_tokens: Amount = 0,
    images: Amount = 0,
    requests: Amount = 1,
    byok: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> Charge:
    """Price the held call from its actual usage and settle the hold at that price, in one transaction."""
    rows = fetch(
        db,
        "select credits, remaining, explanation::text as explanation, replayed from settle_usage(:org_id, :request_id,"
        " :input_tokens, :output_tokens, :images, :requests, :byok, cast(:metadata as jsonb))",
        {
            "org_id": org_id,
            "request_id": request_id,
            **usage_counts(input_tokens, output_tokens, images, requests, byok),
            "metadata": _metadata(metadata),
        },
    )
    settled = rows[0]
    return Charge(org_id, settled.credits, settled.remaining, explanation(settled.explanation), settled.replayed)


def release(db: Engine, org_id: str, request_id: str) -> HoldEnd:
    """Free a hold without charging; returns the credits freed."""
    rows = fetch(
        db,
        "select credits, remaining, replayed from release_hold(:org_id, :request_id)",
        {"org_id": org_id, "request_id": request_id},
    )
    return record(HoldEnd, rows[0])


def release_expired_holds(db: Engine, now: datetime | None = None) -> int:
    """Free every hold whose lifetime ended by `now` (default: the database's now); returns how many."""
    return call(db, "select release_expired_holds(cast(:now as timestamptz))", {"now": aware(now, "Expiry time")})


def top_up_personal_balance(
    db: Engine,
    actor_id: str | None,
    user_id: str,
    credits: Amount,
    purchase_amount: Amount,
    *,
    description: str | None = None,
    external_ref: str | None = None,
) -> tuple[str, Decimal]:
    """Enter a paid top-up of a user's individual balance (system admins, the operator); returns (org_id, remaining).

    A user buys for themself with `orders.order_personal_credits`, credited when the payment is recorded.
    """
    rows = fetch(
        db,
        "select org_id, remaining from top_up_personal_balance(:user_id, :credits, :amount, :actor_id,"
        " :description, :external_ref)",
        {
            "user_id": user_id,
            "credits": to_decimal(credits, "Credits to add"),
            "amount": to_decimal(purchase_amount, "Purchase amount"),
            "actor_id": actor_id,
            "description": description,
            "external_ref": external_ref,
        },
    )
    return rows[0].org_id, rows[0].remaining


def holds(db: Engine, actor_id: str, org_id: str, *, open_only: bool = False) -> pd.DataFrame:
    """The organization's credit holds, newest first (org admins)."""
    return fetch_frame(
        db,
        "select * from credit_holds_of(:org_id, :actor_id, :open_only)",
        {"org_id": org_id, "actor_id": actor_id, "open_only": open_only},
    )
