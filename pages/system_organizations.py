"""Organizations (system admins): find any organization by name or id, open its billing, create one."""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import analytics, subscriptions
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_organizations import create_organization_section, organizations_section
from pages.sections.system_reads import system_read


def render(screen: Screen) -> None:
    """The Organizations screen."""
    st.title("Organizations")
    all_orgs = system_read(screen, analytics.organizations)  # refuses anyone but system admins, first
    plans = kit.read(screen.db, subscriptions.plans)
    organizations_section(screen, all_orgs, {plan.code: plan.name for plan in plans})
    create_organization_section(screen, plans)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
