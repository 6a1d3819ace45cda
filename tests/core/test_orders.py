"""Money enters only through trusted doors: orders at the catalogue's price, recorded payments, grants.

Findings 1, 2 and the first half of 16 of issue 8: an org admin recorded purchases at any price (or
free), any user minted an individual balance, one payment reference could credit two organizations.
Each of these is refused in the stored functions; a paid order or a system admin's grant with a reason
is the only way in, and `billing verify` says so when a row breaks it.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from billing_core import analytics, charging, credits, ledger, orders, organizations, pricing
from billing_core.database import fetch
from billing_core.errors import (
    InvalidAmount,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RequestConflict,
    RuleViolation,
)
from tests.ledger_state import billing_verify, refused


@pytest.fixture
def sysadmin(db) -> str:
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    return "root"


@pytest.fixture
def two_orgs(db, org):
    """`org` plus organization other-org with its admin 'other-admin'."""
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "other-admin", "other@example.com")
    organizations.add_member(db, None, "other-org", "other-admin", "admin")
    return org


def pool_total(db, org_id: str) -> D:
    rows = fetch(db, "select coalesce(max(total_credits), 0) from credit_pools where org_id = :o", {"o": org_id})
    return rows[0][0]


# --------------------------------------------------------------------------- finding 1


@pytest.mark.parametrize("amount", ["0", "0.0001", "10", "1000000000"])
def test_org_admin_cannot_record_a_purchase_at_any_price(db, org, amount):
    refused(db, PermissionDenied, "create an order",
            lambda: credits.add_credits(db, org.admin, org.id, 1_000_000_000_000, amount))
    refused(db, PermissionDenied, "create an order",
            lambda: fetch(db, "select add_credits_to_pool(:o, 1000000000000, cast(:a as numeric), :u)",
                          {"o": org.id, "a": amount, "u": org.admin}))
    assert pool_total(db, org.id) == 0


def test_a_trillion_credits_for_nothing_is_refused_even_for_the_operator(db, org, sysadmin):
    for actor in (None, sysadmin):
        refused(db, InvalidAmount, "grant_credits",
                lambda actor=actor: credits.add_credits(db, actor, org.id, 1_000_000_000_000, 0))
    assert pool_total(db, org.id) == 0


def test_a_price_above_the_list_price_is_refused(db, org, sysadmin):
    refused(db, InvalidAmount, "above the list price",
            lambda: credits.add_credits(db, sysadmin, org.id, 100, 1_000_000_000))
    refused(db, InvalidAmount, "above the list price", lambda: credits.add_credits(db, None, org.id, 100, "0.1001"))
    # at the list price or below it (a discount a trusted caller agreed to), it is a paid order
    assert credits.add_credits(db, None, org.id, 100, "0.1", external_ref="WIRE-1") == 100
    assert credits.add_credits(db, sysadmin, org.id, 1000, "0.5") == 1100
    paid = orders.orders_of(db, sysadmin, org.id)
    assert sorted(zip(paid.source, paid.status, paid.price, paid.list_price)) == [
        ("direct", "paid", D("0.1"), D("0.1")), ("direct", "paid", D("0.5"), D("1")),
    ]
    assert analytics.credit_months(db, sysadmin, org.id, months=1).revenue.sum() == D("0.6")
    assert ledger.verify(db) == []


def test_the_customer_never_chooses_the_price_of_an_order(db, org):
    signature = fetch(db, "select pg_get_function_arguments('create_credit_order'::regproc)")[0][0]
    assert "price" not in signature and "amount" not in signature
    by_credits = orders.create_order(db, org.admin, org.id, credits=12_345)
    assert (by_credits.credits, by_credits.price, by_credits.status) == (D("12345"), D("12.345"), "awaiting_payment")
    package = orders.create_order(db, org.admin, org.id, package_code="growth_50k")
    assert (package.ordered_credits, package.bonus_credits, package.credits, package.price) == (
        D("50000"), D("2500"), D("52500"), D("50"))
    # the table refuses a customer's order at another price than the list price, whoever writes it
    with pytest.raises(Exception, match="credit_orders_customer_pays_list_price"):
        fetch(db, "update credit_orders set price = 0.01 where id = :id", {"id": by_credits.id})
    for bad, words in [(0, "greater than 0"), (-5, "greater than 0"), ("1.5", "whole number"),
                       (D("1e13"), "too large"), ("abc", "not a number")]:
        refused(db, InvalidAmount, words, lambda bad=bad: orders.create_order(db, org.admin, org.id, credits=bad))
    refused(db, InvalidInput, "one of the two", lambda: orders.create_order(db, org.admin, org.id))
    refused(db, InvalidInput, "one of the two",
            lambda: orders.create_order(db, org.admin, org.id, package_code="growth_50k", credits=10))
    refused(db, NotFound, "does not exist", lambda: orders.create_order(db, org.admin, org.id, package_code="nope"))
    refused(db, PermissionDenied, "not an admin", lambda: orders.create_order(db, "user-1", org.id, credits=10))
    assert pool_total(db, org.id) == 0  # orders alone bring nothing in


# --------------------------------------------------------------------------- finding 2


def test_a_member_cannot_mint_an_individual_balance(db, org):
    refused(db, PermissionDenied, "create an order",
            lambda: charging.top_up_personal_balance(db, "user-1", "user-1", 1_000_000_000_000, 0))
    refused(db, PermissionDenied, "create an order",
            lambda: fetch(db, "select * from top_up_personal_balance('user-1', 1000000000000, 0, 'user-1')"))
    # they order instead: the order waits for payment and nothing is spendable
    order = orders.order_personal_credits(db, "user-1", "user-1", credits=5_000)
    assert (order.status, order.price) == ("awaiting_payment", D("5"))
    assert pool_total(db, order.org_id) == 0
    assert fetch(db, "select count(*) from user_credit_allocations where org_id = :o", {"o": order.org_id})[0][0] == 0
    refused(db, PermissionDenied, "not a system admin",
            lambda: orders.order_personal_credits(db, "user-2", "user-1", credits=5))


def test_the_owner_of_a_personal_balance_cannot_add_to_it(db, org, sysadmin):
    order = orders.order_personal_credits(db, "user-1", "user-1", credits=1_000)
    personal = order.org_id
    assert fetch(db, "select role from organization_members where org_id = :o", {"o": personal})[0][0] == "admin"
    refused(db, PermissionDenied, "create an order",
            lambda: credits.add_credits(db, "user-1", personal, 1_000_000_000_000, 0))
    refused(db, PermissionDenied, "create an order", lambda: credits.add_credits(db, "user-1", personal, 100, "0.1"))
    refused(db, PermissionDenied, "create an order", lambda: pricing.buy_package(db, "user-1", personal, "starter_10k"))
    refused(db, PermissionDenied, "grant", lambda: orders.grant_credits(db, "user-1", personal, 100, "because"))
    refused(db, PermissionDenied, "not a system admin",
            lambda: orders.record_payment(db, "user-1", order.id, "SELF-PAID"))
    # once a system admin records the payment, the credits are the owner's to spend
    orders.record_payment(db, sysadmin, order.id, "INV-P-1")
    remaining = fetch(db, "select remaining_credits from user_credit_allocations where org_id = :o and is_active",
                      {"o": personal})[0][0]
    assert remaining == D("1000")
    assert charging.charging_org(db, "user-1") == org.id  # the organization still pays first
    assert ledger.verify(db) == []


# --------------------------------------------------------------------------- finding 16, first half


def test_one_payment_reference_cannot_pay_orders_of_two_organizations(db, two_orgs, sysadmin):
    mine = orders.create_order(db, two_orgs.admin, two_orgs.id, credits=1_000)
    theirs = orders.create_order(db, "other-admin", "other-org", credits=1_000)
    orders.record_payment(db, sysadmin, mine.id, "INV-2026-001")
    refused(db, RequestConflict, "one payment credits one order",
            lambda: orders.record_payment(db, sysadmin, theirs.id, "INV-2026-001"))
    refused(db, RequestConflict, "one payment credits one order",
            lambda: credits.add_credits(db, None, "other-org", 1_000, 1, external_ref="INV-2026-001"))
    refused(db, RequestConflict, "already paid",
            lambda: orders.record_payment(db, sysadmin, mine.id, "INV-2026-002"))
    assert pool_total(db, "other-org") == 0
    orders.record_payment(db, sysadmin, theirs.id, "INV-2026-003")
    assert pool_total(db, "other-org") == 1000


# --------------------------------------------------------------------------- the paid order, end to end


def test_paid_order_flow_end_to_end(db, org, sysadmin, db_url):
    order = orders.create_order(db, org.admin, org.id, package_code="growth_50k")
    waiting = orders.awaiting_payment(db, sysadmin)
    assert list(waiting.id) == [order.id] and list(waiting.org_name) == ["Test Org 001"]
    refused(db, PermissionDenied, "not a system admin", lambda: orders.awaiting_payment(db, org.admin))
    refused(db, PermissionDenied, "not a system admin",
            lambda: orders.record_payment(db, org.admin, order.id, "INV-77"))
    refused(db, InvalidInput, "payment reference is missing", lambda: orders.record_payment(db, sysadmin, order.id, " "))
    refused(db, NotFound, "does not exist", lambda: orders.record_payment(db, sysadmin, "ord-nope", "INV-77"))
    assert pool_total(db, org.id) == 0

    paid = orders.record_payment(db, sysadmin, order.id, "INV-77")
    assert (paid.status, paid.payment_reference, paid.payment_recorded_by) == ("paid", "INV-77", sysadmin)
    assert pool_total(db, org.id) == D("52500")
    history = fetch(db, "select event_type, credits, amount, external_ref, credit_order_id from org_billing_history"
                        " where org_id = :o", {"o": org.id})
    assert [tuple(r) for r in history] == [("credit_purchase", D("52500"), D("50"), "INV-77", order.id)]
    lots = fetch(db, "select source, credits from credit_lots where org_id = :o", {"o": org.id})
    assert [tuple(r) for r in lots] == [("credit_purchase", D("52500"))]
    audit = fetch(db, "select action from audit_log where org_id = :o and action like 'order.%' order by id",
                  {"o": org.id})
    assert [r[0] for r in audit] == ["order.created", "order.paid"]
    # a retry of the same payment changes nothing; a paid order cannot be canceled
    assert orders.record_payment(db, sysadmin, order.id, "INV-77") == paid
    assert pool_total(db, org.id) == D("52500")
    refused(db, RuleViolation, "cannot be canceled", lambda: orders.cancel_order(db, org.admin, order.id))
    assert orders.awaiting_payment(db, sysadmin).empty
    assert list(orders.orders_of(db, org.admin, org.id).status) == ["paid"]
    assert billing_verify(db_url).returncode == 0


def test_the_operator_may_date_a_payment_in_the_past(db, org):
    order = orders.create_order(db, org.admin, org.id, credits=1_000)
    at = fetch(db, "select date_trunc('second', now() - interval '3 days')")[0][0]
    paid = orders.record_payment(db, None, order.id, "WIRE-9", paid_at=at)
    assert paid.paid_at == at and paid.payment_recorded_by is None
    row = fetch(db, "select created_at, recorded_at > created_at from org_billing_history where org_id = :o",
                {"o": org.id})[0]
    assert tuple(row) == (at, True)


def test_canceling_an_order(db, org, sysadmin):
    order = orders.create_order(db, org.admin, org.id, credits=1_000)
    refused(db, PermissionDenied, "not an admin", lambda: orders.cancel_order(db, "user-1", order.id))
    canceled = orders.cancel_order(db, org.admin, order.id)
    assert canceled.status == "canceled" and canceled.canceled_by == org.admin
    assert orders.cancel_order(db, org.admin, order.id) == canceled  # again: no change
    refused(db, RuleViolation, "was canceled", lambda: orders.record_payment(db, sysadmin, order.id, "INV-1"))
    assert pool_total(db, org.id) == 0


# --------------------------------------------------------------------------- grants


def test_a_grant_needs_a_system_admin_and_a_reason(db, org, sysadmin):
    refused(db, PermissionDenied, "grant", lambda: orders.grant_credits(db, org.admin, org.id, 500, "goodwill"))
    refused(db, InvalidInput, "reason for the grant is missing", lambda: orders.grant_credits(db, sysadmin, org.id, 500, ""))
    refused(db, InvalidInput, "reason for the grant is missing", lambda: orders.grant_credits(db, None, org.id, 500, "  "))
    refused(db, InvalidAmount, "greater than 0", lambda: orders.grant_credits(db, sysadmin, org.id, 0, "goodwill"))
    assert orders.grant_credits(db, sysadmin, org.id, 500, "Outage on 2026-11-30: goodwill") == 500
    assert orders.grant_credits(db, None, org.id, 250, "Pilot agreement") == 750
    rows = fetch(db, "select event_type, credits, amount, description, created_by, metadata ->> 'granted_as'"
                     " from org_billing_history where org_id = :o order by id", {"o": org.id})
    assert [tuple(r) for r in rows] == [
        ("credit_grant", D("500"), D("0"), "Outage on 2026-11-30: goodwill", sysadmin, "system_admin"),
        ("credit_grant", D("250"), D("0"), "Pilot agreement", None, "operator"),
    ]
    assert ledger.verify(db) == []


def test_analytics_tell_sold_from_granted(db, org, sysadmin):
    order = orders.create_order(db, org.admin, org.id, package_code="starter_10k")
    orders.record_payment(db, sysadmin, order.id, "INV-10")
    orders.grant_credits(db, sysadmin, org.id, 2_000, "Promotional credits")
    month = analytics.credit_months(db, sysadmin, org.id, months=1).iloc[-1]
    assert (month.credits_sold, month.revenue, month.credits_granted) == (D("10000"), D("10"), D("2000"))
    paid = fetch(db, "select sum(price) from credit_orders where status = 'paid'")[0][0]
    assert paid == month.revenue
    assert ledger.verify(db) == []


# --------------------------------------------------------------------------- billing verify sees a broken door


def violations(db) -> set[str]:
    return {v.invariant for v in ledger.verify(db)}


def test_verify_reports_credits_that_entered_without_a_paid_order(db, org):
    # the owner writes a purchase row by hand, as a door left open would
    fetch(db, "update credit_pools set total_credits = 1000 where org_id = :o", {"o": org.id})
    fetch(db, "insert into org_billing_history (org_id, event_type, credits, amount, total_credits_after)"
              " values (:o, 'credit_purchase', 1000, 1, 1000)", {"o": org.id})
    assert {"purchase_without_paid_order", "credits_without_order_or_grant",
            "revenue_matches_paid_orders"} <= violations(db)


def test_verify_reports_a_grant_without_a_reason(db, org, sysadmin):
    fetch(db, "insert into credit_pools (org_id) values (:o) on conflict do nothing", {"o": org.id})
    fetch(db, "update credit_pools set total_credits = 1000 where org_id = :o", {"o": org.id})
    fetch(db, "insert into org_billing_history (org_id, event_type, credits, amount, total_credits_after, created_by)"
              " values (:o, 'credit_grant', 1000, 0, 1000, :u)", {"o": org.id, "u": org.admin})
    assert violations(db) == {"credits_without_order_or_grant"}


def test_verify_reports_revenue_that_differs_from_the_paid_orders(db, funded_org):
    assert ledger.verify(db) == []
    fetch(db, "update credit_orders set price = 5, list_price = 5 where org_id = :o", {"o": funded_org.id})
    assert violations(db) == {"purchase_without_paid_order", "revenue_matches_paid_orders"}


def test_verify_reports_a_paid_order_that_brought_nothing_in(db, org):
    fetch(db, "insert into credit_orders (org_id, id, source, ordered_credits, credits, list_price, price,"
              " description, status, paid_at, payment_recorded_at, payment_reference)"
              " values (:o, 'ord-forged', 'order', 10, 10, 0.01, 0.01, 'forged', 'paid', now(), now(), 'X-1')",
              {"o": org.id})
    assert violations(db) == {"paid_order_without_purchase", "revenue_matches_paid_orders"}


def test_one_reference_raced_for_two_organizations_pays_one_order(db, db_url, two_orgs):
    import threading

    from billing_core import database

    engine = database.get_engine(db_url)
    mine = orders.create_order(db, two_orgs.admin, two_orgs.id, credits=1_000)
    theirs = orders.create_order(db, "other-admin", "other-org", credits=2_000)
    barrier = threading.Barrier(2, timeout=30)
    outcomes: dict[str, object] = {}

    def pay(order_id: str) -> None:
        barrier.wait()
        try:
            outcomes[order_id] = orders.record_payment(engine, None, order_id, "INV-RACE").status
        except RequestConflict as exc:
            outcomes[order_id] = exc

    threads = [threading.Thread(target=pay, args=(o.id,)) for o in (mine, theirs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(type(v).__name__ for v in outcomes.values()) == ["RequestConflict", "str"]
    assert fetch(db, "select count(*) from credit_orders where payment_reference = 'INV-RACE'")[0][0] == 1
    assert pool_total(db, two_orgs.id) + pool_total(db, "other-org") in (D(1000), D(2000))
    assert ledger.verify(db) == []


# --------------------------------------------------------------------------- upgrading a database with purchases


BEFORE_ORDERS = "60e430b"  # the last commit before credit orders (migration 0010)


def test_purchases_recorded_before_orders_become_paid_orders(pg_server, tmp_path, monkeypatch):
    import io
    import subprocess
    import tarfile
    import uuid

    import psycopg

    from billing_core import migrations
    from billing_core.database import PROJECT_ROOT

    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", BEFORE_ORDERS, "sql"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"commit {BEFORE_ORDERS} is not in this checkout's history")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(tmp_path, filter="data")
    name = f"billing_upgrade_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        monkeypatch.setattr(migrations, "SQL_DIR", tmp_path / "sql")
        migrations.migrate(url)
        with psycopg.connect(url) as conn:
            for org in ("a", "b"):
                conn.execute("select create_organization(%s, %s)", [org, org.upper()])
            conn.execute("select add_credits_to_pool('a', 10000, 10, null, null, 'INV-1')")
            conn.execute("select add_credits_to_pool('b', 1000, 1, null, null, 'INV-1')")  # the old per-org rule
            conn.execute("select add_credits_to_pool('a', 100, 1000000000)")  # the old exploit, now a paid order
            conn.execute("select add_credits_to_pool('b', 500, 0)")  # an old free grant, no reason
        monkeypatch.setattr(migrations, "SQL_DIR", PROJECT_ROOT / "sql")
        assert "migrations/0010_credit_orders.sql" in migrations.migrate(url).migrations
        with psycopg.connect(url) as conn:
            migrated = conn.execute("select org_id, source, status, credits, price, payment_reference"
                                    " from credit_orders order by org_id, credits").fetchall()
            assert migrated == [
                ("a", "migrated", "paid", D(100), D(1000000000), None),
                ("a", "migrated", "paid", D(10000), D(10), "INV-1"),
                ("b", "migrated", "paid", D(1000), D(1), None),
            ]
            # revenue = paid orders holds for them; the grant before the rule is not judged
            assert conn.execute("select * from ledger_violations()").fetchall() == []
            conn.execute("select add_credits_to_pool('b', 1000, 1, null, null, 'INV-2')")
            assert conn.execute("select * from ledger_violations()").fetchall() == []
    finally:
        pg_server.drop_database(name)
