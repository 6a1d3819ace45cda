"""My credits: what the logged-in user holds and used in each of their organizations."""

from __future__ import annotations

import streamlit as st

import pages
from billing_core import alerts, invitations, usage
from billing_core.errors import BillingError
from pages import kit

if __name__ == "__main__":  # opened by its URL in Streamlit's old pages/ mode: the app with its login instead
    pages.run_app()
    st.stop()

st.title("My credits")

actor_id = kit.require_actor()
db = kit.engine()

try:
    cards = kit.read(db, usage.member_cards, actor_id)
    invited = kit.read(db, invitations.mine, actor_id)
except BillingError as exc:
    kit.refuse(exc)

# ------------------------------------------------------------ invitations waiting for my answer
if not invited.empty:
    st.subheader("Invitations")
    for invitation in invited.itertuples():
        with st.container(border=True):
            text_col, accept_col, decline_col = st.columns([4, 1, 1])
            text_col.markdown(kit.md_text(
                f"{invitation.invited_by} invites you to {invitation.org_name} as {invitation.role} "
                f"(since {invitation.created_at:%Y-%m-%d})."
            ))
            accept_col.button(
                "Accept", key=f"accept_invitation_{invitation.invitation_id}", type="primary", on_click=kit.write,
                args=("invitations", invitations.accept, db, actor_id, invitation.invitation_id),
                kwargs={"success": f"You joined {invitation.org_name}."},
            )
            decline_col.button(
                "Decline", key=f"decline_invitation_{invitation.invitation_id}", on_click=kit.write,
                args=("invitations", invitations.decline, db, actor_id, invitation.invitation_id),
                kwargs={"success": f"You declined the invitation to {invitation.org_name}."},
            )
kit.show_flash("invitations")

if not cards:
    st.info("You belong to no organization yet: an organization admin can invite you; "
            "their invitation shows here for you to accept.")
    st.stop()

chosen = kit.chosen_org()
scope = chosen if chosen in {card.org_id for card in cards} else None
scope_label = next((card.org_name for card in cards if card.org_id == scope), "all my organizations")

# ------------------------------------------------------------ one card per organization
st.subheader("My organizations")
per_row = min(len(cards), 2)  # two cards a row: room for five-digit figures side by side
for start in range(0, len(cards), per_row):
    for column, card in zip(st.columns(per_row), cards[start:start + per_row], strict=False):
        with column.container(border=True):
            marks = [m for m, on in (("default", card.is_default), ("selected", card.org_id == scope)) if on]
            st.markdown(f"**{kit.md_text(card.org_name)}**" + (f" · {' · '.join(marks)}" if marks else ""))
            plan = card.plan_name or card.plan
            st.caption(
                kit.md_text(
                    f"Plan: {plan or 'none'}"
                    + (f" ({card.subscription_status.replace('_', ' ')})" if card.subscription_status else "")
                    + f" · role: {card.role}"
                    + ("" if card.org_status == "active" else f" · organization {card.org_status}")
                )
            )
            kit.metric_card("Remaining", card.remaining_credits)
            left, right = st.columns(2)
            with left:
                kit.metric_card("Allocated", card.allocated_credits)
            with right:
                kit.metric_card("Used", card.used_credits)
            st.progress(min(float(card.usage_percent) / 100, 1.0), text=f"{kit.fmt_percent(card.usage_percent)} used")
            st.caption(
                f"Next reset: {card.next_reset:%Y-%m-%d}" if card.next_reset else "Next reset: none scheduled"
            )

# ------------------------------------------------------------ my alerts
try:
    my_alerts = [(card, alert) for card in cards for alert in kit.read(db, alerts.my_alerts, actor_id, card.org_id)
                 .itertuples()]
except BillingError as exc:
    kit.refuse(exc)
for card, alert in my_alerts:
    message_col, dismiss_col = st.columns([5, 1])
    with message_col:
        st.warning(kit.md_text(f"{card.org_name}: {alert.message}"))
    with dismiss_col:
        st.button("Dismiss", key=f"dismiss_alert_{alert.id}", on_click=kit.write,
                  args=("my_alerts", alerts.resolve, db, actor_id, card.org_id, int(alert.id)),
                  kwargs={"success": "Alert dismissed."})
kit.show_flash("my_alerts")

# ------------------------------------------------------------ the last 30 days
st.subheader("Last 30 days")
st.caption(kit.md_text(f"Usage in {scope_label} (change the organization in the sidebar)."))
totals = kit.read(db, usage.my_totals, actor_id, scope)
left, middle, right = st.columns(3)
with left:
    kit.metric_card("Credits used (30 days)", totals.credits_used)
with middle:
    kit.metric_card("Requests (30 days)", totals.requests, "count")
with right:
    kit.metric_card("Services used (30 days)", totals.services, "count")

daily = kit.read(db, usage.my_daily_usage, actor_id, scope)
if daily.empty:
    st.caption("No usage in the last 30 days.")
else:
    kit.show_chart(
        kit.bar_chart(
            daily, "day", "credits_used", color="service_type", title="Credits per day and service",
            labels={"day": "Day (UTC)", "credits_used": "Credits", "service_type": "Service"},
        ),
        key="my_daily_usage",
    )

# ------------------------------------------------------------ comparison across organizations
if len(cards) > 1:
    st.subheader("My organizations compared")
    compared = usage.comparison_frame(cards)
    bars = compared.melt(
        id_vars=["org_id", "org_name"], value_vars=["allocated_credits", "used_credits", "remaining_credits"],
        var_name="figure", value_name="credits",
    )
    bars["figure"] = bars["figure"].str.replace("_credits", "", regex=False)
    kit.show_chart(
        kit.bar_chart(
            bars, "org_name", "credits", color="figure", barmode="group", key="org_id", title="Allocation per organization",
            labels={"org_name": "Organization", "credits": "Credits", "figure": ""},
        ),
        key="my_org_comparison",
    )
    kit.table(
        compared,
        {
            "org_name": kit.text_column("Organization"),
            "plan_name": kit.text_column("Plan"),
            "role": kit.text_column("Role"),
            "allocated_credits": kit.credits_column("Allocated"),
            "used_credits": kit.credits_column("Used"),
            "remaining_credits": kit.credits_column("Remaining"),
            "usage_percent": kit.percent_bar_column("Used %"),
            "credits_used_30d": kit.credits_column("Used (30 days)"),
            "requests_30d": kit.count_column("Requests (30 days)"),
        },
        key="my_org_table",
    )

# ------------------------------------------------------------ recent charges
st.subheader("My recent charges")
charges = kit.read(db, usage.my_recent_charges, actor_id, scope)
kit.table(
    charges,
    {
        "created_at": kit.datetime_column("When"),
        "org_name": kit.text_column("Organization"),
        "service_type": kit.text_column("Service"),
        "service_name": kit.text_column("Detail"),
        "credits_used": kit.credits_column("Credits"),
        "remaining_after": kit.credits_column("Remaining after"),
    },
    key="my_charges",
    empty="No charges yet.",
)
