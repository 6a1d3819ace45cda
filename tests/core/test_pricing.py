"""The pricing engine against hand-computed figures: markup, overrides, BYOK fee, images, per-request
prices, fixed-price services, effective dates, rounding, plan modes, the calculator, packages, edits.

1 credit = $0.001. Managed call: provider cost (USD) x 1,000 x markup; BYOK call: the platform fee per
request; rounding once, half away from zero, to 6 decimals. Seed prices (migration 0009): gpt-4o $0.0025 /
$0.01 per 1,000 input / output tokens, gpt-4o-mini $0.00015 / $0.0006, dall-e-3 $0.04 per image, markup 1.5,
BYOK fee 1 credit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core import ledger, orders, organizations, pricing, subscriptions
from billing_core.database import fetch
from billing_core.errors import (
    AlreadyExists,
    InvalidAmount,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RuleViolation,
)
from billing_core.pricing import Usage
from tests.ledger_state import refused

D = Decimal
PRICING_TABLES = ("model_prices", "service_prices", "platform_pricing_rules", "org_pricing_overrides",
                  "credit_packages", "credit_holds")


def pricing_rows(db) -> dict[str, list]:
    """Every row of the pricing and hold tables, as text (to prove a refusal changed nothing)."""
    return {table: [row[0] for row in fetch(db, f"select t::text from {table} t order by 1")]  # constant names
            for table in PRICING_TABLES}


def refused_all(db, error, words, action) -> str:
    """`refused` (ledger unchanged, verify clean) that also proves the pricing and hold tables unchanged."""
    before = pricing_rows(db)
    message = refused(db, error, words, action)
    assert pricing_rows(db) == before
    return message


@pytest.fixture
def sysadmin(db) -> str:
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    return "root"


def soon(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def price(db, org_id, usage, at=None) -> Decimal:
    return pricing.price_usage(db, org_id, usage, at=at).credits


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # 1,000 x 0.0025/1000 + 500 x 0.01/1000 = $0.0075 -> 7.5 credits x 1.5
        (Usage("llm", "gpt-4o", 1000, 500), D("11.25")),
        # 12,345 x 0.00015/1000 + 6,789 x 0.0006/1000 = $0.00592515 -> 5.92515 x 1.5
        (Usage("llm", "gpt-4o-mini", 12345, 6789), D("8.887725")),
        # output only: 2,000 x 0.015/1000 = $0.03 -> 30 x 1.5
        (Usage("chat", "claude-sonnet-4", 0, 2000), D("45")),
        # 3 images x $0.04 = $0.12 -> 120 x 1.5
        (Usage("image_generation", "dall-e-3", images=3), D("180")),
        # fixed-price services: credits per call x requests, whatever the model
        (Usage("company_enrichment", "clearbit"), D("50")),
        (Usage("company_enrichment", "clearbit", requests=2), D("100")),
        (Usage("contact_lookup", "apollo", 999, 999), D("10")),
        (Usage("intelligence_cache_lookup", "cache"), D("2")),
        # nothing used on a model without per-request price: 0 credits
        (Usage("llm", "gpt-4o"), D("0")),
    ],
)
def test_managed_prices_match_hand_computed_figures(db, org, usage, expected):
    quote = pricing.price_usage(db, org.id, usage)
    assert quote.credits == expected
    assert quote.dollars == expected / 1000
    assert quote.explanation["credits"] == expected


def test_explanation_shows_the_arithmetic(db, org):
    quote = pricing.price_usage(db, org.id, Usage("llm", "gpt-4o", 1000, 500))
    e = quote.explanation
    assert e["method"] == "provider_cost_markup"
    assert (e["provider"], e["model"], e["plan"], e["pricing_mode"]) == ("openai", "gpt-4o", None, "markup")
    assert e["usage"] == {"input_tokens": 1000, "output_tokens": 500, "images": 0, "requests": 1}
    assert e["rates_usd"]["per_1k_input"] == D("0.0025")
    assert e["provider_cost_usd"] == D("0.0075")
    assert e["provider_cost_credits"] == D("7.5")
    assert (e["markup"], e["markup_source"]) == (D("1.5"), "platform")
    assert e["unrounded_credits"] == D("11.25")
    assert e["credits_per_usd"] == 1000
    assert "6 decimals" in e["rounding"]


def test_per_request_price_and_rounding_half_away_from_zero(db, org, sysadmin):
    pricing.set_model_price(db, sysadmin, "acme", "acme-1", D("0.001"), 0, usd_per_request=D("0.002"))
    # 2,000 x 0.001/1000 + 2 requests x 0.002 = $0.006 -> 6 credits x 1.5 = 9
    assert price(db, org.id, Usage("llm", "acme-1", 2000, requests=2)) == D("9")
    pricing.set_model_price(db, sysadmin, "acme", "acme-tiny", 0, 0, usd_per_request=D("0.00000001"))
    pricing.set_org_override(db, sysadmin, org.id, markup=D("1.05"))
    # $0.00000001 -> 0.00001 credits x 1.05 = 0.0000105 -> 0.000011 (half away from zero, not to even)
    quote = pricing.price_usage(db, org.id, Usage("llm", "acme-tiny"))
    assert quote.explanation["unrounded_credits"] == D("0.0000105")
    assert quote.credits == D("0.000011")
    # 7 x 0.00015/1000 = $0.00000105 -> 0.00105 x 1.05 = 0.0011025 -> 0.001103
    assert price(db, org.id, Usage("llm", "gpt-4o-mini", 7)) == D("0.001103")
    # 1 x 0.0001/1000 -> 0.0001 x 1.05 = 0.000105 (exact at 6 decimals)
    assert price(db, org.id, Usage("llm", "gemini-2.0-flash", 1)) == D("0.000105")


def test_org_override_and_effective_dates_choose_the_right_row(db, org, sysadmin):
    event = Usage("llm", "gpt-4o", 1000, 500)  # $0.0075
    pricing.set_org_override(db, sysadmin, org.id, markup=2, effective_from=soon(1))
    pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", D("0.005"), D("0.02"), effective_from=soon(2))
    pricing.set_platform_rules(db, sysadmin, markup=3, effective_from=soon(3))
    assert price(db, org.id, event) == D("11.25")  # now: seed price, platform markup
    assert price(db, org.id, event, at=soon(1.5)) == D("15")  # override 2 x 7.5
    assert price(db, org.id, event, at=soon(2.5)) == D("30")  # new price $0.015 -> 15 x 2
    assert price(db, org.id, event, at=soon(3.5)) == D("30")  # the override still beats the platform's 3
    assert price(db, None, event, at=soon(3.5)) == D("45")  # no org: platform 3 x 15
    assert price(db, None, event, at=soon(2.5)) == D("22.5")  # platform 1.5 x 15
    pricing.set_org_override(db, sysadmin, org.id, markup=None, effective_from=soon(4))  # back to the platform's
    assert price(db, org.id, event, at=soon(4.5)) == D("45")
    # a withdrawn model is refused from its withdrawal on
    pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", 0, 0, effective_from=soon(5), available=False)
    assert price(db, org.id, event, at=soon(4.9)) == D("45")
    with pytest.raises(InvalidInput, match="withdrawn"):
        price(db, org.id, event, at=soon(5.1))


def test_byok_costs_only_the_platform_fee_and_plans_decide_which_calls_run(db, org, sysadmin):
    byok_call = Usage("llm", "claude-sonnet-4", 2000, 1000, requests=3, byok=True)
    managed_call = Usage("llm", "claude-sonnet-4", 2000, 1000)  # $0.021 -> 21 x 1.5 = 31.5
    # no plan: managed keys only
    assert price(db, org.id, managed_call) == D("31.5")
    with pytest.raises(RuleViolation, match="own key"):
        price(db, org.id, byok_call)
    subscriptions.create_subscription(db, None, org.id, "hybrid")
    quote = pricing.price_usage(db, org.id, byok_call)
    assert quote.credits == D("3")  # 1 credit x 3 requests; the provider bills the customer's key
    assert quote.explanation["method"] == "byok_fee"
    assert quote.explanation["provider_cost_usd"] == D("0.021")
    assert "markup" not in quote.explanation
    assert price(db, org.id, managed_call) == D("31.5")
    pricing.set_org_override(db, sysadmin, org.id, markup=None, byok_fee_credits=D("0.5"))
    assert price(db, org.id, byok_call) == D("1.5")
    # fixed-price services cost the same with or without own keys
    assert price(db, org.id, Usage("contact_lookup", "apollo", byok=True)) == D("10")

    organizations.create_organization(db, None, "byok-org", "BYOK Org")
    subscriptions.create_subscription(db, None, "byok-org", "byok")
    assert price(db, "byok-org", byok_call) == D("3")
    with pytest.raises(RuleViolation, match="own provider keys"):
        price(db, "byok-org", managed_call)


def test_calculator_prices_one_event_under_each_plan(db, sysadmin):
    table = pricing.calculator(db, sysadmin, Usage("llm", "gpt-4o", 10000, 2000, byok=False))
    # $0.025 + $0.02 = $0.045 -> 45 x 1.5 = 67.5 credits = $0.0675
    by_plan = {row.plan_code: row for row in table.itertuples()}
    assert list(by_plan) == ["starter", "byok", "platform", "hybrid", "enterprise"]
    for code in ("starter", "platform", "hybrid", "enterprise"):
        assert (by_plan[code].allowed, by_plan[code].credits, by_plan[code].dollars) == (True, D("67.5"), D("0.0675"))
    assert not by_plan["byok"].allowed and by_plan["byok"].credits is None
    assert "own provider keys" in by_plan["byok"].note
    byok = pricing.calculator(db, sysadmin, Usage("llm", "gpt-4o", 10000, 2000, byok=True))
    assert dict(zip(byok.plan_code, byok.allowed)) == {
        "starter": False, "byok": True, "platform": False, "hybrid": True, "enterprise": True}
    assert set(byok[byok.allowed].credits) == {D("1")}
    with pytest.raises(PermissionDenied):
        organizations.create_user(db, None, "plain", "plain@example.com")
        pricing.calculator(db, "plain", Usage("llm", "gpt-4o", 1))


# --------------------------------------------------------------------------- edits


def test_edits_add_rows_with_audit_and_never_rewrite_history(db, sysadmin):
    before = pricing.model_prices(db, sysadmin)
    assert {"gpt-4o", "claude-sonnet-4", "gemini-2.5-pro"} <= set(before.model)
    pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", D("0.003"), D("0.012"), note="price rise")
    now = pricing.model_prices(db, sysadmin)
    assert now[now.model == "gpt-4o"].usd_per_1k_input.tolist() == [D("0.003")]
    history = pricing.model_prices(db, sysadmin, history=True)
    assert history[history.model == "gpt-4o"].usd_per_1k_input.tolist() == [D("0.0025"), D("0.003")]
    pricing.set_service_price(db, sysadmin, "company_enrichment", 60)
    services = pricing.service_prices(db, sysadmin)
    assert dict(zip(services.service_type, services.credits)) == {
        "company_enrichment": D("60"), "contact_lookup": D("10"), "intelligence_cache_lookup": D("2")}
    pricing.set_platform_rules(db, sysadmin, byok_fee_credits=2)
    rules = pricing.platform_rules(db, sysadmin)
    assert rules.iloc[0][["markup", "byok_fee_credits", "hold_ttl_seconds", "in_force"]].tolist() == [
        D("1.5"), D("2"), 900, True]
    actions = [row[0] for row in fetch(db, "select action from audit_log where actor_id = 'root' order by id")]
    assert actions == ["pricing.model_price_set", "pricing.service_price_set", "pricing.platform_rule_set"]


def test_edit_refusals_change_nothing(db, org, sysadmin):
    organizations.create_user(db, None, "plain", "plain@example.com")
    refused_all(db, PermissionDenied, "not a system admin",
                lambda: pricing.set_model_price(db, "plain", "openai", "gpt-5", 1, 1))
    refused_all(db, PermissionDenied, "not a system admin",
                lambda: pricing.set_org_override(db, org.admin, org.id, markup=1))
    refused_all(db, InvalidAmount, "negative", lambda: pricing.set_model_price(db, sysadmin, "openai", "x", -1, 1))
    refused_all(db, InvalidAmount, "8 decimal", lambda: pricing.set_model_price(db, sysadmin, "openai", "x", D("0.000000001"), 1))
    refused_all(db, InvalidAmount, "too large", lambda: pricing.set_model_price(db, sysadmin, "openai", "x", D("1e7"), 1))
    refused_all(db, InvalidAmount, "exact", lambda: pricing.set_model_price(db, sysadmin, "openai", "x", 0.1, 1))
    refused_all(db, InvalidInput, "provider", lambda: pricing.set_model_price(db, sysadmin, "Open AI'; drop", "x", 1, 1))
    refused_all(db, InvalidInput, "model", lambda: pricing.set_model_price(db, sysadmin, "openai", "gpt 4", 1, 1))
    refused_all(db, InvalidInput, "in the past",
                lambda: pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", 1, 1, effective_from=soon(-1)))
    refused_all(db, InvalidAmount, "markup", lambda: pricing.set_platform_rules(db, sysadmin, markup=0))
    refused_all(db, InvalidAmount, "markup", lambda: pricing.set_org_override(db, sysadmin, org.id, markup=-2))
    refused_all(db, InvalidAmount, "hold lifetime", lambda: pricing.set_platform_rules(db, sysadmin, hold_ttl_seconds=0))
    refused_all(db, NotFound, "does not exist", lambda: pricing.set_org_override(db, sysadmin, "nope", markup=2))
    refused_all(db, InvalidAmount, "negative", lambda: pricing.set_service_price(db, sysadmin, "contact_lookup", -1))
    refused_all(db, InvalidInput, "service type", lambda: pricing.set_service_price(db, sysadmin, "<b>x</b>", 1))
    at = soon(1)
    pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", 1, 1, effective_from=at)
    refused_all(db, AlreadyExists, "already has a price",
                lambda: pricing.set_model_price(db, sysadmin, "openai", "gpt-4o", 2, 2, effective_from=at))


def test_pricing_refusals_name_the_problem(db, org):
    for usage, error, words in [
        (Usage("llm", "gpt-9-ultra", 10), NotFound, "no price for model"),
        (Usage("llm", "gpt-4o", -1), InvalidAmount, "between 0"),
        (Usage("llm", "gpt-4o", 0, D("1e10")), InvalidAmount, "between 0"),
        (Usage("llm", "gpt-4o", D("1.5")), InvalidAmount, "whole number"),
        (Usage("llm", "gpt-4o", "NaN"), InvalidAmount, "finite"),
        (Usage("llm", "gpt-4o", 1.5), InvalidAmount, "exact"),
        (Usage("llm", "gpt-4o", 1, requests=0), InvalidAmount, "between 1"),
        (Usage("LLM; drop table", "gpt-4o", 1), InvalidInput, "service type"),
        (Usage("llm", "", 1), InvalidInput, "service name"),
    ]:
        refused_all(db, error, words, lambda usage=usage: pricing.price_usage(db, org.id, usage))
    refused_all(db, NotFound, "does not exist", lambda: pricing.price_usage(db, "no-org", Usage("llm", "gpt-4o", 1)))


# --------------------------------------------------------------------------- packages


def test_buying_a_package_adds_credits_and_bonus_for_its_price(db, org, sysadmin):
    packages = pricing.credit_packages(db)
    assert packages.set_index("code").loc["growth_50k", ["credits", "bonus_credits", "total_credits", "price"]].tolist() == [
        D("50000"), D("2500"), D("52500"), D("50")]
    # a package sale paid outside an order, entered by a system admin (customers order: test_orders.py)
    total = pricing.buy_package(db, sysadmin, org.id, "growth_50k", external_ref="pay-1")
    assert total == D("52500")
    assert pricing.buy_package(db, sysadmin, org.id, "growth_50k", external_ref="pay-1") == D("52500")  # retry
    history = fetch(db, "select event_type, credits, amount, description from org_billing_history where org_id = :o",
                    {"o": org.id})
    assert [tuple(row) for row in history] == [
        ("credit_purchase", D("52500"), D("50"), "Package Growth 50K: 50000 credits + 2500 bonus for $50")]
    assert ledger.verify(db) == []

    assert pricing.save_package(db, sysadmin, "growth_50k", "Growth 50K", 50000, 5000, 45) is False
    assert pricing.save_package(db, sysadmin, "tiny", "Tiny", 1000, 0, 1, active=False, sort_order=1) is True
    assert pricing.buy_package(db, None, org.id, "growth_50k") == D("52500") + D("55000")
    audit = fetch(db, "select action, details from audit_log where action like 'pricing.package%' order by id")
    assert [row[0] for row in audit] == ["pricing.package_changed", "pricing.package_created"]
    assert audit[0][1]["before"]["bonus_credits"] == 2500 and audit[0][1]["after"]["bonus_credits"] == 5000
    assert "tiny" not in set(pricing.credit_packages(db, active_only=True).code)

    refused_all(db, RuleViolation, "no longer on sale", lambda: pricing.buy_package(db, sysadmin, org.id, "tiny"))
    refused_all(db, NotFound, "does not exist", lambda: pricing.buy_package(db, sysadmin, org.id, "nope"))
    refused_all(db, PermissionDenied, "create an order", lambda: pricing.buy_package(db, org.admin, org.id, "starter_10k"))
    refused_all(db, PermissionDenied, "create an order", lambda: pricing.buy_package(db, "user-1", org.id, "starter_10k"))
    refused_all(db, InvalidAmount, "greater than 0",
                lambda: pricing.save_package(db, sysadmin, "bad", "Bad", 0, 0, 1))
    refused_all(db, InvalidAmount, "negative",
                lambda: pricing.save_package(db, sysadmin, "bad", "Bad", 10, 0, -1))
    refused_all(db, InvalidInput, "package code",
                lambda: pricing.save_package(db, sysadmin, "Bad Code", "Bad", 10, 0, 1))
    refused_all(db, PermissionDenied, "not a system admin",
                lambda: pricing.save_package(db, org.admin, "x", "X", 10, 0, 1))
    assert orders.grant_credits(db, sysadmin, org.id, 1, "Rounding goodwill") == D("107501")


def test_cli_prices_an_event_and_refuses_bad_counts(db, db_url):
    import os
    import subprocess
    import sys
    from pathlib import Path

    def billing(*args):
        exe = Path(sys.executable).with_name("billing")
        return subprocess.run([str(exe), *args], env={**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": os.getcwd()},
                              capture_output=True, text=True, timeout=120, check=False)

    done = billing("price", "llm", "gpt-4o", "--input", "1000", "--output", "500")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("11.25 credits ($0.01125)")
    bad = billing("price", "llm", "gpt-4o", "--input", "-1")
    assert (bad.returncode, bad.stderr.strip()) == (1, "billing: refused: Input tokens must be between 0 and 1,000,000,000 (got -1).")
    assert billing("holds", "expire").stdout.strip() == "Released 0 expired credit hold(s)."
