"""Credit lots: earliest-expiring credits are consumed first, never-expiring last; expired
remainders leave the pool (from unallocated credits first, then members' unused)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from ledger_state import billing_verify, refused
from time_travel import earlier, into_the_past

from billing_core import credits, periods
from billing_core.database import fetch
from billing_core.errors import InvalidInput

DAY = timedelta(days=1)


def now(db) -> datetime:
    return fetch(db, "select now()")[0][0]


def lots(db, org_id: str) -> list[tuple]:
    """(credits, consumed, expired) per lot, in the order the lots were granted."""
    rows = fetch(db, "select credits, consumed_credits, expired_credits from credit_lots where org_id = :o order by id",
                 {"o": org_id})
    return [tuple(r) for r in rows]


def test_usage_consumes_the_earliest_expiring_lot_first_and_never_expiring_last(db, org, db_url):
    t0 = now(db)
    credits.add_credits(db, None, org.id, 100, "0.1", description="never expires")
    credits.add_credits(db, None, org.id, 100, "0.1", expires_at=t0 + 10 * DAY)
    credits.add_credits(db, None, org.id, 100, "0.1", expires_at=t0 + 5 * DAY)
    credits.add_credits(db, None, org.id, 100, "0.1", expires_at=t0 + 20 * DAY)
    credits.allocate(db, org.admin, org.id, "user-1", 400)
    credits.deduct(db, org.id, "user-1", 150, "llm", "gpt")

    periods.run(db)  # settles: the +5 day lot, then the +10 day lot
    assert lots(db, org.id) == [(100, 0, 0), (100, 50, 0), (100, 100, 0), (100, 0, 0)]

    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    t0 = earlier(t0)
    run = periods.run(db, t0 + 11 * DAY)  # both expire: nothing left of the first, 50 of the second
    assert run.lots_expired == 2
    assert lots(db, org.id) == [(100, 0, 0), (100, 50, 50), (100, 100, 0), (100, 0, 0)]
    expiries = fetch(db, "select credits, created_at, (metadata ->> 'taken_from_members')::numeric from org_billing_history"
                         " where event_type = 'credit_expiry' order by id")
    assert [tuple(e) for e in expiries] == [(0, t0 + 5 * DAY, 0), (-50, t0 + 10 * DAY, 50)]

    credits.deduct(db, org.id, "user-1", 80, "llm", "gpt")
    periods.run(db, t0 + 11 * DAY)  # the +20 day lot before the one that never expires
    assert lots(db, org.id) == [(100, 0, 0), (100, 50, 50), (100, 100, 0), (100, 80, 0)]
    credits.deduct(db, org.id, "user-1", 30, "llm", "gpt")
    periods.run(db, t0 + 11 * DAY)
    assert lots(db, org.id) == [(100, 10, 0), (100, 50, 50), (100, 100, 0), (100, 100, 0)]
    # 400 - 50 expired; the 50 came back from user-1's unused allocation (no unallocated credits)
    pool = fetch(db, "select total_credits, allocated_credits from credit_pools where org_id = :o", {"o": org.id})[0]
    assert tuple(pool) == (350, 350)
    assert billing_verify(db_url).returncode == 0


def test_expiry_takes_back_unused_credits_in_proportion_remainder_to_the_largest(db, org, db_url):
    t0 = now(db)
    credits.add_credits(db, None, org.id, 1000, 1, expires_at=t0 + 5 * DAY)
    credits.add_credits(db, None, org.id, 500, "0.5")
    credits.allocate(db, org.admin, org.id, "user-1", 600)
    credits.allocate(db, org.admin, org.id, "user-2", 300)
    credits.deduct(db, org.id, "user-1", 200, "llm", "gpt")
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    t0 = earlier(t0)

    periods.run(db, t0 + 6 * DAY)

    # the expiring lot paid the 200; its 800 left: 600 unallocated, 200 from members' 700 unused:
    # user-1 400/700 (114.285714 + the 0.000001 rounding left), user-2 300/700 (85.714285)
    taken = fetch(db, "select user_id, credits from credit_allocation_events where kind = 'expiry' order by user_id")
    assert [tuple(t) for t in taken] == [("user-1", Decimal("-114.285715")), ("user-2", Decimal("-85.714285"))]
    alloc = fetch(db, "select user_id, allocated_credits, used_credits from user_credit_allocations"
                      " where is_active order by user_id")
    assert [tuple(a) for a in alloc] == [("user-1", Decimal("485.714285"), 200), ("user-2", Decimal("214.285715"), 0)]
    assert lots(db, org.id) == [(1000, 200, 800), (500, 0, 0)]
    row = fetch(db, "select credits, total_credits_after, metadata ->> 'taken_from_members' from org_billing_history"
                    " where event_type = 'credit_expiry'")[0]
    assert tuple(row) == (-800, 700, "200.000000")
    assert billing_verify(db_url).returncode == 0


def test_period_grants_expire_at_the_period_end_as_breakage(db, funded_org, db_url):
    org = funded_org
    periods.set_monthly_refresh(db, None, org.id, 300)
    into_the_past(db)  # the job refuses a future time: the set-up happened SHIFT ago
    first = periods.current_period(db, org.admin, org.id)
    periods.run(db, first.period_end)
    credits.allocate(db, org.admin, org.id, "user-1", 10_000)  # everything: the refresh lot funds the rest
    credits.deduct(db, org.id, "user-1", 120, "llm", "gpt")  # settled against the refresh lot (it expires first)

    periods.run(db, first.next_period_end)

    expiry = fetch(db, "select credits, created_at, metadata ->> 'source' from org_billing_history"
                       " where event_type = 'credit_expiry'")
    assert [tuple(e) for e in expiry] == [(-180, first.next_period_end, "monthly_refresh")]
    assert lots(db, org.id) == [(10_000, 0, 0), (300, 120, 180), (300, 0, 0)]
    assert billing_verify(db_url).returncode == 0


def test_bad_expiries_are_refused(db, org):
    refused(db, InvalidInput, "must be a moment in the future",
            lambda: credits.add_credits(db, None, org.id, 10, "0.01", expires_at=now(db) - DAY))
    refused(db, InvalidInput, "no timezone",
            lambda: credits.add_credits(db, None, org.id, 10, "0.01", expires_at=datetime(2099, 1, 1)))


def test_a_payment_reference_replayed_with_another_expiry_is_refused(db, org):
    at = now(db) + 30 * DAY
    credits.add_credits(db, None, org.id, 10, "0.01", external_ref="pay-1", expires_at=at)
    assert credits.add_credits(db, None, org.id, 10, "0.01", external_ref="pay-1", expires_at=at) == 10
    from billing_core.errors import RequestConflict
    refused(db, RequestConflict, "already recorded",
            lambda: credits.add_credits(db, None, org.id, 10, "0.01", external_ref="pay-1"))
