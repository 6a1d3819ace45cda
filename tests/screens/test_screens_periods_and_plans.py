"""Issue 4 on the screens: plan changes and cancellation on Organization billing, alerts, runway and lots,
and the Billing periods page (calendar, allocation policy, standing amounts, threshold, refresh).

Dataset: 'acme' on Platform ($50 / month, no trial), admin ada, members bob (1,000 allocated) and cy;
10,000 credits bought; 'other' with its own admin olga; root is the system admin.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import available_timezones

import pytest
import streamlit as st
from ledger_state import snapshot
from screen_testing import errors, metric_values, open_page, plain, texts
from time_travel import into_the_past

from billing_core import analytics, credits, ledger, organizations, periods, subscriptions, usage


@pytest.fixture
def acme(db, db_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, name, admin in (("acme", "Acme Analytics", "ada"), ("other", "Other Org", "olga")):
        organizations.create_organization(db, None, org_id, name)
        organizations.create_user(db, None, admin, f"{admin}@example.com", admin.title())
        organizations.add_member(db, None, org_id, admin, "admin")
    subscriptions.create_subscription(db, "root", "acme", "platform", trial=False)
    for user_id in ("bob", "cy"):
        organizations.create_user(db, None, user_id, f"{user_id}@example.com", user_id.title())
        organizations.add_member(db, None, "acme", user_id)
    credits.add_credits(db, None, "acme", 10_000, 10)
    credits.allocate(db, "ada", "acme", "bob", 1_000)
    st.cache_data.clear()
    return db


def send(at, form: str, *, confirm: bool = True, **fields):
    """Set a form's fields by key (radio, selectbox, text or number input), send it, confirm when asked."""
    for key, value in fields.items():
        for kind in (at.radio, at.selectbox, at.text_input, at.number_input, at.date_input):
            widgets = [w for w in kind if w.key == key]
            if widgets:
                widgets[0].set_value(value)
                break
        else:
            raise AssertionError(f"no field {key!r}")
    at.button(key=f"{form}_submit").click().run()
    assert not at.exception
    confirm_buttons = [b for b in at.button if b.key == f"{form}_confirm"]
    if confirm and confirm_buttons:
        confirm_buttons[0].click().run()
        assert not at.exception
    return at


def shown(at) -> list[str]:
    return [plain(t) for t in texts(at)]


# ---------------------------------------------------------------- plan changes


def test_an_org_admin_upgrades_now_and_sees_the_proration_history_and_mrr(acme):
    mrr_before = analytics.overview(acme, "root").mrr.value
    at = open_page("org_billing", "ada", "acme")
    assert not at.exception and not errors(at)
    send(at, "plan_change", confirm=False, plan_change_plan="hybrid", plan_change_when="now")
    preview = subscriptions.preview_change(acme, "ada", "acme", "hybrid")
    question = " ".join(plain(w.value) for w in at.warning)
    assert "Move Acme Analytics to Hybrid now?" in question
    assert f"${preview.credit:,.2f}" in question and f"${preview.charge:,.2f}" in question
    at.button(key="plan_change_confirm").click().run()
    assert not at.exception and not errors(at)
    assert any("Now on Hybrid" in plain(s.value) for s in at.success)

    overview = usage.org_overview(acme, "ada", "acme")
    assert (overview.plan, overview.price_amount) == ("hybrid", Decimal(99))
    history = usage.billing_timeline(acme, "ada", "acme")
    change = history[history.event_type == "subscription_plan_changed"]
    assert len(change) == 1 and change.amount.iloc[0] == preview.amount
    assert analytics.overview(acme, "root").mrr.value == mrr_before + 49
    assert "Hybrid" in metric_values(at, "Plan")
    assert ledger.verify(acme) == []


def test_a_scheduled_downgrade_shows_and_can_be_dropped(acme):
    at = open_page("org_billing", "ada", "acme")
    send(at, "plan_change", plan_change_plan="byok", plan_change_when="period_end")
    assert any("Scheduled: BYOK from" in plain(s.value) for s in at.success)
    assert any("Moves to BYOK when the current period ends." in plain(i.value) for i in at.info)
    assert usage.org_overview(acme, "ada", "acme").plan == "platform"

    at.button(key="reactivate").click().run()
    assert not at.exception
    assert usage.org_overview(acme, "ada", "acme").scheduled_plan is None
    assert not any("Moves to" in plain(i.value) for i in at.info)


def test_cancel_at_period_end_then_keep_it(acme):
    at = open_page("org_billing", "ada", "acme")
    send(at, "cancel", cancel_when="period_end")
    assert usage.org_overview(acme, "ada", "acme").cancel_at_period_end is True
    assert any("ends with the current period" in plain(i.value) for i in at.info)
    at.button(key="reactivate").click().run()
    assert usage.org_overview(acme, "ada", "acme").cancel_at_period_end is False


def test_cancel_now_then_subscribe_again(acme):
    at = open_page("org_billing", "root", "acme")
    send(at, "cancel", cancel_when="now")
    overview = usage.org_overview(acme, "root", "acme")
    assert overview.subscription_status == "canceled"
    assert [b.key for b in at.button if b.key == "subscribe_submit"]
    send(at, "subscribe", subscribe_plan="starter")
    assert usage.org_overview(acme, "root", "acme").plan == "starter"
    assert ledger.verify(acme) == []


def test_a_member_cannot_change_the_plan(acme):
    at = open_page("org_billing", "bob", "acme")
    assert errors(at) and not [b for b in at.button if b.key == "plan_change_submit"]


# ---------------------------------------------------------------- alerts, runway, lots


def test_an_allocation_past_90_percent_shows_an_alert_until_resolved(acme):
    credits.deduct(acme, "acme", "bob", 905, "llm", "gpt-4o")
    at = open_page("org_billing", "ada", "acme")
    assert any("905" in plain(w.value) and "1000" in plain(w.value).replace(",", "") for w in at.warning)
    [resolve] = [b for b in at.button if b.key.startswith("resolve_alert_")]
    resolve.click().run()
    assert not at.exception
    assert not [b for b in at.button if b.key.startswith("resolve_alert_")]


def test_runway_and_lots_are_shown(acme):
    credits.deduct(acme, "acme", "bob", 300, "llm", "gpt-4o")
    at = open_page("org_billing", "ada", "acme")
    runway = usage.runway(acme, "ada", "acme")
    assert runway.burn_per_day == Decimal(10)  # 300 credits over 30 days
    assert metric_values(at, "Burn per day (30 days)") == ["10"]
    assert metric_values(at, "Runway") == [f"{runway.runway_days:,.0f} days"]
    lots = periods.lots(acme, "ada", "acme")
    assert len(lots) == 1 and lots.credits.iloc[0] == 10_000


def test_credits_granted_with_an_expiry_become_a_lot_that_expires(acme):
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    at = open_page("system_credits", "root")
    send(at, "grant", grant_org="acme", grant_credits="2,000", grant_reason="Launch promotion", grant_expires=day)
    assert not errors(at)
    lots = periods.lots(acme, "ada", "acme")
    expiring = lots[lots.expires_at.notna()]
    assert len(expiring) == 1 and expiring.credits.iloc[0] == 2_000
    assert expiring.expires_at.iloc[0] == datetime.combine(day + timedelta(days=1), time.min, UTC)
    assert ledger.verify(acme) == []


def test_an_expiry_in_the_past_is_refused(acme):
    before = snapshot(acme)
    at = open_page("system_credits", "root")
    send(at, "grant", grant_org="acme", grant_credits="2,000", grant_reason="Launch promotion",
         grant_expires=(datetime.now(UTC) - timedelta(days=2)).date())
    assert errors(at)
    assert snapshot(acme) == before


# ---------------------------------------------------------------- billing periods page


def test_the_periods_page_saves_each_setting(acme):
    at = open_page("billing_settings", "ada", "acme")
    assert not at.exception and not errors(at)
    send(at, "calendar", calendar_day=31, calendar_zone="Europe/Berlin")
    send(at, "policy", policy="rollover", rollover_cap="250")
    send(at, "standing", standing_user="bob", standing_credits="1,500")
    send(at, "threshold", threshold_credits="2,000")
    assert not errors(at)
    assert "Low-balance alert saved: below 2,000 unspent credits." in [plain(s.value) for s in at.success]
    # each form, once saved, shows what is saved now (nothing typed stays behind to be sent twice)
    assert at.text_input(key="standing_credits").value == ""
    assert (at.selectbox(key="calendar_zone").value, at.number_input(key="calendar_day").value) == (
        "Europe/Berlin", 31)
    assert at.text_input(key="threshold_credits").value == "2,000"
    settings = periods.settings(acme, "ada", "acme")
    assert (settings.anchor_day, settings.timezone, settings.allocation_policy) == (31, "Europe/Berlin", "rollover")
    assert (settings.rollover_cap, settings.low_balance_threshold) == (250, 2_000)
    members = usage.allocations(acme, "ada", "acme").set_index("user_id")
    assert members.loc["bob"].standing_credits == 1_500
    # only system admins set the refresh
    assert next(b for b in at.button if b.key == "refresh_submit").disabled
    assert ledger.verify(acme) == []


def test_the_time_zone_is_chosen_from_the_iana_list(acme):
    at = open_page("billing_settings", "ada", "acme")
    zone = at.selectbox(key="calendar_zone")
    assert zone.value == "UTC" and zone.options == sorted(available_timezones())
    assert "Europe/Berlin" in zone.options and "Mars/Olympus" not in zone.options  # no free text to mistype


@pytest.mark.parametrize(
    ("form", "fields", "message"),
    [
        ("policy", {"policy": "rollover", "rollover_cap": "-5"}, "Rollover cap"),
        ("standing", {"standing_user": "bob", "standing_credits": "lots"}, "Standing credits"),
        ("threshold", {"threshold_credits": "1e400"}, "Low-balance threshold"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(acme, form, fields, message):
    before = snapshot(acme)
    at = open_page("billing_settings", "ada", "acme")
    send(at, form, **fields)
    assert any(message in e for e in errors(at)), errors(at)
    assert snapshot(acme) == before


def test_a_system_admin_sets_the_monthly_refresh(acme):
    at = open_page("billing_settings", "root", "acme")
    send(at, "refresh", refresh_credits="5,000")
    assert periods.settings(acme, "root", "acme").monthly_refresh_amount == 5_000


@pytest.mark.parametrize(("who", "org"), [("bob", "acme"), ("olga", "acme")])
def test_the_periods_page_refuses_members_and_other_admins(acme, who, org):
    at = open_page("billing_settings", who, org)
    assert errors(at)
    assert not [b for b in at.button if b.key == "calendar_submit"]


def test_the_screens_say_when_the_period_job_last_ran(acme):
    at = open_page("system_overview", "root")
    assert any("The period job has never run" in plain(w.value) for w in at.warning)
    run = periods.run(acme)
    st.cache_data.clear()
    at = open_page("system_overview", "root")
    assert any(f"Period job last ran {run.finished_at:%Y-%m-%d %H:%M}" in plain(c.value) for c in at.caption)
    at = open_page("billing_settings", "ada", "acme")
    assert any(f"The period job last ran {run.finished_at:%Y-%m-%d %H:%M %Z}" in plain(c.value) for c in at.caption)


def test_past_periods_leave_out_the_current_one(acme):
    """The period job's newest period for an organization is its current one: "Past periods" starts before it."""
    periods.run(acme)  # the job's first sight of acme: its baseline (current) period
    st.cache_data.clear()
    at = open_page("billing_settings", "ada", "acme")
    assert "No past period yet: the current one is the first the period job opened." in shown(at)
    into_the_past(acme)  # that period was half a year ago: the job now opens every period since, up to today's
    periods.run(acme)
    st.cache_data.clear()
    at = open_page("billing_settings", "ada", "acme")
    current = periods.current_period(acme, "ada", "acme")
    [past] = [frame.value for frame in at.dataframe if "period_start" in frame.value.columns]
    assert len(past) >= 5 and current.period_start not in set(past.period_start)
    assert past.period_end.max() == current.period_start  # the newest past period ends where the current starts
    assert past.period_start.tolist() == sorted(past.period_start, reverse=True)


def test_a_lot_shows_the_purchase_s_own_date(acme):
    """Credits bought months ago but recorded today: the lot is dated by the purchase, not by the recording."""
    bought = datetime.now(UTC).replace(microsecond=0) - timedelta(days=90)
    credits.add_credits(acme, None, "acme", 500, "0.5", occurred_at=bought)
    lots = periods.lots(acme, "ada", "acme")
    late = lots[lots.credits == 500].iloc[0]
    assert late.granted_at == bought
    assert late.recorded_at > bought + timedelta(days=89)  # it entered the pool when recorded: settlement's date


def test_an_organization_name_with_urls_is_a_plain_heading(acme):
    """Streamlit's markdown makes bare URLs and www. names live links, escapes or not: md_text breaks them."""
    evil = "Evil https://evil.example www.evil.example"
    organizations.create_organization(acme, None, "evil", evil)
    organizations.add_member(acme, None, "evil", "ada", "admin")
    at = open_page("billing_settings", "ada", "evil")
    assert not at.exception and not errors(at)
    [heading] = [h.value for h in at.subheader if "Evil" in h.value]
    assert plain(heading) == evil  # what a reader sees: the name as typed
    unescaped = heading.replace("\\", "")
    assert "://" not in unescaped and "www." not in unescaped  # what GFM's autolinker looks for


def test_saving_the_calendar_it_already_has_says_nothing_changed(acme):
    """The database tells whether the calendar changed: the screen never claims a change that did not happen."""
    at = open_page("billing_settings", "ada", "acme")
    before = snapshot(acme)
    send(at, "calendar", calendar_day=at.number_input(key="calendar_day").value, calendar_zone="UTC")
    assert [plain(s.value) for s in at.success] == ["The calendar already was this one: nothing changed."]
    assert snapshot(acme) == before
    send(at, "calendar", calendar_zone="Asia/Tokyo")
    assert [plain(s.value) for s in at.success] == [
        "Billing calendar saved: the current period keeps its end; the next ones follow the new day."]
    assert periods.settings(acme, "ada", "acme").timezone == "Asia/Tokyo"
