"""Past-due subscriptions: record the payment that makes one active again, or cancel it; each asks in its row."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from billing_core import subscriptions
from billing_core.errors import BillingError
from pages import kit
from pages.kit.session import Screen
from pages.sections.system_reads import moments_as_text

PAST_DUE_COLUMNS = {
    "org_name": kit.text_column("Organization"),
    "org_id": kit.text_column("Id"),
    "plan_name": kit.text_column("Plan"),
    "mrr": kit.money_column("MRR"),
    "status_changed_at": kit.datetime_column("Past due since"),
    "available_credits": kit.credits_column("Available credits"),
    "credits_used_30d": kit.credits_column("Used (30 days)"),
    "last_usage_at": kit.text_column("Last usage (UTC)"),
}


def past_due_table_section(due: pd.DataFrame) -> None:
    """The past-due subscriptions as a table, with its export."""
    kit.table(moments_as_text(due, "last_usage_at"), PAST_DUE_COLUMNS, key="past_due_table",
              empty="No subscription is past due.")
    if not due.empty:
        kit.csv_download(due, "past_due_organizations.csv", "Download past-due organizations (CSV)",
                         key="past_due_csv")


_ASKED = "past_due_asked"  # the organization whose row asked last: its outcome shows even once the row is gone


def _who(row: Any) -> str:
    return f"{row.org_name} ({row.org_id})"


def _ask_mark_paid(screen: Screen, row: Any) -> None:
    """"Record payment" in a row: check the reference by the database's rule, then ask, in the row."""
    key, field = f"past_due_{row.org_id}", f"past_due_reference_{row.org_id}"
    st.session_state[_ASKED] = row.org_id
    reference = (st.session_state.get(field) or "").strip()
    try:
        recorded_at = subscriptions.payment_recorded_at(screen.db, screen.actor_id, row.org_id, reference)
    except BillingError as exc:
        kit.flash(key, "error", str(exc))
        return
    if recorded_at is not None:
        kit.clear_fields([field])
        kit.flash(key, "info", f"This payment ({reference}) was already recorded on {recorded_at:%Y-%m-%d %H:%M} "
                               "UTC; nothing changed.")
        return

    def said(outcome: subscriptions.SubscriptionPayment) -> str:
        if not outcome.recorded:
            return (f"This payment ({reference}) was already recorded on {outcome.recorded_at:%Y-%m-%d %H:%M} UTC; "
                    "nothing changed.")
        return f"{row.org_name}: payment {reference} recorded, subscription active again."

    kit.ask_confirmation(
        key,
        f"Record payment {reference} for the {row.plan_name} subscription of {_who(row)} "
        f"({kit.fmt_money(row.mrr)} a month) and make it active again?",
        lambda: subscriptions.record_subscription_payment(screen.db, screen.actor_id, row.org_id, reference),
        success=said, clear=[field],
    )


def _ask_cancel(screen: Screen, row: Any) -> None:
    """"Cancel subscription" in a row: ask, in the row."""
    st.session_state[_ASKED] = row.org_id
    kit.ask_confirmation(
        f"past_due_{row.org_id}",
        f"Cancel the {row.plan_name} subscription of {_who(row)}? It stops counting in MRR; the organization "
        "can subscribe again later.",
        lambda: subscriptions.set_subscription_status(screen.db, screen.actor_id, row.org_id, "canceled"),
        success=f"{row.org_name}: subscription canceled.",
    )


def past_due_actions_section(screen: Screen, due: pd.DataFrame) -> None:
    """One box per past-due subscription: its payment reference and the two actions; questions show in the box."""
    for row in due.itertuples():
        with st.container(border=True):
            st.markdown(f"**{kit.md_text(row.org_name)}** · {kit.md_text(row.org_id)} · "
                        f"{kit.md_text(row.plan_name)} · {kit.fmt_money(row.mrr)}/month")
            reference, paid, cancel = st.columns([3, 1, 1], vertical_alignment="bottom")
            reference.text_input("Payment reference", key=f"past_due_reference_{row.org_id}", max_chars=200,
                                 placeholder="the invoice or transfer id",
                                 help="Marking the subscription active records this payment: the invoice or transfer id.")
            paid.button("Mark active", key=f"past_due_activate_{row.org_id}", on_click=_ask_mark_paid,
                        args=(screen, row))
            cancel.button("Cancel subscription", key=f"past_due_cancel_{row.org_id}", on_click=_ask_cancel,
                          args=(screen, row))
            kit.confirmation(f"past_due_{row.org_id}")
    asked = st.session_state.get(_ASKED)
    if asked is not None and asked not in set(due.org_id):  # paid or canceled: no longer past due
        kit.show_flash(f"past_due_{asked}")
