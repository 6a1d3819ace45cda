"""The organization's usage over the last 30 days: totals, credits by service, by user and per day."""

from __future__ import annotations

import streamlit as st

from billing_core import usage
from pages import kit
from pages.kit.session import Screen


def usage_section(screen: Screen) -> None:
    """Credits, requests and active users over 30 days; by service, by user (top 15) and per day (UTC)."""
    org_id = screen.require_org()
    by_service = kit.read(screen.db, usage.usage_by_service, screen.actor_id, org_id)
    by_user = kit.read(screen.db, usage.usage_by_user, screen.actor_id, org_id)
    over_time = kit.read(screen.db, usage.usage_over_time, screen.actor_id, org_id)
    total_col, requests_col, users_col = st.columns(3)
    with total_col:
        kit.metric_card("Credits used (30 days)", sum(by_service.credits_used, 0))
    with requests_col:
        kit.metric_card("Requests (30 days)", int(by_service.requests.sum()), "count")
    with users_col:
        kit.metric_card("Active users (30 days)", len(by_user), "count")
    if by_service.empty:
        st.caption("No usage in the last 30 days.")
    else:
        pie_col, bar_col = st.columns(2)
        with pie_col:
            services = by_service.assign(service=by_service.service_type.map(kit.term))
            kit.show_chart(kit.pie_chart(services, "service", "credits_used", title="Credits by service"),
                           key="usage_by_service")
        with bar_col:
            kit.show_chart(
                kit.bar_chart(
                    by_user.head(15), "display_name", "credits_used", horizontal=True, key="user_id",
                    hover=["email", "requests"], title="Credits by user" + (" (top 15)" if len(by_user) > 15 else ""),
                    labels={"display_name": "", "credits_used": "Credits", "email": "Email", "requests": "Requests"},
                ),
                key="usage_by_user",
            )
    kit.show_chart(
        kit.line_chart(over_time, "day", "credits_used", title="Credits per day",
                       labels={"day": "Day (UTC)", "credits_used": "Credits"}),
        key="usage_over_time",
    )
