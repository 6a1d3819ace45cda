"""Past due (system admins): subscriptions whose payment failed; record the payment, or cancel."""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import analytics
from pages.kit.session import Screen
from pages.sections.system_past_due import past_due_actions_section, past_due_table_section
from pages.sections.system_reads import system_read


def render(screen: Screen) -> None:
    """The Past due screen."""
    st.title("Past due")
    due = analytics.past_due_of(system_read(screen, analytics.organizations))  # system admins only, first
    st.caption("Subscriptions whose payment failed: they still count in MRR. Recording the payment (its "
               "reference) makes one active again; cancelling ends it.")
    past_due_table_section(due)
    past_due_actions_section(screen, due)


if __name__ == "__main__":
    pages.run_app()  # Streamlit's old pages/ mode opened this file by its URL: the app, with its login, instead
