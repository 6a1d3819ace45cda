"""The credit flow: purchase into a pool, allocate to members, take back, deduct.

Each function is one call of the stored function of the same purpose, in one
transaction; the database enforces every rule and billing_core passes the
acting user so that it can check the role.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import call
from billing_core.moments import aware


def add_credits(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    credits: Amount,
    purchase_amount: Amount,
    *,
    description: str | None = None,
    external_ref: str | None = None,
    occurred_at: datetime | None = None,
    expires_at: datetime | None = None,
) -> Decimal:
    """Enter a purchase paid outside an order (system admins and the operator only); returns the pool's total.

    It is recorded as a paid order; the amount must be above $0 (free credits are a grant:
    `orders.grant_credits`) and at most the list price. Customers buy with `orders.create_order`.
    `occurred_at` dates the purchase's history row when it is entered after the fact;
    `expires_at` is when these credits expire (None: never).
    """
    return call(
        db,
        "select add_credits_to_pool(:org_id, :credits, :amount, :actor_id, :description, :external_ref,"
        " cast(:occurred_at as timestamptz), cast(:expires_at as timestamptz))",
        {
            "org_id": org_id,
            "credits": to_decimal(credits, "Credits to add"),
            "amount": to_decimal(purchase_amount, "Purchase amount"),
            "actor_id": actor_id,
            "description": description,
            "external_ref": external_ref,
            "occurred_at": aware(occurred_at, "Purchase time"),
            "expires_at": aware(expires_at, "Expiry"),
        },
    )


def allocate(db: Engine, actor_id: str | None, org_id: str, user_id: str, credits: Amount) -> Decimal:
    """Allocate pool credits to a member; returns the member's remaining credits."""
    return call(
        db,
        "select allocate_credits_to_user(:org_id, :user_id, :credits, :actor_id)",
        {"org_id": org_id, "user_id": user_id, "credits": to_decimal(credits, "Credits to allocate"), "actor_id": actor_id},
    )


def allocate_to_members(
    db: Engine, actor_id: str | None, org_id: str, user_ids: Sequence[str], credits: Amount
) -> int:
    """Allocate the same credits to each listed member, all or nothing; returns how many."""
    return call(
        db,
        "select allocate_credits_to_users(:org_id, :user_ids, :credits, :actor_id)",
        {
            "org_id": org_id,
            "user_ids": list(user_ids),
            "credits": to_decimal(credits, "Credits to allocate to each member"),
            "actor_id": actor_id,
        },
    )


def reclaim(
    db: Engine, actor_id: str | None, org_id: str, user_id: str, credits: Amount | None = None
) -> Decimal:
    """Take unused credits back from a member (all unused when `credits` is None); returns how many."""
    return call(
        db,
        "select reclaim_credits_from_user(:org_id, :user_id, :credits, :actor_id)",
        {"org_id": org_id, "user_id": user_id, "credits": to_decimal(credits, "Credits to take back"), "actor_id": actor_id},
    )


def deduct(
    db: Engine,
    org_id: str,
    user_id: str,
    credits: Amount,
    service_type: str,
    service_name: str,
    *,
    request_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> Decimal:
    """Charge a member's allocation for one metered call; returns what remains.

    The same `request_id` again charges nothing more and returns the first answer.
    `occurred_at` is when the call happened, for a call reported after the fact.
    """
    return call(
        db,
        "select deduct_credits(:org_id, :user_id, :credits, :service_type, :service_name,"
        " :request_id, cast(:metadata as jsonb), cast(:occurred_at as timestamptz))",
        {
            "org_id": org_id,
            "user_id": user_id,
            "credits": to_decimal(credits, "Credits to deduct"),
            "service_type": service_type,
            "service_name": service_name,
            "request_id": request_id,
            "metadata": json.dumps(dict(metadata or {})),
            "occurred_at": aware(occurred_at, "Usage time"),
        },
    )


def has_sufficient_credits(db: Engine, org_id: str, user_id: str, credits: Amount) -> bool:
    """True when the member's allocation can pay `credits` now."""
    return call(
        db,
        "select has_sufficient_credits(:org_id, :user_id, :credits)",
        {"org_id": org_id, "user_id": user_id, "credits": to_decimal(credits, "Credits needed")},
    )
