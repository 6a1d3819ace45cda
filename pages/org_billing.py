"""Organization billing: the chosen organization's subscription, pool, allocations, usage, history and members.

For the organization's admins and for system admins; every read and write
checks the role again in billing_core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

import screen_kit as kit
from billing_core import credits, organizations, usage
from billing_core.amounts import to_decimal
from billing_core.errors import BillingError

st.title("Organization billing")

actor_id = kit.require_actor()
org_id = kit.chosen_org()
if not org_id:
    st.info("Choose an organization in the sidebar.")
    st.stop()
db = kit.engine()

try:
    overview = kit.read(db, usage.org_overview, actor_id, org_id)
    members = kit.read(db, usage.allocations, actor_id, org_id)
    by_service = kit.read(db, usage.usage_by_service, actor_id, org_id)
    by_user = kit.read(db, usage.usage_by_user, actor_id, org_id)
    over_time = kit.read(db, usage.usage_over_time, actor_id, org_id)
    history = kit.read(db, usage.billing_timeline, actor_id, org_id)
except BillingError as exc:
    kit.refuse(exc)

org_name = overview.org_name
labels = {row.user_id: f"{row.display_name} ({row.email})" for row in members.itertuples()}


def member_label(user_id: str | None) -> str:
    """How a member is named in pickers and questions."""
    return labels.get(user_id, str(user_id))


class Refused(Exception):
    """A form's input was refused; the reason is already kept for its flash."""


def entered(form: str, key: str, what: str, *, optional: bool = False) -> Any:
    """The amount typed in the field `key`, parsed by billing_core (None when optional and empty).

    A refusal is kept for `form`'s flash and raised as Refused.
    """
    text = (st.session_state.get(key) or "").strip()
    if optional and not text:
        return None
    try:
        return to_decimal(text, what)
    except BillingError as exc:
        kit.flash(form, "error", str(exc))
        raise Refused from exc


def chosen_member(form: str, key: str, missing: str) -> str:
    """The member picked in the field `key`; when none is, `missing` is kept for `form` and Refused raised."""
    user_id = st.session_state.get(key)
    if user_id is None:
        kit.flash(form, "error", missing)
        raise Refused
    return user_id


def refusing(handler: Callable[[], None]) -> Callable[[], None]:
    """A form handler that stops quietly at Refused (its message is already kept)."""

    def run() -> None:
        try:
            handler()
        except Refused:
            pass

    return run


# ------------------------------------------------------------ header and subscription
st.subheader(kit.md_text(org_name))
st.caption(kit.md_text(f"Organization {org_id} · {overview.org_status} · {overview.member_count} members"))

with st.container(border=True):
    st.markdown("**Subscription**")
    if not overview.has_subscription:
        st.caption("No subscription yet: a system admin can subscribe this organization to a plan.")
    else:
        cycle = "year" if overview.billing_cycle == "yearly" else "month"
        plan_col, status_col, price_col, period_col = st.columns(4)
        with plan_col:
            kit.metric_card("Plan", overview.plan_name or overview.plan, "text")
        with status_col:
            kit.metric_card("Status", (overview.subscription_status or "").replace("_", " "), "text")
        with price_col:
            kit.metric_card(f"Price per {cycle}", overview.price_amount, "money")
        with period_col:
            period_end = overview.current_period_end
            kit.metric_card("Current period ends", f"{period_end:%Y-%m-%d}" if period_end else None, "text")
        if overview.subscription_status == "past_due":
            st.warning("The last invoice is unpaid: the subscription is past due.")
        if overview.cancel_at_period_end:
            st.info("The subscription ends with the current period.")
        if overview.subscription_status == "trialing" and overview.trial_ends_at:
            st.info(f"Trial until {overview.trial_ends_at:%Y-%m-%d}.")
        if overview.subscription_status == "canceled" and overview.canceled_at:
            st.caption(f"Canceled on {overview.canceled_at:%Y-%m-%d}.")

# ------------------------------------------------------------ pool
st.subheader("Credit pool")
for column, (label, value) in zip(
    st.columns(5),
    (
        ("Total credits", overview.total_credits),
        ("Allocated", overview.allocated_credits),
        ("Used", overview.used_credits),
        ("Available", overview.available_credits),
        ("Monthly refresh", overview.monthly_refresh_amount),
    ),
    strict=True,
):
    with column:
        kit.metric_card(label, value)

chart_col, form_col = st.columns([3, 2])
with chart_col:
    pool_bars = {
        "figure": ["total", "allocated", "used", "available"],
        "credits": [overview.total_credits, overview.allocated_credits, overview.used_credits,
                    overview.available_credits],
    }
    kit.show_chart(
        kit.bar_chart(
            pd.DataFrame(pool_bars), "figure", "credits", color="figure", horizontal=True,
            title="Pool", labels={"figure": "", "credits": "Credits"},
        ),
        key="pool_bars",
        height=260,
    )


@refusing
def ask_add_credits() -> None:
    """The "Add credits" form was sent: check the figures, then ask for confirmation."""
    amount = entered("add", "add_credits", "Credits to add")
    paid = entered("add", "add_paid", "Amount paid")
    reference = (st.session_state.get("add_reference") or "").strip() or None
    kit.ask_confirmation(
        "add",
        f"Add {kit.fmt_credits(amount)} credits, paid {kit.fmt_money(paid)}, to the pool of {org_name}?",
        lambda: credits.add_credits(db, actor_id, org_id, amount, paid, external_ref=reference),
        success=lambda total: f"Credits added: the pool now holds {kit.fmt_credits(total)} credits.",
    )


with form_col:
    with st.form("add_credits_form"):
        st.markdown("**Add credits**")
        st.text_input("Credits to add", key="add_credits", placeholder="10,000")
        st.text_input("Amount paid (USD)", key="add_paid", placeholder="10.00",
                      help="What was paid for these credits (1 credit = $0.001); 0 for a free grant.")
        st.text_input("Payment reference (optional)", key="add_reference",
                      help="An invoice or payment id: the same reference is recorded once.")
        st.form_submit_button("Add credits", key="add_submit", on_click=ask_add_credits)
    kit.confirmation("add")

# ------------------------------------------------------------ sections
allocations_tab, usage_tab, history_tab, members_tab = st.tabs(
    ["Allocations", "Usage (30 days)", "Billing history", "Members"]
)


@refusing
def ask_allocate() -> None:
    """The "Allocate credits" form was sent: check the figure, then ask for confirmation."""
    amount = entered("allocate", "allocate_credits", "Credits to allocate")
    user_id = chosen_member("allocate", "allocate_user", "Choose a member to allocate to.")
    name = member_label(user_id)
    kit.ask_confirmation(
        "allocate",
        f"Allocate {kit.fmt_credits(amount)} credits to {name}?",
        lambda: credits.allocate(db, actor_id, org_id, user_id, amount),
        success=lambda remaining: f"Allocated: {name} now has {kit.fmt_credits(remaining)} credits remaining.",
    )


@refusing
def ask_reclaim() -> None:
    """The "Take back credits" form was sent: check the figure, then ask for confirmation."""
    amount = entered("reclaim", "reclaim_credits", "Credits to take back", optional=True)
    user_id = chosen_member("reclaim", "reclaim_user", "Choose a member to take credits back from.")
    name = member_label(user_id)
    what = "all unused credits" if amount is None else f"{kit.fmt_credits(amount)} unused credits"
    kit.ask_confirmation(
        "reclaim",
        f"Take back {what} from {name}? They return to the pool's available credits.",
        lambda: credits.reclaim(db, actor_id, org_id, user_id, amount),
        success=lambda taken: f"Took back {kit.fmt_credits(taken)} credits from {name}.",
    )


with allocations_tab:
    search = st.text_input("Search by name or email", key="allocation_search", placeholder="name or email")
    shown = kit.filter_rows(members, search, ["display_name", "email"])
    kit.table(
        shown,
        {
            "display_name": kit.text_column("Name"),
            "email": kit.text_column("Email"),
            "role": kit.text_column("Role"),
            "allocated_credits": kit.credits_column("Allocated"),
            "used_credits": kit.credits_column("Used"),
            "remaining_credits": kit.credits_column("Remaining"),
            "usage_percent": kit.percent_bar_column("Used %"),
        },
        key="allocations_table",
        empty="No member matches." if search else "No members yet.",
    )
    st.caption(f"{len(shown)} of {len(members)} members · click a column header to sort")

    allocate_col, reclaim_col = st.columns(2)
    with allocate_col:
        with st.form("allocate_form"):
            st.markdown("**Allocate credits**")
            st.caption(f"Available in the pool: {kit.md_text(kit.fmt_credits(overview.available_credits))}")
            st.selectbox("Member", list(labels), format_func=member_label, key="allocate_user")
            st.text_input("Credits to allocate", key="allocate_credits", placeholder="1,000")
            st.form_submit_button("Allocate credits", key="allocate_submit", type="primary", on_click=ask_allocate)
        kit.confirmation("allocate")
    with reclaim_col:
        with st.form("reclaim_form"):
            st.markdown("**Take back credits**")
            st.caption("Only unused credits can be taken back.")
            st.selectbox("Member", list(labels), format_func=member_label, key="reclaim_user")
            st.text_input("Credits to take back (empty: all unused)", key="reclaim_credits", placeholder="all unused")
            st.form_submit_button("Take back credits", key="reclaim_submit", on_click=ask_reclaim)
        kit.confirmation("reclaim")

with usage_tab:
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
            kit.show_chart(
                kit.pie_chart(by_service, "service_type", "credits_used", title="Credits by service"),
                key="usage_by_service",
            )
        with bar_col:
            top = by_user.head(15)
            kit.show_chart(
                kit.bar_chart(
                    top, "display_name", "credits_used", horizontal=True, key="user_id", hover=["email", "requests"],
                    title="Credits by user" + (" (top 15)" if len(by_user) > 15 else ""),
                    labels={"display_name": "", "credits_used": "Credits", "email": "Email", "requests": "Requests"},
                ),
                key="usage_by_user",
            )
    kit.show_chart(
        kit.line_chart(
            over_time, "day", "credits_used", title="Credits per day",
            labels={"day": "Day (UTC)", "credits_used": "Credits"},
        ),
        key="usage_over_time",
    )

with history_tab:
    if history.empty:
        st.caption("No billing history yet.")
    else:
        kit.show_chart(
            kit.timeline_chart(
                history, "created_at", "event_type", color="event_type", title="Billing history",
                hover=["description"], labels={"created_at": "When", "event_type": ""},
            ),
            key="billing_timeline",
            height=300,
        )
        kit.table(
            history,
            {
                "created_at": kit.datetime_column("When"),
                "event_type": kit.text_column("Event"),
                "description": kit.text_column("Description"),
                "credits": kit.credits_column("Credits"),
                "amount": kit.money_column("Amount"),
                "total_credits_after": kit.credits_column("Pool total after"),
                "created_by_name": kit.text_column("By"),
            },
            key="history_table",
        )

# ------------------------------------------------------------ members


def add_existing() -> None:
    """The "Add an existing user" form was sent."""
    email = (st.session_state.get("member_add_email") or "").strip()
    role = st.session_state.get("member_add_role", "member")
    kit.write(
        "member_add",
        organizations.add_member_by_email, db, actor_id, org_id, email, role,
        success=lambda user_id: f"Added {email} ({user_id}) as {role}.",
    )


def invited(invitation: organizations.Invitation) -> str:
    """Keep the one-time password for this render only; the message to show."""
    st.session_state["_org_billing_invitation"] = invitation
    return f"Invited {invitation.email}: they log in with this email and the one-time password below."


def invite_new() -> None:
    """The "Invite a new user" form was sent."""
    kit.write(
        "member_invite",
        organizations.invite_member, db, actor_id, org_id,
        (st.session_state.get("member_invite_email") or "").strip(),
        (st.session_state.get("member_invite_name") or "").strip() or None,
        st.session_state.get("member_invite_role", "member"),
        (st.session_state.get("member_invite_user_id") or "").strip() or None,
        success=invited,
    )


@refusing
def ask_role_change() -> None:
    """The "Change role" form was sent: ask for confirmation."""
    user_id = chosen_member("member_role", "member_role_user", "Choose a member.")
    role = st.session_state.get("member_role_role", "member")
    name = member_label(user_id)
    kit.ask_confirmation(
        "member_role",
        f"Make {name} {'an admin' if role == 'admin' else 'a member'} of {org_name}?",
        lambda: organizations.set_member_role(db, actor_id, org_id, user_id, role),
        success=f"{name} is now {role}.",
    )


@refusing
def ask_remove() -> None:
    """The "Remove a member" form was sent: ask for confirmation."""
    user_id = chosen_member("member_remove", "member_remove_user", "Choose a member.")
    name = member_label(user_id)
    kit.ask_confirmation(
        "member_remove",
        f"Remove {name} from {org_name}? Their unused credits return to the pool; what they used stays in history.",
        lambda: organizations.remove_member(db, actor_id, org_id, user_id),
        success=lambda returned: f"Removed {name}; {kit.fmt_credits(returned)} unused credits returned to the pool.",
    )


with members_tab:
    kit.table(
        members,
        {
            "display_name": kit.text_column("Name"),
            "email": kit.text_column("Email"),
            "role": kit.text_column("Role"),
            "remaining_credits": kit.credits_column("Remaining"),
            "joined_at": kit.datetime_column("Joined"),
        },
        key="members_table",
    )
    add_col, invite_col = st.columns(2)
    with add_col:
        with st.form("member_add_form"):
            st.markdown("**Add an existing user**")
            st.text_input("Email", key="member_add_email")
            st.selectbox("Role", ["member", "admin"], key="member_add_role")
            st.form_submit_button("Add member", key="member_add_submit", on_click=add_existing)
        kit.show_flash("member_add")
    with invite_col:
        with st.form("member_invite_form"):
            st.markdown("**Invite a new user**")
            st.text_input("Email", key="member_invite_email")
            st.text_input("Name", key="member_invite_name")
            st.text_input("User id (optional)", key="member_invite_user_id", help="Defaults to the email.")
            st.selectbox("Role", ["member", "admin"], key="member_invite_role")
            st.form_submit_button("Invite", key="member_invite_submit", on_click=invite_new)
        kit.show_flash("member_invite")
        invitation = st.session_state.pop("_org_billing_invitation", None)
        if invitation is not None:
            st.code(invitation.one_time_password, language=None)
            st.caption("Shown once: copy it now and hand it over privately. It is not stored anywhere readable.")

    role_col, remove_col = st.columns(2)
    with role_col:
        with st.form("member_role_form"):
            st.markdown("**Change a role**")
            st.selectbox("Member", list(labels), format_func=member_label, key="member_role_user")
            st.selectbox("New role", ["member", "admin"], key="member_role_role")
            st.form_submit_button("Change role", key="member_role_submit", on_click=ask_role_change)
        kit.confirmation("member_role")
    with remove_col:
        with st.form("member_remove_form"):
            st.markdown("**Remove a member**")
            st.selectbox("Member", list(labels), format_func=member_label, key="member_remove_user")
            st.form_submit_button("Remove member", key="member_remove_submit", on_click=ask_remove)
        kit.confirmation("member_remove")
