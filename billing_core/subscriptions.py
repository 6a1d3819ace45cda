"""Subscriptions: subscribing an organization and its lifecycle (plan changes, cancels, renewals).

Each change is one call of a stored function (sql/routines/068-071_subscription_*.sql),
which checks the acting user's role (system admins any organization, org
admins their own, at most 5 changes an hour: RateLimited), applies what was due
first, and writes the billing history and audit rows. A change entered after
the fact takes the time it happened (`started_at`, `occurred_at`:
timezone-aware, neither in the future nor more than 400 days ago): system
admins and the operator only (PermissionDenied for an org admin, whose change
happens now). A change or cancel now settles the period's included credits by
the time on the plan (README, "Included credits").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.engine import Engine

from billing_core.database import call, fetch, record, records
from billing_core.moments import aware


@dataclass(frozen=True)
class Plan:
    """A plan of the catalogue: price per month in dollars, how usage is priced."""

    code: str
    name: str
    monthly_price: Decimal
    pricing_mode: str  # 'markup' (managed keys), 'passthrough' (own keys), 'mixed'


STATUSES = ("active", "past_due", "canceled")  # the statuses set_subscription_status accepts
BILLING_CYCLES = ("monthly", "yearly")


def plans(db: Engine) -> list[Plan]:
    """The plans one may subscribe to now, at the version in force, in catalogue order."""
    rows = fetch(
        db,
        "select code, name, monthly_price, pricing_mode from plan_catalogue(now()) where retired_at is null",
    )
    return records(Plan, rows)


@dataclass(frozen=True)
class PlanChange:
    """A plan change and its proration over the rest of the current period.

    amount = charge - credit is what the billing history records: positive is
    owed by the organization, negative owed to it.
    """

    subscription_id: str
    plan: str
    plan_version: int
    price_amount: Decimal
    period_start: datetime
    period_end: datetime
    seconds_left: Decimal
    seconds_full: Decimal
    credit: Decimal
    charge: Decimal
    amount: Decimal


def create_subscription(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    plan: str,
    *,
    billing_cycle: str = "monthly",
    started_at: datetime | None = None,
    trial: bool | None = None,
) -> str:
    """Subscribe an organization to a plan (system admins, its org admins); returns the subscription id.

    `trial` None: the plan's trial for an organization's first subscription
    starting now (once per organization, ever); True: forced whatever the
    start by a system admin or the operator (an org admin's True after an
    earlier subscription is PermissionDenied); False: none.
    """
    return call(
        db,
        "select create_subscription(:org_id, :plan, :actor_id, :cycle, cast(:started_at as timestamptz),"
        " cast(:trial as boolean))",
        {
            "org_id": org_id,
            "plan": plan,
            "actor_id": actor_id,
            "cycle": billing_cycle,
            "started_at": aware(started_at, "Subscription start"),
            "trial": trial,
        },
    )


# one statement per stored function: the change itself, and its preview (made and rolled back)
_PLAN_CHANGE = {
    "change": "select subscription_id, plan, plan_version, price_amount, period_start, period_end, seconds_left,"
              " seconds_full, proration_credit as credit, proration_charge as charge, amount"
              " from change_subscription_plan(:org_id, :plan, :actor_id, cast(:at as timestamptz))",
    "preview": "select subscription_id, plan, plan_version, price_amount, period_start, period_end, seconds_left,"
               " seconds_full, proration_credit as credit, proration_charge as charge, amount"
               " from preview_subscription_change(:org_id, :plan, :actor_id, cast(:at as timestamptz))",
}


def _plan_change(db: Engine, kind: str, actor_id: str | None, org_id: str, plan: str, at: datetime | None) -> PlanChange:
    [row] = fetch(
        db, _PLAN_CHANGE[kind], {"org_id": org_id, "plan": plan, "actor_id": actor_id, "at": aware(at, "Change time")}
    )
    return record(PlanChange, row)


def change_plan(
    db: Engine, actor_id: str | None, org_id: str, plan: str, *, occurred_at: datetime | None = None
) -> PlanChange:
    """Move the organization's subscription to another plan now, prorating the current period and its included credits."""
    return _plan_change(db, "change", actor_id, org_id, plan, occurred_at)


def preview_change(db: Engine, actor_id: str | None, org_id: str, plan: str, *, at: datetime | None = None) -> PlanChange:
    """The plan change and proration `change_plan` would record now (or at `at`), writing nothing."""
    return _plan_change(db, "preview", actor_id, org_id, plan, at)


def schedule_change(
    db: Engine, actor_id: str | None, org_id: str, plan: str, *, occurred_at: datetime | None = None
) -> datetime:
    """Schedule a plan change for the end of the current period; returns when it applies."""
    return call(
        db,
        "select schedule_subscription_change(:org_id, :plan, :actor_id, cast(:at as timestamptz))",
        {"org_id": org_id, "plan": plan, "actor_id": actor_id, "at": aware(occurred_at, "Schedule time")},
    )


def cancel(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    *,
    at_period_end: bool = True,
    occurred_at: datetime | None = None,
) -> Decimal:
    """Cancel at the period end (default) or now; returns the amount recorded (minus the credit, less any withheld).

    Canceled now, the included credits not earned yet are taken back; the
    credit is withheld for included credits spent above the earned share.
    """
    return call(
        db,
        "select cancel_subscription(:org_id, :actor_id, :at_period_end, cast(:at as timestamptz))",
        {"org_id": org_id, "actor_id": actor_id, "at_period_end": at_period_end,
         "at": aware(occurred_at, "Cancel time")},
    )


def reactivate(db: Engine, actor_id: str | None, org_id: str, *, occurred_at: datetime | None = None) -> None:
    """Undo a pending cancel at period end or a scheduled plan change."""
    call(
        db,
        "select reactivate_subscription(:org_id, :actor_id, cast(:at as timestamptz))",
        {"org_id": org_id, "actor_id": actor_id, "at": aware(occurred_at, "Reactivation time")},
    )


def renew(db: Engine, actor_id: str | None, org_id: str, *, until: datetime | None = None) -> int:
    """Apply everything due up to `until` (default now), catching up missed periods; returns history rows written."""
    return call(
        db,
        "select renew_subscription(:org_id, cast(:until as timestamptz), :actor_id)",
        {"org_id": org_id, "until": aware(until, "Renew up to"), "actor_id": actor_id},
    )


def set_subscription_status(
    db: Engine,
    actor_id: str | None,
    org_id: str,
    status: str,
    *,
    occurred_at: datetime | None = None,
) -> None:
    """Move the organization's live subscription to 'active', 'past_due' or 'canceled' (system admins; no credit)."""
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


@dataclass(frozen=True)
class SubscriptionPayment:
    """The outcome of recording a past-due subscription's payment: recorded now, or already on `recorded_at`."""

    recorded: bool
    recorded_at: datetime


def payment_recorded_at(
    db: Engine, actor_id: str | None, org_id: str, payment_reference: str, *, paid_at: datetime | None = None
) -> datetime | None:
    """When this subscription payment was recorded already (None: recording it marks the subscription active);
    refuses what `record_subscription_payment` would refuse, writing nothing (system admins)."""
    return call(
        db,
        "select subscription_payment_check(:org_id, :reference, :actor_id, cast(:paid_at as timestamptz))",
        {"org_id": org_id, "reference": payment_reference, "actor_id": actor_id,
         "paid_at": aware(paid_at, "Payment time")},
    )


def record_subscription_payment(
    db: Engine, actor_id: str | None, org_id: str, payment_reference: str, *, paid_at: datetime | None = None
) -> SubscriptionPayment:
    """Record a past-due subscription's payment with its reference; the subscription is active again (system
    admins). The same reference again changes nothing and says when it was recorded."""
    rows = fetch(
        db,
        "select recorded, recorded_at"
        " from record_subscription_payment(:org_id, :reference, :actor_id, cast(:paid_at as timestamptz))",
        {"org_id": org_id, "reference": payment_reference, "actor_id": actor_id,
         "paid_at": aware(paid_at, "Payment time")},
    )
    return record(SubscriptionPayment, rows[0])
