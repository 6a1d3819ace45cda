"""The "Organization billing" page (pages/org_billing.py), its forms and the read models behind it.

Dataset (built through billing_core, figures checked by hand):
  acme 'Acme Analytics', Platform plan ($50 / month), 10,000 credits bought for $10
    ada  admin
    bob  1,000 allocated; used 4 x 50 company_enrichment now, 3 x 10 contact_lookup 2 days ago,
         10 contact_lookup 40 days ago (outside the window) -> used 240, remaining 760
    cy   (a name with HTML and quotes) 500 allocated; used 5 x 2 intelligence_cache_lookup and
         12.5 llm now -> used 22.5, remaining 477.5
    dee  no allocation
  Pool: total 10,000, allocated 1,500, used 262.5, available 8,500.
  Last 30 days: 252.5 credits in 13 requests by 2 users; by service 200 / 30 / 10 / 12.5.
  other: a second organization with its own admin, olga.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import streamlit as st
from ledger_state import snapshot
from screen_testing import (
    chart_titled,
    dataframe,
    errors,
    metric_values,
    no_html_allowed,
    open_page,
    open_tab,
    plain,
    texts,
    trace_values,
)

from billing_core import auth, credits, invitations, ledger, orders, organizations, reports, subscriptions, usage
from billing_core.database import fetch
from billing_core.errors import PermissionDenied
from pages import kit as screen_kit

CY_NAME = 'Cy <img src=x onerror=alert(1)> "Quote" [link](javascript:alert(1))'


@pytest.fixture
def acme(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, name, admin, admin_name in (("acme", "Acme Analytics", "ada", "Ada Admin"),
                                            ("other", "Other Org", "olga", "Olga Other")):
        organizations.create_organization(db, None, org_id, name)
        organizations.create_user(db, None, admin, f"{admin}@example.com", admin_name)
        organizations.add_member(db, None, org_id, admin, "admin")
    subscriptions.create_subscription(db, "root", "acme", "platform", trial=False)  # paying now
    for user_id, name in (("bob", "Bob Builder"), ("cy", CY_NAME), ("dee", "Dee Dee")):
        organizations.create_user(db, None, user_id, f"{user_id}@example.com", name)
        organizations.add_member(db, None, "acme", user_id)
    organizations.create_user(db, None, "eve", "Eve@Example.com", "Eve Outside")

    funding = orders.create_order(db, "ada", "acme", credits=10_000)  # bought: ordered by ada, paid as root records
    orders.record_payment(db, "root", funding.id, "INV-ACME-1")
    credits.allocate(db, "ada", "acme", "bob", 1_000)
    credits.allocate(db, "ada", "acme", "cy", 500)
    now = datetime.now(UTC)
    for _ in range(4):
        credits.deduct(db, "acme", "bob", 50, "company_enrichment", "enrich")
    for _ in range(3):
        credits.deduct(db, "acme", "bob", 10, "contact_lookup", "lookup", occurred_at=now - timedelta(days=2))
    credits.deduct(db, "acme", "bob", 10, "contact_lookup", "lookup", occurred_at=now - timedelta(days=40))
    for _ in range(5):
        credits.deduct(db, "acme", "cy", 2, "intelligence_cache_lookup", "cache")
    credits.deduct(db, "acme", "cy", "12.5", "llm", "gpt-4o")
    st.cache_data.clear()
    return db


def allocation_of(db, user_id: str) -> tuple[Decimal, Decimal]:
    """(allocated, remaining) of a member of acme, read as its admin."""
    row = usage.allocations(db, "ada", "acme").set_index("user_id").loc[user_id]
    return row.allocated_credits, row.remaining_credits


# the tab of Organization billing each form lives on (the others are above the tabs)
FORM_TABS = {"member": "Members", "order": "Orders", "allocate": "Allocations", "reclaim": "Allocations"}


def on_tab_of(at, form: str):
    """Open the tab the form `form` lives on (only the chosen tab is drawn)."""
    tab = FORM_TABS.get(form.split("_")[0])
    if tab is not None and at.session_state["org_tab"] != tab:
        open_tab(at, tab, "org_tab")
    return at


def submit(at, form: str, fields: dict, *, confirm: bool = True):
    """Fill a form's fields (by key), send it, and confirm when the page asks to."""
    on_tab_of(at, form)
    for key, value in fields.items():
        widget = at.selectbox(key=key) if key.endswith(("_user", "_role")) else at.text_input(key=key)
        widget.set_value(value)
    at.button(key=f"{form}_submit").click().run()
    assert not at.exception
    confirm_buttons = [b for b in at.button if b.key == f"{form}_confirm"]
    if confirm and confirm_buttons:
        confirm_buttons[0].click().run()
        assert not at.exception
    return at


# ---------------------------------------------------------------- read models


def test_org_read_models_hold_the_known_figures(acme):
    overview = usage.org_overview(acme, "ada", "acme")
    assert (overview.org_name, overview.member_count) == ("Acme Analytics", 4)
    assert (overview.total_credits, overview.allocated_credits, overview.used_credits, overview.available_credits) == (
        10_000, 1_500, Decimal("262.5"), 8_500,
    )
    assert overview.monthly_refresh_amount == 0
    assert (overview.plan, overview.plan_name, overview.subscription_status) == ("platform", "Platform", "active")
    assert (overview.price_amount, overview.billing_cycle) == (50, "monthly")

    members = usage.allocations(acme, "ada", "acme").set_index("user_id")
    assert list(members.index) == ["bob", "cy", "ada", "dee"]  # most used first
    assert members.loc["bob", ["allocated_credits", "used_credits", "remaining_credits"]].tolist() == [1000, 240, 760]
    assert members.loc["bob", "usage_percent"] == 24
    assert members.loc["dee", "allocated_credits"] == 0
    assert members.loc["cy", "display_name"] == CY_NAME

    last_30 = usage.date_range(acme, "ada", "acme", "last_30_days")  # the Usage tab's first range
    span = ("ada", "acme", None, last_30.date_from, last_30.date_to)
    assert usage.range_totals(acme, *span) == usage.RangeTotals(Decimal("252.5"), Decimal("0.2525"), 13, 4, 2)
    by_service = usage.service_usage(acme, *span).set_index("service_type").credits_used.to_dict()
    assert by_service == {"company_enrichment": 200, "contact_lookup": 30, "llm": Decimal("12.5"),
                          "intelligence_cache_lookup": 10}
    by_user = usage.member_usage(acme, "ada", "acme", last_30.date_from, last_30.date_to)
    assert by_user[["user_id", "credits_used", "requests"]].values.tolist() == [["bob", 230, 7], ["cy", Decimal("22.5"), 6]]

    daily = usage.daily_usage(acme, *span)  # days with usage only, per service, in the organization's zone (UTC)
    assert daily.credits_used.sum() == Decimal("252.5") and daily.requests.sum() == 13
    assert set(daily.day) == {last_30.today, last_30.today - timedelta(days=2)}
    assert daily[daily.day == last_30.today - timedelta(days=2)].credits_used.sum() == 30

    history = usage.billing_timeline(acme, "ada", "acme")
    assert "credit_purchase" in set(history.event_type)
    purchase = history[history.event_type == "credit_purchase"].iloc[0]
    assert (purchase.credits, purchase.amount, purchase.created_by_name) == (10_000, 10, "Root")  # who recorded it


@pytest.mark.parametrize("reader", ["org_overview", "allocations", "billing_timeline"])
def test_org_read_models_refuse_members_and_other_admins(acme, reader):
    read = getattr(usage, reader)
    for outsider in ("bob", "olga"):
        with pytest.raises(PermissionDenied):
            read(acme, outsider, "acme")
    read(acme, "root", "acme")  # a system admin reads every organization


@pytest.mark.parametrize("reader", ["range_totals", "service_usage", "daily_usage", "charges"])
def test_the_organizations_usage_over_a_range_refuses_members_and_other_admins(acme, reader):
    last_30 = usage.date_range(acme, "ada", "acme", "last_30_days")
    read = getattr(usage, reader)
    for outsider in ("bob", "olga"):
        with pytest.raises(PermissionDenied):
            read(acme, outsider, "acme", None, last_30.date_from, last_30.date_to)
        with pytest.raises(PermissionDenied):
            usage.member_usage(acme, outsider, "acme", last_30.date_from, last_30.date_to)
    read(acme, "root", "acme", None, last_30.date_from, last_30.date_to)  # a system admin reads every organization


# ---------------------------------------------------------------- the page, read only


def test_org_billing_shows_the_organization(acme):
    at = open_page("org_billing", "ada", "acme")
    assert not at.exception
    assert metric_values(at, "Plan") == ["Platform"]
    assert metric_values(at, "Status") == ["active"]
    assert metric_values(at, "Price per month") == ["$50.00"]
    assert metric_values(at, "Total credits") == ["10,000"]
    assert metric_values(at, "Allocated") == ["1,500"]
    assert metric_values(at, "Used") == ["262.5"]
    assert metric_values(at, "Available") == ["8,500"]
    assert metric_values(at, "Monthly refresh") == ["0"]
    [pool] = chart_titled(at, "Pool")["data"]
    assert trace_values(pool, "x") == [10000, 1500, 262.5, 8500]
    assert chart_titled(at, "Pool")["layout"]["yaxis"]["ticktext"] == ["total", "allocated", "used", "available"]

    open_tab(at, "Usage", "org_tab")
    last_30 = usage.date_range(acme, "ada", "acme", "last_30_days")  # the Usage tab opens on the last 30 days
    totals = usage.range_totals(acme, "ada", "acme", None, last_30.date_from, last_30.date_to)
    assert metric_values(at, "Credits used") == ["252.5"] == [screen_kit.card_credits(totals.credits_used)]
    assert metric_values(at, "Requests") == ["13"] == [str(totals.requests)]
    assert metric_values(at, "Services") == ["4"] == [str(totals.services)]
    assert metric_values(at, "Members") == ["2"] == [str(totals.members)]
    pie = chart_titled(at, "Credits by service")["data"][0]
    assert dict(zip(pie["labels"], trace_values(pie, "values"), strict=True)) == {  # services in words
        "company enrichment": 200, "contact lookup": 30, "LLM calls": 12.5, "intelligence cache lookup": 10,
    }
    by_member = chart_titled(at, "Credits by member")["data"][0]
    assert trace_values(by_member, "x") == [230, 22.5]
    assert [row[0] for row in by_member["customdata"]] == ["Bob Builder", "Cy &lt;img src=x onerror=alert(1)&gt; \"Quote\" [link](javascript:alert(1))"]
    per_day = chart_titled(at, "Credits per day")["data"]
    assert sum(sum(trace_values(trace, "y")) for trace in per_day) == 252.5
    charges = dataframe(at, "local_time", "user_name", "request_id")
    assert len(charges) == 13 and charges.credits_used.sum() == Decimal("252.5")

    open_tab(at, "Billing history", "org_tab")
    timeline = chart_titled(at, "Billing history")
    assert "credits bought" in {trace["name"] for trace in timeline["data"]}
    history = dataframe(at, "event_type", "total_credits_after")
    assert history[history.event_type == "credits bought"].credits.tolist() == [10_000]

    open_tab(at, "Allocations", "org_tab")
    table = dataframe(at, "display_name", "usage_percent").set_index("email")
    assert table.loc["bob@example.com", "remaining_credits"] == 760
    assert table.loc["cy@example.com", "remaining_credits"] == Decimal("477.5")


def test_a_system_admin_sees_the_same_page(acme):
    at = open_page("org_billing", "root", "acme")
    assert not at.exception and not at.error
    assert metric_values(at, "Available") == ["8,500"]
    assert len(dataframe(at, "display_name", "usage_percent")) == 4


@pytest.mark.parametrize("actor_id", ["bob", "olga"])
def test_members_and_other_admins_are_refused(acme, actor_id):
    at = open_page("org_billing", actor_id, "acme")
    assert not at.exception
    assert errors(at) == [f"User '{actor_id}' is not an admin of organization 'acme'."]
    assert not at.metric and not at.dataframe and not at.get("plotly_chart") and not at.button


def test_the_page_needs_a_login_and_an_organization(acme):
    at = open_page("org_billing", None, "acme")
    assert [w.value for w in at.warning] == ["Please log in."] and not at.metric
    at = open_page("org_billing", "ada", None)
    assert at.info[0].value == "You are not a member of any organization yet." and not at.metric
    at = open_page("org_billing", "root", "no-such-org")
    assert errors(at) == ["Organization 'no-such-org' does not exist."] and not at.metric


def test_search_filters_the_allocations_by_name_or_email(acme):
    at = open_page("org_billing", "ada", "acme")
    at.text_input(key="allocation_search").input("BUILDER").run()
    assert dataframe(at, "display_name", "usage_percent").email.tolist() == ["bob@example.com"]
    at.text_input(key="allocation_search").input("dee@").run()
    assert dataframe(at, "display_name", "usage_percent").display_name.tolist() == ["Dee Dee"]
    at.text_input(key="allocation_search").input("<img").run()
    assert dataframe(at, "display_name", "usage_percent").display_name.tolist() == [CY_NAME]


# ---------------------------------------------------------------- credit forms


def test_allocating_through_the_form_changes_the_database_and_the_table(acme):
    at = open_page("org_billing", "ada", "acme")
    submit(at, "allocate", {"allocate_user": "cy", "allocate_credits": "250"}, confirm=False)
    assert "Allocate 250 credits to" in plain(at.warning[0].value)  # asks first, changes nothing yet
    assert allocation_of(acme, "cy") == (500, Decimal("477.5"))
    at.button(key="allocate_confirm").click().run()
    assert not at.exception
    assert allocation_of(acme, "cy") == (750, Decimal("727.5"))
    assert dataframe(at, "display_name", "usage_percent").set_index("email").loc["cy@example.com", "allocated_credits"] == 750
    assert metric_values(at, "Available") == ["8,250"]
    assert any("now has 727.5 credits remaining" in plain(s.value) for s in at.success)


def test_taking_back_and_adding_credits_through_the_forms(acme):
    at = open_page("org_billing", "ada", "acme")
    submit(at, "reclaim", {"reclaim_user": "bob", "reclaim_credits": "100"})
    assert allocation_of(acme, "bob") == (900, 660)
    assert any("Took back 100 credits" in plain(s.value) for s in at.success)
    submit(at, "reclaim", {"reclaim_user": "cy", "reclaim_credits": ""})  # empty: all unused
    assert allocation_of(acme, "cy") == (Decimal("22.5"), 0)
    assert metric_values(at, "Available") == ["9,077.5"]

    # credits are bought, not added: an order at the list price, credited once its payment is recorded
    at.radio(key="buy_kind").set_value("credits")
    submit(at, "buy", {"buy_credits": "5,000"}, confirm=False)
    question = plain(at.warning[-1].value)
    assert "Order 5,000 credits for $5.00" in question and "waits for payment" in question
    at.button(key="buy_confirm").click().run()
    assert reports.pool(acme, "ada", "acme").total_credits == 10_000
    order = orders.orders_of(acme, "ada", "acme").iloc[0]  # newest first
    assert (order.credits, order.price, order.status) == (5000, 5, "awaiting_payment")
    open_tab(at, "Orders", "org_tab")
    assert dataframe(at, "state", "payment_reference").state.tolist()[0] == "awaiting payment"
    orders.record_payment(acme, None, order.id, "INV-7")
    st.cache_data.clear()  # the operator recorded it outside the app: drop the page's 30 s read cache
    at = open_page("org_billing", "ada", "acme")
    assert metric_values(at, "Total credits") == ["15,000"]
    history = dataframe(open_tab(at, "Billing history", "org_tab"), "event_type", "total_credits_after")
    assert history.iloc[0][["credits", "amount", "total_credits_after"]].tolist() == [5000, 5, 15000]
    open_tab(at, "Orders", "org_tab")
    assert dataframe(at, "state", "payment_reference").iloc[0][["state", "payment_reference"]].tolist() == [
        "paid", "INV-7"]
    assert ledger.verify(acme) == []


def test_the_add_credits_form_with_a_typed_price_is_gone(acme):
    at = open_page("org_billing", "ada", "acme")
    keys = {w.key for w in at.text_input}
    assert not {"add_credits", "add_paid", "add_reference"} & keys
    assert not any("Amount paid" in w.label for w in at.text_input)
    assert "buy_credits" in keys


def test_buying_a_package_and_canceling_the_order(acme):
    at = open_page("org_billing", "ada", "acme")
    at.radio(key="buy_kind").set_value("package")
    at.selectbox(key="buy_package").set_value("growth_50k")
    at.button(key="buy_submit").click().run()
    question = plain(at.warning[-1].value)
    assert "Order 52,500 credits for $50.00 (Package Growth 50K: 50000 credits + 2500 bonus for $50)" in question
    at.button(key="buy_confirm").click().run()
    assert not at.exception
    placed = orders.orders_of(acme, "ada", "acme")
    placed = placed[placed.package_code.notna()]  # the fixture's funding was an order of 10,000 credits
    assert placed.package_code.tolist() == ["growth_50k"]
    open_tab(at, "Orders", "org_tab")
    at.selectbox(key="order_cancel_id").set_value(placed.id.iloc[0])
    at.button(key="order_cancel_submit").click().run()
    at.button(key="order_cancel_confirm").click().run()
    assert orders.orders_of(acme, "ada", "acme").set_index("id").status[placed.id.iloc[0]] == "canceled"
    assert reports.pool(acme, "ada", "acme").total_credits == 10_000


def test_cancelling_a_confirmation_changes_nothing(acme):
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    submit(at, "allocate", {"allocate_user": "bob", "allocate_credits": "10"}, confirm=False)
    at.button(key="allocate_cancel").click().run()
    assert snapshot(acme) == before
    assert [plain(i.value) for i in at.info] == ["Cancelled: nothing changed."]
    assert not [b for b in at.button if b.key == "allocate_confirm"]


BAD_INPUT = [
    ("allocate", {"allocate_user": "bob", "allocate_credits": "0"}, "Credits to allocate must be greater than 0 (got 0)."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "-5"}, "Credits to allocate must be greater than 0 (got -5)."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "8500.5"},
     ("Not enough credits in the pool of Acme Analytics: 8500 available, 8500.5 requested. "
      "Add credits or take back unused ones first.")),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "ten"}, "Credits to allocate is not a number (got 'ten')."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": ""}, "Credits to allocate is not a number (got '')."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "0.0000001"},
     "Credits to allocate has more than 6 decimal places (got 0.0000001)."),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "761"},
     "Bob Builder has only 760 unused credits: cannot take back 761."),
    ("reclaim", {"reclaim_user": "dee", "reclaim_credits": ""},
     "Dee Dee has no active allocation in Acme Analytics: nothing to take back."),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "-1"}, "Credits to take back must be greater than 0 (got -1)."),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "1,5"},
     ("Credits to take back has a comma out of place (got '1,5'): use a dot for decimals, "
      "commas only between groups of three digits.")),
    ("buy", {"buy_credits": "0"}, "Credits to buy must be greater than 0 (got 0)."),
    ("buy", {"buy_credits": "-5"}, "Credits to buy must be greater than 0 (got -5)."),
    ("buy", {"buy_credits": "1e13"},
     "Credits to buy is too large: at most 1,000,000,000,000 credits per operation (got 10000000000000)."),
    ("buy", {"buy_credits": "lots"}, "Credits to buy is not a number (got 'lots')."),
    ("buy", {"buy_credits": ""}, "Credits to buy is not a number (got '')."),
    ("buy", {"buy_credits": "100.5"}, "Credits to buy must be a whole number (got 100.5)."),
    ("buy", {"buy_credits": "0.0000001"}, "Credits to buy has more than 6 decimal places (got 0.0000001)."),
]


@pytest.mark.parametrize("form", ["allocate", "reclaim", "buy"])
def test_bad_form_input_shows_the_refusal_and_changes_nothing(acme, form):
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    if form == "buy":
        at.radio(key="buy_kind").set_value("credits")
    for case_form, fields, message in BAD_INPUT:
        if case_form != form:
            continue
        submit(at, form, fields)
        assert errors(at) == [message], fields
        assert snapshot(acme) == before, fields
        assert metric_values(at, "Available") == ["8,500"]


def test_a_form_sent_after_the_role_was_lost_is_refused(acme):
    at = open_page("org_billing", "ada", "acme")
    organizations.add_member(acme, None, "acme", "olga", "admin")
    organizations.set_member_role(acme, "olga", "acme", "ada", "member")
    before = snapshot(acme)
    submit(at, "allocate", {"allocate_user": "bob", "allocate_credits": "5"})
    assert "Ada Admin is not an admin of Acme Analytics." in errors(at)
    assert snapshot(acme) == before


# ---------------------------------------------------------------- members


def members_table(at):
    on_tab_of(at, "member")
    return dataframe(at, "display_name", "joined_at").set_index("email")


def invite_through_the_form(at, email: str, name: str = "", role: str = "member"):
    submit(at, "member_invite", {"member_invite_email": email, "member_invite_name": name, "member_invite_role": role})
    return at


def test_inviting_answers_the_same_whether_the_email_has_an_account_or_not(acme):
    at = open_page("org_billing", "ada", "acme")
    invite_through_the_form(at, "  Eve@example.COM ", "Typed Name")  # eve has an account (another user's)
    [(eve_message, eve_code)] = [(plain(s.value), at.code[0].value) for s in at.success]
    invite_through_the_form(at, "Newbie@Example.com", "New <b>Bie</b>", "admin")  # no account yet
    [(new_message, new_code)] = [(plain(s.value), at.code[0].value) for s in at.success]
    assert eve_message == "Invitation sent to eve@example.com; they join when they accept."
    assert new_message == "Invitation sent to newbie@example.com; they join when they accept."
    assert len(eve_code) == len(new_code) == 32
    at.run()  # the next run no longer shows the code
    assert not at.code

    pending = dataframe(at, "invited", "invited_by")
    assert sorted(pending.invited) == ["eve@example.com", "newbie@example.com"]
    page_text = " ".join(map(str, pending.to_numpy().ravel())) + " ".join(plain(t) for t in texts_of(at))
    assert "Eve Outside" not in page_text and "Typed Name" not in page_text  # no name before they accept
    assert "eve@example.com" not in members_table(at).index and "newbie@example.com" not in members_table(at).index
    assert usage.org_overview(acme, "ada", "acme").member_count == 4
    # the new account has no password (nobody can log in with it) and the admin's name for it
    [(stored_hash, display_name)] = fetch(
        acme, "select password_hash, display_name from users where id = 'newbie@example.com'")
    assert stored_hash is None and display_name == "New <b>Bie</b>"
    assert organizations.get_user(acme, "eve").display_name == "Eve Outside"

    before = snapshot(acme)
    invite_through_the_form(at, "eve@example.com")
    assert errors(at) == ["eve@example.com already has a pending invitation to Acme Analytics: "
                          "revoke it to send a new one."]
    invite_through_the_form(at, "not an email")
    assert errors(at) == ["Email 'not an email' is not an email address (expected name@example.com)."]
    invite_through_the_form(at, "bob@example.com")
    assert errors(at) == ["bob@example.com is already a member of Acme Analytics."]  # the admin sees members anyway
    assert not at.code
    assert snapshot(acme) == before


def texts_of(at) -> list[str]:
    return [el.value for kind in ("markdown", "caption", "success", "info", "warning", "error")
            for el in at.get(kind)]


def test_an_invited_user_joins_only_by_accepting(acme):
    auth.reset_password(acme, None, "eve", "eve's own pass")  # an account that can log in
    at = open_page("org_billing", "ada", "acme")
    invite_through_the_form(at, "eve@example.com", role="admin")
    mine = open_page("my_credits", "eve", None)
    assert any("Ada Admin invites you to Acme Analytics as admin" in plain(m.value) for m in mine.markdown)
    [accept] = [b for b in mine.button if b.label == "Accept"]
    accept.click().run()
    assert not mine.exception
    assert any(plain(s.value) == "You joined Acme Analytics." for s in mine.success)
    assert auth.user_roles(acme, "eve").role_in("acme") == "admin"
    assert not [b for b in mine.button if b.label == "Accept"]  # answered: gone
    assert [a["action"] for a in audit(acme, "eve")] == ["user.created", "user.password_reset", "member.added"]


def test_declining_and_revoking_through_the_screens(acme):
    at = open_page("org_billing", "ada", "acme")
    invite_through_the_form(at, "eve@example.com")
    mine = open_page("my_credits", "eve", None)
    next(b for b in mine.button if b.label == "Decline").click().run()
    assert any(plain(s.value) == "You declined the invitation to Acme Analytics." for s in mine.success)
    assert auth.user_roles(acme, "eve").role_in("acme") is None

    at = open_page("org_billing", "ada", "acme")
    invite_through_the_form(at, "newbie@example.com")
    submit(at, "member_revoke", {})
    assert any(plain(s.value) == "Revoked the invitation of newbie@example.com (member)." for s in at.success)
    assert "invited" not in {c for t in at.dataframe for c in t.value.columns}  # no pending invitation left
    assert organizations.get_user(acme, "newbie@example.com") is not None  # the account stays, without a password


def test_only_system_admins_add_members_directly(acme):
    at = open_page("org_billing", "ada", "acme")
    assert "member_add_submit" not in [b.key for b in at.button]
    root = open_page("org_billing", "root", "acme")
    submit(root, "member_add", {"member_add_email": "  EVE@example.COM ", "member_add_role": "member"})
    assert any(plain(s.value) == "Added EVE@example.COM to Acme Analytics as member." for s in root.success)
    assert members_table(root).loc["eve@example.com", "role"] == "member"


def audit(db, user_id):
    rows = fetch(db, "select action, actor_id from audit_log where target_id = :u order by id", {"u": user_id})
    return [{"action": action, "actor_id": actor} for action, actor in rows]


def test_changing_a_role_and_removing_a_member(acme):
    at = open_page("org_billing", "ada", "acme")
    submit(at, "member_role", {"member_role_user": "dee", "member_role_role": "admin"})
    assert members_table(at).loc["dee@example.com", "role"] == "admin"

    submit(at, "member_remove", {"member_remove_user": "bob"})
    assert any("760 unused credits returned to the pool" in plain(s.value) for s in at.success)
    assert "bob@example.com" not in members_table(at).index
    assert metric_values(at, "Available") == ["9,260"]
    assert metric_values(at, "Used") == ["262.5"]  # what bob used stays in history
    last_30 = usage.date_range(acme, "ada", "acme", "last_30_days")
    by_user = usage.member_usage(acme, "ada", "acme", last_30.date_from, last_30.date_to).set_index("user_id")
    assert not by_user.loc["bob", "is_member"] and by_user.loc["cy", "is_member"]  # bob's usage stays, as a former member
    assert ledger.verify(acme) == []


def test_the_only_admin_cannot_be_demoted_or_removed(acme):
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    submit(at, "member_role", {"member_role_user": "ada", "member_role_role": "member"})
    assert errors(at) == ["Ada Admin is the only admin of Acme Analytics: make another member admin first."]
    submit(at, "member_remove", {"member_remove_user": "ada"})
    assert errors(at) == ["Ada Admin is the only admin of Acme Analytics: make another member admin first."]
    assert snapshot(acme) == before


def test_member_functions_check_the_role_in_the_database(acme):
    before = snapshot(acme)
    with pytest.raises(PermissionDenied):
        organizations.add_member_by_email(acme, "bob", "acme", "eve@example.com")
    with pytest.raises(PermissionDenied, match="invites people by email"):
        organizations.add_member_by_email(acme, "ada", "acme", "eve@example.com")
    with pytest.raises(PermissionDenied):
        invitations.invite(acme, "bob", "acme", "x@example.com")
    with pytest.raises(PermissionDenied):  # an org admin invites into their own organization only
        invitations.invite(acme, "olga", "acme", "x@example.com")
    assert snapshot(acme) == before
    invitations.invite(acme, "olga", "other", "x@example.com")
    assert organizations.get_user(acme, "x@example.com") is not None


# ---------------------------------------------------------------- text stays text


def test_names_with_html_and_markup_render_as_text(acme):
    at = open_page("org_billing", "ada", "acme")
    assert no_html_allowed(at)
    assert CY_NAME in set(dataframe(at, "display_name", "usage_percent").display_name)
    by_user = chart_titled(open_tab(at, "Usage", "org_tab"), "Credits by member")
    assert no_html_allowed(at)
    assert by_user["data"][0]["customdata"][1][0].startswith("Cy &lt;img src=x onerror=alert(1)&gt;")
    assert by_user["layout"]["yaxis"]["ticktext"][1] == "Cy &lt;img src=x onerror=alert…"
    submit(at, "allocate", {"allocate_user": "cy", "allocate_credits": "1"}, confirm=False)
    question = at.warning[0].value
    assert screen_kit.md_text(CY_NAME) in question and CY_NAME in plain(question)
    assert at.selectbox(key="allocate_user").format_func("cy") == f"{CY_NAME} (cy@example.com)"


def test_a_hostile_name_reaches_the_grid_formula_safe(acme):
    hostile = '=HYPERLINK("http://evil.example","click")'
    organizations.create_user(acme, None, "hal", "hal@example.com", hostile)
    organizations.add_member(acme, None, "acme", "hal")
    at = open_page("org_billing", "ada", "acme")
    allocations = dataframe(at, "display_name", "usage_percent")
    assert "'" + hostile in set(allocations.display_name) and hostile not in set(allocations.display_name)
    assert allocations.allocated_credits.dtype.kind == "f"  # numbers stay numbers (sortable)
    assert "'" + hostile in set(members_table(at).display_name)


# ---------------------------------------------------------------- issue 9: checked before the question


def buttons(at) -> set[str]:
    return {b.key for b in at.button}


def column_keys(at, key: str) -> set[str]:
    """The keys of every widget in the innermost column (or the page, outside any) holding the widget `key`."""
    def keys_in(node) -> set[str]:
        found = {node.key} if getattr(node, "key", None) else set()
        for child in getattr(node, "children", {}).values():
            found |= keys_in(child)
        return found

    def column(node, inside):
        if getattr(node, "key", None) == key:
            return inside
        for child in getattr(node, "children", {}).values():
            hit = column(child, child if type(child).__name__ == "Column" else inside)
            if hit is not None:
                return hit
        return None

    holder = column(at._tree, at._tree)
    assert holder is not None, f"no widget {key}"
    return keys_in(holder)


def ask(at, form: str, **fields):
    """Fill a form (selects, radios and text fields by key) and send it, without confirming."""
    on_tab_of(at, form)
    for key, value in fields.items():
        if key in {s.key for s in at.selectbox}:
            at.selectbox(key=key).set_value(value)
        elif key in {r.key for r in at.radio}:
            at.radio(key=key).set_value(value)
        else:
            at.text_input(key=key).set_value(value)
    at.button(key=f"{form}_submit").click().run()
    assert not at.exception
    return at


def moved_to_other(db, user_id: str) -> None:
    """The member leaves acme and joins the other organization (after the page listed them)."""
    organizations.remove_member(db, "ada", "acme", user_id)
    organizations.add_member(db, None, "other", user_id)


TOO_LARGE = "is too large: at most 1,000,000,000,000 credits per operation (got 1.00e+20)."
REFUSED_BEFORE_ASKING = [
    ("allocate", {"allocate_user": "bob", "allocate_credits": "0"}, None,
     "Credits to allocate must be greater than 0 (got 0)."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "-5"}, None,
     "Credits to allocate must be greater than 0 (got -5)."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "1e20"}, None, "Credits to allocate " + TOO_LARGE),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "0.0000001"}, None,
     "Credits to allocate has more than 6 decimal places (got 0.0000001)."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "abc"}, None,
     "Credits to allocate is not a number (got 'abc')."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "8,501"}, None,
     "Not enough credits in the pool of Acme Analytics: 8500 available, 8501 requested. "
     "Add credits or take back unused ones first."),
    ("allocate", {"allocate_user": "bob", "allocate_credits": "5"},
     lambda db: organizations.remove_member(db, "ada", "acme", "bob"),
     "Bob Builder is not a member of Acme Analytics."),
    ("allocate", {"allocate_user": "dee", "allocate_credits": "5"}, lambda db: moved_to_other(db, "dee"),
     "Dee Dee is not a member of Acme Analytics."),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "0"}, None,
     "Credits to take back must be greater than 0 (got 0)."),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "1e20"}, None, "Credits to take back " + TOO_LARGE),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "abc"}, None,
     "Credits to take back is not a number (got 'abc')."),
    ("reclaim", {"reclaim_user": "bob", "reclaim_credits": "761"}, None,
     "Bob Builder has only 760 unused credits: cannot take back 761."),
    ("reclaim", {"reclaim_user": "cy", "reclaim_credits": "1"}, lambda db: moved_to_other(db, "cy"),
     f"{CY_NAME} is not a member of Acme Analytics."),
    ("buy", {"buy_kind": "credits", "buy_credits": "1e20"}, None, "Credits to buy " + TOO_LARGE),
    ("buy", {"buy_kind": "credits", "buy_credits": "0.0000001"}, None,
     "Credits to buy has more than 6 decimal places (got 0.0000001)."),
    ("buy", {"buy_kind": "credits", "buy_credits": "-5"}, None, "Credits to buy must be greater than 0 (got -5)."),
    ("member_role", {"member_role_user": "ada", "member_role_role": "member"}, None,
     "Ada Admin is the only admin of Acme Analytics: make another member admin first."),
    ("member_role", {"member_role_user": "dee", "member_role_role": "admin"}, lambda db: moved_to_other(db, "dee"),
     "Dee Dee is not a member of Acme Analytics."),
    ("member_remove", {"member_remove_user": "ada"}, None,
     "Ada Admin is the only admin of Acme Analytics: make another member admin first."),
    ("plan_change", {"plan_change_plan": "hybrid", "plan_change_when": "now"},
     lambda db: subscriptions.cancel(db, "root", "acme", at_period_end=False),
     "Acme Analytics has no live subscription: subscribe to a plan first."),
    ("cancel", {"cancel_when": "period_end"},
     lambda db: subscriptions.cancel(db, "root", "acme", at_period_end=True), "The subscription to Platform ends at"),
]


@pytest.mark.parametrize("form, fields, meanwhile, message", REFUSED_BEFORE_ASKING,
                         ids=[f"{case[0]}-{'-'.join(map(str, case[1].values()))}" for case in REFUSED_BEFORE_ASKING])
def test_every_form_is_refused_before_its_question(acme, form, fields, meanwhile, message):
    at = open_page("org_billing", "ada", "acme")
    if meanwhile is not None:
        meanwhile(acme)  # after the page listed its choices: the database knows better
    before = snapshot(acme)
    ask(at, form, **fields)
    assert f"{form}_confirm" not in buttons(at)  # refused before any "Confirm?"
    assert not at.warning or all("?" not in plain(w.value) for w in at.warning)
    [shown] = errors(at)
    assert shown.startswith(message)  # the whole message (a date ends the last one)
    assert snapshot(acme) == before


def test_an_invitation_with_a_bad_address_or_for_a_member_is_refused_and_changes_nothing(acme):
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    invite_through_the_form(at, "not an email")
    assert errors(at) == ["Email 'not an email' is not an email address (expected name@example.com)."]
    invite_through_the_form(at, "dee@example.com")
    assert errors(at) == ["dee@example.com is already a member of Acme Analytics."]
    assert not at.code and snapshot(acme) == before


def test_the_rate_limit_refuses_a_plan_change_before_the_question(acme):
    for _ in range(2):
        subscriptions.schedule_change(acme, "ada", "acme", "byok")
        subscriptions.reactivate(acme, "ada", "acme")
    subscriptions.schedule_change(acme, "ada", "acme", "starter")  # the 5th change this hour
    st.cache_data.clear()
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    ask(at, "plan_change", plan_change_plan="hybrid", plan_change_when="now")
    assert "plan_change_confirm" not in buttons(at)
    assert "an organization admin may make 5 an hour" in errors(at)[0]
    assert snapshot(acme) == before


def test_a_take_back_with_nothing_unused_says_so_instead_of_asking(acme):
    credits.deduct(acme, "acme", "cy", "477.5", "llm", "gpt-4o")  # cy used everything
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    ask(at, "reclaim", reclaim_user="cy", reclaim_credits="")
    assert "reclaim_confirm" not in buttons(at)
    assert [plain(i.value) for i in at.info] == [f"{CY_NAME} has no unused credits: nothing to take back."]
    assert snapshot(acme) == before


def test_questions_say_what_will_happen_next_to_the_form_that_asked(acme):
    at = open_page("org_billing", "ada", "acme")
    ask(at, "reclaim", reclaim_user="bob", reclaim_credits="")
    assert "reclaim_confirm" in column_keys(at, "reclaim_submit")  # beside its form, not above the page
    assert "allocate_submit" not in column_keys(at, "reclaim_submit")
    assert "Take back all 760 unused credits from Bob Builder?" in plain(at.warning[-1].value)
    at.button(key="reclaim_cancel").click().run()

    ask(at, "allocate", allocate_user="dee", allocate_credits="1")
    assert "allocate_confirm" in column_keys(at, "allocate_submit")
    assert "Allocate 1 credit to Dee Dee? Dee Dee then has 1 credit remaining." in plain(
        at.warning[-1].value)  # "1 credit", never "1 credits"
    at.button(key="allocate_cancel").click().run()

    ask(at, "member_remove", member_remove_user="bob")
    assert "member_remove_confirm" in column_keys(at, "member_remove_submit")
    assert "Their 760 unused credits return to the pool" in plain(at.warning[-1].value)
    at.button(key="member_remove_cancel").click().run()

    ask(at, "cancel", cancel_when="now")
    assert "cancel_confirm" in column_keys(at, "cancel_submit")
    assert "plan_change_submit" not in column_keys(at, "cancel_submit")


def test_the_plan_change_question_says_the_included_credits_change(acme):
    at = open_page("org_billing", "ada", "acme")
    ask(at, "plan_change", plan_change_plan="hybrid", plan_change_when="now")
    question = plain(at.warning[-1].value)
    assert "Included credits change from 25,000 to 50,000 credits each billing period." in question
    assert "plan_change_confirm" in column_keys(at, "plan_change_submit")
    at.button(key="plan_change_cancel").click().run()
    ask(at, "plan_change", plan_change_plan="starter", plan_change_when="period_end")
    question = plain(at.warning[-1].value)
    assert "$19.00 a month from then. Included credits change from 25,000 to 5,000 credits" in question


def test_a_form_clears_after_success_and_says_what_happened(acme):
    at = open_page("org_billing", "ada", "acme")
    submit(at, "allocate", {"allocate_user": "dee", "allocate_credits": "1,000"})
    assert [plain(s.value) for s in at.success] == ["Allocated 1,000 credits: Dee Dee now has 1,000 credits remaining."]
    assert at.text_input(key="allocate_credits").value == ""  # a second click cannot send it again
    submit(at, "reclaim", {"reclaim_user": "dee", "reclaim_credits": "400"})
    assert [plain(s.value) for s in at.success] == [
        "Took back 400 credits from Dee Dee: they are available in the pool again."]
    assert at.text_input(key="reclaim_credits").value == ""
    at.radio(key="buy_kind").set_value("credits")
    submit(at, "buy", {"buy_credits": "2,500"})
    [placed] = [plain(s.value) for s in at.success]
    assert "awaiting payment. Its 2,500 credits reach the pool when a system admin records the payment." in placed
    assert at.text_input(key="buy_credits").value == ""
    invite_through_the_form(at, "new@example.com", "New Person")
    assert at.text_input(key="member_invite_email").value == "" and at.text_input(key="member_invite_name").value == ""


def test_the_database_stays_the_last_word_and_no_success_is_claimed(acme):
    at = open_page("org_billing", "ada", "acme")
    ask(at, "allocate", allocate_user="bob", allocate_credits="8,000")
    assert "allocate_confirm" in buttons(at)  # 8,500 available when asked
    credits.allocate(acme, "ada", "acme", "dee", 1_000)  # another admin, meanwhile
    before = snapshot(acme)
    at.button(key="allocate_confirm").click().run()
    assert not at.success
    assert errors(at) == ["Not enough credits in the pool of Acme Analytics: 7500 available, 8000 requested. "
                          "Add credits or take back unused ones first."]
    assert at.text_input(key="allocate_credits").value == "8,000"  # refused: the field keeps what was typed
    assert snapshot(acme) == before


def test_the_screen_shows_words_not_codes(acme):
    subscriptions.schedule_change(acme, "ada", "acme", "byok")
    orders.create_order(acme, "ada", "acme", credits=1_000)  # awaiting payment: no reference, no paid time yet
    invitations.invite(acme, "ada", "acme", "new@example.com")
    at = open_page("org_billing", "ada", "acme")
    shown = [plain(t) for t in texts(at)] + [m.value for m in at.metric] + [m.label for m in at.metric]
    for frame in at.dataframe:
        shown += [str(v) for column in frame.value.columns if frame.value[column].dtype == object
                  for v in frame.value[column] if column not in ("email", "display_name", "id")]
    code = re.compile(r"\b[a-z]+_[a-z_]+\b|\bNone\b|0E-|\b1 (members|credits|alerts|lots)\b|organization '")
    assert [text for text in shown if code.search(text)] == [], shown
    assert "Status: active · 4 members" in shown


def test_key_columns_come_first_for_a_phone(acme):
    at = open_page("org_billing", "ada", "acme")
    assert list(dataframe(at, "usage_percent").columns[:2]) == ["display_name", "remaining_credits"]
    assert list(dataframe(at, "expires").columns[:2]) == ["remaining_credits", "expires"]
    open_tab(at, "Members", "org_tab")
    assert list(dataframe(at, "joined_at").columns[:3]) == ["display_name", "role", "remaining_credits"]
    open_tab(at, "Billing history", "org_tab")
    assert list(dataframe(at, "total_credits_after").columns[:3]) == ["created_at", "event_type", "credits"]
    open_tab(at, "Orders", "org_tab")
    assert list(dataframe(at, "payment_reference").columns[:3]) == ["state", "credits", "price"]


def test_subscribing_is_checked_before_the_question_and_the_question_says_the_terms(acme):
    for plan in ("byok", "starter"):
        subscriptions.schedule_change(acme, "ada", "acme", plan)
        subscriptions.reactivate(acme, "ada", "acme")
    subscriptions.schedule_change(acme, "ada", "acme", "byok")  # ada's 5th subscription change this hour
    subscriptions.cancel(acme, "root", "acme", at_period_end=False)
    st.cache_data.clear()
    at = open_page("org_billing", "ada", "acme")
    before = snapshot(acme)
    ask(at, "subscribe", subscribe_plan="starter")
    assert "subscribe_confirm" not in buttons(at)
    assert errors(at)[0].startswith("Too many subscription changes: an organization admin may make 5 an hour.")
    assert snapshot(acme) == before

    root = open_page("org_billing", "root", "acme")  # a system admin is not rate limited
    ask(root, "subscribe", subscribe_plan="starter")
    assert "subscribe_confirm" in column_keys(root, "subscribe_submit")
    assert plain(root.warning[-1].value) == ("Subscribe Acme Analytics to Starter at $19.00 a month, with 5,000 "
                                             "credits included each billing period?")
    assert snapshot(acme) == before  # asking changed nothing


def test_the_members_requests_for_credits_wait_on_the_allocations_tab(acme):
    from billing_core import credit_requests

    credit_requests.request(acme, "bob", "acme", 100, "for the Q3 report")
    at = open_page("org_billing", "ada", "acme")
    assert not at.exception
    assert "Credit requests" in [plain(s.value) for s in at.subheader]
    assert any(plain(c.value).startswith("1 request waiting for an answer.") for c in at.caption)
