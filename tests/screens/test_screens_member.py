"""The "My credits" page (pages/my_credits.py) and the read models behind it.

Dataset (built through billing_core, figures checked by hand):
  north  'North <script>alert("x")</script> & Co'  Platform plan, 10,000 credits
         mia: 1,000 allocated; used 3 x 50 company_enrichment now, 2 x 10 contact_lookup
              a day ago, 7.5 llm 40 days ago (outside the 30-day window) -> used 177.5
         ned: 500 allocated; 10 contact_lookup now (not mia's)
  south  'South Ltd'  BYOK plan, 2,000 credits
         mia: 400 allocated; used 4 x 2 intelligence_cache_lookup now -> used 8
Mia's last 30 days (calendar days in UTC, the organizations' zone): north 150 + 20 = 170 credits, 5 requests,
2 services; south 8, 4, 1 (178, 9, 3 together).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from ledger_state import snapshot
from screen_testing import (
    chart_titled,
    dataframe,
    errors,
    metric_values,
    no_html_allowed,
    open_page,
    plain,
    tables,
    texts,
    trace_values,
)

from billing_core import credit_requests, credits, organizations, periods, subscriptions, usage
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


def last_30_days(db, actor_id: str, org_id: str) -> tuple:
    """The span of the range reads over the last 30 days of the organization, for the actor's own usage."""
    r = usage.date_range(db, actor_id, org_id, "last_30_days")
    return (actor_id, org_id, actor_id, r.date_from, r.date_to)


def test_member_usage_reads_cover_only_the_member_and_the_range(dataset):
    north, south = last_30_days(dataset, "mia", "north"), last_30_days(dataset, "mia", "south")
    assert usage.range_totals(dataset, *north) == usage.RangeTotals(Decimal(170), Decimal("0.17"), 5, 2, 1)
    assert usage.range_totals(dataset, *south) == usage.RangeTotals(Decimal(8), Decimal("0.008"), 4, 1, 1)

    daily = usage.daily_usage(dataset, *north)
    assert daily.credits_used.sum() == 170
    assert daily.requests.sum() == 5
    by_service = daily.groupby("service_type").credits_used.sum().to_dict()
    assert by_service == {"company_enrichment": 150, "contact_lookup": 20}  # not ned's lookup
    today = usage.date_range(dataset, "mia", "north", "today").date_to
    assert set(daily.day) == {today, today - timedelta(days=1)}

    charges = usage.charges(dataset, *north)
    assert len(charges) == 5 and set(charges.user_id) == {"mia"}  # the llm charge 40 days ago is outside the range
    assert list(charges.created_at) == sorted(charges.created_at, reverse=True)
    wider = usage.date_range(dataset, "mia", "north", "custom", today - timedelta(days=45), today)
    assert usage.charges(dataset, "mia", "north", "mia", wider.date_from, wider.date_to).credits_used.sum() == \
        Decimal("177.5")  # a range back 45 days holds it: what the north card's Used counts
    assert usage.charges(dataset, *south, limit=3).credits_used.tolist() == [2, 2, 2]


def test_member_reads_refuse_other_organizations_and_unknown_people(dataset):
    north = last_30_days(dataset, "mia", "north")
    with pytest.raises(PermissionDenied):
        usage.date_range(dataset, "ned", "south", "last_30_days")
    with pytest.raises(PermissionDenied):
        usage.range_totals(dataset, "ned", "south", "ned", *north[3:])
    with pytest.raises(PermissionDenied):
        usage.range_totals(dataset, "mia", "north", "ned", *north[3:])  # another member's usage
    with pytest.raises(PermissionDenied):
        usage.daily_usage(dataset, "", "north", "", *north[3:])
    with pytest.raises(NotFound):
        usage.member_cards(dataset, "nobody")
    assert usage.member_cards(dataset, "loner") == []


# ---------------------------------------------------------------- the page


def test_my_credits_shows_every_organization_and_my_usage_in_the_default_one(dataset):
    at = open_page("my_credits", "mia")
    assert not at.exception
    assert metric_values(at, "Remaining") == ["822.5", "392"]
    assert metric_values(at, "Allocated") == ["1,000", "400"]
    assert metric_values(at, "Used") == ["177.5", "8"]
    # no organization chosen: the range views show the default one (north), over the last 30 days
    totals = usage.range_totals(dataset, *last_30_days(dataset, "mia", "north"))
    assert metric_values(at, "Credits used") == ["170"] == [screen_kit.card_credits(totals.credits_used)]
    assert metric_values(at, "Requests") == ["5"] == [str(totals.requests)]
    assert metric_values(at, "Services") == ["2"] == [str(totals.services)]
    assert metric_values(at, "Members") == []  # my own usage: no organization figure
    assert f"My usage in {screen_kit.md_text(NORTH_NAME)}" in [h.value for h in at.subheader]
    assert "Your default organization; choose another at the top." in [c.value for c in at.caption]
    today = f"{datetime.now(UTC):%Y-%m-%d}"  # the allocations opened today (UTC, the organizations' zone)
    assert [p.proto.text for p in at.get("progress")] == [f"17.8% used since {today}", f"2.0% used since {today}"]

    daily = chart_titled(at, "Credits per day")
    assert sum(sum(trace_values(trace, "y")) for trace in daily["data"]) == 170
    assert {trace["name"] for trace in daily["data"]} == {"company enrichment", "contact lookup"}

    compared = dataframe(at, "org_name", "credits_used_30d")  # every organization side by side, 30 days each
    assert compared.set_index("org_name").loc["South Ltd", "remaining_credits"] == 392
    assert compared.set_index("org_name").loc[NORTH_NAME, "credits_used_30d"] == 170
    assert compared.set_index("org_name").loc["South Ltd", "credits_used_30d"] == 8
    comparison = chart_titled(at, "Allocation per organization")
    assert {trace["name"] for trace in comparison["data"]} == {"allocated", "used", "remaining"}

    charges = dataframe(at, "local_time", "request_id", "explained")
    assert len(charges) == 5 and charges.credits_used.sum() == 170  # the 7.5 from 40 days ago is outside the range
    assert "user_name" not in charges.columns  # my own charges: no member column
    assert "1–5 of 5 charges. Times in UTC." in [plain(c.value) for c in at.caption]


def test_my_credits_follows_the_chosen_organization(dataset):
    at = open_page("my_credits", "mia", "south")
    assert not at.exception
    totals = usage.range_totals(dataset, *last_30_days(dataset, "mia", "south"))
    assert metric_values(at, "Credits used") == ["8"] == [screen_kit.card_credits(totals.credits_used)]
    assert metric_values(at, "Requests") == ["4"] == [str(totals.requests)]
    assert metric_values(at, "Services") == ["1"] == [str(totals.services)]
    assert "My usage in South Ltd" in [h.value for h in at.subheader]
    charges = dataframe(at, "local_time", "request_id", "explained")
    assert charges.credits_used.tolist() == [2, 2, 2, 2] and set(charges.service) == {"intelligence cache lookup"}
    # the cards still show every organization, the chosen one first
    assert metric_values(at, "Remaining") == ["392", "822.5"]


def test_my_credits_with_one_organization_has_no_comparison(dataset):
    at = open_page("my_credits", "ned", "north")
    assert not at.exception
    assert metric_values(at, "Remaining") == ["490"]
    assert metric_values(at, "Credits used") == ["10"]
    [charges] = tables(at)  # my charges only
    assert "local_time" in charges.columns and charges.credits_used.tolist() == [10]


def test_my_credits_for_an_org_admin_and_a_system_admin(dataset):
    at = open_page("my_credits", "north-admin", "north")
    assert not at.exception
    assert metric_values(at, "Remaining") == ["0"] and metric_values(at, "Credits used") == ["0"]
    last_30 = usage.date_range(dataset, "north-admin", "north", "last_30_days")
    assert f"No usage in {screen_kit.range_text(last_30)}." in [plain(c.value) for c in at.caption]
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
    [warning] = [plain(w.value) for w in at.warning if "of your credits" in w.value]
    assert warning.startswith("You have used 95.0% of your credits in North") and "(950 of 1,000)" in warning
    assert "request more credits below" in warning
    [dismiss] = [b for b in at.button if b.key.startswith("dismiss_alert_")]
    dismiss.click().run()
    assert not at.exception
    assert not [b for b in at.button if b.key.startswith("dismiss_alert_")]


# ---------------------------------------------------------------- reading my card


def test_a_card_says_what_used_covers_what_it_is_worth_and_has_no_bare_exact_tooltips(dataset):
    at = open_page("my_credits", "mia", "north")
    assert not at.exception
    shown = [plain(c.value) for c in at.caption]
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    [north] = [c for c in shown if c.startswith("Worth $0.82 remaining of $1.00 allocated")]
    assert "list price of $0.001 a credit" in north and f"Used counts from {today}" in north
    assert "(dates in UTC)" in north
    helps = [m.proto.help for m in at.metric if plain(m.label) in ("Remaining", "Allocated", "Used")]
    assert helps and not any(h.startswith("Exactly") for h in helps)
    assert "822.5 credits you can still spend" in helps[0]


# ---------------------------------------------------------------- request more credits, both sides


def admin_requests_screen():
    """The admins' credit requests section alone, for the chosen organization (what the integrator wires in)."""
    from pages.kit.session import current_screen
    from pages.sections.credit_requests import credit_requests_section

    credit_requests_section(current_screen())


def open_admin_requests(actor_id: str, org_id: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(admin_requests_screen, default_timeout=60)
    at.session_state["actor_id"] = actor_id
    at.session_state["org_id"] = org_id
    return at.run()


def send_request(at, org_id: str, amount: str, note: str = ""):
    at.text_input(key=f"request_credits_{org_id}_amount").set_value(amount)
    at.text_input(key=f"request_credits_{org_id}_note").set_value(note)
    at.button(key=f"request_credits_{org_id}_submit").click().run()
    assert not at.exception
    return at


def confirm_button(at, form: str):
    return next((b for b in at.button if b.key == f"{form}_confirm"), None)


NOTE = 'For the <b>Q3</b> "report" [link](https://evil.example) & *more*'


@pytest.mark.parametrize(("amount", "words"), [
    ("0", "greater than 0"), ("-5", "greater than 0"), ("1e20", "too large"),
    ("0.0000001", "more than 6 decimal places"), ("abc", "not a number"), ("", "missing"),
])
def test_a_bad_request_is_refused_before_any_question(dataset, amount, words):
    before = snapshot(dataset)
    at = send_request(open_page("my_credits", "mia", "north"), "north", amount, NOTE)
    assert any(words in e for e in errors(at)), errors(at)
    assert confirm_button(at, "request_credits_north_form") is None  # no "Confirm?" for what cannot succeed
    assert snapshot(dataset) == before


def test_request_approve_round_trip_both_sides_see_the_state(dataset):
    at = send_request(open_page("my_credits", "mia", "north"), "north", "250", NOTE)
    question = plain(at.warning[-1].value)
    assert question.startswith("Ask the admins of North") and "250 more credits (worth $0.25" in question
    assert credit_requests.mine(dataset, "mia").empty  # asked, not sent yet
    confirm_button(at, "request_credits_north_form").click().run()
    assert any("Request sent" in plain(s.value) for s in at.success)
    assert any(plain(i.value).startswith("You asked for 250 credits on") for i in at.info)
    assert f"Your note: {NOTE}" in [t.value for t in at.text] and no_html_allowed(at)  # st.text: no markdown
    assert [b.key for b in at.button if b.key == "request_credits_north_withdraw"]  # a pending one: no new form
    assert not [t for t in at.text_input if t.key == "request_credits_north_amount"]

    admin = open_admin_requests("north-admin", "north")
    assert not admin.exception
    [asked] = [plain(m.value) for m in admin.markdown if "asks for" in m.value]
    assert asked.startswith(f"{MIA_NAME} asks for 250 credits, worth $0.25")
    assert {"Email: mia@example.com", f"Note: “{NOTE}”"} <= {t.value for t in admin.text} and no_html_allowed(admin)
    [request] = credit_requests.mine(dataset, "mia").itertuples()
    field = f"credit_request_{request.request_id}"
    assert admin.text_input(key=f"{field}_credits").value == "250"

    for amount, words in (("abc", "not a number"), ("0", "greater than 0"), ("9000", "Not enough credits")):
        admin.text_input(key=f"{field}_credits").set_value(amount)
        admin.button(key=f"{field}_approve").click().run()
        assert any(words in e for e in errors(admin)), errors(admin)
        assert confirm_button(admin, f"{field}_answer") is None
    admin.text_input(key=f"{field}_credits").set_value("200")
    admin.button(key=f"{field}_approve").click().run()
    question = plain(admin.warning[-1].value)
    assert question == (f"Approve 200 credits for {MIA_NAME}? Their allocation becomes 1,200 credits; the pool keeps "
                        "8,300 credits available.")
    confirm_button(admin, f"{field}_answer").click().run()
    assert not admin.exception
    assert any("Approved: 200 credits allocated" in plain(s.value) for s in admin.success)
    assert "No request is waiting for an answer." in [c.value for c in admin.caption]
    outcome = dataframe(admin, "member", "outcome").outcome.tolist()
    assert len(outcome) == 1 and "200 credits added to the member's allocation (250 credits asked)" in outcome[0]

    member = open_page("my_credits", "mia", "north")
    assert metric_values(member, "Allocated") == ["1,200", "400"]
    assert any("Approved by north admin on" in plain(c.value) and "(250 credits asked)" in plain(c.value)
               for c in member.caption)
    assert [t.key for t in member.text_input if t.key == "request_credits_north_amount"]  # may ask again


def test_a_declined_request_shows_its_reason_and_a_withdrawn_one_says_so(dataset):
    ned = send_request(open_page("my_credits", "ned", "north"), "north", "40")
    confirm_button(ned, "request_credits_north_form").click().run()
    admin = open_admin_requests("north-admin", "north")
    [request] = credit_requests.mine(dataset, "ned").itertuples()
    field = f"credit_request_{request.request_id}"
    reason = '<script>x</script> "no budget" **now**'
    admin.text_input(key=f"{field}_reason").set_value(reason)
    admin.button(key=f"{field}_decline").click().run()
    assert any("Declined: Ned sees it with your reason." in plain(s.value) for s in admin.success)
    ned = open_page("my_credits", "ned", "north")
    assert any("was declined by north admin on" in plain(c.value) for c in ned.caption)
    assert f"Reason: {reason}" in [t.value for t in ned.text] and no_html_allowed(ned)
    assert metric_values(ned, "Allocated") == ["500"]

    mia = send_request(open_page("my_credits", "mia", "south"), "south", "10")
    confirm_button(mia, "request_credits_south_form").click().run()
    mia.button(key="request_credits_south_withdraw").click().run()
    assert any("Request withdrawn: nothing was allocated." in plain(s.value) for s in mia.success)
    assert any("was withdrawn by you on" in plain(c.value) for c in mia.caption)
    assert open_admin_requests("south-admin", "south").caption[0].value == "No request is waiting for an answer."


def test_the_admins_section_refuses_a_member_and_another_organizations_admin(dataset):
    credit_requests.request(dataset, "mia", "north", 5)
    for actor in ("mia", "south-admin"):
        at = open_admin_requests(actor, "north")
        assert not at.exception
        assert any("is not an admin of organization" in e for e in errors(at))
        assert not at.markdown or not any("asks for" in m.value for m in at.markdown)


def test_an_approval_back_under_90_percent_takes_the_alert_away(dataset):
    credits.deduct(dataset, "north", "mia", "722.5", "llm", "gpt-4o")  # 900 of 1,000 used
    at = open_page("my_credits", "mia", "north")
    assert [w for w in at.warning if "of your credits" in w.value]
    request = credit_requests.request(dataset, "mia", "north", 100)
    credit_requests.approve(dataset, "north-admin", "north", request.id)  # 900 of 1,100: under 90%
    screen_kit.clear_cached_reads()  # approved outside the app: its cached reads are 30 s old at most
    at = open_page("my_credits", "mia", "north")
    assert not [w for w in at.warning if "of your credits" in w.value]


# ---------------------------------------------------------------- my individual balance


def test_buying_credits_for_my_individual_balance(dataset):
    at = open_page("my_credits", "loner")
    for amount, words in (("abc", "not a number"), ("-5", "greater than 0"), ("", "missing")):
        at.text_input(key="buy_personal_credits").set_value(amount)
        at.button(key="buy_personal_submit").click().run()
        assert any(words in e for e in errors(at)), errors(at)
        assert confirm_button(at, "buy_personal") is None
    at.text_input(key="buy_personal_credits").set_value("5,000")
    at.button(key="buy_personal_submit").click().run()
    question = plain(at.warning[-1].value)
    assert question.startswith("Order 5,000 credits for $5.00") and "waits for payment" in question
    confirm_button(at, "buy_personal").click().run()
    assert not at.exception
    assert any("Order placed: 5,000 credits for $5.00, awaiting payment." in plain(s.value) for s in at.success)
    assert at.text_input(key="buy_personal_credits").value == ""  # the form is emptied
    assert any(plain(i.value).startswith("Awaiting payment: 5,000 credits for $5.00") for i in at.info)
    [card] = usage.member_cards(dataset, "loner")
    assert card.is_personal and card.allocated_credits == 0  # nothing arrives before the payment
