"""Subscriptions: the plan catalogue, subscribing an organization, status changes.

Each change is one call of a stored function (sql/routines/070_subscriptions.sql),
which checks that the acting user is a system admin and writes the billing
history and audit rows. A subscription or status change entered after the fact
takes the time it happened (`started_at`, `occurred_at`: timezone-aware,
neither in the future nor more than 400 days ago).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Engine

from billing_core.database import call, fetch
from billing_core.moments import aware


@dataclass(frozen=True)
class Plan:
    """A plan of the catalogue: price per month in dollars, how usage is priced."""

    code: str
    name: str
    monthly_price: Decimal
    pricing_mode: str  # 'markup' (managed keys), 'passthrough' (own keys), 'mixed'


# The catalogue as migration 0005 seeds it (tests/test_subscriptions.py checks
# that the database agrees); `plans(db)` reads the database's own.
PLANS: dict[str, Plan] = {
    plan.code: plan
    for plan in (
        Plan("starter", "Starter", Decimal(19), "markup"),
        Plan("byok", "BYOK", Decimal(30), "passthrough"),
        Plan("platform", "Platform", Decimal(50), "markup"),
        Plan("hybrid", "Hybrid", Decimal(99), "mixed"),
        Plan("enterprise", "Enterprise", Decimal(99), "mixed"),
    )
}

STATUSES = ("active", "past_due", "canceled")  # the statuses set_subscription_status accepts
BILLING_CYCLES = ("monthly", "yearly")


def plans(db: Engine) -> list[Plan]:
    """The plan catalogue from the database, cheapest first."""
    rows = fetch(db, "select code, name, monthly_price, pricing_mode from plans order by sort_order, code")
    return [Plan(*row) for row in rows]


def create_subscription(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    plan: str,
    *,
    billing_cycle: str = "monthly",
    started_at: datetime | None = None,
) -> str:
    """Subscribe an organization to a plan (system admins); returns the subscription id."""
    return call(
        db,
        "select create_subscription(:org_id, :plan, :actor_id, :cycle, cast(:started_at as timestamptz))",
        {
            "org_id": org_id,
            "plan": plan,
            "actor_id": actor_id,
            "cycle": billing_cycle,
            "started_at": aware(started_at, "Subscription start"),
        },
    )


def set_subscription_status(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    status: str,
    *,
    occurred_at: datetime | None = None,
) -> None:
    """Move the organization's live subscription to 'active', 'past_due' or 'canceled' (system admins)."""
    call(
        db,
        "select set_subscription_status(:org_id, :status, :actor_id, cast(:occurred_at as timestamptz))",
        {
            "org_id": org_id,
            "status": status,
            "actor_id": actor_id,
            "occurred_at": aware(occurred_at, "Status change time"),
        },
    )


def open_organization(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    name: str,
    plan: str,
    admin_user_id: str,
    admin_email: str,
    admin_name: str | None,
    admin_password_hash: str,
    *,
    billing_cycle: str = "monthly",
    started_at: datetime | None = None,
) -> None:
    """Create an organization, its pool, its subscription and a new first org admin, all or nothing (system admins).

    `admin_password_hash` is billing_core.auth.hash_password(one-time password).
    """
    call(
        db,
        "select create_organization_with_plan(:org_id, :name, :plan, :admin_user_id, :admin_email,"
        " :admin_name, :admin_password_hash, :actor_id, :cycle, cast(:started_at as timestamptz))",
        {
            "org_id": org_id,
            "name": name,
            "plan": plan,
            "admin_user_id": admin_user_id,
            "admin_email": admin_email,
            "admin_name": admin_name,
            "admin_password_hash": admin_password_hash,
            "actor_id": actor_id,
            "cycle": billing_cycle,
            "started_at": aware(started_at, "Subscription start"),
        },
    )
