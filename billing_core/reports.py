"""Read models: the views over the ledger, as DataFrames and small dataclasses.

Every function takes the acting user; the role check runs in the same
transaction as the read.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core import access
from billing_core.database import fetch, fetch_frame, record
from billing_core.errors import NotFound


@dataclass(frozen=True)
class Pool:
    """An organization's credit pool at one moment."""

    org_id: str
    total_credits: Decimal
    allocated_credits: Decimal
    used_credits: Decimal
    available_credits: Decimal
    monthly_refresh_amount: Decimal


def _org_row(table: pd.DataFrame, org_id: str) -> pd.Series:
    """The one row of a read of one organization (NotFound when there is none)."""
    if table.empty:
        raise NotFound(f"Organization {org_id!r} does not exist.")
    return table.iloc[0]


def pool(db: Engine, actor_id: str, org_id: str) -> Pool:
    """The organization's pool (org admins of it, system admins)."""
    rows = fetch(
        db,
        "select org_id, total_credits, allocated_credits, used_credits, available_credits,"
        " monthly_refresh_amount from organization_credit_pools where org_id = :org_id",
        {"org_id": org_id},
        checks=access.org_checks(actor_id, org_id, "admin"),
    )
    if not rows:
        return Pool(org_id, Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    return record(Pool, rows[0])


# the summary's columns, in the order the screens show them (a constant SQL fragment, no input)
_SUMMARY = (
    "org_id, org_name, org_status, plan, subscription_status, price_amount, billing_cycle, total_credits,"
    " allocated_credits, used_credits, available_credits, monthly_refresh_amount, member_count, admin_count,"
    " active_allocations, credits_used_30d, requests_30d, last_usage_at, created_at"
)


def org_summaries(db: Engine, actor_id: str) -> pd.DataFrame:
    """Every organization's billing summary (system admins)."""
    return fetch_frame(
        db,
        f"select {_SUMMARY} from org_billing_summary order by org_name, org_id",
        checks=[access.check(actor_id, None, "system_admin")],
    )


def org_summary(db: Engine, actor_id: str, org_id: str) -> pd.Series:
    """One organization's billing summary (its admins, system admins)."""
    table = fetch_frame(
        db,
        f"select {_SUMMARY} from org_billing_summary where org_id = :org_id",
        {"org_id": org_id},
        checks=[access.check(actor_id, org_id, "admin")],
    )
    return _org_row(table, org_id)


def my_credits(db: Engine, actor_id: str) -> pd.DataFrame:
    """The acting user's allocation in each of their organizations, default first."""
    return fetch_frame(
        db,
        "select org_id, org_name, org_status, role, is_default, allocated_credits, used_credits,"
        " remaining_credits, usage_percent, period_start, period_end from user_multi_org_credits"
        " where user_id = :actor_id order by is_default desc, org_name, org_id",
        {"actor_id": actor_id},
    )


def top_users(db: Engine, actor_id: str, org_id: str, limit: int = 10) -> pd.DataFrame:
    """The organization's members ranked by credits used in the last 30 days (org admins)."""
    return fetch_frame(
        db,
        "select user_id, email, display_name, credits_used_30d, requests_30d, usage_rank"
        " from top_credit_users_by_org where org_id = :org_id order by usage_rank, user_id limit :limit",
        {"org_id": org_id, "limit": limit},
        checks=[access.check(actor_id, org_id, "admin")],
    )


def org_metrics(db: Engine, actor_id: str, org_id: str) -> pd.Series:
    """The organization's 30-day usage against the previous 30 days (org admins)."""
    table = fetch_frame(
        db,
        "select org_id, org_name, credits_used_30d, requests_30d, active_users_30d, services_used_30d,"
        " avg_credits_per_request_30d, credits_used_prev_30d, credits_used_change_percent, last_usage_at"
        " from org_billing_metrics where org_id = :org_id",
        {"org_id": org_id},
        checks=[access.check(actor_id, org_id, "admin")],
    )
    return _org_row(table, org_id)


def recent_usage(db: Engine, actor_id: str, org_id: str, *, user_id: str | None = None, limit: int = 100) -> pd.DataFrame:
    """The newest attribution rows of an organization (org admins), or of one member (that member too)."""
    own = user_id is not None and user_id == actor_id
    return fetch_frame(
        db,
        "select created_at, user_id, service_type, service_name, credits_used, request_id, remaining_after"
        " from credit_usage_attribution"
        " where org_id = :org_id and (cast(:user_id as text) is null or user_id = :user_id)"
        " order by created_at desc, id desc limit :limit",
        {"org_id": org_id, "user_id": user_id, "limit": limit},
        checks=[access.check(actor_id, org_id, "member" if own else "admin")],
    )


def billing_history(db: Engine, actor_id: str, org_id: str, limit: int = 200) -> pd.DataFrame:
    """The organization's billing history, newest first (org admins)."""
    return fetch_frame(
        db,
        "select created_at, event_type, credits, amount, currency, description, total_credits_after"
        " from org_billing_history where org_id = :org_id order by created_at desc, id desc limit :limit",
        {"org_id": org_id, "limit": limit},
        checks=[access.check(actor_id, org_id, "admin")],
    )
