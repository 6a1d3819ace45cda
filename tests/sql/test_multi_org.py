"""A user in several organizations holds a separate allocation in each."""

from __future__ import annotations

from billing_core import charging, credits, ledger, organizations, reports
from billing_core.pricing import Usage

LOOKUP = Usage("contact_lookup", "lookup")  # a fixed-price service: 10 credits


def test_user_in_two_orgs_is_charged_in_the_right_one(db, funded_org):
    org = funded_org
    organizations.create_organization(db, None, "org-b", "Org B")
    organizations.add_member(db, None, "org-b", "user-1")
    credits.add_credits(db, None, "org-b", 2_000, 2)
    credits.allocate(db, org.admin, org.id, "user-1", 1_000)
    credits.allocate(db, None, "org-b", "user-1", 200)

    credits.deduct(db, "org-b", "user-1", 50, "company_enrichment", "enrich")
    mine = reports.my_credits(db, "user-1").set_index("org_id")
    assert mine.loc[org.id, "remaining_credits"] == 1_000
    assert mine.loc["org-b", "remaining_credits"] == 150

    # with no organization named, the default (the first joined) pays
    charge = charging.charge_usage(db, "user-1", LOOKUP)
    assert (charge.org_id, charge.credits, charge.remaining) == (org.id, 10, 990)
    organizations.set_default_organization(db, "user-1", "org-b")
    charge = charging.charge_usage(db, "user-1", LOOKUP)
    assert (charge.org_id, charge.credits, charge.remaining) == ("org-b", 10, 140)
    assert list(reports.my_credits(db, "user-1").org_id) == ["org-b", org.id]

    assert reports.pool(db, org.admin, org.id).used_credits == 10
    organizations.add_member(db, None, "org-b", org.admin, "admin")
    assert reports.pool(db, org.admin, "org-b").used_credits == 60
    assert ledger.verify(db) == []
