"""Reads the HTTP API needs beside the screens': one member's balance, usage grouped and paged.

Both are stored functions that authorize the acting user themselves (sql/routines/150_api_reads.sql).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

import pandas as pd
from sqlalchemy.engine import Engine

from billing_core.database import fetch, fetch_frame, record

Group = Literal["day", "user", "service", "model"]
GROUPS: tuple[Group, ...] = ("day", "user", "service", "model")
MAX_PAGE = 1000


@dataclass(frozen=True)
class Balance:
    """A member's active allocation: allocated, used, held for calls in progress, and what they can spend now."""

    org_id: str
    user_id: str
    allocated: Decimal
    used: Decimal
    held: Decimal
    remaining: Decimal


def member_balance(db: Engine, actor_id: str, org_id: str | None, user_id: str) -> Balance:
    """The member's balance in `org_id` (None: the organization their calls are charged to)."""
    rows = fetch(db, "select * from member_balance(:actor_id, :org_id, :user_id)",
                 {"actor_id": actor_id, "org_id": org_id, "user_id": user_id})
    return record(Balance, rows[0])


@dataclass(frozen=True)
class UsagePage:
    """One page of usage groups and how many groups the range holds (None: the page is past the last one)."""

    groups: pd.DataFrame  # key, credits_used, requests
    total: int | None


def usage_groups(
    db: Engine, actor_id: str, org_id: str, user_id: str | None, date_from: date, date_to: date, group: Group,
    *, limit: int = 100, offset: int = 0,
) -> UsagePage:
    """The organization's (or one member's) usage per day, user, service or model over the days, one page."""
    frame = fetch_frame(
        db,
        "select key, credits_used, requests, total_groups"
        " from usage_groups(:actor_id, :org_id, :user_id, :date_from, :date_to, :group, :limit, :offset)",
        {"actor_id": actor_id, "org_id": org_id, "user_id": user_id, "date_from": date_from, "date_to": date_to,
         "group": group, "limit": limit, "offset": offset},
    )
    total = int(frame["total_groups"].iloc[0]) if not frame.empty else (0 if offset == 0 else None)
    return UsagePage(frame.drop(columns=["total_groups"]), total)
