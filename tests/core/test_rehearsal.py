"""billing_core.database.rehearse: a write's answer or refusal by the database's own rules, nothing kept."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_core import credits, database, orders, reports
from billing_core.errors import InsufficientPoolCredits, InvalidAmount, NotFound, PermissionDenied
from tests.ledger_state import snapshot


def test_a_rehearsal_answers_as_the_write_would_and_keeps_nothing(db, db_url, funded_org):
    app = database.app_engine(db_url)  # the app's role, as the screens use it
    before = snapshot(db)
    remaining = database.rehearse(app, lambda: credits.allocate(app, funded_org.admin, funded_org.id, "user-1", 250))
    assert remaining == 250
    assert snapshot(db) == before
    order = database.rehearse(app, lambda: orders.create_order(app, funded_org.admin, funded_org.id, credits=2_500))
    assert (order.credits, order.price) == (2_500, Decimal("2.50"))
    assert snapshot(db) == before
    # the real write afterwards answers the same
    assert credits.allocate(app, funded_org.admin, funded_org.id, "user-1", 250) == 250


@pytest.mark.parametrize("credits_asked, actor, user, refusal", [
    ("0", "admin-1", "user-1", InvalidAmount),
    ("1e20", "admin-1", "user-1", InvalidAmount),
    ("10001", "admin-1", "user-1", InsufficientPoolCredits),
    ("5", "admin-1", "nobody", NotFound),
    ("5", "user-2", "user-1", PermissionDenied),  # a member cannot allocate
])
def test_a_rehearsal_raises_the_refusal_of_the_write_and_keeps_nothing(db, db_url, funded_org, credits_asked,
                                                                      actor, user, refusal):
    app = database.app_engine(db_url)
    before = snapshot(db)
    with pytest.raises(refusal):
        database.rehearse(app, lambda: credits.allocate(app, actor, funded_org.id, user, credits_asked))
    assert snapshot(db) == before


def test_the_statements_of_one_rehearsal_see_each_other(db, funded_org):
    def allocate_then_take_back() -> Decimal:
        credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 300)
        return credits.reclaim(db, funded_org.admin, funded_org.id, "user-1")  # all unused: the 300 just given

    before = snapshot(db)
    assert database.rehearse(db, allocate_then_take_back) == 300
    assert snapshot(db) == before
    assert reports.pool(db, funded_org.admin, funded_org.id).allocated_credits == 0


def test_a_rehearsal_refuses_a_statement_on_another_engine(db, db_url, funded_org):
    app = database.app_engine(db_url)
    before = snapshot(db)
    with pytest.raises(RuntimeError, match="one database"):
        database.rehearse(db, lambda: credits.allocate(app, funded_org.admin, funded_org.id, "user-1", 5))
    assert snapshot(db) == before
