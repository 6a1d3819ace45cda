"""Credits across organizations: per month, who uses the most, who runs low, and free credits granted."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from billing_core import analytics, orders
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_reads import month_count, month_label, system_read

CREDIT_COLUMNS = {
    "month": kit.text_column("Month"),
    "credits_sold": kit.credits_column("Sold"),
    "revenue": kit.money_column("Revenue from credits"),
    "credits_granted": kit.credits_column("Granted (free)"),
    "credits_consumed": kit.credits_column("Consumed"),
    "credits_expired": kit.credits_column("Expired (breakage)"),
}


def credit_months_section(screen: Screen) -> None:
    """Credits sold, granted, consumed and expired per month: the chart oldest to newest, the table newest first."""
    st.subheader("Credits per month")
    months = system_read(screen, analytics.credit_months, months=month_count())
    shown = analytics.newest_first(months, list(analytics.CREDIT_KINDS))
    if shown.empty:
        st.caption("No credits sold, granted, consumed or expired in these months.")
        return
    kit.show_chart(kit.bar_chart(
        analytics.credit_bars(shown.iloc[::-1]), "month", "credits", color="kind", barmode="group",
        title="Credits sold, granted, consumed and expired",
        labels={"month": "Month", "credits": "Credits", "kind": "Credits"},
    ), key="credit_months")
    st.caption("Calendar months (UTC), newest first; the current month runs to now.")
    kit.table(month_label(shown), CREDIT_COLUMNS, key="credit_months_table")
    kit.csv_download(shown, "credit_months.csv", "Download credits per month (CSV)", key="credit_months_csv")


def top_usage_section(all_orgs: pd.DataFrame) -> None:
    """The ten organizations that used the most credits in the last 30 days."""
    st.subheader("Top organizations by credits used (30 days)")
    top = analytics.top_of(all_orgs, 10)
    if top.empty:
        st.caption("No usage in the last 30 days.")
        return
    kit.show_chart(kit.bar_chart(
        top, "org_name", "credits_used_30d", key="org_id", horizontal=True, hover=["plan_name", "requests_30d"],
        title="Credits used in the last 30 days",
        labels={"org_name": "Organization", "credits_used_30d": "Credits (30 days)",
                "plan_name": "Plan", "requests_30d": "Requests"},
    ), key="top_organizations", height=max(240, 40 * len(top) + 80))


def running_low_section(all_orgs: pd.DataFrame) -> None:
    """Organizations whose credits run out within 30 days at their 30-day burn rate."""
    st.subheader("Running low on credits")
    kit.table(analytics.running_low_of(all_orgs, 30), {
        "org_name": kit.text_column("Organization"),
        "org_id": kit.text_column("Id"),
        "plan_name": kit.text_column("Plan"),
        "remaining_credits": kit.credits_column("Credits left"),
        "burn_per_day": kit.credits_column("Burn per day (30 days)"),
        "runway_days": kit.count_column("Runway (days)"),
    }, key="running_low_table",
        empty="No organization runs out of credits within 30 days at its current burn rate.")


GRANT_FIELDS = ("grant_credits", "grant_reason", "grant_expires")


def _ask_grant(screen: Screen, org_labels: dict[str, str]) -> None:
    """The "Grant credits" form was sent: check the figure and the reason, then ask for confirmation."""
    org = kit.chosen_member("grant", "grant_org", "Choose an organization.")
    amount = kit.entered("grant", "grant_credits", "Credits to grant")
    reason = (st.session_state.get("grant_reason") or "").strip()
    if not reason:
        kit.flash("grant", "error", "Give the reason for the grant: it is shown in the billing history.")
        return
    expiry_day = st.session_state.get("grant_expires")
    # credits expire when the chosen day ends (UTC); the database refuses a moment already past
    expires_at = datetime.combine(expiry_day + timedelta(days=1), time.min, UTC) if expiry_day else None
    try:  # the database's rule, before the question; it stays the last word at Confirm
        orders.check_grant(screen.db, screen.actor_id, org, amount, reason, expires_at=expires_at)
    except BillingError as exc:
        kit.flash("grant", "error", str(exc))
        return
    kit.ask_confirmation(
        "grant",
        f"Grant {kit.fmt_credits(amount)} free {'credit' if amount == 1 else 'credits'} to {org_labels.get(org, org)} for: {reason}"
        + (f", expiring at the end of {expiry_day:%Y-%m-%d} (UTC)?" if expiry_day else "?")
        + " A grant is not revenue.",
        lambda: orders.grant_credits(screen.db, screen.actor_id, org, amount, reason, expires_at=expires_at),
        success=lambda total: f"Granted: the pool of {org_labels.get(org, org)} now holds {kit.fmt_credits(total)} "
                              "credits.",
        clear=GRANT_FIELDS,
    )


def grant_section(screen: Screen, all_orgs: pd.DataFrame) -> None:
    """Free credits for an organization, with a reason (shown in its billing history) and an optional expiry."""
    st.subheader("Grant credits")
    org_labels = {row.org_id: f"{row.org_name} ({row.org_id})" for row in all_orgs.itertuples()}
    if not org_labels:
        st.caption("No organization yet.")
        return
    with st.form("grant_form"):
        st.selectbox("Organization", list(org_labels), format_func=org_labels.get, key="grant_org")
        st.text_input("Credits to grant", key="grant_credits", placeholder="a number of credits")
        st.text_input("Reason", key="grant_reason", max_chars=500, help="Why these credits are given, e.g. an outage.")
        st.date_input("Expires on (optional)", value=None, key="grant_expires",
                      help="Unused granted credits leave the pool when this day ends (UTC).")
        st.form_submit_button("Grant credits", key="grant_submit",
                              on_click=kit.refusing(lambda: _ask_grant(screen, org_labels)))
    kit.confirmation("grant")
