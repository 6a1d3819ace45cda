"""The Pricing screen (system admins) under AppTest: figures from a known setup, who may open it, each dialog's
save and refusals, text shown as text, the plan catalogue against billing_core.plans, and the calculator against
billing_core.pricing.calculator.

Known setup: the seed prices of migration 0009 (gpt-4o $0.0025 / $0.01 per 1,000 input / output tokens,
gpt-4o-mini $0.00015 / $0.0006, dall-e-3 $0.04 per image; company_enrichment 50, contact_lookup 10,
intelligence_cache_lookup 2 credits; markup 1.5, BYOK fee 1 credit, holds 900 s; packages Starter 10K for $10,
Growth 50K + 2,500 for $50, Scale 200K + 20,000 for $200, Enterprise 1M + 150,000 for $1,000) and the plan
catalogue of migrations 0005/0007 (Starter $19 markup, 5,000 included credits, 14-day trial; BYOK $30 passthrough,
0 credits; Platform $50 markup, 25,000 credits, 14-day trial; Hybrid $99 mixed, 50,000 credits; Enterprise $99
mixed, 100,000 credits; each as its version 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from billing_core import auth, credits, ledger, organizations, plans, pricing, subscriptions
from billing_core.database import PROJECT_ROOT, fetch
from billing_core.errors import BillingError
from billing_core.pricing import Usage
from pages import kit
from pages.sections import pricing_plans
from tests.ledger_state import billing_verify, snapshot
from tests.screen_testing import dataframe, errors, no_html_allowed, open_page, plain, registered_screens, switch_screen

D = Decimal
PASSWORD = "pricing page 1"
PASSWORD_HASH = auth.hash_password(PASSWORD)  # users with a password may hold a session
PRICING_TABLES = ("model_prices", "service_prices", "platform_pricing_rules", "org_pricing_overrides",
                  "credit_packages", "plans", "plan_versions")


@pytest.fixture
def setup(db, db_url, monkeypatch):
    """root (system admin); acme with ada (admin) and mia (member)."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True,
                              password_hash=PASSWORD_HASH)
    organizations.create_organization(db, None, "acme", "Acme <b>Inc</b>")
    for user_id, role in (("ada", "admin"), ("mia", "member")):
        organizations.create_user(db, None, user_id, f"{user_id}@example.com", user_id.title(),
                                  password_hash=PASSWORD_HASH)
        organizations.add_member(db, None, "acme", user_id, role)
    return db


def state(db) -> dict:
    """Every ledger row and every pricing row, as text: a refusal must leave all of it as it was."""
    rows = snapshot(db)
    for table in PRICING_TABLES:  # constant names
        rows[table] = [row[0] for row in fetch(db, f"select t::text from {table} t order by 1")]
    return rows


def dialog_open(at: AppTest) -> bool:
    return bool(at.session_state["_kit_dialog"]) if "_kit_dialog" in at.session_state else False


def press(at: AppTest, label: str) -> AppTest:
    """Press the one button (or form submit button) with this label, and run."""
    found = [b for b in at.button if b.label == label]
    assert len(found) == 1, [b.label for b in at.button]
    return found[0].click().run()


def fill(at: AppTest, **values) -> AppTest:
    """Set dialog widgets by key (text, selectbox, number, checkbox, radio, date) without running."""
    for key, value in values.items():
        for kind in ("text_input", "selectbox", "number_input", "checkbox", "radio", "date_input", "time_input",
                     "toggle"):
            widgets = [w for w in at.get(kind) if w.key == key]
            if widgets:
                widget = widgets[0]
                if kind == "text_input":
                    widget.input(value)
                else:
                    widget.set_value(value)
                break
        else:
            raise AssertionError(f"no widget {key!r}")
    return at


def when_now(at: AppTest) -> dict:
    """The open dialog's "Takes effect" choice set to now (a price change has none preset)."""
    return {r.key: "now" for r in at.radio if r.key and r.key.endswith("_when")}


def successes(at: AppTest) -> list[str]:
    return [plain(s.value) for s in at.success]


def rows(at: AppTest, *columns: str) -> list[tuple]:
    frame = dataframe(at, *columns)[list(columns)]
    return [tuple(None if pd.isna(v) else v for v in r) for r in frame.itertuples(index=False)]  # NaN: empty


def yesterday() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)


# ------------------------------------------------------------ figures and access


def test_page_shows_the_seed_figures(setup):
    at = open_page("pricing", "root")
    assert not at.exception and not errors(at)

    models = {m: (i, o, img) for m, i, o, img in rows(
        at, "model", "usd_per_1k_input", "usd_per_1k_output", "usd_per_image")}
    assert len(models) == 11
    assert models["gpt-4o"] == ("$0.0025", "$0.01", "$0.00")
    assert models["gpt-4o-mini"] == ("$0.00015", "$0.0006", "$0.00")
    assert models["dall-e-3"] == ("$0.00", "$0.00", "$0.04")
    assert rows(at, "service_type", "credits") == [
        ("company_enrichment", 50), ("contact_lookup", 10), ("intelligence_cache_lookup", 2)]
    assert [(plain(m.label), m.value) for m in at.metric] == [
        ("Markup (managed keys)", "× 1.5"), ("BYOK fee per call (credits)", "1"), ("Hold lifetime", "900 s")]
    assert rows(at, "markup", "byok_fee_credits", "hold_ttl_seconds", "in_force") == [(1.5, 1, 900, "in force")]
    assert "No organization has its own pricing: all follow the platform rules." in [plain(c.value) for c in at.caption]

    # $ per 1,000 credits = price x 1,000 / (credits + bonus), to 4 decimals
    assert rows(at, "code", "total_credits", "price", "usd_per_1000_credits", "is_active") == [
        ("starter_10k", 10000, 10, 1.0, "on sale"),
        ("growth_50k", 52500, 50, 0.9524, "on sale"),      # 50,000 / 52,500 = 0.95238...
        ("scale_200k", 220000, 200, 0.9091, "on sale"),    # 200,000 / 220,000 = 0.90909...
        ("enterprise_1m", 1150000, 1000, 0.8696, "on sale"),  # 1,000,000 / 1,150,000 = 0.869565...
    ]

    # BYOK rules: which plan allows which calls, and what a BYOK call costs (1 credit = $0.001)
    assert rows(at, "plan_name", "pricing_mode", "managed", "byok", "byok_credits", "byok_dollars") == [
        ("Starter", "markup", "allowed", "refused", "—", "—"),
        ("BYOK", "passthrough", "refused", "allowed", "1", "$0.001"),
        ("Platform", "markup", "allowed", "refused", "—", "—"),
        ("Hybrid", "mixed", "allowed", "allowed", "1", "$0.001"),
        ("Enterprise", "mixed", "allowed", "allowed", "1", "$0.001"),
    ]
    assert no_html_allowed(at)


@pytest.mark.parametrize("who", ["ada", "mia"])
def test_org_admins_and_members_are_refused(setup, who):
    at = open_page("pricing", who, "acme")
    assert not at.exception
    assert errors(at) == [f"User '{who}' is not a system admin."]
    assert not (at.dataframe or at.metric or at.button or at.text_input or at.tabs)
    # an "Edit plan" dialog left open in the session opens nothing either
    at = open_page("pricing", who, "acme", _kit_dialog=("plan_edit", {"code": "byok"}))
    assert errors(at) == [f"User '{who}' is not a system admin."]
    assert not (at.text_input or at.button or at.number_input)


def test_the_app_lists_the_page_for_system_admins_only(setup):
    for user_id, listed in (("root", True), ("ada", False), ("mia", False)):
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=60)
        at.session_state["authentication_status"] = True
        at.session_state["username"] = f"{user_id}@example.com"
        at.session_state["name"] = user_id.title()
        at.session_state["billing_session_id"] = auth.start_session(setup, user_id)
        at.run()
        assert not at.exception
        assert ("pricing" in registered_screens(at)) == listed
        if not listed:
            switch_screen(at, "pricing").run()  # its URL opens the landing screen instead
            assert not at.exception and "Pricing" not in [title.value for title in at.title]


# ------------------------------------------------------------ the plan catalogue

PLAN_COLUMNS = ("code", "name", "price_per_month", "pricing_mode", "included_credits", "trial", "in_force",
                "scheduled", "status")


def plan_rows(at: AppTest) -> dict[str, tuple]:
    """The Plans table: code -> the rest of its row, as shown."""
    return {r[0]: r[1:] for r in rows(at, *PLAN_COLUMNS)}


def pick_plan(at: AppTest, code: str, button: str) -> AppTest:
    at.selectbox(key="plan_pick").set_value(code).run()
    return press(at, button)


def at_minute(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def test_plans_tab_shows_the_seed_catalogue(setup):
    db = setup
    at = open_page("pricing", "root")
    assert not at.exception and not errors(at)
    assert at.tabs[0].label == "Plans"
    since = at_minute(plans.catalogue(db)[0].effective_at)  # migration 0007 made every version 1 at once
    assert plan_rows(at) == {
        "starter": ("Starter", "$19.00", "markup", 5000, "14 days", f"v1 since {since}", "", "offered"),
        "byok": ("BYOK", "$30.00", "passthrough", 0, "none", f"v1 since {since}", "", "offered"),
        "platform": ("Platform", "$50.00", "markup", 25000, "14 days", f"v1 since {since}", "", "offered"),
        "hybrid": ("Hybrid", "$99.00", "mixed", 50000, "none", f"v1 since {since}", "", "offered"),
        "enterprise": ("Enterprise", "$99.00", "mixed", 100000, "none", f"v1 since {since}", "", "offered"),
    }
    assert list(plan_rows(at)) == [e.code for e in plans.catalogue(db)]  # the catalogue's order
    caption = " ".join(plain(c.value) for c in at.caption)
    assert "Existing subscriptions move to a new version at their first period start on or after its effective " \
           "date" in caption and "Past invoices and billing history never change." in caption
    at.selectbox(key="plan_pick").set_value("hybrid").run()
    at.toggle(key="plan_versions").set_value(True).run()
    assert rows(at, "version", "price_per_month", "pricing_mode", "included_credits", "trial", "status") == [
        (1, "$99.00", "mixed", 50000, "none", "in force")]


def test_edit_plan_now_makes_a_new_version_and_keeps_what_was_paid(setup, db_url):
    db = setup
    subscriptions.create_subscription(db, "root", "acme", "platform", trial=False)
    paid = fetch(db, "select t::text from org_billing_history t order by id")
    at = open_page("pricing", "root")
    pick_plan(at, "platform", "Edit plan")
    assert dialog_open(at) and not at.exception
    assert (at.text_input(key="plan_edit_price").value, at.selectbox(key="plan_edit_mode").value,
            at.text_input(key="plan_edit_credits").value, at.number_input(key="plan_edit_trial").value) == (
        "50", "markup", "25000", 14)
    assert at.selectbox(key="plan_edit_mode").options == ["markup", "passthrough", "mixed"]  # no other mode can be sent
    # a price change names its moment: nothing is preset, and the review refuses to guess
    assert at.radio(key="plan_edit_when").value is None
    before = state(db)
    press(at, "Review the change")
    assert errors(at) == ["Choose when the change takes effect: now, or at the date and time below."]
    assert dialog_open(at) and state(db) == before
    fill(at, plan_edit_price="55.5", plan_edit_credits="", plan_edit_when="now")  # empty: keeps 25,000
    press(at, "Review the change")
    assert not errors(at) and state(db) == before  # asked, not saved
    question = [plain(w.value) for w in at.warning]
    assert question == ["Add version 2 of Platform (platform) now: price a month $50.00 → $55.50? It reaches "
                        "1 organization subscribed to it now: each subscription moves to version 2 at its next "
                        "period start. Past invoices never change."]
    press(at, "Confirm")
    assert not at.exception and not errors(at) and not dialog_open(at)
    assert successes(at) == ["Platform (platform): version 2 takes effect now."]
    entry = {e.code: e for e in plans.catalogue(db)}["platform"]
    assert (entry.version, entry.monthly_price, entry.included_credits, entry.trial_days) == (2, D("55.5"), 25000, 14)
    assert plan_rows(at)["platform"][:6] == ("Platform", "$55.50", "markup", 25000, "14 days",
                                             f"v2 since {at_minute(entry.effective_at)}")
    at.toggle(key="plan_versions").set_value(True).run()
    assert rows(at, "version", "price_per_month", "status", "created_by") == [
        (1, "$50.00", "replaced", "—"), (2, "$55.50", "in force", "root")]
    # the subscription keeps paying version 1 until its next period start; billing history is untouched
    assert fetch(db, "select plan_version, price_amount from organization_subscriptions")[0] == (1, 50)
    assert fetch(db, "select t::text from org_billing_history t order by id") == paid
    assert fetch(db, "select action, actor_id, target_id from audit_log order by id desc limit 1")[0] == (
        "plan.version_created", "root", "platform")
    assert billing_verify(db_url).returncode == 0


def test_the_review_counts_whom_a_new_version_reaches_and_refuses_what_the_save_refuses(setup):
    """preview_plan_edit: the subscriptions on the plan (one per organization), those set to leave it, those
    scheduled to join it; the same refusals as edit_plan, and nothing written."""
    db = setup
    for org_id in ("beta", "gamma", "delta"):
        organizations.create_organization(db, None, org_id, org_id.title())
    for org_id, plan in (("acme", "platform"), ("beta", "platform"), ("gamma", "platform"), ("delta", "starter")):
        subscriptions.create_subscription(db, "root", org_id, plan, trial=False)
    subscriptions.cancel(db, "root", "beta")  # at its period end: it leaves the plan
    subscriptions.schedule_change(db, "root", "delta", "platform")  # it joins the plan
    before = state(db)
    preview = plans.preview_edit(db, "root", "platform", monthly_price="60", included_credits="30000")
    assert (preview.version, preview.monthly_price, preview.included_credits, preview.previous_monthly_price) == (
        2, 60, 30000, 50)
    assert (preview.subscriptions, preview.leaving, preview.arriving) == (3, 1, 1)
    assert state(db) == before
    for arguments, words in (({"monthly_price": "50"}, "nothing to change"), ({"monthly_price": "-1"}, "negative"),
                             ({"effective_at": yesterday()}, "in the past")):
        for call in (plans.preview_edit, plans.edit_plan):
            with pytest.raises(BillingError, match=words):
                call(db, "root", "platform", **arguments)
    with pytest.raises(BillingError, match="not a system admin"):
        plans.preview_edit(db, "ada", "platform", monthly_price="60")
    assert state(db) == before

    at = open_page("pricing", "root")
    pick_plan(at, "platform", "Edit plan")
    fill(at, plan_edit_price="60", plan_edit_credits="30,000", plan_edit_when="now")
    press(at, "Review the change")
    assert [plain(w.value) for w in at.warning] == [
        "Add version 2 of Platform (platform) now: price a month $50.00 → $60.00; included credits a month 25,000 → "
        "30,000? It reaches 3 organizations subscribed to it now: each subscription moves to version 2 at its next "
        "period start (1 of them set to leave the plan at their period end). 1 organization scheduled to change to "
        "this plan pays it after the change. Past invoices never change."]
    assert state(db) == before
    # a later moment: the subscriptions meet it at their first period start from then on
    later = datetime.combine((datetime.now(UTC) + timedelta(days=5)).date(), time(0, 0), tzinfo=UTC)
    scheduled = plans.preview_edit(db, "root", "platform", monthly_price="60", effective_at=later)
    latest = plans.versions(db, "platform")[-1]
    assert pricing_plans.edit_question("Platform (platform)", latest, scheduled, later) == (
        f"Add version 2 of Platform (platform) on {later:%Y-%m-%d} 00:00 UTC: price a month $50.00 → $60.00? It "
        f"reaches 3 organizations subscribed to it now: each subscription moves to version 2 at its first period "
        f"start on or after {later:%Y-%m-%d} 00:00 UTC (1 of them set to leave the plan at their period end). "
        f"1 organization scheduled to change to this plan pays it after the change. Past invoices never change.")


def test_a_future_version_shows_as_scheduled_and_leaves_the_price_in_force(setup):
    db = setup
    at = open_page("pricing", "root")
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    pick_plan(at, "byok", "Edit plan")
    assert at.number_input(key="plan_edit_trial").value == 0  # no trial
    fill(at, plan_edit_price="35", plan_edit_trial=7, plan_edit_when="at", plan_edit_date=day)
    press(at, "Review the change")
    assert [plain(w.value) for w in at.warning] == [
        f"Add version 2 of BYOK (byok) on {day} 00:00 UTC: price a month $30.00 → $35.00; trial none → 7 days? "
        "No organization is on this plan now: only subscriptions that start on it from then on pay it. "
        "Past invoices never change."]
    press(at, "Confirm")
    assert successes(at) == [f"BYOK (byok): version 2 takes effect on {day} 00:00 UTC."]
    start = datetime.combine(day, time(0, 0), tzinfo=UTC)
    assert plan_rows(at)["byok"][1:] == ("$30.00", "passthrough", 0, "none", plan_rows(at)["byok"][5],
                                         f"v2 from {day} 00:00", "offered")
    assert plan_rows(at)["byok"][5].startswith("v1 since ")
    entry = {e.code: e for e in plans.catalogue(db)}["byok"]
    assert (entry.version, entry.monthly_price, entry.next_version, entry.next_effective_at) == (1, 30, 2, start)
    later = {e.code: e for e in plans.catalogue(db, start)}["byok"]
    assert (later.version, later.monthly_price, later.trial_days) == (2, 35, 7)
    at.toggle(key="plan_versions").set_value(True).run()
    assert rows(at, "version", "price_per_month", "trial", "effective_at", "status")[1][:3] == (2, "$35.00", "7 days")
    assert [r[-1] for r in rows(at, "version", "status")] == ["in force", "scheduled"]
    # the next edit presets the latest (scheduled) terms and must come after them
    press(at, "Edit plan")
    assert (at.text_input(key="plan_edit_price").value, at.number_input(key="plan_edit_trial").value) == ("35", 7)
    before = state(db)
    fill(at, plan_edit_price="40", plan_edit_when="at", plan_edit_date=day - timedelta(days=1))
    press(at, "Review the change")
    assert "must be after version 2" in errors(at)[0] and dialog_open(at)
    assert not at.warning and "Confirm" not in [b.label for b in at.button]  # refused before any question
    assert state(db) == before


def test_new_plan_rename_and_retire(setup, db_url):
    db = setup
    at = open_page("pricing", "root")
    press(at, "New plan")
    fill(at, plan_new_code="team", plan_new_name="<b>Team</b> & 'co' [x](javascript:alert(1))", plan_new_price="75.1234",
         plan_new_mode="mixed", plan_new_credits="30,000", plan_new_trial=30, plan_new_description="<script>alert(1)</script>")
    press(at, "Create plan")
    assert not at.exception and not errors(at) and not dialog_open(at)
    assert successes(at) == ["Created plan team."]
    row = plan_rows(at)["team"]
    assert row[:5] == ("<b>Team</b> & 'co' [x](javascript:alert(1))", "$75.1234", "mixed", 30000, "30 days")
    assert row[5].startswith("v1 since ") and row[6:] == ("", "offered")
    assert list(plan_rows(at))[-1] == "team"  # added at the end of the catalogue
    entry = {e.code: e for e in plans.catalogue(db)}["team"]
    assert (entry.name, entry.monthly_price, entry.pricing_mode, entry.included_credits, entry.trial_days,
            entry.description) == ("<b>Team</b> & 'co' [x](javascript:alert(1))", D("75.1234"), "mixed", 30000, 30,
                                   "<script>alert(1)</script>")
    assert no_html_allowed(at)

    # a new plan with trial 0 has no trial
    press(at, "New plan")
    fill(at, plan_new_code="solo", plan_new_name="Solo", plan_new_price="9", plan_new_mode="markup", plan_new_credits="0", plan_new_trial=0)
    press(at, "Create plan")
    assert plan_rows(at)["solo"][3:5] == (0, "none")

    pick_plan(at, "team", "Rename")
    assert at.text_input(key="plan_rename_name").value == "<b>Team</b> & 'co' [x](javascript:alert(1))"
    fill(at, plan_rename_name="Team Plus", plan_rename_description="For teams")
    press(at, "Save name")
    assert successes(at) == ["Renamed plan team."]
    assert plan_rows(at)["team"][0] == "Team Plus"
    assert {e.code: e.description for e in plans.catalogue(db)}["team"] == "For teams"

    # retire asks first; Cancel changes nothing
    before = state(db)
    press(at, "Retire")
    question = [plain(w.value) for w in at.warning]
    assert question and question[0].startswith("Retire Team Plus (team)? Nobody can subscribe")
    press(at, "Cancel")
    assert state(db) == before and plan_rows(at)["team"][-1] == "offered"
    press(at, "Retire")
    press(at, "Confirm")
    assert successes(at) == ["Retired Team Plus (team)."]
    assert plan_rows(at)["team"][-1] == "retired"
    assert {e.code: e.retired for e in plans.catalogue(db)}["team"]
    # a retired plan's terms can no longer change: its buttons are off, Rename stays
    buttons = {b.label: b.disabled for b in at.button if b.key and b.key.startswith("plan_")}
    assert buttons == {"Edit plan": True, "Rename": False, "Retire": True, "New plan": False}
    assert [r[0] for r in fetch(db, "select action from audit_log where target_type = 'plan' order by id")] == [
        "plan.created", "plan.created", "plan.renamed", "plan.retired"]
    assert billing_verify(db_url).returncode == 0


# ------------------------------------------------------------ dialogs: saves


def test_model_price_dialog_adds_a_model_and_schedules_a_price(setup, db_url):
    db = setup
    at = open_page("pricing", "root")
    press(at, "Add model")
    assert dialog_open(at) and not at.exception
    fill(at, model_price_provider="mistral", model_price_model="mistral-large", model_price_usd_per_1k_input="0.002",
         model_price_usd_per_1k_output="0.006", model_price_note="<img src=x onerror=alert(1)>", model_price_when="now")
    press(at, "Save price")
    assert not at.exception and not errors(at)
    assert not dialog_open(at)
    assert successes(at) == ["Saved the price of mistral-large."]
    assert ("mistral", "mistral-large", "$0.002", "$0.006", "<img src=x onerror=alert(1)>") in rows(
        at, "provider", "model", "usd_per_1k_input", "usd_per_1k_output", "note")
    saved = pricing.model_prices(db, "root").set_index("model").loc["mistral-large"]
    assert (saved.usd_per_1k_input, saved.usd_per_1k_output, saved.created_by) == (D("0.002"), D("0.006"), "root")

    # edit gpt-4o from tomorrow on: the fields come preset with today's figures
    at.selectbox(key="model_pick").set_value("gpt-4o").run()
    press(at, "Edit model price")
    assert at.text_input(key="model_price_usd_per_1k_input").value == "0.0025"
    assert at.text_input(key="model_price_usd_per_1k_output").value == "0.01"
    start = (datetime.now(UTC) + timedelta(days=2)).date()
    fill(at, model_price_usd_per_1k_input="0.003", model_price_when="at", model_price_date=start)
    press(at, "Save price")
    assert successes(at) == ["Saved the price of gpt-4o."] and not dialog_open(at)
    assert dict(rows(at, "model", "usd_per_1k_input"))["gpt-4o"] == "$0.0025"  # in force until then
    at.toggle(key="model_price_history").set_value(True).run()
    history = [r for r in rows(at, "model", "usd_per_1k_input", "usd_per_1k_output", "effective_from")
               if r[0] == "gpt-4o"]
    assert [r[1:3] for r in history] == [("$0.0025", "$0.01"), ("$0.003", "$0.01")]
    assert history[1][3].date() == start and (history[1][3].hour, history[1][3].minute) == (0, 0)
    assert [r[0] for r in fetch(db, "select action from audit_log order by id")][-2:] == [
        "pricing.model_price_set", "pricing.model_price_set"]
    assert billing_verify(db_url).returncode == 0


def test_a_price_dialog_says_whom_a_new_price_reaches(setup):
    db = setup
    credits.add_credits(db, None, "acme", 10_000, 10)
    credits.allocate(db, "ada", "acme", "mia", 1_000)
    for _ in range(2):
        credits.deduct(db, "acme", "mia", 5, "llm", "gpt-4o")
    at = open_page("pricing", "root")
    at.selectbox(key="model_pick").set_value("gpt-4o").run()
    press(at, "Edit model price")
    assert ("A new price reaches the organizations that call gpt-4o: 1 organization was charged for 2 calls in the "
            "last 30 days.") in [plain(c.value) for c in at.caption]
    assert (pricing.price_reach(db, "root", model="gpt-4o").organizations,
            pricing.price_reach(db, "root", model="gpt-4o-mini").calls) == (1, 0)
    at = open_page("pricing", "root")
    at.selectbox(key="service_pick").set_value("contact_lookup").run()
    press(at, "Edit service price")
    assert "No organization was charged for contact lookup in the last 30 days." in [plain(c.value) for c in at.caption]


def test_service_dialog_changes_credits_per_call(setup):
    db = setup
    at = open_page("pricing", "root")
    at.selectbox(key="service_pick").set_value("contact_lookup").run()
    press(at, "Edit service price")
    assert at.text_input(key="service_price_credits").value == "10"
    fill(at, service_price_credits="12.5", service_price_when="now")
    press(at, "Save service price")
    assert successes(at) == ["Saved the price of contact_lookup."]
    assert dict(rows(at, "service_type", "credits"))["contact_lookup"] == 12.5
    assert pricing.price_usage(db, None, Usage("contact_lookup", "apollo")).credits == D("12.5")


def test_platform_rules_dialog_and_an_organization_override(setup):
    db = setup
    at = open_page("pricing", "root")
    press(at, "Edit platform rules")
    assert (at.text_input(key="rules_markup").value, at.text_input(key="rules_fee").value,
            at.number_input(key="rules_ttl").value) == ("1.5", "1", 900)
    fill(at, rules_markup="2", rules_fee="0.5", rules_note="<b>bold</b> & 'quoted'", rules_when="now")
    press(at, "Save platform rules")
    assert successes(at) == ["Saved the platform rules."]
    assert [m.value for m in at.metric] == ["× 2", "0.5", "900 s"]
    assert rows(at, "markup", "byok_fee_credits", "in_force", "note")[0] == (2.0, 0.5, "in force", "<b>bold</b> & 'quoted'")

    press(at, "Set an organization's override")
    fill(at, override_org="acme", override_markup="1.2", override_when="now")
    press(at, "Save override")
    assert successes(at) == ["Saved the pricing override of Acme <b>Inc</b> (acme)."]
    assert "\\<b\\>" in at.success[0].value  # the name is escaped, shown as typed
    assert rows(at, "org_name", "markup", "byok_fee_credits") == [("Acme <b>Inc</b>", "1.2", "the platform's")]

    # the calculator with acme: gpt-4o, 1,000 in + 500 out = $0.0075 -> 7.5 credits x 1.2 = 9 (platform: x 2 = 15)
    fill(at, calc_model="gpt-4o").run()
    assert dict(rows(at, "plan_name", "credits"))["Platform"] == "15"
    fill(at, calc_org="acme").run()
    assert dict(rows(at, "plan_name", "credits"))["Platform"] == "9"
    assert ledger.verify(db) == []


def test_the_platform_rules_dialog_says_how_many_organizations_they_reach(setup):
    db = setup
    for org_id in ("beta", "gamma"):
        organizations.create_organization(db, None, org_id, org_id.title())
    pricing.set_org_override(db, "root", "beta", markup=D("1.2"))
    at = open_page("pricing", "root")
    press(at, "Edit platform rules")
    reach = pricing.rule_reach(db, "root")
    assert (reach.organizations, reach.own_markup, reach.own_fee) == (3, 1, 0)
    assert ("These rules reach every organization without its own override (3 organizations now): the markup "
            "prices 2 of 3 (1 has its own); the BYOK fee charges every one.") in [plain(c.value) for c in at.caption]
    with pytest.raises(BillingError, match="not a system admin"):
        pricing.rule_reach(db, "ada")


def test_package_dialog_creates_and_edits(setup):
    db = setup
    at = open_page("pricing", "root")
    press(at, "New package")
    fill(at, package_code="pro_5k", package_name="<script>alert(1)</script>", package_credits="5,000", package_bonus="500",
         package_price="5", package_sort=15)
    press(at, "Save package")
    assert successes(at) == ["Created package pro_5k."]
    shown = rows(at, "code", "name", "total_credits", "price", "usd_per_1000_credits", "is_active")
    # 5 x 1,000 / 5,500 = 0.90909... -> 0.9091; sorted between 10 and 20
    assert shown[1] == ("pro_5k", "<script>alert(1)</script>", 5500, 5, 0.9091, "on sale")
    assert no_html_allowed(at)

    at.selectbox(key="package_pick").set_value("growth_50k").run()
    press(at, "Edit package")
    assert (at.text_input(key="package_credits").value, at.text_input(key="package_bonus").value,
            at.text_input(key="package_price").value) == ("50000", "2500", "50")
    fill(at, package_price="45", package_active=False)
    press(at, "Save package")
    assert successes(at) == ["Saved package growth_50k."]
    assert {c: (p, a) for c, p, a in rows(at, "code", "price", "is_active")}["growth_50k"] == (45, "withdrawn")
    package = pricing.credit_packages(db).set_index("code").loc["growth_50k"]
    assert (package.price, package.is_active) == (D("45"), False)


# ------------------------------------------------------------ dialogs: refusals


def _open_plan(at):
    return pick_plan(at, "platform", "Edit plan")


def _open_model(at):
    at.selectbox(key="model_pick").set_value("gpt-4o").run()
    return press(at, "Edit model price")


BAD_INPUT = [
    # (opens the dialog, fields, its save button, words of the refusal)
    (_open_model, {"model_price_usd_per_1k_input": "-1"}, "Save price", "cannot be negative (got -1)"),
    (_open_model, {"model_price_usd_per_1k_input": "0"}, "Save price", None),  # zero is a valid rate: saved
    (_open_model, {"model_price_usd_per_1k_output": "ten"}, "Save price", "is not a number (got 'ten')"),
    (_open_model, {"model_price_usd_per_1k_output": "1e7"}, "Save price", "is too large"),
    (_open_model, {"model_price_usd_per_image": ""}, "Save price", "Price per image is not a number"),
    (_open_model, {"model_price_usd_per_request": "0.000000001"}, "Save price", "more than 8 decimal places"),
    (_open_model, {"model_price_when": "at", "model_price_date": yesterday().date()}, "Save price", "is in the past"),
    (_open_model, {"model_price_when": "at", "model_price_date": (yesterday() + timedelta(days=6 * 366)).date()}, "Save price", "too far ahead"),
    (_open_model, {"model_price_note": "line\nbreak"}, "Save price", "control characters"),
    (lambda at: press(at, "Add model"), {"model_price_provider": "Open AI'; drop table x", "model_price_model": "x",
                                         "model_price_usd_per_1k_input": "1", "model_price_usd_per_1k_output": "1"},
     "Save price", "Provider must be a lowercase key"),
    (lambda at: press(at, "Add model"), {"model_price_provider": "openai", "model_price_model": "gpt 5",
                                         "model_price_usd_per_1k_input": "1", "model_price_usd_per_1k_output": "1"},
     "Save price", "Model must be 1 to 128 characters without spaces"),
    (lambda at: press(at, "Edit service price"), {"service_price_credits": "-5"}, "Save service price", "cannot be negative"),
    (lambda at: press(at, "Edit service price"), {"service_price_credits": "1e10"}, "Save service price", "too large"),
    (lambda at: press(at, "Edit service price"), {"service_price_credits": "abc"}, "Save service price", "not a number"),
    (lambda at: press(at, "Add service"), {"service_price_service": "<b>x</b>", "service_price_credits": "1"}, "Save service price",
     "service type"),
    (lambda at: press(at, "Edit platform rules"), {"rules_markup": "0"}, "Save platform rules",
     "Markup must be a number greater than 0"),
    (lambda at: press(at, "Edit platform rules"), {"rules_markup": "1000"}, "Save platform rules", "at most 100"),
    (lambda at: press(at, "Edit platform rules"), {"rules_fee": "-1"}, "Save platform rules", "cannot be negative"),
    (lambda at: press(at, "Edit platform rules"), {"rules_ttl": 0}, "Save platform rules",
     "Hold lifetime must be between 1 second and 7 days"),
    (lambda at: press(at, "Edit platform rules"), {"rules_when": "at", "rules_date": yesterday().date()},
     "Save platform rules", "in the past"),
    (lambda at: press(at, "Set an organization's override"), {"override_markup": "2"}, "Save override",
     "Choose an organization."),
    (lambda at: press(at, "Set an organization's override"), {"override_org": "acme", "override_markup": "-2"}, "Save override",
     "Markup must be"),
    (lambda at: press(at, "Set an organization's override"), {"override_org": "acme", "override_fee": "x"}, "Save override",
     "not a number"),
    (lambda at: press(at, "New package"), {"package_code": "tiny", "package_name": "Tiny", "package_credits": "0", "package_price": "1"},
     "Save package", "Package credits must be greater than 0"),
    (lambda at: press(at, "New package"), {"package_code": "tiny", "package_name": "Tiny", "package_credits": "10", "package_price": "-1"},
     "Save package", "Package price cannot be negative"),
    (lambda at: press(at, "New package"), {"package_code": "tiny", "package_name": "Tiny", "package_credits": "10", "package_price": "1e20"},
     "Save package", "too large"),
    (lambda at: press(at, "New package"), {"package_code": "Bad Code", "package_name": "Bad", "package_credits": "10",
                                           "package_price": "1"}, "Save package", "Package code must be"),
    (lambda at: press(at, "New package"), {"package_code": "tiny", "package_name": "  ", "package_credits": "10", "package_price": "1"},
     "Save package", "Package name is missing"),
    (lambda at: press(at, "Edit package"), {"package_bonus": "many"}, "Save package", "not a number"),
    (_open_plan, {"plan_edit_price": "-5"}, "Review the change", "Monthly price cannot be negative (got -5)"),
    (_open_plan, {"plan_edit_price": "2e10"}, "Review the change", "Monthly price is too large"),
    (_open_plan, {"plan_edit_price": "1e12"}, "Review the change", "Monthly price is too large"),
    (_open_plan, {"plan_edit_price": "ten"}, "Review the change", "Monthly price is not a number (got 'ten')"),
    (lambda at: press(at, "New plan"), {"plan_new_code": "team", "plan_new_name": "Team", "plan_new_price": "9.99999"}, "Create plan",
     "more than 4 decimal places"),
    (_open_plan, {"plan_edit_price": "9.99999"}, "Review the change", "more than 4 decimal places"),
    (_open_plan, {"plan_edit_price": "51"}, "Review the change", None),  # the control case: saved
    (_open_plan, {"plan_edit_price": "50"}, "Review the change", "nothing to change"),
    (_open_plan, {"plan_edit_credits": "-1"}, "Review the change", "Included credits must be greater than 0"),
    (_open_plan, {"plan_edit_trial": 400}, "Review the change", "A trial lasts 1 to 365 days"),
    (_open_plan, {"plan_edit_price": "60", "plan_edit_when": "at", "plan_edit_date": yesterday().date()}, "Review the change",
     "is in the past"),
    (lambda at: press(at, "New plan"), {"plan_new_code": "team", "plan_new_name": "  ", "plan_new_price": "10"}, "Create plan",
     "Plan name is missing"),
    (lambda at: press(at, "New plan"), {"plan_new_code": "Team Plan", "plan_new_name": "Team", "plan_new_price": "10"}, "Create plan",
     "Plan code must be"),
    (lambda at: press(at, "New plan"), {"plan_new_code": "platform", "plan_new_name": "Again", "plan_new_price": "10"}, "Create plan",
     "already taken"),
    (lambda at: press(at, "New plan"), {"plan_new_code": "team", "plan_new_name": "Team", "plan_new_price": ""}, "Create plan",
     "Monthly price is not a number"),
    (lambda at: press(at, "New plan"), {"plan_new_code": "team", "plan_new_name": "Team", "plan_new_price": "10", "plan_new_credits": "lots"},
     "Create plan", "Included credits is not a number"),
    (lambda at: press(at, "Rename"), {"plan_rename_name": ""}, "Save name", "Plan name is missing"),
    (lambda at: press(at, "Rename"), {"plan_rename_name": "Team\tPlus"}, "Save name", "control characters"),
]


@pytest.mark.parametrize(("opens", "fields", "save", "words"), BAD_INPUT,
                         ids=[f"{b[2]}-{next(iter(b[1].values()))}" for b in
                              (getattr(case, "values", case) for case in BAD_INPUT)])
def test_bad_input_in_a_dialog_shows_the_error_and_changes_nothing(setup, opens, fields, save, words):
    db = setup
    at = open_page("pricing", "root")
    opens(at)
    assert dialog_open(at) and not at.exception
    before = state(db)
    fill(at, **{**when_now(at), **fields})
    press(at, save)
    assert not at.exception
    if words is None:  # the control case: the same path saves (a plan's new version after its question)
        if save == "Review the change":
            assert not errors(at) and state(db) == before
            press(at, "Confirm")
        assert not errors(at) and not dialog_open(at) and state(db) != before
        return
    assert not at.warning, "a refused change asks no question"
    shown = errors(at)
    assert len(shown) == 1 and words.lower() in shown[0].lower(), shown
    assert dialog_open(at), "a refused save keeps the dialog open with what was typed"
    assert state(db) == before
    assert ledger.verify(db) == []


# ------------------------------------------------------------ the calculator


@pytest.mark.parametrize(("fields", "usage"), [
    ({"calc_model": "gpt-4o-mini", "calc_input": "12,345", "calc_output": "6789", "calc_requests": "2"},
     Usage("llm", "gpt-4o-mini", 12345, 6789, 0, 2)),
    ({"calc_model": "gpt-4o", "calc_input": "1000", "calc_output": "500", "calc_byok": True},
     Usage("llm", "gpt-4o", 1000, 500, 0, 1, byok=True)),
    ({"calc_model": "dall-e-3", "calc_input": "0", "calc_output": "0", "calc_images": "3"},
     Usage("llm", "dall-e-3", 0, 0, 3)),
    ({"calc_service": "company_enrichment", "calc_model": "gpt-4o", "calc_requests": "3"},
     Usage("company_enrichment", "gpt-4o", 1000, 500, 0, 3)),
])
def test_calculator_figures_equal_billing_cores(setup, fields, usage):
    db = setup
    pricing.set_org_override(db, "root", "acme", markup=D("1.2"), byok_fee_credits=D("0.25"))
    at = open_page("pricing", "root")
    fill(at, calc_org="acme", **fields).run()
    assert not at.exception and not errors(at)
    expected = pricing.calculator(db, "root", usage, org_id="acme")
    shown = dataframe(at, "plan_name", "credits", "dollars", "allowed", "note")
    assert shown.plan_name.tolist() == expected.plan_name.tolist()
    assert shown.allowed.tolist() == ["allowed" if ok else "not allowed" for ok in expected.allowed]
    for got, want in zip(shown.credits, expected.credits, strict=True):
        assert (got == "—" and want is None) or D(got.replace(",", "")) == want  # "—": the plan refuses it
    assert shown.dollars.tolist() == [kit.fmt_exact_money(d) for d in expected.dollars]
    assert shown.note.tolist() == expected.note.tolist()
    # the explanation of the first plan that allows the call: the engine's figures, in words
    first = expected[expected.allowed].iloc[0]
    assert at.selectbox(key="calc_explain").value == first.plan_code
    words = [plain(m.value) for m in at.markdown]
    assert f"Rounded half away from zero to 6 decimals, once, at the end: {kit.fmt_credits(first.credits)} credits " \
           f"= {kit.fmt_exact_money(first.dollars)}." in words


def test_calculator_explains_the_markup_arithmetic_by_hand(setup):
    at = open_page("pricing", "root")
    fill(at, calc_model="gpt-4o", calc_input="1000", calc_output="500").run()
    assert rows(at, "plan_name", "allowed")[:3] == [("Starter", "allowed"), ("BYOK", "not allowed"),
                                                     ("Platform", "allowed")]
    credits = dict(rows(at, "plan_name", "allowed", "credits")[i][::2] for i in range(5))
    assert credits["Platform"] == "11.25" and credits["BYOK"] == "—"  # BYOK plan: managed keys not included
    assert dict(rows(at, "plan_name", "allowed", "dollars")[i][::2] for i in range(5))["Platform"] == "$0.01125"
    at.selectbox(key="calc_explain").set_value("platform").run()
    words = [plain(m.value) for m in at.markdown]
    assert "gpt-4o (openai), rates from 2024-01-01 00:00 UTC: 1,000 input tokens × $0.0025 per 1,000 + 500 output " \
           "tokens × $0.01 per 1,000 = provider cost $0.0075." in words
    assert "Managed keys: $0.0075 × 1,000 credits per dollar = 7.5 credits, × markup 1.5 (platform) = 11.25 " \
           "credits." in words
    assert any("not included" in n for n in dataframe(at, "allowed", "note").note)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("calc_input", "many", "Input tokens is not a number"),
    ("calc_output", "-5", "Output tokens must be between 0"),
    ("calc_requests", "0", "Requests must be between 1"),
    ("calc_images", "1.5", "Images must be a whole number"),
    ("calc_input", "1e12", "Input tokens must be between 0"),
])
def test_calculator_bad_input_shows_the_reason(setup, field, value, words):
    db = setup
    at = open_page("pricing", "root")
    before = state(db)
    fill(at, **{field: value}).run()
    assert not at.exception
    assert any(words.lower() in e.lower() for e in errors(at)), errors(at)
    assert all("allowed" not in f.value.columns for f in at.dataframe)  # no figures for a refused event
    assert state(db) == before


# ------------------------------------------------------------ in a real browser


EVIL_NAME = "Evil https://evil.example www.evil.example"


@pytest.mark.slow
def test_pricing_page_in_a_browser(setup, db_url):
    """Log in as root in Chromium, open Pricing: show a plan's versions; a new version of Starter through its dialog
    (refused before any question, then reviewed with the organizations it reaches, then confirmed); a platform rule
    through its dialog; price an event. Then Billing periods of an organization whose name holds URLs (a plain
    heading, no link; the time zone picked from the IANA list by typing) and the paged Audit log.

    Screenshots land in test-artifacts/pricing-*.png (look at them: the tests cannot judge the layout).
    """
    from tests.browser import test_browser as web  # skips this test when Playwright or Chromium is missing

    if not web.CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium")
    subscriptions.create_subscription(setup, "root", "acme", "starter", trial=False)
    organizations.create_organization(setup, None, "evil", EVIL_NAME)
    with web.running_app(db_url, "pricing-streamlit.log") as base:
        with web.playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(web.CHROMIUM), args=web.CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(20_000)
            page.goto(base)
            try:
                _browse(web, page, setup)
                _periods_and_audit(web, page, base)
            except Exception:
                web.shot(page, "pricing-failed")
                raise
            browser.close()
        assert pricing.platform_rules(setup, "root").iloc[0].markup == D("1.75")
        assert {e.code: e.monthly_price for e in plans.catalogue(setup)}["starter"] == 21
        assert fetch(setup, "select billing_timezone from organizations where id = 'evil'")[0][0] == "Europe/Berlin"


def _refused_then_saved(web, page, opens: str, field: str, bad: tuple[str, str], good: tuple[str, str], save: str,
                        shots: tuple[str, str], review: str | None = None) -> None:
    """Open a dialog with the button `opens`, say the change takes effect now; type bad[0] in `field` and see bad[1],
    then good[0] (and, for a reviewed change, see `review` in its question and confirm) and see good[1] once the
    dialog closed; a screenshot after each."""
    page.get_by_role("button", name=opens).click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    web.settle(page)
    dialog.get_by_text("Now", exact=True).click()
    for (value, words), name in zip((bad, good), shots, strict=True):
        dialog.get_by_role("textbox", name=field).fill(value)
        dialog.get_by_role("button", name=save).click()
        if value == good[0] and review is not None:
            dialog.get_by_text(review).wait_for()
            web.settle(page)
            web.shot(page, f"{name}-review")
            dialog.get_by_role("button", name="Confirm").click()
        (dialog if value == bad[0] else page).get_by_text(words).wait_for()
        web.settle(page)
        web.shot(page, name)
    assert page.get_by_role("dialog").count() == 0


def _browse(web, page, db) -> None:
    page.get_by_role("button", name="Log in").wait_for()
    web.settle(page)
    page.get_by_role("textbox", name="Email").fill("root@example.com")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Logged in as").wait_for()
    web.settle(page)
    assert "Pricing" in [n.strip().split("\n")[-1] for n in
                         page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
    page.locator('[data-testid="stSidebarNav"] a', has_text="Pricing").click()
    page.get_by_role("heading", name="Pricing").wait_for()
    web.settle(page)
    assert urlsplit(page.url).path == "/pricing"  # the screen's URL path: its module's name
    page.get_by_text("Show the versions of the chosen plan").click()
    page.get_by_text("in force", exact=True).wait_for(state="attached")  # grid cells are drawn on a canvas
    web.settle(page)
    web.shot(page, "pricing-plans")
    _refused_then_saved(web, page, "Edit plan", "Price per month (USD)",
                        ("-1", "Monthly price cannot be negative (got -1)."),
                        ("21", "Starter (starter): version 2 takes effect now."), "Review the change",
                        ("pricing-plan-edit-refused", "pricing-plan-edited"),
                        review="It reaches 1 organization subscribed to it now")

    page.get_by_role("tab", name="Model prices").click()
    web.settle(page)
    web.shot(page, "pricing-model-prices")

    page.get_by_role("tab", name="Platform rules").click()
    _refused_then_saved(web, page, "Edit platform rules", "Markup on provider cost (managed keys)",
                        ("abc", "Markup is not a number"), ("1.75", "Saved the platform rules."), "Save platform rules",
                        ("pricing-dialog-refused", "pricing-platform-rules"))

    page.get_by_role("tab", name="Cost calculator").click()
    web.settle(page)
    web.shot(page, "pricing-calculator")


def _periods_and_audit(web, page, base: str) -> None:
    page.goto(f"{base}/billing_settings?org=evil")
    page.get_by_role("heading", name="Billing periods").wait_for()
    web.settle(page)
    heading = page.get_by_role("heading", name="Evil https")
    heading.wait_for()
    assert heading.inner_text().strip().replace("\u2060", "") == EVIL_NAME  # shown as typed (word joiners are
    # invisible)...
    assert page.locator("a[href*='evil.example']").count() == 0  # ...and never a live link
    zone = page.get_by_test_id("stSelectbox").filter(has_text="Time zone").locator("input")
    zone.click()
    zone.fill("Berlin")  # the IANA list, searched by typing
    page.get_by_role("option", name="Europe/Berlin", exact=True).click()
    page.get_by_role("button", name="Save calendar").click()
    page.get_by_text("Billing calendar saved").wait_for()
    web.settle(page)
    web.shot(page, "pricing-billing-periods")

    page.locator('[data-testid="stSidebarNav"] a', has_text="Audit log").click()
    page.get_by_role("heading", name="Audit log").wait_for()
    page.get_by_text("Showing 1–").wait_for()
    web.settle(page)
    assert page.locator("a[href*='evil.example']").count() == 0  # the name in the labels and table: text too
    web.shot(page, "pricing-audit-log")
