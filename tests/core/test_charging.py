"""charge_usage: priced and deducted in one transaction, idempotent by request id; which organization
pays; individual balances (personal organizations)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_core import charging, credits, ledger, organizations, reports
from billing_core.database import fetch
from billing_core.errors import (
    InsufficientCredits,
    InvalidAmount,
    InvalidInput,
    NotAMember,
    NotFound,
    PermissionDenied,
    RequestConflict,
    RuleViolation,
)
from billing_core.pricing import Usage
from tests.core.test_pricing import refused_all
from tests.ledger_state import billing_verify

D = Decimal
GPT4O = Usage("llm", "gpt-4o", 1000, 500)  # 11.25 credits at markup 1.5


@pytest.fixture
def ready(db, funded_org):
    """user-1 holds 1,000 credits of a 10,000 pool."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    return funded_org


def attribution(db, org_id):
    return fetch(db, "select user_id, credits_used, service_type, service_name, request_id, metadata, remaining_after"
                     " from credit_usage_attribution where org_id = :o order by id", {"o": org_id})


def test_charge_prices_and_deducts_with_the_explanation_in_attribution(db, ready, db_url):
    charge = charging.charge_usage(db, "user-1", GPT4O, org_id=ready.id, request_id="r-1", metadata={"trace": "t-9"})
    assert (charge.org_id, charge.credits, charge.remaining, charge.replayed) == (ready.id, D("11.25"), D("988.75"), False)
    assert charge.explanation["provider_cost_usd"] == D("0.0075")
    rows = attribution(db, ready.id)
    assert len(rows) == 1
    user, used, service_type, service_name, request_id, metadata, remaining = rows[0]
    assert (user, used, service_type, service_name, request_id, remaining) == (
        "user-1", D("11.25"), "llm", "gpt-4o", "r-1", D("988.75"))
    assert metadata["trace"] == "t-9"
    assert metadata["pricing"]["markup"] == 1.5 and metadata["pricing"]["credits"] == 11.25
    # a fixed-price service
    enrich = charging.charge_usage(db, "user-1", Usage("company_enrichment", "clearbit"), org_id=ready.id)
    assert (enrich.credits, enrich.remaining) == (D("50"), D("938.75"))
    assert reports.pool(db, ready.admin, ready.id).used_credits == D("61.25")
    assert billing_verify(db_url).returncode == 0


def test_retries_charge_once_and_answer_as_the_first_call(db, ready):
    first = charging.charge_usage(db, "user-1", GPT4O, org_id=ready.id, request_id="r-1")
    charging.charge_usage(db, "user-1", Usage("contact_lookup", "apollo"), org_id=ready.id, request_id="r-2")
    again = charging.charge_usage(db, "user-1", GPT4O, org_id=ready.id, request_id="r-1")
    assert (again.credits, again.remaining, again.replayed) == (first.credits, first.remaining, True)
    assert again.explanation == first.explanation
    assert len(attribution(db, ready.id)) == 2
    # the same request id for another event is refused
    for usage in (Usage("llm", "gpt-4o", 1000, 501), Usage("llm", "gpt-4o-mini", 1000, 500),
                  Usage("llm", "gpt-4o", 1000, 500, byok=True)):
        refused_all(db, RequestConflict, "already used",
                    lambda usage=usage: charging.charge_usage(db, "user-1", usage, org_id=ready.id, request_id="r-1"))
    refused_all(db, RequestConflict, "already used",
                lambda: charging.charge_usage(db, "user-2", GPT4O, org_id=ready.id, request_id="r-1"))
    # a plain deduction with a charged request id is answered by deduct_credits' own replay rule
    refused_all(db, RequestConflict, "already used",
                lambda: credits.deduct(db, ready.id, "user-1", 5, "llm", "gpt-4o", request_id="r-1"))


def test_charge_refusals_change_nothing(db, ready):
    org = ready.id
    refused_all(db, NotFound, "no price for model",
                lambda: charging.charge_usage(db, "user-1", Usage("llm", "no-such-model", 5), org_id=org))
    refused_all(db, InvalidAmount, "between 0",
                lambda: charging.charge_usage(db, "user-1", Usage("llm", "gpt-4o", -5), org_id=org))
    refused_all(db, InvalidAmount, "between 0",
                lambda: charging.charge_usage(db, "user-1", Usage("llm", "gpt-4o", 10 ** 12), org_id=org))
    # within token limits but more credits than the member holds
    refused_all(db, InsufficientCredits, "insufficient credits",
                lambda: charging.charge_usage(db, "user-1", Usage("llm", "claude-opus-4", 0, 100_000), org_id=org))
    refused_all(db, InsufficientCredits, "no credits allocated",
                lambda: charging.charge_usage(db, "user-2", GPT4O, org_id=org))
    refused_all(db, NotFound, "does not exist", lambda: charging.charge_usage(db, "user-1", GPT4O, org_id="nope"))
    refused_all(db, NotFound, "does not exist", lambda: charging.charge_usage(db, "ghost", GPT4O))
    organizations.create_user(db, None, "loner", "loner@example.com")
    refused_all(db, NotAMember, "no individual balance", lambda: charging.charge_usage(db, "loner", GPT4O))
    refused_all(db, NotAMember, "not a member", lambda: charging.charge_usage(db, "loner", GPT4O, org_id=org))
    refused_all(db, RuleViolation, "own key",
                lambda: charging.charge_usage(db, "user-1", Usage("llm", "gpt-4o", 1, byok=True), org_id=org))
    refused_all(db, InvalidInput, "json object",
                lambda: fetch(db, "select * from charge_usage(:o, 'user-1', 'llm', 'gpt-4o', 1, 0, 0, 1, false, null,"
                                  " '[1]'::jsonb, null)", {"o": org}))
    refused_all(db, InvalidInput, "too large",
                lambda: charging.charge_usage(db, "user-1", GPT4O, org_id=org, metadata={"x": "y" * 9000}))
    refused_all(db, InvalidInput, "request id",
                lambda: charging.charge_usage(db, "user-1", GPT4O, org_id=org, request_id="a\nb"))


def test_a_zero_credit_event_is_answered_without_a_row(db, ready, sysadmin):
    from billing_core import pricing, subscriptions

    subscriptions.create_subscription(db, None, ready.id, "hybrid")
    pricing.set_platform_rules(db, sysadmin, byok_fee_credits=0)
    charge = charging.charge_usage(db, "user-1", Usage("llm", "gpt-4o", 5000, 5000, byok=True), org_id=ready.id)
    assert (charge.credits, charge.remaining) == (D("0"), D("1000"))
    assert attribution(db, ready.id) == []
    # even a free event is refused to someone who could not be charged
    organizations.create_user(db, None, "outsider", "outsider@example.com")
    refused_all(db, NotAMember, "not a member",
                lambda: charging.charge_usage(db, "outsider", Usage("llm", "gpt-4o", 1, byok=True), org_id=ready.id))


@pytest.fixture
def sysadmin(db) -> str:
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    return "root"


# --------------------------------------------------------------------------- which organization pays


def test_org_choice_default_then_first_then_personal_balance(db, ready, sysadmin, db_url):
    organizations.create_user(db, None, "solo", "solo@example.com", "Solo")
    # no organization: the individual balance, created by the first top-up
    org_id, remaining = charging.top_up_personal_balance(db, sysadmin, "solo", 500, D("0.5"), external_ref="p-1")
    assert org_id.startswith("personal-") and remaining == D("500")
    assert charging.top_up_personal_balance(db, sysadmin, "solo", 500, D("0.5"), external_ref="p-1") == (org_id, D("500"))
    assert charging.charging_org(db, "solo") == org_id
    charge = charging.charge_usage(db, "solo", GPT4O, request_id="s-1")
    assert (charge.org_id, charge.credits, charge.remaining) == (org_id, D("11.25"), D("488.75"))

    # joining an organization makes it the default (the personal balance never is), so it pays from then on
    organizations.add_member(db, None, ready.id, "solo")
    credits.allocate(db, ready.admin, ready.id, "solo", 100)
    is_default = fetch(db, "select org_id, is_default from organization_members where user_id = 'solo' order by is_default")
    assert [tuple(r) for r in is_default] == [(org_id, False), (ready.id, True)]
    assert charging.charge_usage(db, "solo", GPT4O).org_id == ready.id

    # several organizations: the default one, else the first joined; a named one always
    organizations.create_organization(db, None, "second-org", "Second Org")
    organizations.add_member(db, None, "second-org", "solo", "admin")
    credits.add_credits(db, None, "second-org", 100, D("0.1"))
    credits.allocate(db, "solo", "second-org", "solo", 100)
    assert charging.charging_org(db, "solo") == ready.id
    organizations.set_default_organization(db, "solo", "second-org")
    assert charging.charge_usage(db, "solo", GPT4O).org_id == "second-org"
    assert charging.charge_usage(db, "solo", GPT4O, org_id=org_id).org_id == org_id
    fetch(db, "update organization_members set is_default = false where user_id = 'solo'")
    assert charging.charging_org(db, "solo") == ready.id  # first joined (personal balances aside)

    # more top-ups go straight to the owner's allocation; a system admin may top up too
    assert charging.top_up_personal_balance(db, sysadmin, "solo", 1000, 1)[1] == D("1477.5")
    pool = fetch(db, "select total_credits, allocated_credits from credit_pools where org_id = :o", {"o": org_id})
    assert tuple(pool[0]) == (D("1500"), D("1500"))
    history = fetch(db, "select event_type, credits, amount from org_billing_history where org_id = :o order by id",
                    {"o": org_id})
    assert [tuple(r) for r in history] == [("credit_purchase", D("500"), D("0.5")), ("credit_purchase", D("1000"), D("1"))]

    # personal balances stay out of the organizations' summary; members see theirs among their organizations
    assert org_id not in set(reports.org_summaries(db, sysadmin).org_id)
    mine = reports.my_credits(db, "solo")
    assert dict(zip(mine.org_id, mine.remaining_credits))[org_id] == D("1477.5")
    assert billing_verify(db_url).returncode == 0


def test_personal_balance_refusals(db, ready):
    organizations.create_user(db, None, "solo", "solo@example.com")
    org_id, _ = charging.top_up_personal_balance(db, None, "solo", 100, D("0.1"))
    refused_all(db, PermissionDenied, "create an order",
                lambda: charging.top_up_personal_balance(db, "user-1", "solo", 100, D("0.1")))
    refused_all(db, PermissionDenied, "create an order",
                lambda: charging.top_up_personal_balance(db, "solo", "solo", 100, D("0.1")))
    refused_all(db, InvalidAmount, "greater than 0", lambda: charging.top_up_personal_balance(db, "solo", "solo", -1, 0))
    refused_all(db, NotFound, "does not exist", lambda: charging.top_up_personal_balance(db, None, "ghost", 1, 0))
    refused_all(db, RuleViolation, "personal balance", lambda: organizations.add_member(db, None, org_id, "user-1"))
    charging.top_up_personal_balance(db, None, "solo", 100, D("0.1"), external_ref="pay-9")
    refused_all(db, RequestConflict, "already recorded",
                lambda: charging.top_up_personal_balance(db, None, "solo", 200, D("0.1"), external_ref="pay-9"))
    assert ledger.verify(db) == []


def test_buying_a_package_for_a_personal_balance_allocates_it(db, ready):
    from billing_core import pricing

    organizations.create_user(db, None, "solo", "solo@example.com")
    org_id, _ = charging.top_up_personal_balance(db, None, "solo", 1, D("0.001"))
    assert pricing.buy_package(db, None, org_id, "growth_50k", external_ref="pk-1") == D("52501")
    assert pricing.buy_package(db, None, org_id, "growth_50k", external_ref="pk-1") == D("52501")
    row = fetch(db, "select allocated_credits from user_credit_allocations where org_id = :o and is_active", {"o": org_id})
    assert row[0][0] == D("52501")
    assert ledger.verify(db) == []


def test_a_call_reported_late_is_judged_by_the_plan_it_was_made_under(db, ready):
    from datetime import UTC, datetime, timedelta

    from billing_core import subscriptions

    started = datetime.now(UTC) - timedelta(days=20)
    changed = datetime.now(UTC) - timedelta(days=5)
    subscriptions.create_subscription(db, None, ready.id, "byok", started_at=started)
    subscriptions.set_subscription_status(db, None, ready.id, "canceled", occurred_at=changed)
    subscriptions.create_subscription(db, None, ready.id, "platform", started_at=changed)
    own_key = Usage("llm", "gpt-4o", 1000, 500, byok=True)

    # made on the BYOK plan, reported now: the platform fee only
    before = charging.charge_usage(db, "user-1", own_key, org_id=ready.id, request_id="late-byok",
                                   occurred_at=changed - timedelta(days=1))
    assert before.credits == 1
    # the same own-key call made under Platform (managed keys only) is refused
    with pytest.raises(RuleViolation, match="runs on managed provider keys"):
        charging.charge_usage(db, "user-1", own_key, org_id=ready.id, request_id="now-byok")
    assert charging.charge_usage(db, "user-1", GPT4O, org_id=ready.id, request_id="now-managed").credits == D("11.25")
    assert ledger.verify(db) == []


def test_the_callers_metadata_alone_counts_against_its_8_kb(db, ready):
    """Finding 12: 7.6 kB of caller metadata plus the pricing explanation is stored; the caller's 8 kB is its own."""
    big = {"trace": "x" * 7600}
    charge = charging.charge_usage(db, "user-1", GPT4O, org_id=ready.id, request_id="big-1", metadata=big)
    assert (charge.credits, charge.replayed) == (D("11.25"), False)
    [row] = [r for r in attribution(db, ready.id) if r.request_id == "big-1"]
    assert row.metadata["trace"] == big["trace"] and row.metadata["pricing"]["credits"] == 11.25
    # a held call settled by its usage: the caller's metadata, the explanation and the hold's figures
    charging.reserve(db, "user-1", 100, "big-2", "llm", "gpt-4o", org_id=ready.id)
    settled = charging.settle_usage(db, ready.id, "big-2", input_tokens=1000, output_tokens=500, metadata=big)
    assert settled.credits == D("11.25")
    [row] = [r for r in attribution(db, ready.id) if r.request_id == "big-2"]
    assert row.metadata["trace"] == big["trace"] and "pricing" in row.metadata and "hold" in row.metadata
    # over 8 kB of the caller's own is still refused, by every door, and changes nothing
    too_big = {"trace": "x" * 8200}
    refused_all(db, InvalidInput, "at most 8 kB",
                lambda: charging.charge_usage(db, "user-1", GPT4O, org_id=ready.id, request_id="big-3",
                                              metadata=too_big))
    refused_all(db, InvalidInput, "at most 8 kB",
                lambda: credits.deduct(db, ready.id, "user-1", 1, "llm", "gpt-4o", metadata=too_big))
    charging.reserve(db, "user-1", 100, "big-4", "llm", "gpt-4o", org_id=ready.id)
    refused_all(db, InvalidInput, "at most 8 kB", lambda: charging.settle(db, ready.id, "big-4", 10, metadata=too_big))
    assert len(attribution(db, ready.id)) == 2
    assert ledger.verify(db) == []
