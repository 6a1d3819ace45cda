"""Retries: the same request id charges once and answers as the first call did."""

from __future__ import annotations

import pytest

from billing_core import credits, ledger, organizations, reports
from billing_core.database import fetch
from billing_core.errors import RequestConflict
from tests.ledger_state import snapshot


@pytest.fixture
def ready(db, funded_org):
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    credits.allocate(db, funded_org.admin, funded_org.id, "user-2", 1_000)
    return funded_org


def attribution_count(db) -> int:
    return fetch(db, "select count(*) from credit_usage_attribution")[0][0]


def test_retry_charges_once_and_returns_first_answer(db, ready):
    first = credits.deduct(db, ready.id, "user-1", 50, "company_enrichment", "enrich", request_id="req-1")
    credits.deduct(db, ready.id, "user-1", 30, "contact_lookup", "lookup", request_id="req-2")
    retry = credits.deduct(db, ready.id, "user-1", 50, "company_enrichment", "enrich", request_id="req-1")
    assert (first, retry) == (950, 950)
    assert attribution_count(db) == 2
    assert reports.my_credits(db, "user-1").iloc[0].used_credits == 80


def test_retry_after_allocation_ran_dry_still_answers(db, ready):
    credits.deduct(db, ready.id, "user-1", 1_000, "llm", "gpt-4o", request_id="big")
    assert credits.deduct(db, ready.id, "user-1", 1_000, "llm", "gpt-4o", request_id="big") == 0
    assert attribution_count(db) == 1


@pytest.mark.parametrize(
    ("user", "amount", "service_type", "service_name"),
    [("user-2", 50, "llm", "gpt-4o"), ("user-1", 51, "llm", "gpt-4o"),
     ("user-1", 50, "contact_lookup", "gpt-4o"), ("user-1", 50, "llm", "claude")],
)
def test_same_request_id_for_another_charge_is_refused(db, ready, user, amount, service_type, service_name):
    credits.deduct(db, ready.id, "user-1", 50, "llm", "gpt-4o", request_id="req-1")
    before = snapshot(db)
    with pytest.raises(RequestConflict, match="already used for another charge"):
        credits.deduct(db, ready.id, user, amount, service_type, service_name, request_id="req-1")
    assert snapshot(db) == before


def test_request_ids_are_scoped_per_organization(db, ready):
    organizations.create_organization(db, None, "org-b", "Org B")
    organizations.add_member(db, None, "org-b", "user-1")
    credits.add_credits(db, None, "org-b", 100, "0.1")
    credits.allocate(db, None, "org-b", "user-1", 100)
    credits.deduct(db, ready.id, "user-1", 10, "llm", "m", request_id="shared-id")
    assert credits.deduct(db, "org-b", "user-1", 10, "llm", "m", request_id="shared-id") == 90
    assert attribution_count(db) == 2


def test_purchase_with_payment_reference_is_recorded_once(db, ready):
    assert credits.add_credits(db, None, ready.id, 500, "0.5", external_ref="inv-1") == 10_500
    assert credits.add_credits(db, None, ready.id, 500, "0.5", external_ref="inv-1") == 10_500
    assert reports.pool(db, ready.admin, ready.id).total_credits == 10_500
    with pytest.raises(RequestConflict, match="already recorded"):
        credits.add_credits(db, None, ready.id, 600, "0.5", external_ref="inv-1")
    assert ledger.verify(db) == []


def test_requests_without_id_are_all_charged(db, ready):
    for _ in range(3):
        credits.deduct(db, ready.id, "user-1", 10, "llm", "m")
    assert attribution_count(db) == 3
