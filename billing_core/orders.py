"""How money comes in: credit orders at the catalogue's price, recorded payments, grants.

A customer orders a credit package or a number of credits; the order waits
for payment. A system admin or the operator records the payment (with its
reference) and the credits reach the pool then. Free credits are a grant by a
system admin or the operator, with a reason. Each function is one call of the
stored function of the same purpose (sql/routines/035_orders.sql).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import call, fetch, fetch_frame, record
from billing_core.moments import aware

# an order's columns, in the order the screens show them (a constant SQL fragment, no input)
_SELECT = (
    "org_id, id, source, package_code, ordered_credits, bonus_credits, credits, list_price, price, currency,"
    " description, status, ordered_by, ordered_at, payment_reference, paid_at, payment_recorded_by,"
    " payment_recorded_at, canceled_by, canceled_at"
)

CREDIT_PRICE = Decimal("0.001")  # dollars per credit, the catalogue's list price


@dataclass(frozen=True)
class Order:
    """One credit order as the ledger holds it."""

    org_id: str
    id: str
    source: str
    package_code: str | None
    ordered_credits: Decimal
    bonus_credits: Decimal
    credits: Decimal
    list_price: Decimal
    price: Decimal
    currency: str
    description: str
    status: str
    ordered_by: str | None
    ordered_at: datetime
    payment_reference: str | None
    paid_at: datetime | None
    payment_recorded_by: str | None
    payment_recorded_at: datetime | None
    canceled_by: str | None
    canceled_at: datetime | None


@dataclass(frozen=True)
class Quote:
    """What an order would hold and cost, at the catalogue's price."""

    package_code: str | None
    ordered_credits: Decimal
    bonus_credits: Decimal
    credits: Decimal
    price: Decimal
    description: str


def quote(db: Engine, *, package_code: str | None = None, credits: Amount | None = None) -> Quote:
    """The credits and price of an order of a package or a number of credits, before it is placed."""
    rows = fetch(
        db,
        "select package_code, ordered_credits, bonus_credits, credits, price, description"
        " from credit_order_quote(:package_code, :credits)",
        {"package_code": package_code, "credits": to_decimal(credits, "Credits to buy")},
    )
    return record(Quote, rows[0])


def _order(db: Engine, statement: str, params: dict) -> Order:
    rows = fetch(db, f"select {_SELECT} from {statement}", params)
    return record(Order, rows[0])


def create_order(
    db: Engine, actor_id: str | None, org_id: str, *, package_code: str | None = None, credits: Amount | None = None
) -> Order:
    """Order a credit package or a number of credits at the list price; the order awaits payment."""
    return _order(
        db,
        "create_credit_order(:org_id, :package_code, :credits, :actor_id)",
        {"org_id": org_id, "package_code": package_code, "credits": to_decimal(credits, "Credits to buy"),
         "actor_id": actor_id},
    )


def order_personal_credits(
    db: Engine, actor_id: str | None, user_id: str, *, package_code: str | None = None, credits: Amount | None = None
) -> Order:
    """Order credits for a user's individual balance (the user or a system admin); awaits payment."""
    return _order(
        db,
        "order_personal_credits(:user_id, :package_code, :credits, :actor_id)",
        {"user_id": user_id, "package_code": package_code, "credits": to_decimal(credits, "Credits to buy"),
         "actor_id": actor_id},
    )


def record_payment(
    db: Engine, actor_id: str | None, order_id: str, payment_reference: str, *, paid_at: datetime | None = None
) -> Order:
    """Record an order's payment (system admin or operator): its credits enter the pool now."""
    return _order(
        db,
        "record_order_payment(:order_id, :reference, :actor_id, cast(:paid_at as timestamptz))",
        {"order_id": order_id, "reference": payment_reference, "actor_id": actor_id,
         "paid_at": aware(paid_at, "Payment time")},
    )


def payment_recorded_at(
    db: Engine, actor_id: str | None, order_id: str, payment_reference: str, *, paid_at: datetime | None = None
) -> datetime | None:
    """When this payment of this order was recorded already (None: `record_payment` would record it now);
    refuses what `record_payment` would refuse, writing nothing."""
    return call(
        db,
        "select record_order_payment_check(:order_id, :reference, :actor_id, cast(:paid_at as timestamptz))",
        {"order_id": order_id, "reference": payment_reference, "actor_id": actor_id,
         "paid_at": aware(paid_at, "Payment time")},
    )


def cancel_order(db: Engine, actor_id: str | None, order_id: str) -> Order:
    """Cancel an order awaiting payment (org admin of its organization or system admin)."""
    return _order(db, "cancel_credit_order(:order_id, :actor_id)", {"order_id": order_id, "actor_id": actor_id})


def grant_credits(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    credits: Amount,
    reason: str,
    *,
    expires_at: datetime | None = None,
    occurred_at: datetime | None = None,
) -> Decimal:
    """Grant free credits with a reason (system admin or operator); returns the pool's new total."""
    return call(
        db,
        "select grant_credits(:org_id, :credits, :reason, :actor_id, cast(:expires_at as timestamptz),"
        " cast(:occurred_at as timestamptz))",
        {"org_id": org_id, "credits": to_decimal(credits, "Credits to grant"), "reason": reason,
         "actor_id": actor_id, "expires_at": aware(expires_at, "Expiry"),
         "occurred_at": aware(occurred_at, "Grant time")},
    )


def check_grant(
    db: Engine, actor_id: str | None, org_id: str, credits: Amount, reason: str, *, expires_at: datetime | None = None
) -> None:
    """Refuse what `grant_credits` would refuse (credits, reason, expiry, organization, role), writing nothing."""
    call(
        db,
        "select grant_credits_check(:org_id, :credits, :reason, :actor_id, cast(:expires_at as timestamptz))",
        {"org_id": org_id, "credits": to_decimal(credits, "Credits to grant"), "reason": reason,
         "actor_id": actor_id, "expires_at": aware(expires_at, "Expiry")},
    )


def orders_of(db: Engine, actor_id: str | None, org_id: str) -> pd.DataFrame:
    """The organization's orders, newest first (its admins and system admins)."""
    return fetch_frame(db, f"select {_SELECT} from credit_orders_of(:org_id, :actor_id)",
                       {"org_id": org_id, "actor_id": actor_id})


def awaiting_payment(db: Engine, actor_id: str | None) -> pd.DataFrame:
    """Every order awaiting payment, oldest first (system admins and the operator)."""
    return fetch_frame(
        db,
        "select org_id, org_name, id, package_code, credits, price, description, ordered_by, ordered_at"
        " from credit_orders_awaiting_payment(:actor_id)",
        {"actor_id": actor_id},
    )


def list_price(credits: Amount) -> Decimal:
    """The catalogue's price in dollars of a number of credits (1 credit = $0.001)."""
    return to_decimal(credits, "Credits") * CREDIT_PRICE
