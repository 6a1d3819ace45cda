"""Usage and purchases reported after the fact: dated when they happened, recorded when charged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core import credits, ledger, reports
from billing_core.database import fetch
from billing_core.errors import InvalidInput
from tests.ledger_state import snapshot


@pytest.fixture
def charged(db, funded_org):
    """user-1 holds 1,000 credits of a 10,000 pool."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    return funded_org


def attribution(db) -> list:
    return fetch(db, "select credits_used, created_at, recorded_at, remaining_after, request_id"
                     " from credit_usage_attribution order by id")


def db_now(db) -> datetime:
    return fetch(db, "select now()")[0][0]


def test_a_late_call_is_dated_when_it_happened_and_recorded_now(db, charged):
    happened = db_now(db) - timedelta(days=40, hours=3)
    remaining = credits.deduct(db, charged.id, "user-1", 50, "company_enrichment", "Company enrichment",
                               request_id="late-1", occurred_at=happened)
    assert remaining == 950
    credits.deduct(db, charged.id, "user-1", 10, "contact_lookup", "Contact lookup")  # on time
    late, on_time = attribution(db)
    assert late.created_at == happened
    assert late.recorded_at - happened > timedelta(days=40)
    assert on_time.created_at == on_time.recorded_at
    # the 30-day figures put each call where it happened
    metrics = reports.org_metrics(db, charged.admin, charged.id)
    assert (metrics.credits_used_30d, metrics.credits_used_prev_30d) == (10, 50)
    assert reports.pool(db, charged.admin, charged.id).used_credits == 60
    assert ledger.verify(db) == []


def test_a_retry_of_a_late_call_charges_once(db, charged):
    happened = datetime.now(UTC) - timedelta(days=2)
    first = credits.deduct(db, charged.id, "user-1", 5, "llm", "gpt-4o-mini", request_id="r-1", occurred_at=happened)
    again = credits.deduct(db, charged.id, "user-1", 5, "llm", "gpt-4o-mini", request_id="r-1", occurred_at=happened)
    assert first == again == 995
    assert len(attribution(db)) == 1


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (timedelta(days=1), "in the future"),
        (timedelta(minutes=2), "in the future"),
        (-timedelta(days=400, minutes=1), "more than 400 days ago"),
    ],
)
def test_future_or_too_old_usage_is_refused_and_changes_nothing(db, charged, offset, words):
    at = datetime.now(UTC) + offset
    before = snapshot(db)
    with pytest.raises(InvalidInput) as caught:
        credits.deduct(db, charged.id, "user-1", 5, "llm", "gpt-4o-mini", occurred_at=at)
    assert words in str(caught.value) and "Usage time" in str(caught.value)
    with pytest.raises(InvalidInput, match=words):
        credits.add_credits(db, None, charged.id, 100, "0.1", occurred_at=at)
    assert snapshot(db) == before


def test_limits_of_the_window_are_accepted(db, charged):
    now = datetime.now(UTC)
    credits.deduct(db, charged.id, "user-1", 1, "llm", "gpt-4o-mini", occurred_at=now - timedelta(days=399))
    # a caller's clock a little ahead of the database's is tolerated (up to a minute)
    credits.deduct(db, charged.id, "user-1", 1, "llm", "gpt-4o-mini", occurred_at=now + timedelta(seconds=20))
    assert len(attribution(db)) == 2


def test_a_time_without_timezone_is_refused(db, charged):
    before = snapshot(db)
    with pytest.raises(InvalidInput, match="no timezone"):
        credits.deduct(db, charged.id, "user-1", 1, "llm", "gpt-4o-mini",
                       occurred_at=datetime.now() - timedelta(hours=1))  # naive: the point of the test
    assert snapshot(db) == before


def test_a_late_purchase_is_dated_and_stays_idempotent(db, charged):
    bought = db_now(db) - timedelta(days=12)
    total = credits.add_credits(db, None, charged.id, 5000, 5, external_ref="INV-9", occurred_at=bought)
    assert total == 15_000
    # the same payment reference again (a redelivered webhook) adds nothing, whatever date it carries
    assert credits.add_credits(db, None, charged.id, 5000, 5, external_ref="INV-9") == total
    [row] = fetch(db, "select created_at, recorded_at, event_type, audit.details from org_billing_history h"
                      " cross join lateral (select details from audit_log where action = 'credits.purchased'"
                      " and details->>'external_ref' = 'INV-9') audit where external_ref = 'INV-9'")
    assert row.created_at == bought and row.recorded_at > bought
    assert row.event_type == "credit_purchase"
    assert row.details["occurred_at"]
    assert ledger.verify(db) == []


def test_sql_callers_keep_their_calls_and_no_ambiguous_versions_exist(db, charged):
    # integrators call with the documented arguments; the new one is optional
    remaining = fetch(db, "select deduct_credits('test-org-001', 'user-1', 2.5, 'llm', 'gpt-4o', 'sql-1')")[0][0]
    assert remaining == Decimal("997.5")
    assert fetch(db, "select add_credits_to_pool('test-org-001', 10, 0.01)")[0][0] == Decimal(10_010)
    versions = fetch(db, "select proname, count(*) from pg_proc where proname in"
                         " ('deduct_credits', 'add_credits_to_pool') group by proname order by proname")
    assert [tuple(v) for v in versions] == [("add_credits_to_pool", 1), ("deduct_credits", 1)]
