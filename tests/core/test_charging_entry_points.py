"""The HTTP API's charging entry points: charge_credits (a fixed amount that says when it was a replay) and charge_usage_batch."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from ledger_state import snapshot

from billing_core import credits, database, ledger
from billing_core.charging_batch import Event, charge_batch
from billing_core.database import fetch
from billing_core.errors import (
    InsufficientCredits,
    InvalidAmount,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RequestConflict,
)
from billing_core.pricing import Usage

GPT4O = Usage("llm", "gpt-4o", 1000, 500)  # 11.25 credits on the default price list


@pytest.fixture
def ready(db, funded_org):
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 30)
    credits.allocate(db, funded_org.admin, funded_org.id, "user-2", 100)
    return funded_org


def test_each_event_is_charged_or_refused_on_its_own(db, db_url, ready):
    events = [
        Event("user-1", GPT4O, org_id=ready.id, request_id="b-1"),
        Event("user-1", GPT4O, org_id=ready.id, request_id="b-2"),
        Event("user-1", GPT4O, org_id=ready.id, request_id="b-3"),  # 33.75 > 30: refused
        Event("user-2", GPT4O, request_id="b-4", metadata={"trace": "t-4"}),  # org from the user's default
        Event("nobody", GPT4O, org_id=ready.id, request_id="b-5"),
    ]
    outcomes = charge_batch(database.service_engine(db_url), events)  # a metered service's role may call it
    assert [o.position for o in outcomes] == [0, 1, 2, 3, 4]
    assert [o.credits for o in outcomes[:2]] == [D("11.25"), D("11.25")] and outcomes[1].remaining == D("7.5")
    assert isinstance(outcomes[2].refusal, InsufficientCredits) and outcomes[2].credits is None
    assert outcomes[3].org_id == ready.id and outcomes[3].refusal is None
    assert type(outcomes[4].refusal) is NotFound and outcomes[4].refusal.sqlstate == "CB002"
    stored = fetch(db, "select request_id, metadata->>'trace' as trace from credit_usage_attribution order by request_id")
    assert [(r.request_id, r.trace) for r in stored] == [("b-1", None), ("b-2", None), ("b-4", "t-4")]
    assert ledger.verify(db) == []


def test_a_replayed_batch_charges_nothing_more(db, ready):
    events = [Event("user-2", GPT4O, org_id=ready.id, request_id=f"r-{n}") for n in range(3)]
    first = charge_batch(db, events)
    before = snapshot(db)
    again = charge_batch(db, events)
    assert [o.replayed for o in first] == [False] * 3 and [o.replayed for o in again] == [True] * 3
    assert [o.remaining for o in again] == [o.remaining for o in first]
    assert snapshot(db) == before


def test_listed_organizations_limit_what_a_batch_may_charge(db, ready):
    outcomes = charge_batch(db, [Event("user-2", GPT4O, org_id=ready.id, request_id="s-1")],
                            allowed_orgs=["another-org"])
    assert isinstance(outcomes[0].refusal, PermissionDenied)
    assert fetch(db, "select count(*) from credit_usage_attribution")[0][0] == 0


def test_bad_values_are_refused_per_event_or_for_the_batch(db, ready):
    with pytest.raises(InvalidInput, match="1 to 1,000"):
        charge_batch(db, [])
    with pytest.raises(InvalidInput, match="1 to 1,000"):
        charge_batch(db, [Event("user-2", GPT4O, org_id=ready.id)] * 1001)
    with pytest.raises(InvalidAmount):
        charge_batch(db, [Event("user-2", Usage("llm", "gpt-4o", 1.5), org_id=ready.id)])
    outcomes = charge_batch(db, [Event("user-2", Usage("llm", "gpt-4o", -5), org_id=ready.id, request_id="n-1"),
                                 Event("user-2", GPT4O, org_id=ready.id, request_id="x" * 201),
                                 Event("user-2", GPT4O, org_id=ready.id, request_id="'); drop table users; --")])
    assert type(outcomes[0].refusal) is InvalidAmount and type(outcomes[1].refusal) is InvalidInput
    assert outcomes[2].refusal is None  # a request id is text, never SQL
    assert ledger.verify(db) == []


def test_charge_credits_says_when_it_was_a_replay(db, db_url, ready):
    from billing_core import charging

    service = database.service_engine(db_url)
    first = charging.charge_credits(service, "user-2", "12.5", "company_enrichment", "enrich", request_id="f-1")
    assert (first.org_id, first.credits, first.remaining, first.replayed) == (ready.id, D("12.5"), D("87.5"), False)
    again = charging.charge_credits(service, "user-2", "12.5", "company_enrichment", "enrich", request_id="f-1")
    assert again.replayed is True and again.remaining == D("87.5")
    with pytest.raises(RequestConflict):
        charging.charge_credits(service, "user-2", "13", "company_enrichment", "enrich", request_id="f-1")
    assert charging.charge_credits(service, "user-2", 1, "company_enrichment", "enrich").replayed is False
    assert ledger.verify(db) == []
