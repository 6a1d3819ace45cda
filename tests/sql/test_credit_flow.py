"""The documented credit flow, end to end through billing_core."""

from decimal import Decimal

from billing_core import credits, ledger, reports
from billing_core.database import fetch


def test_documented_scenario(db, org):
    """Add 10,000; allocate 1,000 leaves 9,000; deduct 50 for company_enrichment; a second member is independent."""
    assert credits.add_credits(db, None, org.id, 10_000, 10) == Decimal(10_000)
    pool = reports.pool(db, org.admin, org.id)
    assert (pool.total_credits, pool.available_credits) == (10_000, 10_000)

    assert credits.allocate(db, org.admin, org.id, "user-1", 1_000) == 1_000
    assert reports.pool(db, org.admin, org.id).available_credits == 9_000

    assert credits.deduct(db, org.id, "user-1", 50, "company_enrichment", "Company enrichment") == 950
    rows = fetch(
        db,
        "select user_id, org_id, service_type, service_name, credits_used from credit_usage_attribution",
    )
    assert [tuple(r) for r in rows] == [("user-1", org.id, "company_enrichment", "Company enrichment", 50)]

    assert credits.allocate(db, org.admin, org.id, "user-2", 500) == 500
    assert credits.deduct(db, org.id, "user-2", 10, "contact_lookup", "Contact lookup") == 490
    mine = reports.my_credits(db, "user-1").iloc[0]
    assert (mine.allocated_credits, mine.used_credits, mine.remaining_credits) == (1_000, 50, 950)

    pool = reports.pool(db, org.admin, org.id)
    assert (pool.total_credits, pool.allocated_credits, pool.used_credits, pool.available_credits) == (
        10_000, 1_500, 60, 8_500,
    )
    assert ledger.verify(db) == []


def test_pool_history_and_audit_trace_every_change(db, funded_org):
    org = funded_org
    credits.allocate(db, org.admin, org.id, "user-1", 300)
    credits.reclaim(db, org.admin, org.id, "user-1", 100)
    history = reports.billing_history(db, org.admin, org.id)
    assert list(history.event_type) == ["credit_purchase"]
    assert history.iloc[0].amount == 10
    actions = [r[0] for r in fetch(db, "select action from audit_log where org_id = :o order by id", {"o": org.id})]
    assert actions[-5:] == ["order.created", "credits.purchased", "order.paid", "allocation.created", "credits.reclaimed"]
    assert ledger.verify(db) == []
