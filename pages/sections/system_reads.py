"""What every system screen reads first: a system admins' read that refuses anyone else, and shared labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen


def system_read(screen: Screen, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(db, actor, ...)`, a system admins' billing_core read (cached); anyone else sees the database's
    refusal ("... is not a system admin.") and nothing after it."""
    try:
        return kit.read(screen.db, function, screen.actor_id, *args, **kwargs)
    except BillingError as exc:
        kit.refuse(exc)


def month_label(frame: Any) -> Any:
    """A month table with its months as 'YYYY-MM' labels (display only)."""
    return frame.assign(month=frame.month.map(lambda m: f"{m:%Y-%m}"))


def month_count(key: str = "analytics_months") -> int:
    """How many months a month-by-month section covers (6, 12 or 24), chosen by the person."""
    return st.selectbox("Months shown", [6, 12, 24], index=1, key=key,
                        help="Months before the first one with any figure are left out; the current month first.")


def moments_as_text(frame: pd.DataFrame, *columns: str, missing: str = "never") -> pd.DataFrame:
    """`frame` with these timestamp columns as text to the minute (UTC), `missing` where there is none: the grid
    shows a missing value as "None". The text sorts as the moments do."""
    def text(moment: object) -> str:
        return missing if moment is None or pd.isna(moment) else f"{pd.Timestamp(moment).tz_convert('UTC'):%Y-%m-%d %H:%M}"

    return frame.assign(**{column: frame[column].map(text) for column in columns})
