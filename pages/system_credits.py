"""Credits (system admins): credits per month, top usage, who runs low, payments awaited, grants."""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import analytics, orders
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_credits import credit_months_section, grant_section, running_low_section, top_usage_section
from pages.sections.system_payments import payments_section
from pages.sections.system_reads import system_read


def render(screen: Screen) -> None:
    """The Credits screen."""
    st.title("Credits")
    all_orgs = system_read(screen, analytics.organizations)  # refuses anyone but system admins, first
    payments_section(screen, kit.read(screen.db, orders.awaiting_payment, screen.actor_id))
    grant_section(screen, all_orgs)
    credit_months_section(screen)
    top_usage_section(all_orgs)
    running_low_section(all_orgs)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
