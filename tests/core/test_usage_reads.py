"""The date-range usage reads (billing_core.usage over sql/routines/121_usage_reads.sql).

Dataset: organization "berlin" (time zone Europe/Berlin), admin ada, members mia and ned; organization
"paris" (UTC) with admin otto; root is a system admin. Mia is charged 5 x 10 contact_lookup two days ago
at noon UTC and 2 x 50 company_enrichment now; ned 3 x 10 contact_lookup now; one charge of mia's is
booked at 23:30 UTC five days ago, which is already the next day (00:30) in Berlin.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from billing_core import charging, credits, organizations, periods, usage
from billing_core.database import call
from billing_core.errors import InvalidInput, PermissionDenied
from billing_core.pricing import Usage

BERLIN = "Europe/Berlin"


@pytest.fixture
def berlin(db):
    organizations.create_user(db, None, "root", "root@example.com", "Root", is_system_admin=True)
    for org_id, admin in (("berlin", "ada"), ("paris", "otto")):
        organizations.create_organization(db, None, org_id, org_id.title())
        organizations.create_user(db, None, admin, f"{admin}@example.com", admin.title())
        organizations.add_member(db, None, org_id, admin, "admin")
        credits.add_credits(db, None, org_id, 10_000, 10)
    periods.set_calendar(db, None, "berlin", 1, BERLIN)
    for user in ("mia", "ned"):
        organizations.create_user(db, None, user, f"{user}@example.com", user.title())
        organizations.add_member(db, None, "berlin", user)
        credits.allocate(db, "ada", "berlin", user, 1_000)
    organizations.add_member(db, None, "paris", "mia")
    credits.allocate(db, "otto", "paris", "mia", 1_000)

    now = datetime.now(UTC)
    noon = datetime.combine(now.date() - timedelta(days=2), time(12), tzinfo=UTC)
    for n in range(5):
        credits.deduct(db, "berlin", "mia", 10, "contact_lookup", "lookup", request_id=f"lookup-{n}",
                       occurred_at=noon + timedelta(minutes=n))
    for n in range(2):
        credits.deduct(db, "berlin", "mia", 50, "company_enrichment", "enrich", request_id=f"enrich-{n}")
    for n in range(3):
        credits.deduct(db, "berlin", "ned", 10, "contact_lookup", "lookup", request_id=f"ned-{n}")
    late = datetime.combine(now.date() - timedelta(days=5), time(23, 30), tzinfo=UTC)
    credits.deduct(db, "berlin", "mia", 7, "llm", "late-night", request_id="late", occurred_at=late)
    credits.deduct(db, "paris", "mia", 1, "contact_lookup", "lookup")  # another organization: never in berlin's
    return db


def today_in(db, zone: str = BERLIN) -> date:
    return call(db, "select (now() at time zone :zone)::date", {"zone": zone})


def last_30(db, actor: str = "mia", org: str = "berlin") -> usage.DateRange:
    return usage.date_range(db, actor, org, "last_30_days")


# ---------------------------------------------------------------- authorization


def test_a_member_reads_their_own_usage_and_nobody_elses(berlin):
    r = last_30(berlin)
    mine = usage.charges(berlin, "mia", "berlin", "mia", r.date_from, r.date_to)
    assert set(mine.user_id) == {"mia"} and len(mine) == 8
    assert usage.range_totals(berlin, "mia", "berlin", "mia", r.date_from, r.date_to).credits_used == 157
    for user in ("ned", None):  # another member's, or the whole organization's
        with pytest.raises(PermissionDenied, match="not an admin of organization 'berlin'"):
            usage.charges(berlin, "mia", "berlin", user, r.date_from, r.date_to)
        with pytest.raises(PermissionDenied):
            usage.range_totals(berlin, "mia", "berlin", user, r.date_from, r.date_to)
        with pytest.raises(PermissionDenied):
            usage.daily_usage(berlin, "mia", "berlin", user, r.date_from, r.date_to)
    with pytest.raises(PermissionDenied):
        usage.member_usage(berlin, "mia", "berlin", r.date_from, r.date_to)


def test_an_admin_of_another_organization_reads_none_of_its_usage(berlin):
    r = last_30(berlin, "otto", "paris")
    for user in ("mia", None):
        with pytest.raises(PermissionDenied, match="not an admin of organization 'berlin'"):
            usage.charges(berlin, "otto", "berlin", user, r.date_from, r.date_to)
        with pytest.raises(PermissionDenied):
            usage.service_usage(berlin, "otto", "berlin", user, r.date_from, r.date_to)
    with pytest.raises(PermissionDenied, match="not a member of organization 'berlin'"):
        usage.date_range(berlin, "otto", "berlin", "today")
    # otto reads paris's charges: mia's one there, none of berlin's
    assert usage.charges(berlin, "otto", "paris", None, r.date_from, r.date_to).credits_used.tolist() == [1]


def test_org_admins_read_the_organization_and_each_member_system_admins_any(berlin):
    r = last_30(berlin)
    for actor in ("ada", "root"):
        everyone = usage.range_totals(berlin, actor, "berlin", None, r.date_from, r.date_to)
        assert everyone == usage.RangeTotals(Decimal(187), Decimal("0.187"), 11, 3, 2)
        ned = usage.charges(berlin, actor, "berlin", "ned", r.date_from, r.date_to)
        assert set(ned.user_id) == {"ned"} and len(ned) == 3
    by_member = usage.member_usage(berlin, "ada", "berlin", r.date_from, r.date_to)
    assert by_member[["user_id", "credits_used", "requests", "is_member"]].values.tolist() == [
        ["mia", 157, 8, True], ["ned", 30, 3, True],
    ]


def test_the_app_role_may_run_the_reads_and_they_still_check_the_actor(berlin, db_url):
    from billing_core import database

    app = database.app_engine(db_url)
    r = usage.date_range(app, "mia", "berlin", "last_7_days")
    assert len(usage.charges(app, "mia", "berlin", "mia", r.date_from, r.date_to)) == 8
    with pytest.raises(PermissionDenied):
        usage.charges(app, "mia", "berlin", "ned", r.date_from, r.date_to)
    with pytest.raises(PermissionDenied, match="operator"):  # no acting user: only the owner's connection
        usage.charges(app, None, "berlin", None, r.date_from, r.date_to)


# ---------------------------------------------------------------- paging and the service filter


def test_charges_are_paged_newest_first_and_the_pages_add_up(berlin):
    r = last_30(berlin)
    every = usage.charges(berlin, "ada", "berlin", None, r.date_from, r.date_to, limit=100)
    assert len(every) == 11
    assert every.created_at.is_monotonic_decreasing
    pages = [usage.charges(berlin, "ada", "berlin", None, r.date_from, r.date_to, limit=4, offset=offset)
             for offset in (0, 4, 8)]
    assert [len(page) for page in pages] == [4, 4, 3]
    assert [i for page in pages for i in page.id] == every.id.tolist()
    assert usage.charges(berlin, "ada", "berlin", None, r.date_from, r.date_to, limit=4, offset=12).empty


@pytest.mark.parametrize(("limit", "offset", "message"), [
    (0, 0, "A page holds 1 to 100,000 charges"),
    (100_001, 0, "A page holds 1 to 100,000 charges"),
    (10, -1, "A page starts at charge 0 or later"),
])
def test_a_bad_page_is_refused(berlin, limit, offset, message):
    r = last_30(berlin)
    with pytest.raises(InvalidInput, match=message):
        usage.charges(berlin, "ada", "berlin", None, r.date_from, r.date_to, limit=limit, offset=offset)


def test_the_service_filter_narrows_charges_and_their_count(berlin):
    r = last_30(berlin)
    lookups = usage.charges(berlin, "ada", "berlin", None, r.date_from, r.date_to, service_type="contact_lookup")
    assert set(lookups.service_type) == {"contact_lookup"} and len(lookups) == 8
    counted = usage.range_totals(berlin, "ada", "berlin", None, r.date_from, r.date_to, "contact_lookup")
    assert (counted.requests, counted.credits_used, counted.members) == (8, 80, 2)
    mine = usage.charges(berlin, "mia", "berlin", "mia", r.date_from, r.date_to, service_type="company_enrichment")
    assert mine.request_id.tolist() == ["enrich-1", "enrich-0"]
    services = usage.service_usage(berlin, "mia", "berlin", "mia", r.date_from, r.date_to)
    assert services.values.tolist() == [["company_enrichment", 100, 2], ["contact_lookup", 50, 5], ["llm", 7, 1]]


# ---------------------------------------------------------------- the organization's time zone


def test_a_charge_at_2330_utc_lands_on_the_next_day_in_berlin(berlin):
    late_utc_day = datetime.now(UTC).date() - timedelta(days=5)
    berlin_day = late_utc_day + timedelta(days=1)
    on = usage.date_range(berlin, "mia", "berlin", "custom", berlin_day, berlin_day)
    assert (on.time_zone, on.days) == (BERLIN, 1)
    assert on.starts_at == datetime.combine(late_utc_day, time(23), tzinfo=UTC)  # midnight in Berlin (winter)
    [charge] = usage.charges(berlin, "mia", "berlin", "mia", on.date_from, on.date_to).itertuples()
    assert charge.request_id == "late"
    assert charge.local_time == datetime.combine(berlin_day, time(0, 30))  # what the screen shows, in Berlin
    days = usage.daily_usage(berlin, "mia", "berlin", "mia", on.date_from, on.date_to)
    assert days.values.tolist() == [[berlin_day, "llm", 7, 1]]
    hours = usage.hourly_usage(berlin, "mia", "berlin", "mia", on.date_from, on.date_to)
    assert hours.values.tolist() == [[datetime.combine(berlin_day, time(0)), "llm", 7, 1]]
    # the UTC day of the charge holds nothing in Berlin's calendar
    before = usage.range_totals(berlin, "mia", "berlin", "mia", late_utc_day, late_utc_day)
    assert before.requests == 0 and before.credits_used == 0


def test_the_same_charge_stays_on_its_utc_day_in_a_utc_organization(berlin):
    periods.set_calendar(berlin, None, "berlin", 1, "UTC")
    late_utc_day = datetime.now(UTC).date() - timedelta(days=5)
    days = usage.daily_usage(berlin, "mia", "berlin", "mia", late_utc_day, late_utc_day)
    assert days.values.tolist() == [[late_utc_day, "llm", 7, 1]]


# ---------------------------------------------------------------- presets and the range's checks


def test_presets_mean_days_in_the_organizations_time_zone(berlin):
    today = today_in(berlin)
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    expected = {
        "today": (today, today),
        "last_7_days": (today - timedelta(days=6), today),
        "last_30_days": (today - timedelta(days=29), today),
        "this_month": (first, today),
        "last_month": (last_month_end.replace(day=1), last_month_end),
    }
    for preset, (start, end) in expected.items():
        r = usage.date_range(berlin, "mia", "berlin", preset)
        assert (r.preset, r.date_from, r.date_to, r.days, r.today) == (preset, start, end, (end - start).days + 1, today)
    period = periods.current_period(berlin, "mia", "berlin")
    this_period = usage.date_range(berlin, "mia", "berlin", "this_period")
    # whole days in Berlin: from the day the period starts there, up to today (its end lies ahead)
    assert this_period.date_from == period.period_start.astimezone(ZoneInfo(BERLIN)).date()
    assert this_period.date_to == min(today, (period.period_end - timedelta(microseconds=1)).astimezone(
        ZoneInfo(BERLIN)).date())


@pytest.mark.parametrize(("start", "end", "message"), [
    (0, 1, r"The start date \d{4}-\d\d-\d\d is after the end date \d{4}-\d\d-\d\d"),
    (0, -1, r"The end date \d{4}-\d\d-\d\d is in the future: today is \d{4}-\d\d-\d\d in Europe/Berlin"),
    (400, 0, r"A date range covers at most 400 days; .* covers 401"),
    (None, 0, "Choose both a start date and an end date"),
])
def test_a_custom_range_is_checked_and_the_refusal_says_what_is_wrong(berlin, start, end, message):
    today = today_in(berlin)

    def back(days):
        return None if days is None else today - timedelta(days=days)

    with pytest.raises(InvalidInput, match=message):
        usage.date_range(berlin, "mia", "berlin", "custom", back(start), back(end))
    with pytest.raises(InvalidInput, match=message):  # the reads check the same rule: the database's last word
        usage.range_totals(berlin, "mia", "berlin", "mia", back(start), back(end))


def test_four_hundred_days_are_accepted_and_an_unknown_preset_is_refused(berlin):
    today = today_in(berlin)
    r = usage.date_range(berlin, "mia", "berlin", "custom", today - timedelta(days=399), today)
    assert r.days == 400
    with pytest.raises(InvalidInput, match="Unknown date range 'yesterday'"):
        usage.date_range(berlin, "mia", "berlin", "yesterday")


# ---------------------------------------------------------------- the pricing explanation


def test_a_priced_charge_carries_the_engines_explanation_with_exact_numbers(berlin):
    charge = charging.charge_usage(berlin, "mia", Usage("llm", "gpt-4o", 1000, 500), org_id="berlin",
                                   request_id="gpt-1")
    r = last_30(berlin)
    [row] = usage.charges(berlin, "mia", "berlin", "mia", r.date_from, r.date_to, service_type="llm",
                          limit=1).itertuples()
    assert (row.request_id, row.credits_used, row.pricing) == ("gpt-1", charge.credits, charge.explanation)
    assert row.pricing["method"] == "provider_cost_markup" and isinstance(row.pricing["markup"], Decimal)
    assert row.hold is None
    assert row.dollars == charge.credits / 1000
    reported = usage.charges(berlin, "mia", "berlin", "mia", r.date_from, r.date_to, service_type="contact_lookup")
    assert reported.pricing.isna().all()  # charged in credits by the service: nothing priced


def test_the_day_summer_time_ends_in_berlin_has_25_hours(berlin):
    today = datetime.now(UTC).date()
    year = today.year if date(today.year, 10, 31) < today - timedelta(days=1) else today.year - 1
    change = max(date(year, 10, day) for day in range(25, 32) if date(year, 10, day).weekday() == 6)  # last Sunday
    before, after = (datetime.combine(change + timedelta(days=shift), time(22, 30), tzinfo=UTC) for shift in (-1, 0))
    credits.deduct(berlin, "berlin", "mia", 2, "llm", "summer", request_id="summer", occurred_at=before)  # 00:30 CEST
    credits.deduct(berlin, "berlin", "mia", 3, "llm", "winter", request_id="winter", occurred_at=after)  # 23:30 CET
    day = usage.date_range(berlin, "mia", "berlin", "custom", change, change)
    assert day.ends_at - day.starts_at == timedelta(hours=25)
    assert usage.daily_usage(berlin, "mia", "berlin", "mia", change, change).values.tolist() == [[change, "llm", 5, 2]]
    shown = usage.charges(berlin, "mia", "berlin", "mia", change, change)
    assert [t.strftime("%H:%M") for t in shown.local_time] == ["23:30", "00:30"]


def test_usage_per_hour_covers_at_most_a_week(berlin):
    today = today_in(berlin)
    week = usage.hourly_usage(berlin, "ada", "berlin", None, today - timedelta(days=6), today)
    assert week.requests.sum() == 11 and (week.hour.dt.minute == 0).all()
    with pytest.raises(InvalidInput, match=r"Usage per hour covers at most 7 days .* covers 8"):
        usage.hourly_usage(berlin, "ada", "berlin", None, today - timedelta(days=7), today)
    with pytest.raises(PermissionDenied):
        usage.hourly_usage(berlin, "mia", "berlin", "ned", today, today)
