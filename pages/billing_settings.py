"""Billing periods: the chosen organization's calendar, what allocations do at a period's end, alerts and grants,
and the organization's API keys.

For the organization's admins and for system admins; every read and write checks the role again in SQL.
"""

from __future__ import annotations

from functools import partial
from zoneinfo import available_timezones

import pandas as pd
import streamlit as st

import pages
from billing_core import api_keys, periods, usage
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections import api_keys as key_sections

POLICIES = {"reset": "Return to the pool", "rollover": "Roll over, up to a cap"}
POLICY_DONE = {"reset": "return to the pool", "rollover": "roll over"}


def render(screen: Screen) -> None:
    """The Billing periods screen."""
    st.title("Billing periods")
    org_id = screen.require_org()
    db, actor_id = screen.db, screen.actor_id
    try:
        overview = kit.read(db, usage.org_overview, actor_id, org_id)  # org admins and system admins only
        settings = kit.read(db, periods.settings, actor_id, org_id)
        current = kit.read(db, periods.current_period, actor_id, org_id)
        past = kit.read(db, periods.past_periods, actor_id, org_id)
        members = kit.read(db, usage.allocations, actor_id, org_id)
        last_run = kit.read(db, periods.last_run, actor_id, org_id)
    except BillingError as exc:
        kit.refuse(exc)
    st.subheader(kit.md_text(overview.org_name))
    period_section(current, settings, last_run)
    calendar_col, policy_col = st.columns(2)
    with calendar_col:
        calendar_section(screen, settings)
    with policy_col:
        policy_section(screen, settings)
    labels = {row.user_id: f"{row.display_name} ({row.email})" for row in members.itertuples()}
    standing_col, threshold_col = st.columns(2)
    with standing_col:
        standing_section(screen, labels)
    with threshold_col:
        threshold_section(screen, settings)
    refresh_section(screen, settings)
    standing_table_section(members)
    past_periods_section(past)
    api_keys_section(screen)


def period_section(current: periods.CurrentPeriod, settings: periods.Settings, last_run: periods.Run | None) -> None:
    """When the current period started, when the next reset comes, and when the period job last ran."""
    start_col, end_col = st.columns(2)
    with start_col:
        kit.metric_card("Current period started", f"{current.period_start:%Y-%m-%d}", "text",
                        help=f"At {current.period_start:%Y-%m-%d %H:%M %Z}: local midnight in {settings.timezone}.")
    with end_col:
        kit.metric_card("Next reset", f"{current.period_end:%Y-%m-%d}", "text",
                        help=f"At {current.period_end:%Y-%m-%d %H:%M %Z}: allocations reset and the pool's refresh "
                             "and included credits arrive then.")
    if last_run is None:
        st.warning("The period job has never run: period resets, grants and expiries wait for "
                   "`billing periods run`.")
    else:
        st.caption(f"The period job last ran {last_run.finished_at or last_run.started_at:%Y-%m-%d %H:%M %Z} "
                   "(`billing periods run`, which an operator runs from cron).")


def calendar_section(screen: Screen, settings: periods.Settings) -> None:
    """The day of the month and the time zone periods start on."""
    with st.form("calendar_form"):
        st.markdown("**Billing calendar**")
        st.number_input("Day of the month periods start", 1, 31, value=settings.anchor_day, step=1,
                        key="calendar_day", help="In a shorter month, its last day.")
        zones = sorted(available_timezones() | {settings.timezone})  # the IANA names (and the one in use)
        st.selectbox("Time zone", zones, index=zones.index(settings.timezone), key="calendar_zone",
                     help="Type to search, e.g. Berlin or New_York: periods start at local midnight there.")
        st.form_submit_button("Save calendar", key="calendar_submit", on_click=kit.refusing(partial(save_calendar, screen)))
    kit.show_flash("calendar")


def save_calendar(screen: Screen) -> None:
    """The "Billing calendar" form was sent."""
    kit.write(
        "calendar", periods.set_calendar, screen.db, screen.actor_id, screen.org_id,
        st.session_state.get("calendar_day"), st.session_state.get("calendar_zone") or "",
        success=lambda changed: "Billing calendar saved: the current period keeps its end; the next ones follow the "
        "new day." if changed else "The calendar already was this one: nothing changed.",
        clear=("calendar_day", "calendar_zone"),
    )


def policy_section(screen: Screen, settings: periods.Settings) -> None:
    """What unused member credits do at a period's end."""
    with st.form("policy_form"):
        st.markdown("**At the period end**")
        st.radio("Unused member credits", list(POLICIES), horizontal=True, key="policy",
                 index=list(POLICIES).index(settings.allocation_policy), format_func=POLICIES.get)
        st.text_input("Rollover cap per member (credits)", key="rollover_cap",
                      value=kit.fmt_credits(settings.rollover_cap) if settings.rollover_cap is not None else "",
                      help="Only with roll over; empty: no cap.")
        st.form_submit_button("Save policy", key="policy_submit", on_click=kit.refusing(partial(save_policy, screen)))
    kit.show_flash("policy")


def save_policy(screen: Screen) -> None:
    """The "At the period end" form was sent."""
    policy = st.session_state.get("policy")
    cap = kit.entered("policy", "rollover_cap", "Rollover cap", optional=True) if policy == "rollover" else None
    kit.write("policy", periods.set_policy, screen.db, screen.actor_id, screen.org_id, policy, cap,
              success=f"Allocation policy saved: unused member credits {POLICY_DONE[policy]} at each period end.",
              clear=("policy", "rollover_cap"))


def standing_section(screen: Screen, labels: dict[str, str]) -> None:
    """What one member's allocation reopens at each period."""
    with st.form("standing_form"):
        st.markdown("**A member's standing amount**")
        st.caption("What their allocation reopens at each period. Empty: what they had in the closing period.")
        st.selectbox("Member", list(labels), format_func=labels.get, key="standing_user")
        st.text_input("Credits each period", key="standing_credits", placeholder="a number of credits; empty: none")
        st.form_submit_button("Save standing amount", key="standing_submit",
                              on_click=kit.refusing(partial(save_standing, screen, labels)))
    kit.show_flash("standing")


def save_standing(screen: Screen, labels: dict[str, str]) -> None:
    """The "Standing amount" form was sent."""
    user_id = kit.chosen_member("standing", "standing_user", "Choose a member.")
    credits = kit.entered("standing", "standing_credits", "Standing credits", optional=True)
    amount = "what they had in the closing period" if credits is None else f"{kit.fmt_credits(credits)} credits"
    kit.write(
        "standing", periods.set_standing_credits, screen.db, screen.actor_id, screen.org_id, user_id, credits,
        success=f"Saved: {labels.get(user_id, user_id)} reopens each period with {amount}.",
        clear=("standing_credits",),
    )


def threshold_section(screen: Screen, settings: periods.Settings) -> None:
    """The pool's low-balance alert level."""
    with st.form("threshold_form"):
        st.markdown("**Low-balance alert**")
        st.caption("An alert when the pool's unspent credits fall below this. Empty: no alert.")
        st.text_input("Threshold (credits)", key="threshold_credits",
                      value=kit.fmt_credits(settings.low_balance_threshold)
                      if settings.low_balance_threshold is not None else "")
        st.form_submit_button("Save threshold", key="threshold_submit", on_click=kit.refusing(partial(save_threshold, screen)))
    kit.show_flash("threshold")


def save_threshold(screen: Screen) -> None:
    """The "Low-balance alert" form was sent."""
    threshold = kit.entered("threshold", "threshold_credits", "Low-balance threshold", optional=True)
    kit.write(
        "threshold", periods.set_low_balance_threshold, screen.db, screen.actor_id, screen.org_id, threshold,
        success="No low-balance alert." if threshold is None
        else f"Low-balance alert saved: below {kit.fmt_credits(threshold)} unspent credits.",
    )  # not cleared: the field shows the threshold in force, which is what was just saved


def refresh_section(screen: Screen, settings: periods.Settings) -> None:
    """The credits granted to the pool at every period start (set by system admins)."""
    allowed = screen.roles.is_system_admin
    with st.form("refresh_form"):
        st.markdown("**Monthly refresh**")
        st.caption(f"Granted to the pool at every period start, with the plan's included credits. "
                   f"Now: {kit.fmt_credits(settings.monthly_refresh_amount)} credits."
                   + ("" if allowed else " Set by a system admin."))
        st.text_input("Credits each period", key="refresh_credits", disabled=not allowed)
        st.form_submit_button("Save monthly refresh", key="refresh_submit", disabled=not allowed,
                              on_click=kit.refusing(partial(save_refresh, screen)))
    kit.show_flash("refresh")


def save_refresh(screen: Screen) -> None:
    """The "Monthly refresh" form was sent (system admins)."""
    credits = kit.entered("refresh", "refresh_credits", "Monthly refresh amount")
    kit.write("refresh", periods.set_monthly_refresh, screen.db, screen.actor_id, screen.org_id, credits,
              success=f"Monthly refresh saved: {kit.fmt_credits(credits)} credits at every period start.",
              clear=("refresh_credits",))


def standing_table_section(members: pd.DataFrame) -> None:
    """Each member's allocation this period and what it reopens at."""
    st.subheader("Standing amounts")
    kit.table(
        members.assign(each_period=["same as this period" if pd.isna(value) else kit.fmt_credits(value)
                                    for value in members.standing_credits]),
        {
            "display_name": kit.text_column("Name"),
            "email": kit.text_column("Email"),
            "allocated_credits": kit.credits_column("Allocated this period"),
            "used_credits": kit.credits_column("Used"),
            "each_period": kit.text_column("Each period"),
        },
        key="standing_table",
    )


def past_periods_section(past: pd.DataFrame) -> None:
    """The periods before the current one, newest first, with what their start granted and reopened."""
    st.subheader("Past periods")
    kit.table(
        past,
        {
            "period_start": kit.datetime_column("Started"),
            "period_end": kit.datetime_column("Ended"),
            "refresh_credits": kit.credits_column("Refresh"),
            "included_credits": kit.credits_column("Included"),
            "allocations_closed": kit.count_column("Allocations closed"),
            "allocations_opened": kit.count_column("Reopened"),
            "credits_requested": kit.credits_column("Standing asked"),
            "credits_allocated": kit.credits_column("Allocated"),
        },
        key="periods_table",
        empty="No past period yet: the current one is the first the period job opened.",
    )


def api_keys_section(screen: Screen) -> None:
    """The organization's API keys: make one (its token shown once), see them, revoke one."""
    st.subheader("API keys")
    st.caption("A key lets a program use the billing API for this organization, acting as the admin who made it: "
               "it stops working if they are no longer an admin here.")
    keys = key_sections.read_keys(screen, screen.org_id)
    with st.form("org_key"):
        st.text_input("Key name", key="org_key_name", max_chars=100, placeholder="what the key is for: CI, reports…")
        st.form_submit_button("Create key", key="org_key_submit", on_click=key_sections.create,
                              args=("org_key", partial(_make_org_key, screen), ()))
    kit.show_flash("org_key")
    key_sections.new_token_section("org_key")
    key_sections.keys_table_section(keys, key="org_keys_table", empty="No API keys yet.")
    key_sections.revoke_section(screen, keys, form="org_key_revoke")


def _make_org_key(screen: Screen, name: str) -> api_keys.NewKey:
    return api_keys.create_organization_key(screen.db, screen.actor_id, screen.org_id, name)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
