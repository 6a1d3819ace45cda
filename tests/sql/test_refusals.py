"""Every refusal raises its domain error, says what was wrong, and changes nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing_core import charging, credits, database, ledger, organizations, periods, plans, pricing, reports
from billing_core.database import fetch
from billing_core.errors import (
    AllocationInactive,
    AlreadyExists,
    InsufficientCredits,
    InsufficientPoolCredits,
    InvalidAmount,
    InvalidInput,
    NotAMember,
    NotFound,
    OrganizationInactive,
    PermissionDenied,
    RuleViolation,
)
from billing_core.pricing import Usage
from tests.ledger_state import refused

BAD_AMOUNTS = [
    (0, "greater than 0"),
    (-5, "greater than 0"),
    (Decimal("-0.000001"), "greater than 0"),
    ("NaN", "finite"),
    (Decimal("NaN"), "not a number"),
    ("Infinity", "finite"),
    (Decimal("1e13"), "too large"),
    ("1e400", "too large"),
    (Decimal("1.0000001"), "6 decimal places"),
    ("abc", "not a number"),
    ("12 credits", "not a number"),
    ("", "not a number"),
    (1.5, "exact"),
]


@pytest.fixture
def ready(db, funded_org):
    """user-1 holds 1,000 credits of a 10,000 pool; user-2 has no allocation; an outsider exists."""
    credits.allocate(db, funded_org.admin, funded_org.id, "user-1", 1_000)
    organizations.create_organization(db, None, "other-org", "Other Org")
    organizations.create_user(db, None, "outsider", "outsider@example.com")
    organizations.add_member(db, None, "other-org", "outsider", "admin")
    return funded_org


@pytest.mark.parametrize(("amount", "words"), BAD_AMOUNTS)
def test_bad_amounts_refused_everywhere(db, ready, amount, words):
    org = ready.id
    refused(db, InvalidAmount, words, lambda: credits.add_credits(db, ready.admin, org, amount, 1))
    refused(db, InvalidAmount, words, lambda: credits.allocate(db, ready.admin, org, "user-1", amount))
    refused(db, InvalidAmount, words, lambda: credits.reclaim(db, ready.admin, org, "user-1", amount))
    refused(db, InvalidAmount, words, lambda: credits.deduct(db, org, "user-1", amount, "llm", "gpt-4o"))
    refused(db, InvalidAmount, words, lambda: credits.has_sufficient_credits(db, org, "user-1", amount))
    refused(db, InvalidAmount, words,
            lambda: credits.allocate_to_members(db, ready.admin, org, ["user-1", "user-2"], amount))


@pytest.mark.parametrize(("amount", "words"), [(-1, "negative"), ("NaN", "finite"), ("1e11", "too large"),
                                               (Decimal("0.00001"), "4 decimal places"), ("ten", "not a number")])
def test_bad_purchase_amounts_refused(db, ready, amount, words):
    refused(db, InvalidAmount, words, lambda: credits.add_credits(db, ready.admin, ready.id, 100, amount))


def test_pool_cannot_overflow(db, ready):
    for _ in range(9):
        credits.add_credits(db, None, ready.id, 10**12, 10**9)
    refused(db, InvalidAmount, "would exceed", lambda: credits.add_credits(db, None, ready.id, 10**12, 10**9))


def test_unknown_ids_refused(db, ready):
    org = ready.id
    refused(db, NotFound, "'no-such-org' does not exist", lambda: credits.add_credits(db, None, "no-such-org", 5, 0))
    refused(db, NotFound, "does not exist", lambda: credits.allocate(db, ready.admin, "no-such-org", "user-1", 5))
    refused(db, NotFound, "'ghost' does not exist", lambda: credits.allocate(db, ready.admin, org, "ghost", 5))
    refused(db, NotFound, "does not exist", lambda: credits.deduct(db, "no-such-org", "user-1", 5, "llm", "m"))
    refused(db, NotFound, "'ghost' does not exist", lambda: credits.deduct(db, org, "ghost", 5, "llm", "m"))
    refused(db, NotFound, "does not exist", lambda: credits.has_sufficient_credits(db, "no-such-org", "user-1", 5))
    refused(db, NotFound, "acting user 'ghost'", lambda: credits.allocate(db, "ghost", org, "user-1", 5))


def test_user_of_another_organization_refused(db, ready):
    org = ready.id
    refused(db, NotAMember, "not a member", lambda: credits.allocate(db, ready.admin, org, "outsider", 5))
    refused(db, NotAMember, "not a member", lambda: credits.deduct(db, org, "outsider", 5, "llm", "m"))
    refused(db, NotAMember, "not a member", lambda: credits.has_sufficient_credits(db, org, "outsider", 5))
    refused(db, NotAMember, "not a member", lambda: credits.reclaim(db, ready.admin, org, "outsider"))
    refused(db, NotAMember, "not a member",
            lambda: credits.allocate_to_members(db, ready.admin, org, ["user-1", "outsider"], 5))
    # an admin of another organization has no say here
    refused(db, PermissionDenied, "not an admin", lambda: credits.allocate(db, "outsider", org, "user-1", 5))
    refused(db, PermissionDenied, "cannot add credits", lambda: credits.add_credits(db, "outsider", org, 5, 0))


def test_members_cannot_act_as_admins(db, ready):
    refused(db, PermissionDenied, "not an admin", lambda: credits.allocate(db, "user-1", ready.id, "user-1", 5))
    refused(db, PermissionDenied, "not an admin", lambda: credits.reclaim(db, "user-2", ready.id, "user-1"))
    refused(db, PermissionDenied, "not an admin", lambda: reports.pool(db, "user-1", ready.id))
    refused(db, PermissionDenied, "not an admin", lambda: organizations.members(db, "user-1", ready.id))
    refused(db, PermissionDenied, "not a system admin", lambda: reports.org_summaries(db, ready.admin))
    refused(db, PermissionDenied, "not a system admin",
            lambda: organizations.create_organization(db, ready.admin, "new-org", "New"))
    refused(db, PermissionDenied, "log in", lambda: reports.pool(db, "", ready.id))


def test_short_pool_and_short_allocation_refused(db, ready):
    org = ready.id
    message = refused(db, InsufficientPoolCredits, "9000 available, 9001 requested",
                      lambda: credits.allocate(db, ready.admin, org, "user-2", 9_001))
    assert "add credits" in message.lower()
    refused(db, InsufficientPoolCredits, "available",
            lambda: credits.allocate_to_members(db, ready.admin, org, ["user-2", "user-3"], 4_501))
    refused(db, InsufficientCredits, "1000 remaining", lambda: credits.deduct(db, org, "user-1", 1_001, "llm", "m"))
    refused(db, InsufficientCredits, "no credits allocated", lambda: credits.deduct(db, org, "user-2", 1, "llm", "m"))
    refused(db, InsufficientCredits, "only 1000 unused", lambda: credits.reclaim(db, ready.admin, org, "user-1", 1_001))
    assert credits.has_sufficient_credits(db, org, "user-1", 1_000) is True
    assert credits.has_sufficient_credits(db, org, "user-1", Decimal("1000.000001")) is False
    assert credits.has_sufficient_credits(db, org, "user-2", 1) is False


def test_closed_allocation_refused(db, ready):
    org = ready.id
    credits.deduct(db, org, "user-1", 100, "llm", "m")
    assert organizations.remove_member(db, ready.admin, org, "user-1") == 900
    organizations.add_member(db, None, org, "user-1")
    refused(db, AllocationInactive, "closed", lambda: credits.deduct(db, org, "user-1", 1, "llm", "m"))
    refused(db, AllocationInactive, "no active allocation", lambda: credits.reclaim(db, ready.admin, org, "user-1"))
    # what was used stays in the pool's used figure after the allocation closed
    pool = reports.pool(db, ready.admin, org)
    assert (pool.total_credits, pool.allocated_credits, pool.used_credits, pool.available_credits) == (
        9_900, 0, 100, 9_900,
    )


def test_suspended_organization_refused(db, ready):
    from billing_core.database import fetch

    fetch(db, "update organizations set status = 'suspended' where id = :o", {"o": ready.id})
    refused(db, OrganizationInactive, "suspended", lambda: credits.deduct(db, ready.id, "user-1", 1, "llm", "m"))
    refused(db, OrganizationInactive, "suspended", lambda: credits.add_credits(db, None, ready.id, 1, 0))
    refused(db, OrganizationInactive, "suspended", lambda: credits.allocate(db, None, ready.id, "user-1", 1))
    assert credits.has_sufficient_credits(db, ready.id, "user-1", 1) is False


@pytest.mark.parametrize(
    ("service_type", "service_name", "request_id", "metadata", "words"),
    [
        ("", "m", None, None, "service type"),
        ("LLM Calls", "m", None, None, "lowercase"),
        ("llm'; drop table users; --", "m", None, None, "service type"),
        ("llm", "", None, None, "service name is missing"),
        ("llm", "x" * 201, None, None, "too long"),
        ("llm", "line\nbreak", None, None, "control characters"),
        ("llm", "m", "", None, "request id is missing"),
        ("llm", "m", "r" * 201, None, "too long"),
        ("llm", "m", None, {"blob": "x" * 9000}, "too large"),
    ],
)
def test_bad_usage_labels_refused(db, ready, service_type, service_name, request_id, metadata, words):
    refused(db, InvalidInput, words, lambda: credits.deduct(
        db, ready.id, "user-1", 1, service_type, service_name, request_id=request_id, metadata=metadata))


def test_text_with_quotes_html_and_sql_is_just_text(db, ready):
    name = """O'Brien & "Sons" <script>alert('x')</script>; drop table users; --"""
    organizations.create_organization(db, None, "quote'org", name)
    organizations.create_user(db, None, "bobby'tables", "bobby@example.com", name)
    organizations.add_member(db, None, "quote'org", "bobby'tables", "admin")
    credits.add_credits(db, None, "quote'org", 100, "0.1", description=name)
    credits.allocate(db, "bobby'tables", "quote'org", "bobby'tables", 10)
    credits.deduct(db, "quote'org", "bobby'tables", 1, "llm", name[:200], request_id=name)
    mine = reports.my_credits(db, "bobby'tables").iloc[0]
    assert (mine.org_name, mine.remaining_credits) == (name, 9)
    assert reports.billing_history(db, "bobby'tables", "quote'org").iloc[0].description == name
    assert ledger.verify(db) == []


def test_bad_ids_and_names_refused(db, ready):
    refused(db, InvalidInput, "without spaces", lambda: organizations.create_organization(db, None, "has space", "X"))
    refused(db, InvalidInput, "without spaces", lambda: organizations.create_organization(db, None, "x" * 129, "X"))
    refused(db, InvalidInput, "name is missing", lambda: organizations.create_organization(db, None, "ok-id", "  "))
    refused(db, InvalidInput, "not an email", lambda: organizations.create_user(db, None, "u9", "not-an-email"))
    refused(db, AlreadyExists, "already taken", lambda: organizations.create_organization(db, None, ready.id, "Dup"))
    refused(db, AlreadyExists, "already used",
            lambda: organizations.create_user(db, None, "u9", "USER-1@example.com"))
    refused(db, AlreadyExists, "already a member", lambda: organizations.add_member(db, None, ready.id, "user-1"))
    refused(db, InvalidInput, "role must be", lambda: organizations.add_member(db, None, ready.id, "outsider", "owner"))
    refused(db, InvalidInput, "listed more than once",
            lambda: credits.allocate_to_members(db, ready.admin, ready.id, ["user-1", "user-1"], 1))
    refused(db, InvalidInput, "at least one member",
            lambda: credits.allocate_to_members(db, ready.admin, ready.id, [], 1))


def test_the_only_admin_stays(db, ready):
    refused(db, RuleViolation, "only admin", lambda: organizations.remove_member(db, ready.admin, ready.id, ready.admin))
    refused(db, RuleViolation, "only admin",
            lambda: organizations.set_member_role(db, ready.admin, ready.id, ready.admin, "member"))
    organizations.set_member_role(db, ready.admin, ready.id, "user-2", "admin")
    organizations.set_member_role(db, "user-2", ready.id, ready.admin, "member")
    assert ledger.verify(db) == []


@pytest.mark.parametrize("amount", [Decimal("Infinity"), Decimal("-Infinity")], ids=["infinity", "minus-infinity"])
def test_an_infinite_amount_is_refused_as_infinite_by_every_checker(db, ready, amount):
    """Finding 13: an infinite amount used to be refused with "got #.######"; every door says it is infinite."""
    org = ready.id
    charging.reserve(db, "user-1", 10, "open-hold", "llm", "gpt-4o", org_id=org)
    doors = {
        "allocate": lambda: credits.allocate(db, ready.admin, org, "user-1", amount),
        "reclaim": lambda: credits.reclaim(db, ready.admin, org, "user-1", amount),
        "deduct": lambda: credits.deduct(db, org, "user-1", amount, "llm", "gpt-4o"),
        "has_sufficient_credits": lambda: credits.has_sufficient_credits(db, org, "user-1", amount),
        "allocate_to_members": lambda: credits.allocate_to_members(db, ready.admin, org, ["user-1", "user-2"], amount),
        "reserve": lambda: charging.reserve(db, "user-1", amount, "h-inf", "llm", "gpt-4o", org_id=org),
        "settle": lambda: charging.settle(db, org, "open-hold", amount),
        "monthly refresh": lambda: periods.set_monthly_refresh(db, None, org, amount),
        "low-balance threshold": lambda: periods.set_low_balance_threshold(db, ready.admin, org, amount),
        "plan price": lambda: plans.create_plan(db, None, "inf_plan", "Inf", amount, "markup"),
        "plan credits": lambda: plans.create_plan(db, None, "inf_plan", "Inf", 10, "markup", included_credits=amount),
        "model rate": lambda: pricing.set_model_price(db, None, "openai", "inf-model", amount, 1),
        "markup": lambda: pricing.set_platform_rules(db, None, markup=amount),
        "BYOK fee": lambda: pricing.set_platform_rules(db, None, byok_fee_credits=amount),
        "tokens": lambda: pricing.price_usage(db, org, Usage("llm", "gpt-4o", amount, 0)),
        "requests": lambda: pricing.price_usage(db, org, Usage("company_enrichment", "x", requests=amount)),
    }
    for door, action in doors.items():
        message = refused(db, InvalidAmount, "infinite", action)
        assert "#" not in message and "finite" in message, (door, message)
    # the SQL checkers themselves, as a metered service or another routine calls them
    for check in ("select ledger_check_credits(:a, 'Credits')", "select ledger_check_money(:a, 'Amount')",
                  "select pricing_check_rate(:a, 'Rate')", "select pricing_check_count(:a, 'Tokens', 0, 10)",
                  "select pricing_check_markup(:a)"):
        message = refused(db, InvalidAmount, "is infinite", lambda check=check: fetch(db, check, {"a": amount}))
        assert str(amount) in message
    assert [r[0] for r in fetch(db, "select ledger_amount_text(:a)", {"a": amount})] == [str(amount)]


def test_a_nul_character_in_text_is_refused_as_invalid_input(db, ready):
    """Finding 14: PostgreSQL cannot store \\x00 in text; it used to surface as a raw DataError."""
    org = ready.id
    doors = [
        lambda: organizations.create_organization(db, None, "nul\x00org", "X"),
        lambda: organizations.create_organization(db, None, "nul-org", "Name\x00"),
        lambda: organizations.create_user(db, None, "u-nul", "nul@example.com", "Ada\x00"),
        lambda: credits.deduct(db, org, "user-1", 1, "llm", "gpt\x00-4o"),
        lambda: credits.deduct(db, org, "user-1", 1, "llm", "gpt-4o", request_id="r\x00"),
        lambda: credits.allocate_to_members(db, ready.admin, org, ["user-1", "user-\x002"], 1),
        lambda: charging.charge_usage(db, "user-1", Usage("llm", "gpt-4o\x00"), org_id=org),
        lambda: reports.pool(db, "admin-1\x00", org),
    ]
    for action in doors:
        refused(db, InvalidInput, "contains a NUL character", action)
    message = refused(db, InvalidInput, "contains a NUL character",
                      lambda: credits.deduct(db, org, "user-1", 1, "llm", "gpt-4o", request_id="r\x00"))
    assert message.startswith("Request id contains a NUL character")
    # inside JSON metadata the character travels escaped (\u0000), which jsonb cannot hold either
    message = refused(db, InvalidInput, "contains a NUL character",
                      lambda: credits.deduct(db, org, "user-1", 1, "llm", "gpt-4o", metadata={"trace": "a\x00b"}))
    assert "metadata" in message
    # a caller that executes on its own connection (the period job's procedure call) gets the same translation
    with pytest.raises(sa.exc.DataError) as caught, db.connect() as conn:
        conn.execute(sa.text("select cast(:t as text)"), {"t": "a\x00"})
    translated = database.domain_error(caught.value)
    assert isinstance(translated, InvalidInput) and "contains a NUL character" in str(translated)
