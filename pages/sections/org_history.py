"""The organization's billing history: purchases, grants, plan changes, invoices, settlements."""

from __future__ import annotations

import streamlit as st

from billing_core import usage
from pages import kit
from pages.kit.session import Screen
from pages.sections.org_forms import dashed


def history_section(screen: Screen, org_id: str) -> None:
    """The billing history as a timeline and a table (when and what first), events in words."""
    history = kit.read(screen.db, usage.billing_timeline, screen.actor_id, org_id)
    if history.empty:
        st.caption("No billing history yet.")
        return
    history = dashed(history, "description", "created_by_name").assign(event_type=history.event_type.map(kit.term))
    kit.show_chart(
        kit.timeline_chart(history, "created_at", "event_type", color="event_type", title="Billing history",
                           hover=["description"], labels={"created_at": "When", "event_type": ""}),
        key="billing_timeline",
        height=300,
    )
    kit.table(
        history,
        {
            "created_at": kit.datetime_column("When"),
            "event_type": kit.text_column("Event"),
            "credits": kit.credits_column("Credits"),
            "amount": kit.money_column("Amount"),
            "description": kit.text_column("Description"),
            "total_credits_after": kit.credits_column("Pool total after"),
            "created_by_name": kit.text_column("By"),
        },
        key="history_table",
    )
