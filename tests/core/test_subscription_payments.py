"""Recording a past-due subscription's payment (sql/routines/073_subscription_payments.sql).

Issue 9: "Mark active" made a past-due subscription active in one click and recorded no payment.
Now the payment is recorded by its reference, once; the subscription is active again in the same call.
"""

from __future__ import annotations

import pytest

from billing_core import analytics, ledger, orders, organizations, subscriptions
from billing_core.database import fetch
from billing_core.errors import InvalidInput, NotFound, PermissionDenied, RequestConflict
from tests.ledger_state import snapshot


@pytest.fixture
def late(db):
    """Late Inc on Starter ($19), past due; its admin lena; root is the system admin."""
    organizations.create_user(db, None, "root", "root@example.com", is_system_admin=True)
    organizations.create_organization(db, None, "late", "Late Inc")
    organizations.create_user(db, None, "lena", "lena@example.com")
    organizations.add_member(db, None, "late", "lena", "admin")
    subscriptions.create_subscription(db, None, "late", "starter", trial=False)
    subscriptions.set_subscription_status(db, None, "late", "past_due")
    return db


def _status(db) -> str:
    return fetch(db, "select status from organization_subscriptions where org_id = 'late'")[0][0]


def test_the_payment_is_recorded_once_and_the_subscription_is_active_again(late):
    db = late
    assert subscriptions.payment_recorded_at(db, "root", "late", "INV-1") is None  # would record it
    mrr = analytics.overview(db, "root").mrr.value
    paid = subscriptions.record_subscription_payment(db, "root", "late", "INV-1")
    assert paid.recorded and _status(db) == "active"
    rows = fetch(db, "select event_type, amount, credits, external_ref from org_billing_history"
                     " where org_id = 'late' and event_type = 'subscription_payment'")
    assert [tuple(row) for row in rows] == [("subscription_payment", 0, 0, "INV-1")]
    assert analytics.overview(db, "root").mrr.value == mrr == 19  # past due counted in MRR already
    assert analytics.mrr_months(db, "root", months=1).net_new_mrr.iloc[0] == 19  # the subscription's start only

    # the same reference again: nothing changes, and it says when it was recorded
    before = snapshot(db)
    again = subscriptions.record_subscription_payment(db, "root", "late", "INV-1")
    assert not again.recorded and again.recorded_at == paid.recorded_at
    assert subscriptions.payment_recorded_at(db, "root", "late", "INV-1") == paid.recorded_at
    assert snapshot(db) == before
    assert ledger.verify(db) == []


@pytest.mark.parametrize(
    ("actor", "reference", "error", "words"),
    [
        ("lena", "INV-2", PermissionDenied, "not a system admin"),
        ("root", "  ", InvalidInput, "Payment reference is missing."),
        ("root", "x" * 201, InvalidInput, "Payment reference is too long"),
        ("nobody", "INV-2", NotFound, "does not exist"),
    ],
)
def test_refusals_change_nothing(late, actor, reference, error, words):
    before = snapshot(late)
    for attempt in (subscriptions.payment_recorded_at, subscriptions.record_subscription_payment):
        with pytest.raises(error, match=words):
            attempt(late, actor, "late", reference)
    assert snapshot(late) == before and _status(late) == "past_due"


def test_only_a_past_due_subscription_awaits_a_payment_and_a_reference_pays_once(late):
    db = late
    order = orders.create_order(db, "lena", "late", credits=1_000)
    orders.record_payment(db, "root", order.id, "PAY-ORDER")
    before = snapshot(db)
    with pytest.raises(RequestConflict, match="already in the billing history of Late Inc \\(late\\)"):
        subscriptions.record_subscription_payment(db, "root", "late", "PAY-ORDER")
    assert snapshot(db) == before

    subscriptions.record_subscription_payment(db, "root", "late", "INV-3")
    with pytest.raises(InvalidInput, match="The subscription of Late Inc \\(late\\) is active, not past due"):
        subscriptions.record_subscription_payment(db, "root", "late", "INV-4")
    subscriptions.set_subscription_status(db, "root", "late", "canceled")
    with pytest.raises(NotFound, match="Late Inc \\(late\\) has no live subscription"):
        subscriptions.payment_recorded_at(db, "root", "late", "INV-5")
