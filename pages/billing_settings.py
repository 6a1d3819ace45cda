"""Billing periods: the chosen organization's calendar, what allocations do at a period's end, alerts and grants.

For the organization's admins and for system admins; every read and write
checks the role again in billing_core.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import pages
from billing_core import access, periods, usage
from billing_core.errors import BillingError
from pages import kit

if __name__ == "__main__":  # opened by its URL in Streamlit's old pages/ mode: the app with its login instead
    pages.run_app()
    st.stop()

st.title("Billing periods")

actor_id = kit.require_actor()
org_id = kit.require_chosen_org()
db = kit.engine()

try:
    overview = kit.read(db, usage.org_overview, actor_id, org_id)  # org admins and system admins only
    settings = kit.read(db, periods.settings, actor_id, org_id)
    current = kit.read(db, periods.current_period, actor_id, org_id)
    history = kit.read(db, periods.periods, actor_id, org_id)
    members = kit.read(db, usage.allocations, actor_id, org_id)
    last_run = kit.read(db, periods.last_run)
    is_system_admin = kit.read(db, access.role_in, actor_id, None) == "system_admin"
except BillingError as exc:
    kit.refuse(exc)

labels = {row.user_id: f"{row.display_name} ({row.email})" for row in members.itertuples()}
st.subheader(kit.md_text(overview.org_name))

start_col, end_col = st.columns(2)
with start_col:
    kit.metric_card("Current period started", f"{current.period_start:%Y-%m-%d}", "text",
                    help=f"At {current.period_start:%Y-%m-%d %H:%M %Z}: local midnight in {settings.timezone}.")
with end_col:
    kit.metric_card("Next reset", f"{current.period_end:%Y-%m-%d}", "text",
                    help=f"At {current.period_end:%Y-%m-%d %H:%M %Z}: allocations reset and the pool's refresh and "
                         "included credits arrive then.")
if last_run is not None:
    st.caption(f"The period job last ran {last_run.finished_at or last_run.started_at:%Y-%m-%d %H:%M %Z} "
               "(`billing periods run`, which an operator runs from cron).")
if last_run is None:
    st.warning("The period job has never run: period resets, grants and expiries wait for `billing periods run`.")


@kit.refusing
def save_calendar() -> None:
    """The "Billing calendar" form was sent."""
    kit.write(
        "calendar", periods.set_calendar, db, actor_id, org_id,
        st.session_state.get("calendar_day"), (st.session_state.get("calendar_zone") or "").strip(),
        success="Billing calendar saved: the current period keeps its end; the next ones follow the new day.",
    )


@kit.refusing
def save_policy() -> None:
    """The "At the period end" form was sent."""
    policy = st.session_state.get("policy")
    cap = kit.entered("policy", "rollover_cap", "Rollover cap", optional=True) if policy == "rollover" else None
    kit.write("policy", periods.set_policy, db, actor_id, org_id, policy, cap, success="Allocation policy saved.")


@kit.refusing
def save_standing() -> None:
    """The "Standing amount" form was sent."""
    user_id = kit.chosen_member("standing", "standing_user", "Choose a member.")
    credits = kit.entered("standing", "standing_credits", "Standing credits", optional=True)
    kit.write(
        "standing", periods.set_standing_credits, db, actor_id, org_id, user_id, credits,
        success=f"Saved for {labels.get(user_id, user_id)}.",
    )


@kit.refusing
def save_threshold() -> None:
    """The "Low-balance alert" form was sent."""
    threshold = kit.entered("threshold", "threshold_credits", "Low-balance threshold", optional=True)
    kit.write(
        "threshold", periods.set_low_balance_threshold, db, actor_id, org_id, threshold,
        success="No low-balance alert." if threshold is None else "Low-balance alert saved.",
    )


@kit.refusing
def save_refresh() -> None:
    """The "Monthly refresh" form was sent (system admins)."""
    credits = kit.entered("refresh", "refresh_credits", "Monthly refresh amount")
    kit.write("refresh", periods.set_monthly_refresh, db, actor_id, org_id, credits, success="Monthly refresh saved.")


calendar_col, policy_col = st.columns(2)
with calendar_col:
    with st.form("calendar_form"):
        st.markdown("**Billing calendar**")
        st.number_input("Day of the month periods start", 1, 31, value=settings.anchor_day, step=1, key="calendar_day",
                        help="In a shorter month, its last day.")
        st.text_input("Time zone", value=settings.timezone, key="calendar_zone",
                      help="An IANA name such as UTC, Europe/Berlin or America/New_York: periods start at local midnight.")
        st.form_submit_button("Save calendar", key="calendar_submit", on_click=save_calendar)
    kit.show_flash("calendar")
with policy_col:
    with st.form("policy_form"):
        st.markdown("**At the period end**")
        st.radio("Unused member credits", ["reset", "rollover"], horizontal=True, key="policy",
                 index=["reset", "rollover"].index(settings.allocation_policy),
                 format_func={"reset": "Return to the pool", "rollover": "Roll over, up to a cap"}.get)
        st.text_input("Rollover cap per member (credits)", key="rollover_cap",
                      value=kit.fmt_credits(settings.rollover_cap) if settings.rollover_cap is not None else "",
                      help="Only with roll over; empty: no cap.")
        st.form_submit_button("Save policy", key="policy_submit", on_click=save_policy)
    kit.show_flash("policy")

standing_col, threshold_col = st.columns(2)
with standing_col:
    with st.form("standing_form"):
        st.markdown("**A member's standing amount**")
        st.caption("What their allocation reopens at each period. Empty: what they had in the closing period.")
        st.selectbox("Member", list(labels), format_func=lambda user_id: labels[user_id], key="standing_user")
        st.text_input("Credits each period", key="standing_credits", placeholder="1,000")
        st.form_submit_button("Save standing amount", key="standing_submit", on_click=save_standing)
    kit.show_flash("standing")
with threshold_col:
    with st.form("threshold_form"):
        st.markdown("**Low-balance alert**")
        st.caption("An alert when the pool's unspent credits fall below this. Empty: no alert.")
        st.text_input("Threshold (credits)", key="threshold_credits",
                      value=kit.fmt_credits(settings.low_balance_threshold)
                      if settings.low_balance_threshold is not None else "")
        st.form_submit_button("Save threshold", key="threshold_submit", on_click=save_threshold)
    kit.show_flash("threshold")

with st.form("refresh_form"):
    st.markdown("**Monthly refresh**")
    st.caption(f"Granted to the pool at every period start, with the plan's included credits. "
               f"Now: {kit.fmt_credits(settings.monthly_refresh_amount)} credits."
               + ("" if is_system_admin else " Set by a system admin."))
    st.text_input("Credits each period", key="refresh_credits", disabled=not is_system_admin)
    st.form_submit_button("Save monthly refresh", key="refresh_submit", on_click=save_refresh,
                          disabled=not is_system_admin)
kit.show_flash("refresh")

st.subheader("Standing amounts")
kit.table(
    members.assign(each_period=[
        "same as this period" if pd.isna(value) else kit.fmt_credits(value)
        for value in members.standing_credits
    ]),
    {
        "display_name": kit.text_column("Name"),
        "email": kit.text_column("Email"),
        "allocated_credits": kit.credits_column("Allocated this period"),
        "used_credits": kit.credits_column("Used"),
        "each_period": kit.text_column("Each period"),
    },
    key="standing_table",
)

st.subheader("Past periods")
kit.table(
    history,
    {
        "period_start": kit.datetime_column("Started"),
        "period_end": kit.datetime_column("Ends"),
        "refresh_credits": kit.credits_column("Refresh"),
        "included_credits": kit.credits_column("Included"),
        "allocations_closed": kit.text_column("Allocations closed"),
        "allocations_opened": kit.text_column("Reopened"),
        "credits_requested": kit.credits_column("Standing asked"),
        "credits_allocated": kit.credits_column("Allocated"),
    },
    key="periods_table",
    empty="No period processed yet.",
)
