"""System overview (system admins): revenue, subscriptions, usage, every organization, past-due quick actions."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pandas as pd
import streamlit as st

import pages
from billing_core import analytics, auth, orders, periods, subscriptions
from billing_core.errors import BillingError
from pages import kit

if __name__ == "__main__":  # opened by its URL in Streamlit's old pages/ mode: the app with its login instead
    pages.run_app()
    st.stop()

st.title("System overview")

actor_id = kit.require_actor()
db = kit.engine()

try:
    overview = kit.read(db, analytics.overview, actor_id)
except BillingError as exc:
    kit.refuse(exc)  # org admins and members: "... is not a system admin.", nothing else renders

last_run = kit.read(db, periods.last_run)
if last_run is None:
    st.warning("The period job has never run: period resets, grants, expiries and hold releases wait for "
               "`billing periods run` (an operator runs it from cron).")
else:
    st.caption(
        f"Period job last ran {last_run.finished_at or last_run.started_at:%Y-%m-%d %H:%M %Z}: "
        f"{kit.counted(last_run.orgs_processed, 'organization')}, "
        f"{kit.counted(last_run.periods_closed, 'period')} closed, {kit.counted(last_run.lots_expired, 'lot')} expired, "
        f"{kit.counted(last_run.holds_released, 'hold')} released"
        + (f", {last_run.orgs_failed} failed" if last_run.orgs_failed else "") + "."
    )

STATUS_WORDS = {
    "trialing": "trialing",
    "active": "active",
    "past_due": "past due",
    "canceled": "canceled",
    "none": "never subscribed",
}


def _signed(value: Decimal, formatted: str) -> str:
    """A change as text with its sign first ("-$19.00"), so that st.metric colours it."""
    return f"-{formatted}" if value < 0 else formatted


def _change_text(metric: analytics.Metric, fmt) -> str:
    text = _signed(metric.change, fmt(abs(metric.change)))
    percent = metric.change_percent
    if percent is not None:
        text += f" ({'-' if percent < 0 else '+'}{kit.fmt_percent(abs(percent))})"
    return text


def _card(label: str, metric: analytics.Metric, kind: str, fmt, earlier: str) -> None:
    kit.metric_card(
        label, metric.value, kind, delta=_change_text(metric, fmt), delta_kind="text",
        help=f"{earlier}: {fmt(metric.previous)}",
    )


def _by_month(frame: pd.DataFrame) -> pd.DataFrame:
    """Months as 'YYYY-MM' labels (display only)."""
    return frame.assign(month=frame.month.map(lambda m: f"{m:%Y-%m}"))


# ------------------------------------------------------------ headline figures
st.caption(f"Figures as of {overview.as_of:%Y-%m-%d %H:%M} UTC; changes against 30 days earlier.")
cards = st.columns(4)
with cards[0]:
    _card("MRR", overview.mrr, "money", kit.fmt_money, "30 days ago")
with cards[1]:
    _card("ARR", overview.arr, "money", kit.fmt_money, "30 days ago")
with cards[2]:
    _card("Active subscriptions", overview.active_subscriptions, "count", kit.fmt_count, "30 days ago")
with cards[3]:
    _card("Credits used (30 days)", overview.credits_used_30d, "credits", kit.card_credits, "Previous 30 days")
st.caption(
    f"Active subscriptions are the paying ones (active or past due), the ones MRR counts; "
    f"{overview.past_due_subscriptions} past due. {kit.counted(overview.organizations, 'organization')}; "
    f"{kit.counted(overview.requests_30d, 'charged request')} in the last 30 days."
)

# ------------------------------------------------------------ plan mix
st.subheader("Plan mix")
mix = kit.read(db, analytics.plan_mix, actor_id)
if mix.empty:
    st.caption("No paying subscription yet.")
else:
    left, right = st.columns(2)
    with left:
        kit.show_chart(
            kit.bar_chart(
                mix, "plan_name", "subscriptions", title="Paying subscriptions per plan",
                labels={"plan_name": "Plan", "subscriptions": "Subscriptions"},
            ),
            key="plan_mix_count",
        )
    with right:
        kit.show_chart(
            kit.bar_chart(
                mix, "plan_name", "mrr", title="MRR per plan", labels={"plan_name": "Plan", "mrr": "MRR ($)"},
            ),
            key="plan_mix_mrr",
        )
    kit.table(
        mix,
        {
            "plan_name": kit.text_column("Plan"),
            "subscriptions": kit.count_column("Paying subscriptions"),
            "mrr": kit.money_column("MRR"),
            "mrr_share_percent": kit.percent_column("Share of MRR"),
        },
        key="plan_mix_table",
    )
    kit.csv_download(mix, "plan_mix.csv", "Download plan mix (CSV)", key="plan_mix_csv")

# ------------------------------------------------------------ month by month
st.subheader("MRR movements")
month_count = st.selectbox("Months shown", [6, 12, 24], index=1, key="analytics_months")
mrr_months = kit.read(db, analytics.mrr_months, actor_id, months=month_count)
if mrr_months[["mrr_start", *analytics.MOVEMENTS]].eq(0).all().all():
    st.caption("No subscription paid in these months.")
else:
    left, right = st.columns(2)
    with left:
        kit.show_chart(
            kit.bar_chart(
                analytics.movement_bars(mrr_months), "month", "mrr", color="movement", barmode="relative",
                title="MRR movements per month", labels={"month": "Month", "mrr": "MRR ($)", "movement": "Movement"},
            ),
            key="mrr_movements",
        )
    with right:
        kit.show_chart(
            kit.line_chart(
                _by_month(mrr_months), "month", "mrr_end",
                title="MRR at month end", labels={"month": "Month", "mrr_end": "MRR ($)"},
            ),
            key="mrr_line",
        )
    st.caption(
        "Calendar months (UTC); the current month runs to now. Plan changes count as expansion or contraction, "
        "an organization paying again after a cancellation as reactivation; past due still counts in MRR. "
        "Logo churn: organizations paying at the month's start that stopped during it, in percent of those paying "
        "at its start."
    )
    kit.table(
        _by_month(mrr_months),
        {
            "month": kit.text_column("Month"),
            "mrr_end": kit.money_column("MRR at month end"),
            "new_mrr": kit.money_column("New"),
            "reactivation_mrr": kit.money_column("Reactivation"),
            "expansion_mrr": kit.money_column("Expansion"),
            "contraction_mrr": kit.money_column("Contraction"),
            "churned_mrr": kit.money_column("Churned"),
            "net_new_mrr": kit.money_column("Net new MRR"),
            "paying_orgs_start": kit.count_column("Paying at start"),
            "churned_orgs": kit.count_column("Churned organizations"),
            "logo_churn_percent": kit.percent_column("Logo churn"),
            "arr_end": kit.money_column("ARR at month end"),
        },
        key="mrr_months_table",
    )
    kit.csv_download(mrr_months, "mrr_months.csv", "Download MRR movements (CSV)", key="mrr_months_csv")

st.subheader("Credits per month")
credit_months = kit.read(db, analytics.credit_months, actor_id, months=month_count)
if credit_months[list(analytics.CREDIT_KINDS)].eq(0).all().all():
    st.caption("No credits sold, granted, consumed or expired in these months.")
else:
    kit.show_chart(
        kit.bar_chart(
            analytics.credit_bars(credit_months), "month", "credits", color="kind", barmode="group",
            title="Credits sold, granted, consumed and expired",
            labels={"month": "Month", "credits": "Credits", "kind": "Credits"},
        ),
        key="credit_months",
    )
    kit.table(
        _by_month(credit_months),
        {
            "month": kit.text_column("Month"),
            "credits_sold": kit.credits_column("Sold"),
            "revenue": kit.money_column("Revenue from credits"),
            "credits_granted": kit.credits_column("Granted (free)"),
            "credits_consumed": kit.credits_column("Consumed"),
            "credits_expired": kit.credits_column("Expired (breakage)"),
        },
        key="credit_months_table",
    )
    kit.csv_download(credit_months, "credit_months.csv", "Download credits per month (CSV)", key="credit_months_csv")

# ------------------------------------------------------------ top organizations
st.subheader("Top organizations by credits used (30 days)")
all_orgs = kit.read(db, analytics.organizations, actor_id)  # one read; the tables below select from it
top = analytics.top_of(all_orgs, 10)
if top.empty:
    st.caption("No usage in the last 30 days.")
else:
    kit.show_chart(
        kit.bar_chart(
            top, "org_name", "credits_used_30d", key="org_id", horizontal=True, hover=["plan_name", "requests_30d"],
            title="Credits used in the last 30 days",
            labels={"org_name": "Organization", "credits_used_30d": "Credits (30 days)",
                    "plan_name": "Plan", "requests_30d": "Requests"},
        ),
        key="top_organizations",
        height=max(240, 40 * len(top) + 80),
    )

# ------------------------------------------------------------ running low
st.subheader("Running low on credits")
low = analytics.running_low_of(all_orgs, 30)
kit.table(
    low,
    {
        "org_name": kit.text_column("Organization"),
        "org_id": kit.text_column("Id"),
        "plan_name": kit.text_column("Plan"),
        "remaining_credits": kit.credits_column("Credits left"),
        "burn_per_day": kit.credits_column("Burn per day (30 days)"),
        "runway_days": kit.count_column("Runway (days)"),
    },
    key="running_low_table",
    empty="No organization runs out of credits within 30 days at its current burn rate.",
)

# ------------------------------------------------------------ all organizations
st.subheader("All organizations")
catalogue = kit.read(db, subscriptions.plans)
plan_names = {plan.code: plan.name for plan in catalogue}
plan_prices = {plan.code: plan.monthly_price for plan in catalogue}
filters = st.columns([2, 2, 1])
with filters[0]:
    chosen_plans = st.multiselect(
        "Plan", list(plan_names), format_func=lambda code: plan_names.get(code, code), key="orgs_plan",
        placeholder="All plans",
    )
with filters[1]:
    chosen_statuses = st.multiselect(
        "Subscription status", list(analytics.SUBSCRIPTION_STATUSES), format_func=STATUS_WORDS.get,
        key="orgs_status", placeholder="All statuses",
    )
with filters[2]:
    sort_by = st.selectbox(
        "Sort by", list(analytics.SORT_KEYS), key="orgs_sort",
        format_func={"mrr": "MRR", "credits_used_30d": "Credits used (30 days)", "org_name": "Name",
                     "member_count": "Members", "available_credits": "Available credits",
                     "created_at": "Newest", "runway_days": "Runway (shortest first)"}.get,
    )
orgs = analytics.select_organizations(
    all_orgs, plans=tuple(chosen_plans), statuses=tuple(chosen_statuses), sort_by=sort_by
)
ORG_COLUMNS = {
    "org_name": kit.text_column("Organization"),
    "org_id": kit.text_column("Id"),
    "plan_name": kit.text_column("Plan"),
    "subscription_status": kit.text_column("Status"),
    "billing_cycle": kit.text_column("Billing"),
    "mrr": kit.money_column("MRR"),
    "member_count": kit.count_column("Members"),
    "total_credits": kit.credits_column("Pool total"),
    "allocated_credits": kit.credits_column("Allocated"),
    "used_credits": kit.credits_column("Used"),
    "available_credits": kit.credits_column("Available"),
    "allocated_percent": kit.percent_column("Allocated %"),
    "credits_used_30d": kit.credits_column("Used (30 days)"),
    "usage_change_percent": kit.percent_column("Change vs previous 30 days"),
    "remaining_credits": kit.credits_column("Credits left"),
    "burn_per_day": kit.credits_column("Burn per day"),
    "runway_days": kit.count_column("Runway (days)", help="Credits left / burn per day; empty: nothing used in 30 days"),
    "last_usage_at": kit.datetime_column("Last usage"),
    "org_status": kit.text_column("Organization status"),
}
if orgs.empty:
    st.caption("No organization matches these filters." if chosen_plans or chosen_statuses else "No organization yet.")
else:
    st.caption(f"{kit.counted(len(orgs), 'organization')}. Click a row to open its billing page.")
    shown = orgs.assign(subscription_status=orgs.subscription_status.map(lambda s: STATUS_WORDS.get(s, s)))
    event = kit.table(shown, ORG_COLUMNS, key="system_orgs", on_select="rerun", selection_mode="single-row")
    kit.csv_download(orgs, "organizations.csv", "Download organizations (CSV)", key="orgs_csv")
    picked = event.selection.rows if event is not None else []
    if picked:
        pages.open_screen("org_billing", str(orgs.iloc[picked[0]].org_id))

# ------------------------------------------------------------ past due
st.subheader("Past-due organizations")
due = analytics.past_due_of(all_orgs)
kit.confirmation("past_due")
if due.empty:
    st.caption("No subscription is past due.")
else:
    kit.table(
        due,
        {
            "org_name": kit.text_column("Organization"),
            "org_id": kit.text_column("Id"),
            "plan_name": kit.text_column("Plan"),
            "mrr": kit.money_column("MRR"),
            "status_changed_at": kit.datetime_column("Past due since"),
            "available_credits": kit.credits_column("Available credits"),
            "credits_used_30d": kit.credits_column("Used (30 days)"),
            "last_usage_at": kit.datetime_column("Last usage"),
        },
        key="past_due_table",
    )
    kit.csv_download(due, "past_due_organizations.csv", "Download past-due organizations (CSV)", key="past_due_csv")
    for row in due.itertuples():
        with st.container(border=True):
            name_col, active_col, cancel_col = st.columns([3, 1, 1])
            name_col.markdown(f"**{kit.md_text(row.org_name)}** · {kit.md_text(row.org_id)} · "
                              f"{kit.md_text(row.plan_name)} · {kit.fmt_money(row.mrr)}/month")
            active_col.button(
                "Mark active", key=f"past_due_activate_{row.org_id}",
                on_click=kit.write,
                args=("past_due", subscriptions.set_subscription_status, db, actor_id, row.org_id, "active"),
                kwargs={"success": f"{row.org_name}: subscription active again."},
            )

            def _cancel(org_id: str = row.org_id) -> None:
                subscriptions.set_subscription_status(db, actor_id, org_id, "canceled")

            cancel_col.button(
                "Cancel subscription", key=f"past_due_cancel_{row.org_id}",
                on_click=kit.ask_confirmation,
                args=(
                    "past_due",
                    (f"Cancel the {row.plan_name} subscription of {row.org_name} ({row.org_id})? "
                     "It stops counting in MRR; the organization can subscribe again later."),
                    _cancel,
                    f"{row.org_name}: subscription canceled.",
                ),
            )

# ------------------------------------------------------------ payments and grants
st.subheader("Payments: orders awaiting payment")
waiting = kit.read(db, orders.awaiting_payment, actor_id)
waiting_label = {
    row.id: f"{row.id}: {row.org_name} ({row.org_id}), {row.description}, {kit.fmt_money(row.price)}"
    for row in waiting.itertuples()
}
if waiting.empty:
    st.caption("No order is awaiting payment.")
else:
    kit.table(
        waiting,
        {
            "ordered_at": kit.datetime_column("Ordered"),
            "id": kit.text_column("Order"),
            "org_name": kit.text_column("Organization"),
            "org_id": kit.text_column("Id"),
            "description": kit.text_column("What"),
            "credits": kit.credits_column("Credits"),
            "price": kit.money_column("Amount due"),
            "ordered_by": kit.text_column("Ordered by"),
        },
        key="awaiting_payment_table",
    )


@kit.refusing
def ask_record_payment() -> None:
    """The "Record payment" form was sent: ask for confirmation, naming the order, the amount and the reference."""
    order_id = kit.chosen_member("payment", "payment_order", "Choose an order awaiting payment.")
    reference = (st.session_state.get("payment_reference") or "").strip()
    if not reference:
        kit.flash("payment", "error", "Give the payment's reference (the invoice or transfer id).")
        return
    kit.ask_confirmation(
        "payment",
        f"Record payment {reference} for order {waiting_label.get(order_id, order_id)}? Its credits reach the "
        "organization's pool now.",
        lambda: orders.record_payment(db, actor_id, order_id, reference),
        success=lambda order: f"Payment {order.payment_reference} recorded: {kit.fmt_credits(order.credits)} "
                              f"credits are in the pool of {order.org_id}.",
    )


if not waiting.empty:
    with st.form("payment_form"):
        st.markdown("**Record payment**")
        st.selectbox("Order", list(waiting_label), format_func=waiting_label.get, key="payment_order")
        st.text_input("Payment reference", key="payment_reference", max_chars=200,
                      help="The invoice or transfer id: one payment credits one order, in any organization.")
        st.form_submit_button("Record payment", key="payment_submit", type="primary", on_click=ask_record_payment)
kit.confirmation("payment")

grant_orgs = {row.org_id: f"{row.org_name} ({row.org_id})" for row in all_orgs.itertuples()}


@kit.refusing
def ask_grant() -> None:
    """The "Grant credits" form was sent: check the figure and the reason, then ask for confirmation."""
    org = kit.chosen_member("grant", "grant_org", "Choose an organization.")
    amount = kit.entered("grant", "grant_credits", "Credits to grant")
    reason = (st.session_state.get("grant_reason") or "").strip()
    if not reason:
        kit.flash("grant", "error", "Give the reason for the grant: it is shown in the billing history.")
        return
    expiry_day = st.session_state.get("grant_expires")
    # credits expire when the chosen day ends (UTC); the database refuses a moment already past
    expires_at = datetime.combine(expiry_day + timedelta(days=1), time.min, UTC) if expiry_day else None
    kit.ask_confirmation(
        "grant",
        f"Grant {kit.fmt_credits(amount)} free credits to {grant_orgs.get(org, org)} for: {reason}"
        + (f", expiring at the end of {expiry_day:%Y-%m-%d} (UTC)?" if expiry_day else "?")
        + " A grant is not revenue.",
        lambda: orders.grant_credits(db, actor_id, org, amount, reason, expires_at=expires_at),
        success=lambda total: f"Granted: the pool of {org} now holds {kit.fmt_credits(total)} credits.",
    )


if grant_orgs:
    with st.form("grant_form"):
        st.markdown("**Grant credits**")
        st.selectbox("Organization", list(grant_orgs), format_func=grant_orgs.get, key="grant_org")
        st.text_input("Credits to grant", key="grant_credits", placeholder="a number of credits")
        st.text_input("Reason", key="grant_reason", max_chars=500, help="Why these credits are given, e.g. an outage.")
        st.date_input("Expires on (optional)", value=None, key="grant_expires",
                      help="Unused granted credits leave the pool when this day ends (UTC).")
        st.form_submit_button("Grant credits", key="grant_submit", on_click=ask_grant)
kit.confirmation("grant")

# ------------------------------------------------------------ create an organization
st.subheader("Create an organization")
notice = st.session_state.pop("_new_org_notice", None)
if notice:
    st.success(kit.md_text(
        f"Organization {notice['name']} ({notice['org_id']}) created on the {notice['plan']} plan, "
        f"with {notice['email']} as its first admin. Their one-time password is below: it is shown only "
        "this once, pass it on now."
    ))
    st.code(notice["password"], language=None)

with st.form("create_org", clear_on_submit=False):
    new_name = st.text_input("Organization name", max_chars=200)
    new_org_id = st.text_input("Organization id", max_chars=128, help="1-128 characters, no spaces: acme-inc")
    plan_codes = list(plan_names)
    new_plan = st.selectbox(
        "Plan", plan_codes, format_func=lambda code: f"{plan_names[code]} ({kit.fmt_money(plan_prices[code])} a month)",
        index=plan_codes.index("platform") if "platform" in plan_codes else 0,
    )
    new_cycle = st.radio("Billing", list(subscriptions.BILLING_CYCLES), horizontal=True)
    left, right = st.columns(2)
    admin_email = left.text_input("First admin's email", max_chars=254)
    admin_name = right.text_input("First admin's name", max_chars=200)
    admin_user_id = st.text_input(
        "First admin's user id (optional)", max_chars=128, help="Defaults to the email address."
    )
    submitted = st.form_submit_button("Create organization", type="primary")

if submitted:
    user_id = admin_user_id.strip() or admin_email.strip().lower()
    if not user_id:
        kit.show_error("Give the first admin's email.")
    else:
        password = secrets.token_urlsafe(12)
        try:
            subscriptions.open_organization(
                db, actor_id, new_org_id.strip(), new_name, new_plan, user_id, admin_email.strip(),
                admin_name.strip() or None, auth.hash_password(password), billing_cycle=new_cycle,
            )
        except BillingError as exc:
            kit.show_error(exc)
        else:
            kit.clear_cached_reads()
            st.session_state["_new_org_notice"] = {
                "name": new_name.strip(), "org_id": new_org_id.strip(), "plan": plan_names[new_plan],
                "email": admin_email.strip(), "password": password,
            }
            st.rerun()
