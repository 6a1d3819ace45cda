"""Orders awaiting payment, and recording a payment: what was already recorded is said, never re-announced."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from billing_core import orders
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen

WAITING_COLUMNS = {
    "ordered_at": kit.datetime_column("Ordered"),
    "id": kit.text_column("Order"),
    "org_name": kit.text_column("Organization"),
    "org_id": kit.text_column("Id"),
    "description": kit.text_column("What"),
    "credits": kit.credits_column("Credits"),
    "price": kit.money_column("Amount due"),
    "ordered_by": kit.text_column("Ordered by"),
}
PAYMENT_FIELDS = ("payment_reference",)


def _already_text(reference: str, order_id: str, recorded_at: Any) -> str:
    return (f"This payment ({reference}) was already recorded on {recorded_at:%Y-%m-%d %H:%M} UTC for order "
            f"{order_id}; nothing changed.")


def _ask_record_payment(screen: Screen, waiting: pd.DataFrame) -> None:
    """The "Record payment" form was sent: check the order and the reference by the database's rule (a second
    tab, a second click, a reference used elsewhere), then ask, naming both."""
    order_id = kit.chosen_member("payment", "payment_order", "Choose an order awaiting payment.")
    reference = (st.session_state.get("payment_reference") or "").strip()
    if not reference:
        kit.flash("payment", "error", "Give the payment's reference (the invoice or transfer id).")
        return
    try:
        recorded_at = orders.payment_recorded_at(screen.db, screen.actor_id, order_id, reference)
    except BillingError as exc:
        kit.flash("payment", "error", str(exc))
        return
    if recorded_at is not None:
        kit.clear_fields(PAYMENT_FIELDS)
        kit.flash("payment", "info", _already_text(reference, order_id, recorded_at))
        return
    row = waiting.set_index("id").loc[order_id]

    def record() -> tuple[Any, orders.Order]:
        # paid between the question and Confirm: the database returns the order unchanged; say so
        earlier = orders.payment_recorded_at(screen.db, screen.actor_id, order_id, reference)
        return earlier, orders.record_payment(screen.db, screen.actor_id, order_id, reference)

    def said(outcome: tuple[Any, orders.Order]) -> str:
        earlier, order = outcome
        if earlier is not None:
            return _already_text(reference, order_id, earlier)
        return (f"Payment {order.payment_reference} recorded: {kit.fmt_credits(order.credits)} credits are in the "
                f"pool of {row.org_name} ({order.org_id}).")

    kit.ask_confirmation(
        "payment",
        f"Record payment {reference} for order {order_id} of {row.org_name} ({row.org_id}): {row.description}, "
        f"{kit.fmt_money(row.price)}? Its credits reach the organization's pool now.",
        record, success=said, clear=PAYMENT_FIELDS,
    )


def payments_section(screen: Screen, waiting: pd.DataFrame) -> None:
    """Orders awaiting payment, and the form that records one's payment with its reference."""
    st.subheader("Payments: orders awaiting payment")
    kit.table(waiting, WAITING_COLUMNS, key="awaiting_payment_table", empty="No order is awaiting payment.")
    if not waiting.empty:
        labels = {row.id: f"{row.id}: {row.org_name} ({row.org_id}), {row.description}, {kit.fmt_money(row.price)}"
                  for row in waiting.itertuples()}
        with st.form("payment_form"):
            st.markdown("**Record payment**")
            st.selectbox("Order", list(labels), format_func=labels.get, key="payment_order")
            st.text_input("Payment reference", key="payment_reference", max_chars=200,
                          help="The invoice or transfer id: one payment credits one order, in any organization.")
            st.form_submit_button("Record payment", key="payment_submit", type="primary",
                                  on_click=kit.refusing(lambda: _ask_record_payment(screen, waiting)))
    kit.confirmation("payment")
