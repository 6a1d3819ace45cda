"""Revenue and usage across every organization: the system overview's read models.

System admins only (one organization's credit months: its admins too): each
read is a stored function that takes the acting user and authorizes it
itself. The figures come from the functions in sql/routines/080_analytics.sql: MRR at
any moment (the headline now and 30 days ago, the plan mix, each month's
movements) from the subscription history row in force then, so each
organization counts on the plan and price it had at that moment; credits
from billing history and credit_usage_attribution. See that file for the
exact rules. `as_of` (default: now) is the moment described.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.database import fetch, fetch_frame
from billing_core.errors import InvalidInput
from billing_core.moments import aware

SUBSCRIPTION_STATUSES = ("trialing", "active", "past_due", "canceled", "none")


@dataclass(frozen=True)
class Metric:
    """A figure now and 30 days earlier (or over the previous 30 days)."""

    value: Decimal
    previous: Decimal

    @property
    def change(self) -> Decimal:
        """value - previous."""
        return self.value - self.previous

    @property
    def change_percent(self) -> Decimal | None:
        """The change in percent of `previous`, 2 decimals; None when previous is 0."""
        if self.previous == 0:
            return None
        return round(100 * self.change / self.previous, 2)


@dataclass(frozen=True)
class SystemOverview:
    """The system overview's headline figures at `as_of`."""

    as_of: datetime
    mrr: Metric
    arr: Metric
    active_subscriptions: Metric  # paying (active or past due) subscriptions: those counted in MRR
    credits_used_30d: Metric  # last 30 days against the 30 days before
    requests_30d: int
    organizations: int
    past_due_subscriptions: int


def overview(db: Engine, actor_id: str, *, as_of: datetime | None = None) -> SystemOverview:
    """MRR, ARR, paying subscriptions and 30-day credits, each with its earlier value (system admins)."""
    row = fetch(
        db,
        "select as_of, mrr, mrr_30d_ago, arr, arr_30d_ago, paying_subscriptions, paying_subscriptions_30d_ago,"
        " credits_used_30d, credits_used_prev_30d, requests_30d, organizations, past_due_subscriptions"
        " from system_overview(:actor_id, coalesce(cast(:as_of as timestamptz), now()))",
        {"actor_id": actor_id, "as_of": as_of},
    )[0]
    return SystemOverview(
        as_of=row.as_of,
        mrr=Metric(row.mrr, row.mrr_30d_ago),
        arr=Metric(row.arr, row.arr_30d_ago),
        active_subscriptions=Metric(Decimal(row.paying_subscriptions), Decimal(row.paying_subscriptions_30d_ago)),
        credits_used_30d=Metric(row.credits_used_30d, row.credits_used_prev_30d),
        requests_30d=int(row.requests_30d),
        organizations=int(row.organizations),
        past_due_subscriptions=int(row.past_due_subscriptions),
    )


def plan_mix(db: Engine, actor_id: str, *, as_of: datetime | None = None) -> pd.DataFrame:
    """Paying subscriptions per plan: count, MRR and share of MRR in percent, largest first (system admins)."""
    return fetch_frame(
        db,
        "select plan, plan_name, subscriptions, mrr, mrr_share_percent"
        " from system_plan_mix(:actor_id, coalesce(cast(:as_of as timestamptz), now()))",
        {"actor_id": actor_id, "as_of": as_of},
    )


SORT_KEYS = {
    "mrr": (["mrr", "org_name", "org_id"], [False, True, True]),
    "credits_used_30d": (["credits_used_30d", "org_name", "org_id"], [False, True, True]),
    "org_name": (["org_name", "org_id"], [True, True]),
    "member_count": (["member_count", "org_name", "org_id"], [False, True, True]),
    "available_credits": (["available_credits", "org_name", "org_id"], [False, True, True]),
    "created_at": (["created_at", "org_id"], [False, True]),
    "runway_days": (["runway_days", "org_name", "org_id"], [True, True, True]),  # shortest first, none last
}


def organizations(
    db: Engine,
    actor_id: str,
    *,
    plans: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    sort_by: str = "mrr",
    as_of: datetime | None = None,
) -> pd.DataFrame:
    """Every organization with plan, subscription status, MRR, members, pool and 30-day usage (system admins).

    `plans` / `statuses` (subscription status, 'none' for never subscribed)
    keep only the listed values; None or empty keeps all. `sort_by` is one of
    SORT_KEYS (largest first, names alphabetically; runway: shortest first,
    organizations that used nothing last).
    """
    check_selection(statuses, sort_by)
    table = fetch_frame(
        db,
        "select org_id, org_name, org_status, plan, plan_name, subscription_status, billing_cycle, price_amount, mrr,"
        " subscription_created_at, status_changed_at, member_count, total_credits, allocated_credits,"
        " used_credits, available_credits, allocated_percent, credits_used_30d, credits_used_prev_30d,"
        " usage_change_percent, requests_30d, last_usage_at, created_at, remaining_credits, burn_per_day, runway_days"
        " from system_organizations(:actor_id, coalesce(cast(:as_of as timestamptz), now()))",
        {"actor_id": actor_id, "as_of": as_of},
    )
    return select_organizations(table, plans=plans, statuses=statuses, sort_by=sort_by)


def check_selection(statuses: Sequence[str] | None, sort_by: str) -> None:
    """Refuse an unknown sort key or subscription status."""
    if sort_by not in SORT_KEYS:
        raise InvalidInput(f"Cannot sort organizations by {sort_by!r}: choose one of {', '.join(SORT_KEYS)}.")
    unknown = sorted(set(statuses or ()) - set(SUBSCRIPTION_STATUSES))
    if unknown:
        raise InvalidInput(
            f"Unknown subscription status {unknown[0]!r}: choose among {', '.join(SUBSCRIPTION_STATUSES)}."
        )


def select_organizations(
    table: pd.DataFrame, *, plans: Sequence[str] | None = None, statuses: Sequence[str] | None = None,
    sort_by: str = "mrr",
) -> pd.DataFrame:
    """The rows of an `organizations` table on the listed plans and statuses, sorted by `sort_by`."""
    check_selection(statuses, sort_by)
    kept = table
    if plans:
        kept = kept[kept.plan.isin(list(plans))]
    if statuses:
        kept = kept[kept.subscription_status.fillna("none").isin(list(statuses))]
    columns, ascending = SORT_KEYS[sort_by]
    return kept.sort_values(columns, ascending=ascending, kind="stable", na_position="last").reset_index(drop=True)


# the *_COLUMNS below pick, by name, the columns each view shows from an `organizations` table
TOP_ORGANIZATION_COLUMNS = ["org_id", "org_name", "plan_name", "credits_used_30d", "requests_30d", "credits_used_prev_30d"]


def top_organizations(db: Engine, actor_id: str, limit: int = 10, *, as_of: datetime | None = None) -> pd.DataFrame:
    """The organizations that used the most credits in the last 30 days, largest first (system admins)."""
    return top_of(organizations(db, actor_id, as_of=as_of), limit)


def top_of(table: pd.DataFrame, limit: int = 10) -> pd.DataFrame:
    """The `limit` rows of an `organizations` table that used the most credits in 30 days (none: left out)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise InvalidInput(f"The number of organizations to show must be between 1 and 1000 (got {limit!r}).")
    used = table[table.credits_used_30d > 0]
    used = used.sort_values(["org_name", "org_id"], kind="stable")
    used = used.sort_values("credits_used_30d", ascending=False, kind="stable")
    return used.head(limit)[TOP_ORGANIZATION_COLUMNS].reset_index(drop=True)


PAST_DUE_COLUMNS = [
    "org_id", "org_name", "plan", "plan_name", "billing_cycle", "price_amount", "mrr", "status_changed_at",
    "member_count", "available_credits", "credits_used_30d", "last_usage_at",
]


def past_due_organizations(db: Engine, actor_id: str, *, as_of: datetime | None = None) -> pd.DataFrame:
    """Organizations whose subscription is past due, largest MRR first (system admins)."""
    return past_due_of(organizations(db, actor_id, as_of=as_of))


def past_due_of(table: pd.DataFrame) -> pd.DataFrame:
    """The past-due rows of an `organizations` table, largest MRR first."""
    return select_organizations(table, statuses=["past_due"])[PAST_DUE_COLUMNS]


RUNNING_LOW_COLUMNS = [
    "org_id", "org_name", "plan_name", "subscription_status", "remaining_credits", "credits_used_30d",
    "burn_per_day", "runway_days",
]


def running_low(db: Engine, actor_id: str, days: int = 30, *, as_of: datetime | None = None) -> pd.DataFrame:
    """Organizations whose credits last at most `days` days at their 30-day burn rate, shortest first (system admins)."""
    return running_low_of(organizations(db, actor_id, as_of=as_of), days)


def running_low_of(table: pd.DataFrame, days: int = 30) -> pd.DataFrame:
    """The rows of an `organizations` table whose runway is at most `days` days, shortest first."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise InvalidInput(f"The runway threshold is 1 to 3650 days (got {days!r}).")
    table = select_organizations(table, sort_by="runway_days")
    low = table.loc[[v is not None and not pd.isna(v) and v <= days for v in table.runway_days]]
    return low[RUNNING_LOW_COLUMNS].reset_index(drop=True)


def _month(value: date | None, what: str) -> date | None:
    """A month given as any day of it (None: the default)."""
    if value is None:
        return None
    if not isinstance(value, date):
        raise InvalidInput(f"{what} must be a date (any day of the month), not {type(value).__name__}.")
    return value.date() if isinstance(value, datetime) else value


def _month_params(first_month: date | None, last_month: date | None, months: int, as_of: datetime | None) -> dict:
    if isinstance(months, bool) or not isinstance(months, int):
        raise InvalidInput(f"The number of months must be a whole number (got {months!r}).")
    return {
        "first": _month(first_month, "The first month"),
        "last": _month(last_month, "The last month"),
        "months": months,
        "as_of": aware(as_of, "The moment described"),
    }


def mrr_months(
    db: Engine,
    actor_id: str,
    *,
    first_month: date | None = None,
    last_month: date | None = None,
    months: int = 12,
    as_of: datetime | None = None,
) -> pd.DataFrame:
    """MRR movements and logo churn per calendar month (UTC), oldest first (`newest_first` for the screens);
    default the last 12 (system admins).

    Each month: MRR at its start and end, ARR at its end, new, reactivation,
    expansion, contraction, churned and net new MRR, paying organizations and
    the logo churn rate in percent. Months are given as any day in them;
    without `first_month`, `months` months end with `last_month` (default:
    the current one).
    """
    return fetch_frame(
        db,
        "select month, month_start, mrr_start, new_mrr, reactivation_mrr, expansion_mrr, contraction_mrr,"
        " churned_mrr, net_new_mrr, mrr_end, arr_end, paying_orgs_start, paying_orgs_end, new_orgs,"
        " reactivated_orgs, churned_orgs, logo_churn_percent"
        " from system_mrr_months(:actor_id, cast(:first as date), cast(:last as date),"
        " coalesce(cast(:as_of as timestamptz), now()), :months)",
        {**_month_params(first_month, last_month, months, as_of), "actor_id": actor_id},
    )


def credit_months(
    db: Engine,
    actor_id: str,
    org_id: str | None = None,
    *,
    first_month: date | None = None,
    last_month: date | None = None,
    months: int = 12,
    as_of: datetime | None = None,
) -> pd.DataFrame:
    """Credits sold (and revenue), granted, consumed and expired per calendar month (UTC), oldest first.

    For every organization (system admins) or one (`org_id`: its admins too);
    the range as for `mrr_months`.
    """
    return fetch_frame(
        db,
        "select month, month_start, credits_sold, revenue, credits_granted, credits_consumed, requests, credits_expired"
        " from analytics_credit_months(:actor_id, cast(:first as date), cast(:last as date),"
        " coalesce(cast(:as_of as timestamptz), now()), cast(:org_id as text), :months)",
        {**_month_params(first_month, last_month, months, as_of), "org_id": org_id, "actor_id": actor_id},
    )


MOVEMENTS = {  # column of mrr_months -> (label, sign in the chart)
    "new_mrr": ("New", 1),
    "reactivation_mrr": ("Reactivation", 1),
    "expansion_mrr": ("Expansion", 1),
    "contraction_mrr": ("Contraction", -1),
    "churned_mrr": ("Churned", -1),
}


def movement_bars(months: pd.DataFrame) -> pd.DataFrame:
    """`mrr_months` as chart bars: month ('YYYY-MM'), movement, signed MRR (contraction and churn below 0)."""
    rows = [
        (f"{row['month']:%Y-%m}", label, sign * row[column])
        for _, row in months.iterrows()
        for column, (label, sign) in MOVEMENTS.items()
    ]
    return pd.DataFrame(rows, columns=["month", "movement", "mrr"])


CREDIT_KINDS = {
    "credits_sold": "Sold",
    "credits_granted": "Granted",
    "credits_consumed": "Consumed",
    "credits_expired": "Expired",
}


def credit_bars(months: pd.DataFrame) -> pd.DataFrame:
    """`credit_months` as chart bars: month ('YYYY-MM'), kind (sold, granted, consumed, expired), credits."""
    rows = [
        (f"{row['month']:%Y-%m}", label, row[column])
        for _, row in months.iterrows()
        for column, label in CREDIT_KINDS.items()
    ]
    return pd.DataFrame(rows, columns=["month", "kind", "credits"])


def newest_first(months: pd.DataFrame, figures: Sequence[str]) -> pd.DataFrame:
    """A month table (`mrr_months`, `credit_months`) newest first, without the months before the first one in
    which any of `figures` is not 0: the current month leads, and no empty lead-in months follow the last."""
    active = months[list(figures)].ne(0).any(axis=1).tolist()
    first = active.index(True) if True in active else len(active)
    return months.iloc[first:].iloc[::-1].reset_index(drop=True)
