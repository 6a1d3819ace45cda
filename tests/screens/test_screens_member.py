"""The "My credits" page (pages/my_credits.py) and the read models behind it.

Dataset (built through billing_core, figures checked by hand):
  north  'North <script>alert("x")</script> & Co'  Platform plan, 10,000 credits
         mia: 1,000 allocated; used 3 x 50 company_enrichment now, 2 x 10 contact_lookup
              a day ago, 7.5 llm 40 days ago (outside the 30-day window) -> used 177.5
         ned: 500 allocated; 10 contact_lookup now (not mia's)
  south  'South Ltd'  BYOK plan, 2,000 credits
         mia: 400 allocated; used 4 x 2 intelligence_cache_lookup now -> used 8
Mia's 30 days: 150 + 20 + 8 = 178 credits, 9 requests, 3 services (north alone: 170, 5, 2).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from screen_testing import (
    chart_titled,
    dataframe,
    metric_values,
    no_html_allowed,
    open_page,
    plain,
    tables,
    texts,
    trace_values,
)

from billing_core import credits, organizations, periods, subscriptions, usage
from billing_core.errors import NotFound, PermissionDenied
from pages import kit as screen_kit

NORTH_NAME = 'North <script>alert("x")</script> & Co'
MIA_NAME = 'Mia "Quotes" <b>Bold</b>'


@pytest.fixture
def dataset(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, name, plan in (("north", NORTH_NAME, "platform"), ("south", "South Ltd", "byok")):
        organizations.create_organization(db, None, org_id, name)
        organizations.create_user(db, None, f"{org_id}-admin", f"{org_id}-admin@example.com", f"{org_id} admin")
        organizations.add_member(db, None, org_id, f"{org_id}-admin", "admin")
        subscriptions.create_subscription(db, "root", org_id, plan, trial=False)
    organizations.create_user(db, None, "mia", "mia@example.com", MIA_NAME)
    organizations.create_user(db, None, "ned", "ned@example.com", "Ned")
    organizations.create_user(db, None, "loner", "loner@example.com", "Lone Wolf")
    organizations.add_member(db, None, "north", "mia")
    organizations.add_member(db, None, "north", "ned")
    organizations.add_member(db, None, "south", "mia")

    credits.add_credits(db, None, "north", 10_000, 10)
    credits.add_credits(db, None, "south", 2_000, 2)
    credits.allocate(db, "north-admin", "north", "mia", 1_000)
    credits.allocate(db, "north-admin", "north", "ned", 500)
    credits.allocate(db, "south-admin", "south", "mia", 400)

    now = datetime.now(UTC)
    for _ in range(3):
        credits.deduct(db, "north", "mia", 50, "company_enrichment", "enrich")
    for _ in range(2):
        credits.deduct(db, "north", "mia", 10, "contact_lookup", "lookup", occurred_at=now - timedelta(days=1))
    credits.deduct(db, "north", "mia", "7.5", "llm", "gpt-4o", occurred_at=now - timedelta(days=40))
    credits.deduct(db, "north", "ned", 10, "contact_lookup", "lookup")
    for _ in range(4):
        credits.deduct(db, "south", "mia", 2, "intelligence_cache_lookup", "cache")
    return db


# ---------------------------------------------------------------- read models


def test_member_cards_hold_plan_allocation_and_30_day_usage(dataset):
    cards = {card.org_id: card for card in usage.member_cards(dataset, "mia")}
    assert set(cards) == {"north", "south"}
    north, south = cards["north"], cards["south"]
    assert north.is_default and not south.is_default
    assert (north.plan, north.plan_name, north.subscription_status) == ("platform", "Platform", "active")
    assert (south.plan, south.plan_name) == ("byok", "BYOK")
    assert (north.allocated_credits, north.used_credits, north.remaining_credits) == (1000, Decimal("177.5"), Decimal("822.5"))
    assert north.usage_percent == Decimal("17.75")
    assert (north.credits_used_30d, north.requests_30d) == (170, 5)
    assert (south.used_credits, south.remaining_credits, south.credits_used_30d) == (8, 392, 8)
    assert north.next_reset == periods.current_period(dataset, "mia", "north").period_end  # allocations reset then


def test_member_usage_reads_cover_only_the_member_and_the_window(dataset):
    assert usage.my_totals(dataset, "mia") == usage.UsageTotals(Decimal(178), 9, 3)
    assert usage.my_totals(dataset, "mia", "north") == usage.UsageTotals(Decimal(170), 5, 2)

    daily = usage.my_daily_usage(dataset, "mia")
    assert daily.credits_used.sum() == 178
    assert daily.requests.sum() == 9
    by_service = daily.groupby("service_type").credits_used.sum().to_dict()
    assert by_service == {"company_enrichment": 150, "contact_lookup": 20, "intelligence_cache_lookup": 8}
    today = datetime.now(UTC).date()
    assert set(daily.day) == {today, today - timedelta(days=1)}

    charges = usage.my_recent_charges(dataset, "mia")
    assert len(charges) == 10  # the llm charge 40 days ago included: recent charges have no window
    assert list(charges.created_at) == sorted(charges.created_at, reverse=True)
    assert set(charges.org_id) == {"north", "south"}
    assert usage.my_recent_charges(dataset, "mia", "south", limit=3).credits_used.tolist() == [2, 2, 2]


def test_member_reads_refuse_other_organizations_and_unknown_people(dataset):
    with pytest.raises(PermissionDenied):
        usage.my_totals(dataset, "ned", "south")
    with pytest.raises(PermissionDenied):
        usage.my_daily_usage(dataset, "", None)
    with pytest.raises(NotFound):
        usage.member_cards(dataset, "nobody")
    assert usage.member_cards(dataset, "loner") == []


# ---------------------------------------------------------------- the page


def test_my_credits_shows_every_organization_and_all_usage(dataset):
    at = open_page("my_credits", "mia")
    assert not at.exception
    assert metric_values(at, "Remaining") == ["822.5", "392"]
    assert metric_values(at, "Allocated") == ["1,000", "400"]
    assert metric_values(at, "Used") == ["177.5", "8"]
    assert metric_values(at, "Credits used (30 days)") == ["178"]
    assert metric_values(at, "Requests (30 days)") == ["9"]
    assert metric_values(at, "Services used (30 days)") == ["3"]
    assert [p.proto.text for p in at.get("progress")] == ["17.8% used", "2.0% used"]

    daily = chart_titled(at, "Credits per day and service")
    assert sum(sum(trace_values(trace, "y")) for trace in daily["data"]) == 178
    assert {trace["name"] for trace in daily["data"]} == {
        "company_enrichment", "contact_lookup", "intelligence_cache_lookup",
    }

    compared = dataframe(at, "org_name", "credits_used_30d")
    assert compared.set_index("org_name").loc["South Ltd", "remaining_credits"] == 392
    assert compared.set_index("org_name").loc[NORTH_NAME, "credits_used_30d"] == 170
    comparison = chart_titled(at, "Allocation per organization")
    assert {trace["name"] for trace in comparison["data"]} == {"allocated", "used", "remaining"}

    charges = dataframe(at, "service_name", "remaining_after")
    assert len(charges) == 10
    assert charges.credits_used.sum() == 185.5  # 178 + the 7.5 from 40 days ago


def test_my_credits_follows_the_chosen_organization(dataset):
    at = open_page("my_credits", "mia", "north")
    assert not at.exception
    assert metric_values(at, "Credits used (30 days)") == ["170"]
    assert metric_values(at, "Requests (30 days)") == ["5"]
    assert metric_values(at, "Services used (30 days)") == ["2"]
    assert set(dataframe(at, "service_name", "remaining_after").org_name) == {NORTH_NAME}
    # the cards still show every organization
    assert metric_values(at, "Remaining") == ["822.5", "392"]


def test_my_credits_with_one_organization_has_no_comparison(dataset):
    at = open_page("my_credits", "ned", "north")
    assert not at.exception
    assert metric_values(at, "Remaining") == ["490"]
    assert metric_values(at, "Credits used (30 days)") == ["10"]
    assert [list(t.columns)[:2] for t in tables(at)] == [["created_at", "org_name"]]  # recent charges only


def test_my_credits_for_an_org_admin_and_a_system_admin(dataset):
    at = open_page("my_credits", "north-admin", "north")
    assert not at.exception
    assert metric_values(at, "Remaining") == ["0"] and metric_values(at, "Credits used (30 days)") == ["0"]
    assert "No usage in the last 30 days." in [c.value for c in at.caption]
    at = open_page("my_credits", "root", "north")  # a system admin holds no allocation of their own
    assert not at.exception
    assert "belong to no organization" in at.info[0].value and not at.metric


def test_my_credits_needs_a_login(dataset):
    at = open_page("my_credits", None)
    assert not at.exception
    assert [w.value for w in at.warning] == ["Please log in."]
    assert not at.metric and not at.dataframe


def test_my_credits_for_someone_without_an_organization(dataset):
    at = open_page("my_credits", "loner")
    assert not at.exception
    assert "belong to no organization" in at.info[0].value
    assert not at.metric


def test_my_credits_for_an_unknown_user_shows_the_refusal(dataset):
    at = open_page("my_credits", "ghost")
    assert not at.exception
    assert "does not exist" in plain(at.error[0].value)
    assert not at.metric


def test_names_with_quotes_html_and_script_render_as_text(dataset):
    at = open_page("my_credits", "mia")
    assert not at.exception
    assert no_html_allowed(at)
    shown = [body for body in texts(at) if "North" in plain(body)]
    assert shown, "the organization's name is on the page"
    escaped = screen_kit.md_text(NORTH_NAME)
    assert plain(escaped) == NORTH_NAME
    for special in "<>&()":  # every character markdown or HTML would act on is escaped
        assert escaped.count(special) == escaped.count("\\" + special)
    for body in shown:
        assert escaped in body
    # in tables the name is a cell value, which the grid shows as text
    assert NORTH_NAME in set(dataframe(at, "org_name", "credits_used_30d").org_name)
    # in charts Plotly would read tags: they arrive as entities
    comparison = chart_titled(at, "Allocation per organization")
    escaped_html = 'North &lt;script&gt;alert("x")&lt;/script&gt; &amp; Co'
    assert {row[0] for trace in comparison["data"] for row in trace["customdata"]} == {escaped_html, "South Ltd"}
    assert comparison["layout"]["xaxis"]["ticktext"] == ['North &lt;script&gt;alert("x")&lt;/s…', "South Ltd"]


def test_a_member_sees_their_own_90_percent_alert_and_dismisses_it(dataset):
    row = usage.member_cards(dataset, "mia")[0]
    credits.deduct(dataset, row.org_id, "mia", row.remaining_credits - 50, "llm", "gpt-4o")  # 95% used
    at = open_page("my_credits", "mia", row.org_id)
    assert not at.exception
    [warning] = [w for w in at.warning if "allocated credits" in w.value]
    assert "ask an org admin for more" in warning.value
    [dismiss] = [b for b in at.button if b.key.startswith("dismiss_alert_")]
    dismiss.click().run()
    assert not at.exception
    assert not [b for b in at.button if b.key.startswith("dismiss_alert_")]
