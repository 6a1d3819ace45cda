"""Read models: the views over the ledger, as DataFrames and small dataclasses.

Every function takes the acting user and calls one stored read function
(sql/routines/041_report_reads.sql), which authorizes that user itself, with
the same errors as the writes: Python passes parameters and decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
from sqlalchemy.engine import Engine

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
    rows = fetch(db, "select * from organization_pool(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id})
    if not rows:
        return Pool(org_id, Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    return record(Pool, rows[0])


def org_summaries(db: Engine, actor_id: str) -> pd.DataFrame:
    """Every organization's billing summary (system admins)."""
    return fetch_frame(db, "select * from org_billing_summaries(:actor_id)", {"actor_id": actor_id})


def org_summary(db: Engine, actor_id: str, org_id: str) -> pd.Series:
    """One organization's billing summary (its admins, system admins)."""
    table = fetch_frame(
        db, "select * from org_billing_summary_of(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id}
    )
    return _org_row(table, org_id)


def my_credits(db: Engine, actor_id: str) -> pd.DataFrame:
    """The acting user's allocation in each of their organizations, default first."""
    return fetch_frame(db, "select * from my_credits(:actor_id)", {"actor_id": actor_id})


def org_metrics(db: Engine, actor_id: str, org_id: str) -> pd.Series:
    """The organization's 30-day usage against the previous 30 days (org admins)."""
    table = fetch_frame(
        db, "select * from org_billing_metrics_of(:org_id, :actor_id)", {"org_id": org_id, "actor_id": actor_id}
    )
    return _org_row(table, org_id)


def billing_history(db: Engine, actor_id: str, org_id: str, limit: int = 200) -> pd.DataFrame:
    """The organization's billing history, newest first (org admins)."""
    return fetch_frame(
        db,
        "select * from org_billing_history_of(:org_id, :actor_id, :limit)",
        {"org_id": org_id, "actor_id": actor_id, "limit": limit},
    )
