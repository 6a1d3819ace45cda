"""The usage sections (pages/sections/usage.py) under the date range control (pages/kit/ranges.py), run by AppTest.

A tiny script builds the Screen from billing_core.auth.user_roles, as the navigation would, and shows the
control and both sections for one scope. Dataset: organization "berlin" (time zone Europe/Berlin), admin
ada, members mia and ned. Mia: 5 x 10 contact_lookup two days ago at noon UTC, 2 company_enrichment calls
priced by the engine (50 credits each) now, one llm charge of 7 credits at 23:30 UTC five days ago (00:30
the next day in Berlin). Ned: 3 x 10 contact_lookup now, one named "=HYPERLINK(...)" by its service.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta

import pytest
from screen_testing import chart_titled, dataframe, errors, metric_values, plain, texts, trace_values
from streamlit.testing.v1 import AppTest

from billing_core import auth, charging, credits, organizations, periods, pricing, subscriptions, usage
from billing_core.database import call
from billing_core.pricing import Usage
from pages import kit
from pages.kit import ranges
from pages.kit.session import Screen
from pages.sections import usage as sections

BERLIN = "Europe/Berlin"
FORMULA = '=HYPERLINK("http://evil.example","click")'

SCRIPT = """
import streamlit as st
from billing_core import auth
from pages import kit
from pages.kit.session import Screen
from pages.sections import usage as sections

db = kit.engine()
actor = st.session_state["actor_id"]
screen = Screen(db=db, actor_id=actor, roles=auth.user_roles(db, actor), org_id=st.session_state["org_id"])
scope = st.session_state["scope"]
date_range = kit.date_range_control(screen, key="usage_range")
sections.usage_summary_section(screen, scope, date_range)
sections.recent_charges_section(screen, scope, date_range)
"""


@pytest.fixture
def berlin(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    kit.clear_cached_reads()
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    organizations.create_organization(db, None, "berlin", "Berlin GmbH")
    periods.set_calendar(db, None, "berlin", 1, BERLIN)
    credits.add_credits(db, None, "berlin", 10_000, 10)
    for user, role in (("ada", "admin"), ("mia", "member"), ("ned", "member")):
        organizations.create_user(db, None, user, f"{user}@example.com", user.title())
        organizations.add_member(db, None, "berlin", user, role)
    for user in ("mia", "ned"):
        credits.allocate(db, "ada", "berlin", user, 1_000)
    now = datetime.now(UTC)
    noon = datetime.combine(now.date() - timedelta(days=2), time(12), tzinfo=UTC)
    for n in range(5):
        credits.deduct(db, "berlin", "mia", 10, "contact_lookup", "lookup", request_id=f"lookup-{n}",
                       occurred_at=noon + timedelta(minutes=n))
    for n in range(2):
        charging.charge_usage(db, "mia", Usage("company_enrichment", "enrich"), org_id="berlin",
                              request_id=f"enrich-{n}")
    late = datetime.combine(now.date() - timedelta(days=5), time(23, 30), tzinfo=UTC)
    credits.deduct(db, "berlin", "mia", 7, "llm", "late-night", request_id="late", occurred_at=late)
    for n in range(3):
        credits.deduct(db, "berlin", "ned", 10, "contact_lookup", FORMULA if n == 0 else "lookup",
                       request_id=f"ned-{n}")
    return db


def run(actor: str, scope: str, org: str = "berlin") -> AppTest:
    at = AppTest.from_string(SCRIPT, default_timeout=60)
    at.session_state["actor_id"] = actor
    at.session_state["org_id"] = org
    at.session_state["scope"] = scope
    return at.run()


def screen_of(db, actor: str) -> Screen:
    return Screen(db=db, actor_id=actor, roles=auth.user_roles(db, actor), org_id="berlin")


def berlin_today(db):
    return call(db, "select (now() at time zone :zone)::date", {"zone": BERLIN})


def shown(at: AppTest) -> list[str]:
    return [plain(text) for text in texts(at)]


def choose(at: AppTest, preset: str) -> AppTest:
    return at.selectbox(key="usage_range_preset").set_value(preset).run()


# ---------------------------------------------------------------- a member's own usage


def test_a_member_sees_their_totals_chart_and_charges_in_the_organizations_time_zone(berlin):
    at = run("mia", "member")
    assert not at.exception and not errors(at)
    assert metric_values(at, "Credits used") == ["157"]
    assert metric_values(at, "Dollars") == ["$0.16"]
    assert (metric_values(at, "Requests"), metric_values(at, "Services")) == (["8"], ["3"])
    assert metric_values(at, "Members") == []  # an organization's figure only
    today = berlin_today(berlin)
    assert f"{ranges.range_text(usage.date_range(berlin, 'mia', 'berlin', 'last_30_days'))}. Times in {BERLIN}." \
        in shown(at)
    assert ranges.day_text(today) in ranges.range_text(usage.date_range(berlin, "mia", "berlin", "last_30_days"))
    chart = chart_titled(at, "Credits per day")
    assert chart["layout"]["xaxis"]["title"]["text"] == f"Day ({BERLIN})"
    assert {trace["name"] for trace in chart["data"]} == {"company enrichment", "contact lookup", "LLM calls"}
    charges = dataframe(at, "local_time", "request_id", "explained")
    assert "user_name" not in charges.columns  # their own charges: no member column
    assert set(charges.request_id) == {"lookup-0", "lookup-1", "lookup-2", "lookup-3", "lookup-4", "enrich-0",
                                       "enrich-1", "late"}
    assert "1–8 of 8 charges. Times in Europe/Berlin." in shown(at)
    credits.deduct(berlin, "berlin", "mia", 1, "contact_lookup", "lookup")  # a service that sends no request id
    at = choose(at, "today")
    assert "—" in set(dataframe(at, "local_time", "request_id").request_id) and not at.exception
    enrich = charges.set_index("request_id").loc["enrich-0"]
    assert enrich.explained == "Fixed price: 50 credits a call × 1 request"
    assert charges.set_index("request_id").loc["late"].explained == "Reported in credits by the service"


def test_a_preset_changes_every_figure_and_a_custom_day_follows_berlins_calendar(berlin):
    at = choose(run("mia", "member"), "today")
    assert metric_values(at, "Credits used") == ["100"]  # the two enrichment calls made now
    assert chart_titled(at, "Credits per hour")["layout"]["xaxis"]["title"]["text"] == f"Hour ({BERLIN})"
    late_day = datetime.now(UTC).date() - timedelta(days=4)  # 23:30 UTC five days ago is 00:30 here in Berlin
    at = choose(at, "custom")
    at.date_input(key="usage_range_from").set_value(late_day)
    at.date_input(key="usage_range_to").set_value(late_day).run()
    assert not errors(at)
    assert metric_values(at, "Credits used") == ["7"]
    [charge] = dataframe(at, "local_time", "request_id").itertuples()
    assert (charge.request_id, charge.local_time) == ("late", datetime.combine(late_day, time(0, 30)))
    [bar] = chart_titled(at, "Credits per hour")["data"]
    assert trace_values(bar, "x") == [f"{late_day}T00:30:00"]  # the hour from midnight to 01:00, Berlin's clock


def test_a_refused_range_says_what_is_wrong_and_the_figures_stay_as_they_were(berlin):
    at = choose(run("mia", "member"), "last_7_days")
    assert metric_values(at, "Credits used") == ["157"]
    today = berlin_today(berlin)
    at = choose(at, "custom")
    at.date_input(key="usage_range_from").set_value(today)
    at.date_input(key="usage_range_to").set_value(today - timedelta(days=3)).run()
    [error] = errors(at)
    assert error.startswith(f"The start date {today:%Y-%m-%d} is after the end date")
    assert metric_values(at, "Credits used") == ["157"]  # still the last 7 days
    assert any(text.startswith("Still showing ") for text in shown(at))
    at.date_input(key="usage_range_from").set_value(today - timedelta(days=1))
    at.date_input(key="usage_range_to").set_value(today + timedelta(days=1)).run()
    assert errors(at) == [f"The end date {today + timedelta(days=1):%Y-%m-%d} is in the future: today is "
                          f"{today:%Y-%m-%d} in {BERLIN}; choose today or earlier."]
    at.date_input(key="usage_range_from").set_value(today - timedelta(days=400))
    at.date_input(key="usage_range_to").set_value(today).run()
    assert errors(at)[0].startswith("A date range covers at most 400 days")


# ---------------------------------------------------------------- an organization's usage


def test_an_org_admin_sees_the_organization_by_member_and_service(berlin):
    at = run("ada", "organization")
    assert not at.exception and not errors(at)
    assert metric_values(at, "Credits used") == ["187"]
    assert metric_values(at, "Members") == ["2"]
    members = dataframe(at, "member", "email", "credits_used")
    assert members[["member", "credits_used"]].values.tolist() == [["Mia", 157], ["Ned", 30]]
    assert chart_titled(at, "Credits by member") and chart_titled(at, "Credits by service")
    charges = dataframe(at, "local_time", "user_name", "request_id")
    assert len(charges) == 11 and set(charges.user_name) == {"Mia", "Ned"}


def test_a_member_asking_for_the_organizations_usage_gets_the_databases_refusal_only(berlin):
    at = run("mia", "organization")
    assert errors(at) == ["User 'mia' is not an admin of organization 'berlin'."] * 2
    assert metric_values(at, "Credits used") == [] and not at.dataframe


def test_charges_page_and_filter_by_service(berlin):
    for n in range(60):
        credits.deduct(berlin, "berlin", "ned", 1, "intelligence_cache_lookup", "cache", request_id=f"cache-{n}")
    at = run("ada", "organization")
    assert "1–50 of 71 charges. Times in Europe/Berlin." in shown(at)
    at.selectbox(key="organization_charges_page_size").set_value(25).run()
    at.number_input(key="organization_charges_page").set_value(3).run()
    assert "51–71 of 71 charges. Times in Europe/Berlin." in shown(at)
    assert len(dataframe(at, "local_time", "request_id")) == 21
    at.selectbox(key="organization_charges_service").set_value("contact_lookup").run()
    assert "1–8 of 8 charges. Times in Europe/Berlin." in shown(at)  # a new filter starts on page 1
    assert set(dataframe(at, "local_time", "request_id").service) == {"contact lookup"}
    assert at.number_input(key="organization_charges_page").value == 1


# ---------------------------------------------------------------- the CSV export


def test_the_csv_holds_every_matching_charge_with_formula_cells_quoted(berlin):
    for n in range(60):
        credits.deduct(berlin, "berlin", "ned", 1, "intelligence_cache_lookup", "cache", request_id=f"cache-{n}")
    organizations.create_user(berlin, None, "eve", "eve@example.com", "=cmd|' /C calc'!A0")
    organizations.add_member(berlin, None, "berlin", "eve")
    credits.allocate(berlin, "ada", "berlin", "eve", 10)
    credits.deduct(berlin, "berlin", "eve", 1, "contact_lookup", "+SUM(A1:A9)", request_id="@evil")
    r = usage.date_range(berlin, "ada", "berlin", "last_30_days")
    rows = list(csv.DictReader(io.StringIO(sections.charges_csv(screen_of(berlin, "ada"), "organization", r, None)
                                           .decode())))
    assert len(rows) == 72  # every charge, not one page
    assert rows[0]["Time (Europe/Berlin)"] and rows[0]["Time (UTC)"].endswith("+00:00")
    evil = next(row for row in rows if row["Request id"] == "'@evil")
    assert (evil["Member"], evil["Detail"]) == ("'=cmd|' /C calc'!A0", "'+SUM(A1:A9)")
    assert next(row for row in rows if row["Request id"] == "ned-0")["Detail"] == "'" + FORMULA
    enrich = next(row for row in rows if row["Request id"] == "enrich-0")
    assert (enrich["Credits"], enrich["Dollars"], enrich["Service"]) == ("50", "0.05", "company enrichment")
    assert enrich["Pricing"] == "Fixed price: 50 credits a call × 1 request"
    assert '"method": "fixed_price"' in enrich["Pricing record"]
    lookups = sections.charges_csv(screen_of(berlin, "ada"), "organization", r, "contact_lookup").decode()
    assert len(list(csv.DictReader(io.StringIO(lookups)))) == 9  # the service filter, as on screen


def test_a_members_csv_holds_only_their_own_charges(berlin):
    r = usage.date_range(berlin, "mia", "berlin", "last_30_days")
    rows = list(csv.DictReader(io.StringIO(sections.charges_csv(screen_of(berlin, "mia"), "member", r, None)
                                           .decode())))
    assert len(rows) == 8 and {row["Member"] for row in rows} == {"Mia"}


# ---------------------------------------------------------------- the pricing explanation in words


def test_the_pricing_explanation_reads_as_rule_units_and_price(berlin):
    subscriptions.create_subscription(berlin, "root", "berlin", "hybrid", trial=False)
    markup = pricing.price_usage(berlin, "berlin", Usage("llm", "gpt-4o", 1000, 500))
    assert sections.pricing_text(markup.explanation) == (
        "gpt-4o (1,000 input tokens, 500 output tokens, 1 request): provider cost $0.0075 × markup 1.5")
    byok = pricing.price_usage(berlin, "berlin", Usage("llm", "gpt-4o", 1000, 500, requests=3, byok=True))
    assert sections.pricing_text(byok.explanation) == (
        "gpt-4o on your own key (1,000 input tokens, 500 output tokens, 3 requests): platform fee 1 credit a request")
    fixed = pricing.price_usage(berlin, "berlin", Usage("contact_lookup", "lookup", requests=2))
    assert sections.pricing_text(fixed.explanation, {"held_credits": 30}) == (
        "Fixed price: 10 credits a call × 2 requests, settled from a hold of 30 credits")
    assert sections.pricing_text(None, None) == "Reported in credits by the service"


def test_every_preset_the_database_knows_has_words():
    assert set(ranges.PRESETS) == set(usage.PRESETS)
