"""My individual balance on My credits: "Buy credits" for it (checked by the catalogue's own quote before any
question) and its orders awaiting payment. Credits bought arrive when a system admin records the payment."""

from __future__ import annotations

from functools import partial

import streamlit as st

from billing_core import orders
from billing_core.errors import BillingError
from billing_core.usage import MemberCard
from pages import kit
from pages.kit.session import Screen


def _ask_personal_order(screen: Screen) -> None:
    """The "Buy credits" form was sent: price it from the catalogue (its own check), then ask to confirm."""
    amount = kit.entered("buy_personal", "buy_personal_credits", "Credits to buy", optional=True)
    if amount is None:
        kit.flash("buy_personal", "error", "Credits to buy is missing: type a whole number of credits.")
        return
    try:
        offer = orders.quote(screen.db, credits=amount)
    except BillingError as exc:
        kit.flash("buy_personal", "error", str(exc))
        return
    kit.ask_confirmation(
        "buy_personal",
        f"Order {kit.fmt_credits(offer.credits)} credits for {kit.fmt_money(offer.price)} ({offer.description}) "
        "for your individual balance? The order waits for payment: the credits arrive when it is recorded.",
        lambda: orders.order_personal_credits(screen.db, screen.actor_id, screen.actor_id, credits=amount),
        success=lambda order: f"Order placed: {kit.fmt_credits(order.credits)} credits for "
                              f"{kit.fmt_money(order.price)}, awaiting payment.",
        clear=["buy_personal_credits"],
    )


def personal_order_section(screen: Screen, card: MemberCard | None) -> None:
    """My individual balance: its orders awaiting payment, and "Buy credits" (checked before any question)."""
    if card is not None:
        waiting = kit.read(screen.db, orders.orders_of, screen.actor_id, card.org_id)
        for order in waiting[waiting.status == "awaiting_payment"].itertuples():
            st.info(f"Awaiting payment: {kit.fmt_credits(order.credits)} credits for {kit.fmt_money(order.price)}, "
                    f"ordered {order.ordered_at:%Y-%m-%d}. They arrive here when the payment is recorded.")
    with st.expander("Buy credits for my individual balance", expanded=card is None):
        with st.form("buy_personal"):
            st.text_input("Credits to buy", key="buy_personal_credits", placeholder="a number of credits",
                          help="At the list price; an order waits for its payment.")
            st.form_submit_button("Buy credits", key="buy_personal_submit",
                                  on_click=kit.refusing(partial(_ask_personal_order, screen)))
    kit.confirmation("buy_personal")
