"""System overview (system admins): revenue at a glance: headline figures, plan mix, MRR movements.

The other system screens: Organizations (search, every organization, create one), Credits (credits per month,
usage, payments awaited, grants) and Past due (subscriptions whose payment failed).
"""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import analytics
from pages.kit.session import Screen
from pages.sections.system_reads import system_read
from pages.sections.system_revenue import (
    headline_section,
    mrr_movements_section,
    period_job_section,
    plan_mix_section,
)


def render(screen: Screen) -> None:
    """The System overview screen."""
    st.title("System overview")
    overview = system_read(screen, analytics.overview)  # refuses anyone but system admins, first
    period_job_section(screen)
    headline_section(screen, overview)
    plan_mix_section(screen)
    mrr_movements_section(screen)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
