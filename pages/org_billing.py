"""Organization billing: the chosen organization's subscription, pool, allocations, usage, history and members.

For the organization's admins and for system admins; every read and write checks the role again in the
database. The sections live in pages/sections/org_*.py; each form there is checked by the database's own
rules (a rehearsal) before its question is asked.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import pages
from billing_core import alerts, orders, usage
from billing_core.errors import BillingError
from billing_core.usage import OrgOverview
from pages import kit
from pages.kit.session import Screen
from pages.sections.credit_requests import credit_requests_section
from pages.sections.org_allocations import allocations_section
from pages.sections.org_forms import Organization, write_worded
from pages.sections.org_history import history_section
from pages.sections.org_members import members_section
from pages.sections.org_pool import buy_credits_section, orders_section, pool_section
from pages.sections.org_subscription import subscription_section
from pages.sections.usage import recent_charges_section, usage_summary_section

ALERTS_SHOWN = 5


def render(screen: Screen) -> None:
    """The Organization billing screen."""
    st.title("Organization billing")
    org_id = screen.require_org()
    try:
        overview = kit.read(screen.db, usage.org_overview, screen.actor_id, org_id)
        members = kit.read(screen.db, usage.allocations, screen.actor_id, org_id)
    except BillingError as exc:
        kit.refuse(exc)
    org = organization(overview, members)
    header_section(overview)
    alerts_section(screen, org)
    subscription_section(screen, org, overview)
    pool_section(screen, org, overview)
    buy_credits_section(screen, org, overview)
    kit.tabbed("org_tab", {  # only the chosen tab is drawn (and read)
        "Allocations": lambda: allocations_tab_section(screen, org, overview, members),
        "Usage": lambda: usage_tab_section(screen),
        "Orders": lambda: orders_section(screen, org, kit.read(screen.db, orders.orders_of, screen.actor_id, org_id)),
        "Billing history": lambda: history_section(screen, org_id),
        "Members": lambda: members_section(screen, org, members),
    })


def allocations_tab_section(screen: Screen, org: Organization, overview: OrgOverview, members: pd.DataFrame) -> None:
    """The members' allocations and the form to change them, then the members' requests for more credits."""
    allocations_section(screen, org, overview, members)
    credit_requests_section(screen)


def usage_tab_section(screen: Screen) -> None:
    """The organization's usage over a chosen date range: totals, breakdowns, then the charges themselves."""
    date_range = kit.date_range_control(screen, key="org_usage_range")
    usage_summary_section(screen, "organization", date_range)
    recent_charges_section(screen, "organization", date_range)


def organization(overview: OrgOverview, members: pd.DataFrame) -> Organization:
    """The organization and its members' names, as the sections' questions and refusals say them."""
    return Organization(
        org_id=overview.org_id,
        name=overview.org_name,
        people=dict(zip(members.user_id, members.display_name, strict=True)),
        emails=dict(zip(members.user_id, members.email, strict=True)),
    )


def header_section(overview: OrgOverview) -> None:
    """The organization's name (as text), state and member count."""
    st.subheader(kit.md_text(overview.org_name))
    st.caption(kit.md_text(f"Status: {kit.term(overview.org_status)} · "
                           f"{kit.counted(overview.member_count, 'member')}"))


def alerts_section(screen: Screen, org: Organization) -> None:
    """The open alerts (the first five), each with its Resolve button."""
    open_alerts = kit.read(screen.db, alerts.org_alerts, screen.actor_id, org.org_id)
    for alert in open_alerts.head(ALERTS_SHOWN).itertuples():
        message_col, resolve_col = st.columns([5, 1])
        with message_col:
            st.warning(kit.md_text(alert.message))
        with resolve_col:
            st.button("Resolve", key=f"resolve_alert_{alert.id}", on_click=resolve_alert,
                      args=(screen, org, int(alert.id)))
    if len(open_alerts) > ALERTS_SHOWN:
        st.caption(f"{kit.counted(len(open_alerts) - ALERTS_SHOWN, 'more open alert')}.")
    kit.show_flash("alerts")


def resolve_alert(screen: Screen, org: Organization, alert_id: int) -> None:
    """A Resolve button was clicked."""
    write_worded(org, "alerts", lambda: alerts.resolve(screen.db, screen.actor_id, org.org_id, alert_id),
                 success="Alert resolved.")


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
