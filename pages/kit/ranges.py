"""The date range control: presets or custom from–to, in the organization's time zone, checked by SQL."""

from __future__ import annotations

from datetime import date

import streamlit as st

from billing_core import usage
from billing_core.errors import BillingError
from pages.kit.formats import md_text
from pages.kit.forms import show_error
from pages.kit.session import Screen, read

PRESETS = {
    "today": "Today",
    "last_7_days": "Last 7 days",
    "last_30_days": "Last 30 days",
    "this_month": "This month",
    "last_month": "Last month",
    "this_period": "This billing period",
    "custom": "Custom dates",
}


def day_text(day: date) -> str:
    """A day as a person reads it: 2 Dec 2026."""
    return f"{day.day} {day:%b %Y}"


def range_text(date_range: usage.DateRange) -> str:
    """'3 Nov 2026 – 2 Dec 2026 (30 days)', or '2 Dec 2026' for one day."""
    if date_range.date_from == date_range.date_to:
        return day_text(date_range.date_from)
    days = f"{date_range.days:,} days"
    return f"{day_text(date_range.date_from)} – {day_text(date_range.date_to)} ({days})"


def zone_text(date_range: usage.DateRange) -> str:
    """'Times in Europe/Berlin': the zone every time and day of the range is shown in."""
    return f"Times in {date_range.time_zone}"


def date_range_control(screen: Screen, key: str, default: str = "last_30_days") -> usage.DateRange:
    """A preset (or custom from–to) for the chosen organization, checked by the database; returns the range to show.

    A refused choice says what is wrong and changes nothing: the views keep the last range that was accepted
    (at first, `default`). The organization's time zone decides what today is and where days start.
    """
    org_id = screen.require_org()
    accepted_key = f"{key}_accepted"
    accepted = st.session_state.get(accepted_key)
    if accepted is None or accepted[0] != org_id:
        accepted = (org_id, read(screen.db, usage.date_range, screen.actor_id, org_id, default))
    shown: usage.DateRange = accepted[1]

    preset_column, from_column, to_column = st.columns([2, 1, 1], vertical_alignment="bottom")
    preset = preset_column.selectbox("Dates", list(PRESETS), format_func=PRESETS.__getitem__,
                                     index=list(PRESETS).index(default), key=f"{key}_preset")
    date_from = date_to = None
    if preset == "custom":
        # the custom fields start from the range on screen, so switching to them changes nothing yet
        st.session_state.setdefault(f"{key}_from", shown.date_from)
        st.session_state.setdefault(f"{key}_to", shown.date_to)
        date_from = from_column.date_input("From", key=f"{key}_from", format="YYYY-MM-DD")
        date_to = to_column.date_input("To", key=f"{key}_to", format="YYYY-MM-DD")
    try:
        chosen = read(screen.db, usage.date_range, screen.actor_id, org_id, preset, date_from, date_to)
    except BillingError as exc:
        show_error(exc)
        st.caption(md_text(f"Still showing {range_text(shown)}. {zone_text(shown)}."))
        return shown
    st.session_state[accepted_key] = (org_id, chosen)
    st.caption(md_text(f"{range_text(chosen)}. {zone_text(chosen)}."))
    return chosen
