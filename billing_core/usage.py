"""Read models of the member and org admin screens: cards, usage series, timelines.

Every function takes the acting user and runs its role check in the read's
transaction. A member reads only their own figures (in the organizations they
belong to); org admins (and system admins) read their organization's.
Usage windows are the last `days` days up to now, the same window as the
views' 30-day figures; days are UTC calendar days.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core import access
from billing_core.database import fetch, frame
from billing_core.errors import InvalidInput, NotFound, PermissionDenied
from billing_core.moments import aware

WINDOW_DAYS = 30


def _days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
        raise InvalidInput(f"A usage window is 1 to 366 days (got {days!r}).")
    return days


def _self_check(actor_id: str) -> tuple[str, dict[str, Any]]:
    """A check statement: the acting user exists (a member reading their own figures)."""
    if not actor_id:
        raise PermissionDenied("No acting user: log in first.")
    return ("select ledger_require_user(:actor_id, 'Acting user')", {"actor_id": actor_id})


def _member_scope(actor_id: str, org_id: str | None) -> list[tuple[str, dict[str, Any]]]:
    """Checks for a member's own reads: all their organizations, or one they may read."""
    if org_id is None:
        return [_self_check(actor_id)]
    return access.org_checks(actor_id, org_id, "member")


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


def member_cards(db: Engine, actor_id: str, days: int = WINDOW_DAYS) -> list[MemberCard]:
    """One card per organization of the acting user, default first (the user's own figures)."""
    rows = fetch(
        db,
        "select m.org_id, m.org_name, m.org_status, m.role, m.is_default, s.plan, pl.name, s.status,"
        "       m.allocated_credits, m.used_credits, m.remaining_credits, m.usage_percent, m.period_end,"
        "       coalesce(w.credits, 0), coalesce(w.requests, 0)"
        "  from user_multi_org_credits m"
        "  left join organization_subscriptions s"
        "         on s.org_id = m.org_id and s.status in ('trialing', 'active', 'past_due')"
        "  left join plans pl on pl.code = s.plan"
        "  left join lateral ("
        "        select sum(c.credits_used) as credits, count(*) as requests"
        "          from credit_usage_attribution c"
        "         where c.org_id = m.org_id and c.user_id = m.user_id"
        "           and c.created_at >= now() - make_interval(days => :days)"
        "       ) w on true"
        " where m.user_id = :actor_id"
        " order by m.is_default desc, m.org_name, m.org_id",
        {"actor_id": actor_id, "days": _days(days)},
        checks=[_self_check(actor_id)],
    )
    return [MemberCard(*row) for row in rows]


def comparison_frame(cards: list[MemberCard]) -> pd.DataFrame:
    """The member's cards as one table: one row per organization, for comparing them."""
    columns = [f for f in MemberCard.__dataclass_fields__]
    return pd.DataFrame([asdict(card) for card in cards], columns=columns)


MY_DAILY_COLUMNS = ["day", "service_type", "credits_used", "requests"]


def my_daily_usage(db: Engine, actor_id: str, org_id: str | None = None, days: int = WINDOW_DAYS) -> pd.DataFrame:
    """The acting user's credits per UTC day and service (one organization, or all of theirs)."""
    rows = fetch(
        db,
        "select (c.created_at at time zone 'UTC')::date as day, c.service_type, sum(c.credits_used), count(*)"
        "  from organization_members m"
        "  join credit_usage_attribution c"
        "    on c.org_id = m.org_id and c.user_id = m.user_id"
        "   and c.created_at >= now() - make_interval(days => :days)"
        " where m.user_id = :actor_id and (cast(:org_id as text) is null or m.org_id = :org_id)"
        " group by 1, 2 order by 1, 2",
        {"actor_id": actor_id, "org_id": org_id, "days": _days(days)},
        checks=_member_scope(actor_id, org_id),
    )
    return frame(rows, MY_DAILY_COLUMNS)


MY_CHARGES_COLUMNS = [
    "created_at", "org_id", "org_name", "service_type", "service_name", "credits_used", "remaining_after",
]


def my_recent_charges(db: Engine, actor_id: str, org_id: str | None = None, limit: int = 50) -> pd.DataFrame:
    """The acting user's newest charges (one organization, or all of theirs), newest first."""
    if not 1 <= limit <= 1000:
        raise InvalidInput(f"Show 1 to 1000 charges (got {limit}).")
    rows = fetch(
        db,
        "select c.created_at, m.org_id, o.name, c.service_type, c.service_name, c.credits_used, c.remaining_after"
        "  from organization_members m"
        "  join organizations o on o.id = m.org_id"
        "  cross join lateral ("
        "        select a.id, a.created_at, a.service_type, a.service_name, a.credits_used, a.remaining_after"
        "          from credit_usage_attribution a"
        "         where a.org_id = m.org_id and a.user_id = m.user_id"
        "         order by a.created_at desc"
        "         limit :limit"
        "       ) c"
        " where m.user_id = :actor_id and (cast(:org_id as text) is null or m.org_id = :org_id)"
        " order by c.created_at desc, c.id desc"
        " limit :limit",
        {"actor_id": actor_id, "org_id": org_id, "limit": limit},
        checks=_member_scope(actor_id, org_id),
    )
    return frame(rows, MY_CHARGES_COLUMNS)


@dataclass(frozen=True)
class UsageTotals:
    """Credits, requests and distinct services over a window."""

    credits_used: Decimal
    requests: int
    services: int


def my_totals(db: Engine, actor_id: str, org_id: str | None = None, days: int = WINDOW_DAYS) -> UsageTotals:
    """The acting user's totals over the window (one organization, or all of theirs)."""
    rows = fetch(
        db,
        "select coalesce(sum(c.credits_used), 0), count(*), count(distinct c.service_type)"
        "  from organization_members m"
        "  join credit_usage_attribution c"
        "    on c.org_id = m.org_id and c.user_id = m.user_id"
        "   and c.created_at >= now() - make_interval(days => :days)"
        " where m.user_id = :actor_id and (cast(:org_id as text) is null or m.org_id = :org_id)",
        {"actor_id": actor_id, "org_id": org_id, "days": _days(days)},
        checks=_member_scope(actor_id, org_id),
    )
    return UsageTotals(*rows[0])


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

    @property
    def has_subscription(self) -> bool:
        """True when the organization has (or had) a subscription."""
        return self.plan is not None


def org_overview(db: Engine, actor_id: str, org_id: str) -> OrgOverview:
    """The organization's pool, member count and subscription: live, else the latest (org admins)."""
    rows = fetch(
        db,
        "select o.id, o.name, o.status,"
        "       (select count(*) from organization_members m where m.org_id = o.id),"
        "       coalesce(p.total_credits, 0), coalesce(p.allocated_credits, 0), coalesce(p.used_credits, 0),"
        "       coalesce(p.available_credits, 0), coalesce(p.monthly_refresh_amount, 0),"
        "       s.plan, pl.name, s.status, s.price_amount, s.currency, s.billing_cycle, s.current_period_start,"
        "       s.current_period_end, s.trial_ends_at, s.cancel_at_period_end, s.canceled_at"
        "  from organizations o"
        "  left join organization_credit_pools p on p.org_id = o.id"
        "  left join lateral ("
        "        select * from organization_subscriptions x"
        "         where x.org_id = o.id"
        "         order by (x.status in ('trialing', 'active', 'past_due')) desc, x.created_at desc, x.id"
        "         limit 1"
        "       ) s on true"
        "  left join plans pl on pl.code = s.plan"
        " where o.id = :org_id",
        {"org_id": org_id},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    if not rows:
        raise NotFound(f"Organization {org_id!r} does not exist.")
    return OrgOverview(*rows[0])


ALLOCATION_COLUMNS = [
    "user_id", "display_name", "email", "role", "allocated_credits", "used_credits", "remaining_credits",
    "usage_percent", "period_start", "joined_at",
]


def allocations(db: Engine, actor_id: str, org_id: str) -> pd.DataFrame:
    """Every member with their role and current allocation, most used first (org admins)."""
    rows = fetch(
        db,
        "select v.user_id, v.display_name, v.email, v.role, v.allocated_credits, v.used_credits,"
        "       v.remaining_credits, v.usage_percent, v.period_start, m.joined_at"
        "  from user_multi_org_credits v"
        "  join organization_members m on m.org_id = v.org_id and m.user_id = v.user_id"
        " where v.org_id = :org_id"
        " order by v.used_credits desc, v.display_name, v.user_id",
        {"org_id": org_id},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    return frame(rows, ALLOCATION_COLUMNS)


SERVICE_COLUMNS = ["service_type", "credits_used", "requests"]


def usage_by_service(db: Engine, actor_id: str, org_id: str, days: int = WINDOW_DAYS) -> pd.DataFrame:
    """The organization's credits per service type over the window, largest first (org admins)."""
    rows = fetch(
        db,
        "select service_type, sum(credits_used), count(*)"
        "  from credit_usage_attribution"
        " where org_id = :org_id and created_at >= now() - make_interval(days => :days)"
        " group by service_type order by 2 desc, 1",
        {"org_id": org_id, "days": _days(days)},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    return frame(rows, SERVICE_COLUMNS)


USER_USAGE_COLUMNS = ["user_id", "display_name", "email", "is_member", "credits_used", "requests"]


def usage_by_user(db: Engine, actor_id: str, org_id: str, days: int = WINDOW_DAYS) -> pd.DataFrame:
    """The organization's credits per user over the window, largest first; former members too (org admins)."""
    rows = fetch(
        db,
        "select t.user_id, coalesce(u.display_name, u.email, t.user_id), u.email, (m.user_id is not null),"
        "       t.credits_used, t.requests"
        "  from (select user_id, sum(credits_used) as credits_used, count(*) as requests"
        "          from credit_usage_attribution"
        "         where org_id = :org_id and created_at >= now() - make_interval(days => :days)"
        "         group by user_id) t"
        "  left join users u on u.id = t.user_id"
        "  left join organization_members m on m.org_id = :org_id and m.user_id = t.user_id"
        " order by t.credits_used desc, t.user_id",
        {"org_id": org_id, "days": _days(days)},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    return frame(rows, USER_USAGE_COLUMNS)


DAILY_COLUMNS = ["day", "credits_used", "requests"]


def usage_over_time(db: Engine, actor_id: str, org_id: str, days: int = WINDOW_DAYS) -> pd.DataFrame:
    """The organization's credits per UTC day over the window, days without usage as 0 (org admins)."""
    rows = fetch(
        db,
        "select d.day, coalesce(u.credits_used, 0), coalesce(u.requests, 0)"
        "  from (select g::date as day"
        "          from generate_series(((now() - make_interval(days => :days)) at time zone 'UTC')::date,"
        "                               (now() at time zone 'UTC')::date, interval '1 day') g) d"
        "  left join (select (created_at at time zone 'UTC')::date as day,"
        "                    sum(credits_used) as credits_used, count(*) as requests"
        "               from credit_usage_attribution"
        "              where org_id = :org_id and created_at >= now() - make_interval(days => :days)"
        "              group by 1) u on u.day = d.day"
        " order by d.day",
        {"org_id": org_id, "days": _days(days)},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    return frame(rows, DAILY_COLUMNS)


HISTORY_COLUMNS = [
    "created_at", "event_type", "credits", "amount", "currency", "description", "total_credits_after",
    "created_by", "created_by_name",
]


def billing_timeline(db: Engine, actor_id: str, org_id: str, limit: int = 200) -> pd.DataFrame:
    """The organization's billing history (purchases, plan changes, invoices...), newest first (org admins)."""
    if not 1 <= limit <= 5000:
        raise InvalidInput(f"Show 1 to 5000 events (got {limit}).")
    rows = fetch(
        db,
        "select h.created_at, h.event_type, h.credits, h.amount, h.currency, h.description,"
        "       h.total_credits_after, h.created_by, coalesce(u.display_name, u.email)"
        "  from org_billing_history h"
        "  left join users u on u.id = h.created_by"
        " where h.org_id = :org_id"
        " order by h.created_at desc, h.id desc limit :limit",
        {"org_id": org_id, "limit": limit},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    return frame(rows, HISTORY_COLUMNS)


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
        "  from org_runway(:org_id, coalesce(cast(:as_of as timestamptz), now()))",
        {"org_id": org_id, "as_of": aware(as_of, "The moment described")},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    return Runway(*rows[0])
