"""Read models of the member and org admin screens: cards, usage series, timelines.

Every function takes the acting user and calls one stored function that
authorizes it itself (sql/routines/120_screen_reads.sql, 080_analytics.sql):
a member reads only their own figures (in the organizations they belong to);
org admins (and system admins) read their organization's. The cards' usage
window is the last `days` days up to now.

The date-range reads (DateRange, range_totals, daily_usage, hourly_usage, service_usage,
member_usage, charges) cover calendar days in the organization's time zone
and are authorized in SQL (sql/routines/121_usage_reads.sql): a member reads
their own usage (user_id = the actor), org admins the organization's
(user_id None) or one member's, system admins any.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.database import fetch, fetch_frame, record, records
from billing_core.errors import InvalidInput
from billing_core.moments import aware
from billing_core.pricing import explanation

WINDOW_DAYS = 30


def _days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
        raise InvalidInput(f"A usage window is 1 to 366 days (got {days!r}).")
    return days


# ---------------------------------------------------------------- member


@dataclass(frozen=True)
class MemberCard:
    """What a member holds in one organization, with the plan and 30-day usage."""

    org_id: str
    org_name: str
    org_status: str
    role: str
    is_default: bool
    plan: str | None
    plan_name: str | None
    subscription_status: str | None
    allocated_credits: Decimal
    used_credits: Decimal
    remaining_credits: Decimal
    usage_percent: Decimal
    next_reset: datetime | None
    credits_used_30d: Decimal
    requests_30d: int
    used_since: datetime | None  # the allocation's period start: what `used_credits` covers (None: no allocation)
    org_kind: str  # 'personal': the user's individual balance

    @property
    def is_personal(self) -> bool:
        """True for the user's individual balance (a personal organization, no admins to ask)."""
        return self.org_kind == "personal"


def member_cards(db: Engine, actor_id: str, days: int = WINDOW_DAYS) -> list[MemberCard]:
    """One card per organization of the acting user, default first (the user's own figures)."""
    rows = fetch(
        db,
        "select org_id, org_name, org_status, role, is_default, plan, plan_name, subscription_status,"
        " allocated_credits, used_credits, remaining_credits, usage_percent, next_reset,"
        " credits_used_window as credits_used_30d, requests_window as requests_30d, used_since, org_kind"
        " from member_cards(:actor_id, :days)",
        {"actor_id": actor_id, "days": _days(days)},
    )
    return records(MemberCard, rows)


def comparison_frame(cards: list[MemberCard]) -> pd.DataFrame:
    """The member's cards as one table: one row per organization, for comparing them."""
    columns = [f for f in MemberCard.__dataclass_fields__]
    return pd.DataFrame([asdict(card) for card in cards], columns=columns)


# ---------------------------------------------------------------- org admin


@dataclass(frozen=True)
class OrgOverview:
    """An organization's header: name, pool figures, members and its current subscription."""

    org_id: str
    org_name: str
    org_status: str
    member_count: int
    total_credits: Decimal
    allocated_credits: Decimal
    used_credits: Decimal
    available_credits: Decimal
    monthly_refresh_amount: Decimal
    plan: str | None
    plan_name: str | None
    subscription_status: str | None
    price_amount: Decimal | None
    currency: str | None
    billing_cycle: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_ends_at: datetime | None
    cancel_at_period_end: bool | None
    canceled_at: datetime | None
    scheduled_plan: str | None
    scheduled_plan_name: str | None

    @property
    def has_subscription(self) -> bool:
        """True when the organization has (or had) a subscription."""
        return self.plan is not None

    @property
    def is_live(self) -> bool:
        """True while the subscription is trialing, active or past due (not canceled)."""
        return self.subscription_status in ("trialing", "active", "past_due")


def org_overview(db: Engine, actor_id: str, org_id: str) -> OrgOverview:
    """The organization's pool, member count and subscription: live, else the latest (org admins)."""
    rows = fetch(db, "select * from org_overview(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id})
    return record(OrgOverview, rows[0])


def allocations(db: Engine, actor_id: str, org_id: str) -> pd.DataFrame:
    """Every member with their role and current allocation, most used first (org admins)."""
    return fetch_frame(db, "select * from org_allocations(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id})


def billing_timeline(db: Engine, actor_id: str, org_id: str, limit: int = 200) -> pd.DataFrame:
    """The organization's billing history (purchases, plan changes, invoices...), newest first (org admins)."""
    if not 1 <= limit <= 5000:
        raise InvalidInput(f"Show 1 to 5000 events (got {limit}).")
    return fetch_frame(
        db,
        "select * from org_billing_timeline(:org_id, :actor_id, :limit)",
        {"org_id": org_id, "actor_id": actor_id, "limit": limit},
    )


@dataclass(frozen=True)
class Runway:
    """How long an organization's credits last: what is left, its 30-day burn rate, the days that gives."""

    org_id: str
    remaining_credits: Decimal
    credits_used_30d: Decimal
    burn_per_day: Decimal
    runway_days: Decimal | None  # None: nothing used in the last 30 days
    runs_out_at: datetime | None  # None as well past 100 years


def runway(db: Engine, actor_id: str, org_id: str, *, as_of: datetime | None = None) -> Runway:
    """The organization's remaining credits, burn rate per day over the last 30 days and runway (org admins)."""
    rows = fetch(
        db,
        "select org_id, remaining_credits, credits_used_30d, burn_per_day, runway_days, runs_out_at"
        "  from org_runway(:org_id, :actor_id, coalesce(cast(:as_of as timestamptz), now()))",
        {"org_id": org_id, "actor_id": actor_id, "as_of": aware(as_of, "The moment described")},
    )
    return record(Runway, rows[0])


# ---------------------------------------------------------------- date ranges (the organization's time zone)

PRESETS = ("today", "last_7_days", "last_30_days", "this_month", "last_month", "this_period", "custom")
CHARGES_MAX = 100_000  # the most charges one read returns: a page, or a CSV export


@dataclass(frozen=True)
class DateRange:
    """Calendar days from date_from to date_to (both included) in the organization's time zone, checked by SQL."""

    preset: str
    date_from: date
    date_to: date
    days: int
    time_zone: str
    today: date
    starts_at: datetime
    ends_at: datetime


def date_range(
    db: Engine, actor_id: str, org_id: str, preset: str, date_from: date | None = None, date_to: date | None = None
) -> DateRange:
    """The range a preset means in the organization today (custom: date_from to date_to), or InvalidInput saying
    what is wrong with it (members of the organization)."""
    rows = fetch(
        db,
        "select * from usage_range(:actor_id, :org_id, :preset, :date_from, :date_to)",
        {"actor_id": actor_id, "org_id": org_id, "preset": preset, "date_from": date_from, "date_to": date_to},
    )
    return record(DateRange, rows[0])


@dataclass(frozen=True)
class RangeTotals:
    """Credits (and their list price in dollars), requests, distinct services and users over a date range."""

    credits_used: Decimal
    dollars: Decimal
    requests: int
    services: int
    members: int


def _range_params(actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date) -> dict[str, Any]:
    return {"actor_id": actor_id, "org_id": org_id, "user_id": user_id, "date_from": date_from, "date_to": date_to}


def range_totals(
    db: Engine, actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date,
    service_type: str | None = None,
) -> RangeTotals:
    """Totals over the days, for one user or the organization (None), one service type or all (None)."""
    rows = fetch(
        db,
        "select * from usage_totals(:actor_id, :org_id, :user_id, :date_from, :date_to, :service_type)",
        {**_range_params(actor_id, org_id, user_id, date_from, date_to), "service_type": service_type},
    )
    return record(RangeTotals, rows[0])


def daily_usage(
    db: Engine, actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date
) -> pd.DataFrame:
    """Credits and requests per day (in the organization's time zone) and service type; days with usage only."""
    return fetch_frame(
        db,
        "select * from usage_days(:actor_id, :org_id, :user_id, :date_from, :date_to)",
        _range_params(actor_id, org_id, user_id, date_from, date_to),
    )


def hourly_usage(
    db: Engine, actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date
) -> pd.DataFrame:
    """Credits and requests per hour (on the organization's clock) and service type, for ranges of up to 7 days."""
    return fetch_frame(
        db,
        "select * from usage_hours(:actor_id, :org_id, :user_id, :date_from, :date_to)",
        _range_params(actor_id, org_id, user_id, date_from, date_to),
    )


def service_usage(
    db: Engine, actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date
) -> pd.DataFrame:
    """Credits and requests per service type over the days, largest first."""
    return fetch_frame(
        db,
        "select * from usage_services(:actor_id, :org_id, :user_id, :date_from, :date_to)",
        _range_params(actor_id, org_id, user_id, date_from, date_to),
    )


def member_usage(db: Engine, actor_id: str, org_id: str, date_from: date, date_to: date) -> pd.DataFrame:
    """Credits and requests per user over the days, largest first, former members too (org admins)."""
    return fetch_frame(
        db,
        "select * from usage_members(:actor_id, :org_id, :date_from, :date_to)",
        _range_params(actor_id, org_id, None, date_from, date_to),
    )


def charges(
    db: Engine, actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date,
    *, service_type: str | None = None, limit: int = 50, offset: int = 0,
) -> pd.DataFrame:
    """One page of the charges over the days, newest first, with request id and pricing explanation (a dict, or
    None for a charge reported in credits); `range_totals` with the same filter counts them all."""
    frame = fetch_frame(
        db,
        # the explanations as text, read back with exact Decimals (psycopg would give floats)
        "select id, created_at, local_time, user_id, user_name, email, service_type, service_name, request_id,"
        " credits_used, dollars, remaining_after, pricing::text as pricing, hold::text as hold"
        " from usage_charges(:actor_id, :org_id, :user_id, :date_from, :date_to, :service_type, :limit, :offset)",
        {**_range_params(actor_id, org_id, user_id, date_from, date_to), "service_type": service_type,
         "limit": limit, "offset": offset},
    )
    for column in ("pricing", "hold"):  # a column of nulls only comes back as NaN
        frame[column] = pd.Series([explanation(text) if isinstance(text, str) else None for text in frame[column]],
                                  index=frame.index, dtype=object)
    return frame
