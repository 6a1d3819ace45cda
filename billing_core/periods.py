"""Billing periods: each organization's period settings, its credit lots, and the period job.

Settings and the job are stored functions (sql/routines/090_periods.sql,
092_lots.sql); the database checks roles and writes the audit rows. The job,
`run`, is the procedure run_billing_periods: one organization per
transaction, so it is called on a connection outside any transaction block.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing_core.amounts import Amount, to_decimal
from billing_core.database import call, domain_error, fetch, fetch_frame, record, records
from billing_core.moments import aware

POLICIES = ("reset", "rollover")


@dataclass(frozen=True)
class Run:
    """One run of the period job and what it did."""

    id: int
    run_as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    orgs_processed: int
    periods_closed: int
    lots_expired: int
    holds_released: int
    orgs_failed: int
    errors: list


@dataclass(frozen=True)
class CurrentPeriod:
    """An organization's current billing period as the job keeps it, and when the next one ends."""

    period_start: datetime
    period_end: datetime
    next_period_end: datetime


def set_calendar(db: Engine, actor_id: str | None, org_id: str, anchor_day: int, timezone: str) -> bool:
    """Set the day of the month (1-31) and time zone periods start on; the current period keeps its end.

    Returns False when the calendar already was this one (nothing changed)."""
    return call(
        db,
        "select set_billing_calendar(:org_id, :day, :zone, :actor_id)",
        {"org_id": org_id, "day": anchor_day, "zone": timezone, "actor_id": actor_id},
    )


def set_policy(
    db: Engine, actor_id: str | None, org_id: str, policy: str, rollover_cap: Amount | None = None
) -> None:
    """Set what unused allocations do at a boundary: 'reset', or 'rollover' up to `rollover_cap` per member."""
    call(
        db,
        "select set_allocation_policy(:org_id, :policy, :cap, :actor_id)",
        {"org_id": org_id, "policy": policy, "cap": to_decimal(rollover_cap, "Rollover cap"), "actor_id": actor_id},
    )


def set_standing_credits(
    db: Engine, actor_id: str | None, org_id: str, user_id: str, credits: Amount | None
) -> None:
    """Set what a member's allocation reopens at each period (None: what they had in the closing period)."""
    call(
        db,
        "select set_member_standing_credits(:org_id, :user_id, :credits, :actor_id)",
        {"org_id": org_id, "user_id": user_id, "credits": to_decimal(credits, "Standing credits"), "actor_id": actor_id},
    )


def set_low_balance_threshold(db: Engine, actor_id: str | None, org_id: str, threshold: Amount | None) -> None:
    """Set the unspent-credit level below which the pool raises an alert (None: no alert)."""
    call(
        db,
        "select set_low_balance_threshold(:org_id, :threshold, :actor_id)",
        {"org_id": org_id, "threshold": to_decimal(threshold, "Low-balance threshold"), "actor_id": actor_id},
    )


def set_monthly_refresh(db: Engine, actor_id: str | None, org_id: str, credits: Amount) -> None:
    """Set the credits granted to the pool at every period start (system admins)."""
    call(
        db,
        "select set_monthly_refresh_amount(:org_id, :credits, :actor_id)",
        {"org_id": org_id, "credits": to_decimal(credits, "Monthly refresh amount"), "actor_id": actor_id},
    )


def run(db: Engine, now: datetime | None = None) -> Run:
    """Do all due period work for every organization up to `now` (default: the database clock); returns the run."""
    try:
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            run_id = conn.execute(
                sa.text("call run_billing_periods(cast(:now as timestamptz), null)"),
                {"now": aware(now, "Run time")},
            ).scalar_one()
    except sa.exc.DBAPIError as exc:
        domain = domain_error(exc)
        if domain is not None:
            raise domain from None
        raise
    return record(Run, fetch(db, _RUNS["by_id"], {"id": run_id})[0])


_RUNS = {
    # the run just made, read on the operator's connection that ran it
    "by_id": "select id, run_as_of, started_at, finished_at, orgs_processed, periods_closed, lots_expired,"
             " holds_released, orgs_failed, errors from billing_period_runs where id = :id",
}


def last_run(db: Engine, actor_id: str | None, org_id: str | None = None) -> Run | None:
    """The latest run of the period job, or None if it never ran: all of it (system admins, the operator), or as
    one organization's admins see it (`org_id`: its errors only)."""
    runs = records(Run, fetch(db, "select * from billing_period_last_run(:actor_id, :org_id)",
                              {"actor_id": actor_id, "org_id": org_id}))
    return runs[0] if runs else None


def current_period(db: Engine, actor_id: str, org_id: str) -> CurrentPeriod:
    """The organization's current billing period and the end of the next one (members of the org)."""
    row = fetch(
        db,
        "select period_start, period_end, next_period_end from billing_current_period(:org_id, :actor_id)",
        {"org_id": org_id, "actor_id": actor_id},
    )[0]
    return record(CurrentPeriod, row)


def past_periods(db: Engine, actor_id: str, org_id: str) -> pd.DataFrame:
    """The periods the job opened for the organization before its current one, newest first (org admins)."""
    return fetch_frame(
        db, "select * from billing_past_periods(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id}
    )


def lots(db: Engine, actor_id: str, org_id: str) -> pd.DataFrame:
    """The organization's credit lots, earliest expiring first (org admins).

    granted_at is the purchase's or grant's own date (its billing history row's; the pool's opening for the
    opening balance), which a purchase recorded after the fact has before the ledger recorded it (recorded_at,
    the moment its credits entered the pool, which settlement goes by). remaining_credits is what is neither
    settled as consumed nor expired; usage since the job last ran is not settled yet.
    """
    return fetch_frame(db, "select * from credit_lots_of(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id})


@dataclass(frozen=True)
class Settings:
    """An organization's period settings."""

    anchor_day: int
    timezone: str
    allocation_policy: str
    rollover_cap: Decimal | None
    low_balance_threshold: Decimal | None
    monthly_refresh_amount: Decimal


def settings(db: Engine, actor_id: str, org_id: str) -> Settings:
    """The organization's calendar, allocation policy, threshold and refresh amount (members of the org)."""
    rows = fetch(db, "select * from billing_settings_of(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id})
    return record(Settings, rows[0])
