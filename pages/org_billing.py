"""Organization billing: the chosen organization's subscription, pool, allocations, usage, history and members.

For the organization's admins and for system admins; every read and write
checks the role again in billing_core.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import pages
from billing_core import (
    access,
    alerts,
    credits,
    invitations,
    orders,
    organizations,
    periods,
    pricing,
    subscriptions,
    usage,
)
from billing_core.errors import BillingError
from pages import kit

if __name__ == "__main__":  # opened by its URL in Streamlit's old pages/ mode: the app with its login instead
    pages.run_app()
    st.stop()

st.title("Organization billing")

actor_id = kit.require_actor()
org_id = kit.require_chosen_org()
db = kit.engine()

try:
    overview = kit.read(db, usage.org_overview, actor_id, org_id)
    members = kit.read(db, usage.allocations, actor_id, org_id)
    by_service = kit.read(db, usage.usage_by_service, actor_id, org_id)
    by_user = kit.read(db, usage.usage_by_user, actor_id, org_id)
    over_time = kit.read(db, usage.usage_over_time, actor_id, org_id)
    history = kit.read(db, usage.billing_timeline, actor_id, org_id)
    catalogue = kit.read(db, subscriptions.plans)
    runway = kit.read(db, usage.runway, actor_id, org_id)
    open_alerts = kit.read(db, alerts.org_alerts, actor_id, org_id)
    lots = kit.read(db, periods.lots, actor_id, org_id)
    pending = kit.read(db, invitations.pending_for_organization, actor_id, org_id)
    is_system_admin = kit.read(db, access.role_in, actor_id, None) == "system_admin"
    order_list = kit.read(db, orders.orders_of, actor_id, org_id)
    packages = kit.read(db, pricing.credit_packages, active_only=True)
except BillingError as exc:
    kit.refuse(exc)

org_name = overview.org_name
plan_label = {plan.code: f"{plan.name} ({kit.fmt_money(plan.monthly_price)}/month)" for plan in catalogue}
labels = {row.user_id: f"{row.display_name} ({row.email})" for row in members.itertuples()}


def member_label(user_id: str | None) -> str:
    """How a member is named in pickers and questions."""
    return labels.get(user_id, str(user_id))


# ------------------------------------------------------------ header and subscription
st.subheader(kit.md_text(org_name))
st.caption(kit.md_text(f"Organization {org_id} · {overview.org_status} · {overview.member_count} members"))

for alert in open_alerts.head(5).itertuples():
    message_col, resolve_col = st.columns([5, 1])
    with message_col:
        st.warning(kit.md_text(alert.message))
    with resolve_col:
        st.button("Resolve", key=f"resolve_alert_{alert.id}", on_click=kit.write,
                  args=("alerts", alerts.resolve, db, actor_id, org_id, int(alert.id)),
                  kwargs={"success": "Alert resolved."})
if len(open_alerts) > 5:
    st.caption(f"{len(open_alerts) - 5} more open alerts.")
kit.show_flash("alerts")

plan_names = {plan.code: plan.name for plan in catalogue}


def ask_plan_change() -> None:
    """The "Change plan" form was sent: show what it records (proration now, or the date), then ask."""
    plan = st.session_state.get("plan_change_plan")
    name = plan_names.get(plan, plan)
    if st.session_state.get("plan_change_when") == "now":
        try:
            preview = subscriptions.preview_change(db, actor_id, org_id, plan)
        except BillingError as exc:
            kit.flash("plan_change", "error", str(exc))
            return
        owed = "owed by the organization" if preview.amount >= 0 else "owed to the organization"
        kit.ask_confirmation(
            "plan_change",
            f"Move {org_name} to {name} now? For the rest of this period "
            f"({preview.seconds_left / preview.seconds_full:.1%} of it) the billing history records a credit of "
            f"{kit.fmt_money(preview.credit)} for the current plan and a charge of {kit.fmt_money(preview.charge)} "
            f"for {name}: {kit.fmt_money(abs(preview.amount))} {owed}. Included credits are earned by the time on "
            f"a plan: the current plan's not earned yet are taken back, {name}'s are granted for the rest of the "
            f"period, and included credits already used above the share earned reduce the credit.",
            lambda: subscriptions.change_plan(db, actor_id, org_id, plan),
            success=lambda change: f"Now on {name}: {kit.fmt_money(change.amount)} recorded in the billing history.",
        )
    else:
        kit.ask_confirmation(
            "plan_change",
            f"Move {org_name} to {name} when the current period ends?",
            lambda: subscriptions.schedule_change(db, actor_id, org_id, plan),
            success=lambda at: f"Scheduled: {name} from {at:%Y-%m-%d %H:%M %Z}.",
        )


def ask_cancel() -> None:
    """The "Cancel subscription" form was sent: ask for confirmation."""
    at_end = st.session_state.get("cancel_when") != "now"
    kit.ask_confirmation(
        "cancel",
        f"Cancel the subscription of {org_name} "
        + ("when the current period ends? It stays usable until then." if at_end
           else "now? The unused part of this period is credited in the billing history, less included credits "
                "used above the share earned so far; the included credits not earned yet are taken back."),
        lambda: subscriptions.cancel(db, actor_id, org_id, at_period_end=at_end),
        success="Canceled at the end of the period." if at_end
        else (lambda amount: f"Canceled: {kit.fmt_money(abs(amount))} credited in the billing history."),
    )


def ask_subscribe() -> None:
    """The "Subscribe" form was sent: ask for confirmation."""
    plan = st.session_state.get("subscribe_plan")
    kit.ask_confirmation(
        "subscribe",
        f"Subscribe {org_name} to {plan_names.get(plan, plan)}?",
        lambda: subscriptions.create_subscription(db, actor_id, org_id, plan),
        success=f"Subscribed to {plan_names.get(plan, plan)}.",
    )


with st.container(border=True):
    st.markdown("**Subscription**")
    if overview.has_subscription:
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
        if overview.scheduled_plan:
            st.info(kit.md_text(f"Moves to {overview.scheduled_plan_name} when the current period ends."))
        if overview.subscription_status == "trialing" and overview.trial_ends_at:
            st.info(f"Trial until {overview.trial_ends_at:%Y-%m-%d}.")
        if overview.subscription_status == "canceled" and overview.canceled_at:
            st.caption(f"Canceled on {overview.canceled_at:%Y-%m-%d}.")
    else:
        st.caption("No subscription yet.")

    if overview.is_live:
        change_col, cancel_col = st.columns(2)
        with change_col:
            with st.form("plan_change_form"):
                st.markdown("**Change plan**")
                others = [code for code in plan_names if code != overview.plan]
                st.selectbox("New plan", others, format_func=lambda code: plan_label[code], key="plan_change_plan")
                st.radio("When", ["now", "period_end"], horizontal=True, key="plan_change_when",
                         format_func={"now": "Now (prorated)", "period_end": "At the period end"}.get)
                st.form_submit_button("Change plan", key="plan_change_submit", on_click=ask_plan_change)
            kit.confirmation("plan_change")
        with cancel_col:
            with st.form("cancel_form"):
                st.markdown("**Cancel subscription**")
                st.radio("When", ["period_end", "now"], horizontal=True, key="cancel_when",
                         format_func={"now": "Now", "period_end": "At the period end"}.get)
                st.form_submit_button("Cancel subscription", key="cancel_submit", on_click=ask_cancel)
            kit.confirmation("cancel")
            if overview.cancel_at_period_end or overview.scheduled_plan:
                st.button(
                    "Keep the subscription as it is" if overview.cancel_at_period_end else "Drop the scheduled change",
                    key="reactivate",
                    on_click=kit.write,
                    args=("reactivate", subscriptions.reactivate, db, actor_id, org_id),
                    kwargs={"success": "The subscription continues unchanged."},
                )
            kit.show_flash("reactivate")
    else:
        with st.form("subscribe_form"):
            st.markdown("**Subscribe**")
            st.selectbox("Plan", list(plan_names), format_func=lambda code: plan_label[code], key="subscribe_plan")
            st.form_submit_button("Subscribe", key="subscribe_submit", on_click=ask_subscribe)
        kit.confirmation("subscribe")

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

burn_col, runway_col, runs_out_col = st.columns(3)
with burn_col:
    kit.metric_card("Burn per day (30 days)", runway.burn_per_day)
with runway_col:
    kit.metric_card("Runway", None if runway.runway_days is None else f"{runway.runway_days:,.0f} days", "text",
                    help="Days the remaining credits last at the last 30 days' burn; none without usage.")
with runs_out_col:
    kit.metric_card("Runs out on", f"{runway.runs_out_at:%Y-%m-%d}" if runway.runs_out_at else None, "text")

with st.expander(f"Credit lots ({len(lots)}): earliest expiring are spent first"):
    kit.table(
        lots,
        {
            "source": kit.text_column("Source"),
            "credits": kit.credits_column("Granted"),
            "granted_at": kit.datetime_column("Granted on"),
            "expires_at": kit.datetime_column("Expires"),
            "consumed_credits": kit.credits_column("Consumed"),
            "expired_credits": kit.credits_column("Expired"),
            "remaining_credits": kit.credits_column("Remaining"),
        },
        key="lots_table",
        empty="No credits granted yet.",
    )
    st.caption("Consumption is settled against lots by the period job; usage since its last run is not settled yet.")

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


package_label = {
    row.code: f"{row.name}: {kit.fmt_credits(row.credits)} credits"
              + (f" + {kit.fmt_credits(row.bonus_credits)} bonus" if row.bonus_credits else "")
              + f" for {kit.fmt_money(row.price)}"
    for row in packages.itertuples()
}


@kit.refusing
def ask_buy() -> None:
    """The "Buy credits" form was sent: price the order from the catalogue, show it, then ask to confirm."""
    if st.session_state.get("buy_kind") == "package":
        code, amount = st.session_state.get("buy_package"), None
        if code is None:
            kit.flash("buy", "error", "Choose a credit package.")
            return
    else:
        code, amount = None, kit.entered("buy", "buy_credits", "Credits to buy")
    try:
        offer = orders.quote(db, package_code=code, credits=amount)
    except BillingError as exc:
        kit.flash("buy", "error", str(exc))
        return
    kit.ask_confirmation(
        "buy",
        f"Order {kit.fmt_credits(offer.credits)} credits for {kit.fmt_money(offer.price)} ({offer.description}) "
        f"for {org_name}? The order waits for payment: its credits reach the pool when the payment is recorded.",
        lambda: orders.create_order(db, actor_id, org_id, package_code=code, credits=amount),
        success=lambda order: f"Order {order.id} placed: {kit.fmt_money(order.price)} awaiting payment.",
    )


with form_col:
    with st.form("buy_credits_form"):
        st.markdown("**Buy credits**")
        st.radio("Buy", ["package", "credits"], horizontal=True, key="buy_kind",
                 format_func={"package": "A credit package", "credits": "A number of credits"}.get)
        st.selectbox("Credit package", list(package_label), format_func=package_label.get, key="buy_package")
        st.text_input("Number of credits", key="buy_credits", placeholder="a whole number of credits",
                      help="A whole number of credits at the list price: 1 credit = $0.001.")
        st.form_submit_button("Review order", key="buy_submit", on_click=ask_buy)
    kit.confirmation("buy")
    st.caption("Prices come from the catalogue; the price is shown before you confirm. A system admin records "
               "the payment, and the credits then reach the pool.")

# ------------------------------------------------------------ sections
allocations_tab, usage_tab, orders_tab, history_tab, members_tab = st.tabs(
    ["Allocations", "Usage (30 days)", f"Orders ({len(order_list)})", "Billing history", "Members"]
)


@kit.refusing
def ask_allocate() -> None:
    """The "Allocate credits" form was sent: check the figure, then ask for confirmation."""
    amount = kit.entered("allocate", "allocate_credits", "Credits to allocate")
    user_id = kit.chosen_member("allocate", "allocate_user", "Choose a member to allocate to.")
    name = member_label(user_id)
    kit.ask_confirmation(
        "allocate",
        f"Allocate {kit.fmt_credits(amount)} credits to {name}?",
        lambda: credits.allocate(db, actor_id, org_id, user_id, amount),
        success=lambda remaining: f"Allocated: {name} now has {kit.fmt_credits(remaining)} credits remaining.",
    )


@kit.refusing
def ask_reclaim() -> None:
    """The "Take back credits" form was sent: check the figure, then ask for confirmation."""
    amount = kit.entered("reclaim", "reclaim_credits", "Credits to take back", optional=True)
    user_id = kit.chosen_member("reclaim", "reclaim_user", "Choose a member to take credits back from.")
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

ORDER_STATES = {"awaiting_payment": "awaiting payment", "paid": "paid", "canceled": "canceled"}
awaiting = order_list[order_list.status == "awaiting_payment"]
order_label = {row.id: f"{row.id}: {row.description} ({kit.fmt_money(row.price)})" for row in awaiting.itertuples()}


@kit.refusing
def ask_cancel_order() -> None:
    """The "Cancel an order" form was sent: ask for confirmation."""
    order_id = kit.chosen_member("order_cancel", "order_cancel_id", "Choose an order awaiting payment.")
    kit.ask_confirmation(
        "order_cancel",
        f"Cancel order {order_label.get(order_id, order_id)}? It will not be paid.",
        lambda: orders.cancel_order(db, actor_id, order_id),
        success=f"Order {order_id} canceled.",
    )


with orders_tab:
    kit.table(
        order_list.assign(state=order_list.status.map(ORDER_STATES)),
        {
            "ordered_at": kit.datetime_column("Ordered"),
            "id": kit.text_column("Order"),
            "description": kit.text_column("What"),
            "credits": kit.credits_column("Credits"),
            "price": kit.money_column("Price"),
            "state": kit.text_column("State"),
            "payment_reference": kit.text_column("Payment reference"),
            "paid_at": kit.datetime_column("Paid"),
        },
        key="orders_table",
        empty="No orders yet: buy credits above.",
    )
    if not awaiting.empty:
        with st.form("order_cancel_form"):
            st.markdown("**Cancel an order awaiting payment**")
            st.selectbox("Order", list(order_label), format_func=order_label.get, key="order_cancel_id")
            st.form_submit_button("Cancel order", key="order_cancel_submit", on_click=ask_cancel_order)
    kit.confirmation("order_cancel")

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
    """The "Add an existing user directly" form was sent (system admins: a trusted add, no invitation)."""
    email = (st.session_state.get("member_add_email") or "").strip()
    role = st.session_state.get("member_add_role", "member")
    kit.write(
        "member_add",
        organizations.add_member_by_email, db, actor_id, org_id, email, role,
        success=lambda user_id: f"Added {email} ({user_id}) as {role}.",
    )


def invited(invitation: invitations.Invitation) -> str:
    """Keep the one-time code for this render only; the message to show (the same whether the address has an
    account or not)."""
    st.session_state["_org_billing_invitation"] = invitation
    return f"Invitation sent to {invitation.email}; they join when they accept."


def invite() -> None:
    """The "Invite by email" form was sent."""
    kit.write(
        "member_invite",
        invitations.invite, db, actor_id, org_id,
        (st.session_state.get("member_invite_email") or "").strip(),
        st.session_state.get("member_invite_role", "member"),
        (st.session_state.get("member_invite_name") or "").strip() or None,
        success=invited,
    )


def pending_label(invitation_id: str | None) -> str:
    """How a pending invitation is named in the Revoke picker: who was invited, as what."""
    row = pending[pending.invitation_id == invitation_id]
    return f"{row.invited.iloc[0]} ({row.role.iloc[0]})" if not row.empty else str(invitation_id)


@kit.refusing
def ask_revoke() -> None:
    """The "Revoke an invitation" form was sent: ask for confirmation."""
    invitation_id = kit.chosen_member("member_revoke", "member_revoke_invitation", "Choose an invitation.")
    who = pending_label(invitation_id)
    kit.ask_confirmation(
        "member_revoke",
        f"Revoke the invitation of {who} to {org_name}? Their one-time code stops working too.",
        lambda: invitations.revoke(db, actor_id, invitation_id),
        success=f"Revoked the invitation of {who}.",
    )


@kit.refusing
def ask_role_change() -> None:
    """The "Change role" form was sent: ask for confirmation."""
    user_id = kit.chosen_member("member_role", "member_role_user", "Choose a member.")
    role = st.session_state.get("member_role_role", "member")
    name = member_label(user_id)
    kit.ask_confirmation(
        "member_role",
        f"Make {name} {'an admin' if role == 'admin' else 'a member'} of {org_name}?",
        lambda: organizations.set_member_role(db, actor_id, org_id, user_id, role),
        success=f"{name} is now {role}.",
    )


@kit.refusing
def ask_remove() -> None:
    """The "Remove a member" form was sent: ask for confirmation."""
    user_id = kit.chosen_member("member_remove", "member_remove_user", "Choose a member.")
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
    invite_col, pending_col = st.columns(2)
    with invite_col:
        with st.form("member_invite_form"):
            st.markdown("**Invite by email**")
            st.caption("They join when they accept the invitation after logging in.")
            st.text_input("Email", key="member_invite_email")
            st.text_input("Name (for someone without an account yet)", key="member_invite_name")
            st.selectbox("Role", ["member", "admin"], key="member_invite_role")
            st.form_submit_button("Invite", key="member_invite_submit", on_click=invite)
        kit.show_flash("member_invite")
        invitation = st.session_state.pop("_org_billing_invitation", None)
        if invitation is not None:
            st.code(invitation.one_time_code, language=None)
            st.caption(kit.md_text(
                f"The one-time code, shown once: hand it to {invitation.email} privately. Someone without an "
                "account here sets their own password with it on the login page (\"First time here?\"); it works "
                "once, for 7 days. Someone with an account just logs in and accepts."
            ))
    with pending_col:
        st.markdown("**Pending invitations**")
        kit.table(
            pending,
            {
                "invited": kit.text_column("Invited"),
                "role": kit.text_column("Role"),
                "invited_by": kit.text_column("By"),
                "created_at": kit.datetime_column("Sent"),
            },
            key="pending_invitations_table",
            empty="No invitation is waiting for an answer.",
        )
        if not pending.empty:
            with st.form("member_revoke_form"):
                st.selectbox("Invitation", pending.invitation_id.tolist(), format_func=pending_label,
                             key="member_revoke_invitation")
                st.form_submit_button("Revoke invitation", key="member_revoke_submit", on_click=ask_revoke)
        kit.confirmation("member_revoke")
    if is_system_admin:
        with st.form("member_add_form"):
            st.markdown("**Add an existing user directly** (system admins)")
            st.text_input("Email", key="member_add_email")
            st.selectbox("Role", ["member", "admin"], key="member_add_role")
            st.form_submit_button("Add member", key="member_add_submit", on_click=add_existing)
        kit.show_flash("member_add")

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
