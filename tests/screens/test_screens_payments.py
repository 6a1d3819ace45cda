"""The Credits screen's Payments section: orders awaiting payment, "Record payment", "Grant credits".

Dataset: acme (admin ada) and other (admin olga); root is the system admin. ada ordered 10,000
credits ($10) and olga the Growth 50K package ($50); neither is paid.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import streamlit as st
from ledger_state import snapshot
from screen_testing import dataframe, errors, open_page, plain

from billing_core import ledger, orders, organizations, reports


@pytest.fixture
def shop(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, name, admin in (("acme", "Acme Analytics", "ada"), ("other", "Other Org", "olga")):
        organizations.create_organization(db, None, org_id, name)
        organizations.create_user(db, None, admin, f"{admin}@example.com", admin.title())
        organizations.add_member(db, None, org_id, admin, "admin")
    acme = orders.create_order(db, "ada", "acme", credits=10_000)
    other = orders.create_order(db, "olga", "other", package_code="growth_50k")
    st.cache_data.clear()
    return db, acme, other


def send(at, form: str, confirm: bool = True, **fields):
    for key, value in fields.items():
        for kind in (at.selectbox, at.text_input, at.date_input):
            widgets = [w for w in kind if w.key == key]
            if widgets:
                widgets[0].set_value(value)
                break
        else:
            raise AssertionError(f"no field {key!r}")
    at.button(key=f"{form}_submit").click().run()
    assert not at.exception
    buttons = [b for b in at.button if b.key == f"{form}_confirm"]
    if confirm and buttons:
        buttons[0].click().run()
        assert not at.exception
    return at


def test_orders_awaiting_payment_are_listed_and_paid_with_a_reference(shop):
    db, acme, other = shop
    at = open_page("system_credits", "root")
    waiting = dataframe(at, "org_name", "price", "ordered_by")
    assert sorted(zip(waiting.id, waiting.price)) == sorted([(acme.id, Decimal("10")), (other.id, Decimal("50"))])

    send(at, "payment", confirm=False, payment_order=acme.id, payment_reference="INV-2026-11")
    question = plain(at.warning[-1].value)
    assert f"Record payment INV-2026-11 for order {acme.id} of Acme Analytics (acme)" in question and "$10.00" in question
    at.button(key="payment_confirm").click().run()
    assert [plain(s.value) for s in at.success] == [
        "Payment INV-2026-11 recorded: 10,000 credits are in the pool of Acme Analytics (acme)."]
    assert at.text_input(key="payment_reference").value == ""  # the form cleared: a second click sends nothing
    assert reports.pool(db, "ada", "acme").total_credits == 10_000
    assert list(dataframe(at, "org_name", "price", "ordered_by").id) == [other.id]

    # the same reference cannot pay the other organization's order: refused before any question
    before = snapshot(db)
    send(at, "payment", confirm=False, payment_order=other.id, payment_reference="INV-2026-11")
    assert any("one payment credits one order" in e for e in errors(at))
    assert not [b for b in at.button if b.key == "payment_confirm"]
    assert snapshot(db) == before
    # a reference is required
    send(at, "payment", payment_order=other.id, payment_reference="  ")
    assert "Give the payment's reference (the invoice or transfer id)." in errors(at)
    assert ledger.verify(db) == []


def test_a_grant_needs_a_reason_and_is_not_revenue(shop):
    db, _, _ = shop
    at = open_page("system_credits", "root")
    before = snapshot(db)
    send(at, "grant", grant_org="other", grant_credits="1,000", grant_reason=" ")
    assert "Give the reason for the grant: it is shown in the billing history." in errors(at)
    send(at, "grant", grant_org="other", grant_credits="0", grant_reason="Outage")
    assert "Credits to grant must be greater than 0 (got 0)." in errors(at)
    # refused before the question is asked (issue 9): no Confirm button ever shows for these
    for credits in ("0", "-5", "1e20", "0.0000001", "abc"):
        send(at, "grant", confirm=False, grant_org="other", grant_credits=credits, grant_reason="Outage")
        assert errors(at) and not [b for b in at.button if b.key == "grant_confirm"], credits
    assert snapshot(db) == before
    send(at, "grant", grant_org="other", grant_credits="1,000", grant_reason="Outage on 30 November")
    assert any("the pool of Other Org (other) now holds 1,000 credits" in plain(s.value) for s in at.success)
    row = reports.billing_history(db, "olga", "other").iloc[0]
    assert (row.event_type, row.credits, row.amount, row.description) == (
        "credit_grant", 1000, 0, "Outage on 30 November")
    assert ledger.verify(db) == []


def test_org_admins_see_no_payments_section(shop):
    at = open_page("system_credits", "ada")
    assert not [b for b in at.button if b.key in ("payment_submit", "grant_submit")]
    assert any("not a system admin" in e for e in errors(at))


def test_a_payment_recorded_already_says_so_and_changes_nothing(shop):
    """Issue 9: re-sending a payment already recorded (a second tab, a second click) said "recorded" again."""
    db, acme, other = shop
    first, second = open_page("system_credits", "root"), open_page("system_credits", "root")  # two tabs
    send(first, "payment", payment_order=acme.id, payment_reference="INV-1")
    assert reports.pool(db, "ada", "acme").total_credits == 10_000
    paid_at = orders.orders_of(db, "root", "acme").set_index("id").loc[acme.id].payment_recorded_at

    # the second tab still lists the order: told before any question, nothing changes
    before = snapshot(db)
    send(second, "payment", confirm=False, payment_order=acme.id, payment_reference="INV-1")
    assert not [b for b in second.button if b.key == "payment_confirm"]
    assert [plain(i.value) for i in second.info] == [
        f"This payment (INV-1) was already recorded on {paid_at:%Y-%m-%d %H:%M} UTC for order {acme.id}; "
        "nothing changed."]
    assert not second.success and snapshot(db) == before

    # asked in one tab, paid in the other before Confirm: the outcome says it was already recorded
    third = open_page("system_credits", "root")
    send(third, "payment", confirm=False, payment_order=other.id, payment_reference="INV-2")
    send(first, "payment", payment_order=other.id, payment_reference="INV-2")
    before = snapshot(db)
    third.button(key="payment_confirm").click().run()
    [said] = [plain(s.value) for s in third.success]
    assert said.startswith("This payment (INV-2) was already recorded on") and said.endswith("nothing changed.")
    assert "credits are in the pool" not in said and snapshot(db) == before
