"""The organization's credit pool: its figures, runway and lots; buying credits; the orders placed."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from billing_core import orders, periods, pricing, usage
from billing_core.usage import OrgOverview
from pages import kit
from pages.kit.session import Screen
from pages.sections.org_forms import Organization, ask_checked, credits_words, dashed, moment

BUY_KINDS = {"package": "A credit package", "credits": "A number of credits"}


def pool_section(screen: Screen, org: Organization, overview: OrgOverview) -> None:
    """Total, allocated, used, available and refresh; burn, runway and the day the credits run out; the lots."""
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
    runway = kit.read(screen.db, usage.runway, screen.actor_id, org.org_id)
    burn_col, runway_col, runs_out_col = st.columns(3)
    with burn_col:
        kit.metric_card("Burn per day (30 days)", runway.burn_per_day)
    with runway_col:
        kit.metric_card("Runway", None if runway.runway_days is None else f"{runway.runway_days:,.0f} days", "text",
                        help="Days the remaining credits last at the last 30 days' burn; none without usage.")
    with runs_out_col:
        kit.metric_card("Runs out on", f"{runway.runs_out_at:%Y-%m-%d}" if runway.runs_out_at else None, "text")
    lots_section(screen, org)


def lots_section(screen: Screen, org: Organization) -> None:
    """The credit lots, earliest expiring first, remaining before the rest (a phone shows the first columns)."""
    lots = kit.read(screen.db, periods.lots, screen.actor_id, org.org_id)
    with st.expander(f"{kit.counted(len(lots), 'credit lot')}: the earliest expiring are spent first"):
        kit.table(
            lots.assign(source=lots.source.map(kit.term), expires=lots.expires_at.map(lambda at: moment(at, "never"))),
            {
                "remaining_credits": kit.credits_column("Remaining"),
                "expires": kit.text_column("Expires"),
                "source": kit.text_column("Source"),
                "credits": kit.credits_column("Granted"),
                "granted_at": kit.datetime_column("Granted on"),
                "consumed_credits": kit.credits_column("Consumed"),
                "expired_credits": kit.credits_column("Expired"),
            },
            key="lots_table",
            empty="No credits granted yet.",
        )
        st.caption("Consumption is settled against lots by the period job; usage since its last run is not "
                   "settled yet.")


def pool_chart(overview: OrgOverview) -> None:
    """The pool's four figures as bars."""
    figures = pd.DataFrame({
        "figure": ["total", "allocated", "used", "available"],
        "credits": [overview.total_credits, overview.allocated_credits, overview.used_credits,
                    overview.available_credits],
    })
    kit.show_chart(
        kit.bar_chart(figures, "figure", "credits", color="figure", horizontal=True, title="Pool",
                      labels={"figure": "", "credits": "Credits"}),
        key="pool_bars",
        height=260,
    )


def buy_credits_section(screen: Screen, org: Organization, overview: OrgOverview) -> None:
    """The pool chart beside the "Buy credits" form: a package or a number of credits at the catalogue's price."""
    packages = kit.read(screen.db, pricing.credit_packages, active_only=True)
    labels = {
        row.code: f"{row.name}: {credits_words(row.credits)}"
                  + (f" + {kit.fmt_credits(row.bonus_credits)} bonus" if row.bonus_credits else "")
                  + f" for {kit.fmt_money(row.price)}"
        for row in packages.itertuples()
    }
    chart_col, form_col = st.columns([3, 2])
    with chart_col:
        pool_chart(overview)
    with form_col:
        with st.form("buy_credits_form"):
            st.markdown("**Buy credits**")
            st.radio("Buy", list(BUY_KINDS), horizontal=True, key="buy_kind", format_func=BUY_KINDS.get)
            st.selectbox("Credit package", list(labels), format_func=labels.get, key="buy_package")
            st.text_input("Number of credits", key="buy_credits", placeholder="a whole number of credits",
                          help="A whole number of credits at the list price: 1 credit = $0.001.")
            st.form_submit_button("Review order", key="buy_submit", on_click=ask_buy, args=(screen, org))
        kit.confirmation("buy")
        st.caption("Prices come from the catalogue; the price is shown before you confirm. A system admin records "
                   "the payment, and the credits then reach the pool.")


@kit.refusing
def ask_buy(screen: Screen, org: Organization) -> None:
    """The "Buy credits" form was sent: rehearse the order (its price from the catalogue), then ask."""
    if st.session_state.get("buy_kind") == "package":
        code, amount = st.session_state.get("buy_package"), None
        if code is None:
            kit.flash("buy", "error", "Choose a credit package.")
            return
    else:
        code, amount = None, kit.entered("buy", "buy_credits", "Credits to buy")
    ask_checked(
        screen, org, "buy",
        lambda: orders.create_order(screen.db, screen.actor_id, org.org_id, package_code=code, credits=amount),
        lambda order: f"Order {credits_words(order.credits)} for {kit.fmt_money(order.price)} ({order.description}) "
                      f"for {org.name}? The order waits for payment: its credits reach the pool when the payment is "
                      "recorded.",
        success=lambda order: f"Order {order.id} placed: {kit.fmt_money(order.price)} awaiting payment. Its "
                              f"{credits_words(order.credits)} reach the pool when a system admin records the payment.",
        clear=("buy_credits", "buy_package"),
    )


def orders_section(screen: Screen, org: Organization, order_list: pd.DataFrame) -> None:
    """The organization's orders, newest first, state first; an order awaiting payment can be canceled."""
    kit.table(
        dashed(order_list, "payment_reference").assign(state=order_list.status.map(kit.term),
                                                       paid=order_list.paid_at.map(moment)),
        {
            "state": kit.text_column("State"),
            "credits": kit.credits_column("Credits"),
            "price": kit.money_column("Price"),
            "ordered_at": kit.datetime_column("Ordered"),
            "description": kit.text_column("What"),
            "payment_reference": kit.text_column("Payment reference"),
            "paid": kit.text_column("Paid"),
            "id": kit.text_column("Order"),
        },
        key="orders_table",
        empty="No orders yet: buy credits above.",
    )
    awaiting = order_list[order_list.status == "awaiting_payment"]
    labels = {row.id: f"{row.description} ({kit.fmt_money(row.price)}, {row.id})" for row in awaiting.itertuples()}
    if labels:
        with st.form("order_cancel_form"):
            st.markdown("**Cancel an order awaiting payment**")
            st.selectbox("Order", list(labels), format_func=labels.get, key="order_cancel_id")
            st.form_submit_button("Cancel order", key="order_cancel_submit", on_click=ask_cancel_order,
                                  args=(screen, org, labels))
    kit.confirmation("order_cancel")


@kit.refusing
def ask_cancel_order(screen: Screen, org: Organization, labels: dict[str, str]) -> None:
    """The "Cancel an order" form was sent: rehearse the cancel, then ask."""
    order_id = kit.chosen_member("order_cancel", "order_cancel_id", "Choose an order awaiting payment.")
    what = labels.get(order_id, order_id)
    ask_checked(
        screen, org, "order_cancel",
        lambda: orders.cancel_order(screen.db, screen.actor_id, order_id),
        lambda _: f"Cancel the order of {what}? It will not be paid.",
        success=f"Order canceled: {what}. Nothing is owed for it.",
        clear=("order_cancel_id",),
    )
