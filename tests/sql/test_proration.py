"""Proration: exact seconds of the calendar period, money in cents, against figures computed by hand.

The arithmetic (subscription_proration) and the periods (subscription_period_at)
are checked at fixed dates, including February, a leap day, anchor day 31, a
time zone with a DST change and a yearly cycle; then a plan change through
change_plan and preview_change records the same figures.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing_core import organizations, subscriptions
from billing_core.database import fetch
from tests.ledger_state import snapshot

ROOT = "root"
D = Decimal


def prorate(db, old, new, full_start: str, end: str, at: str) -> tuple:
    [row] = fetch(
        db,
        "select seconds_left, seconds_full, credit, charge, net from subscription_proration("
        "cast(:old as numeric), cast(:new as numeric), cast(:fs as timestamptz), cast(:end as timestamptz),"
        " cast(:at as timestamptz))",
        {"old": old, "new": new, "fs": full_start, "end": end, "at": at},
    )
    return tuple(row)


def period(db, org_id: str, cycle: str, at: str) -> tuple:
    [row] = fetch(db, "select full_start, period_end from subscription_period_at(:o, :c, cast(:at as timestamptz))",
                  {"o": org_id, "c": cycle, "at": at})
    return tuple(row)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def calendar_org(db):
    """An organization whose calendar the test sets (anchor day, time zone)."""
    organizations.create_user(db, None, ROOT, "root@example.com", "Root", is_system_admin=True)
    organizations.create_organization(db, None, "cal", "Calendar Org")

    def set_calendar(anchor: int, zone: str) -> str:
        fetch(db, "update organizations set billing_anchor_day = :a, billing_timezone = :z where id = 'cal'",
              {"a": anchor, "z": zone})
        return "cal"

    return set_calendar


# ----------------------------------------------------------------------------- the arithmetic


@pytest.mark.parametrize(
    ("case", "old", "new", "full_start", "end", "at", "expected"),
    [
        # November: 30 days = 2,592,000 s; half of it left
        ("mid-month", 50, 99, "2026-11-01 00:00Z", "2026-12-01 00:00Z", "2026-11-16 00:00Z",
         (D(1296000), D(2592000), D("25.00"), D("49.50"), D("24.50"))),
        # downgrade: a credit larger than the charge, net negative (owed to the organization)
        ("downgrade", 99, 19, "2026-11-01 00:00Z", "2026-12-01 00:00Z", "2026-11-16 00:00Z",
         (D(1296000), D(2592000), D("49.50"), D("9.50"), D("-40.00"))),
        ("first second", 50, 99, "2026-11-01 00:00Z", "2026-12-01 00:00Z", "2026-11-01 00:00Z",
         (D(2592000), D(2592000), D("50.00"), D("99.00"), D("49.00"))),
        # 1 s of 2,592,000: 50 x 1/2592000 = 0.0000193 -> 0.00
        ("last second", 50, 99, "2026-11-01 00:00Z", "2026-12-01 00:00Z", "2026-11-30 23:59:59Z",
         (D(1), D(2592000), D("0.00"), D("0.00"), D("0.00"))),
        # February 2026: 28 days = 2,419,200 s; 7 days = a quarter left
        ("february", 19, 99, "2026-02-01 00:00Z", "2026-03-01 00:00Z", "2026-02-22 00:00Z",
         (D(604800), D(2419200), D("4.75"), D("24.75"), D("20.00"))),
        # February 2028: 29 days = 2,505,600 s; on the leap day one day is left: 50/29 = 1.724.., 99/29 = 3.413..
        ("leap day", 50, 99, "2028-02-01 00:00Z", "2028-03-01 00:00Z", "2028-02-29 00:00Z",
         (D(86400), D(2505600), D("1.72"), D("3.41"), D("1.69"))),
        # anchor day 31: the period Jan 31 - Feb 28 2026 has 28 days; 7 left
        ("anchor 31", 30, 50, "2026-01-31 00:00Z", "2026-02-28 00:00Z", "2026-02-21 00:00Z",
         (D(604800), D(2419200), D("7.50"), D("12.50"), D("5.00"))),
        # Berlin, March 2026: Mar 1 00:00 CET = Feb 28 23:00Z to Apr 1 00:00 CEST = Mar 31 22:00Z is
        # 31 days - 1 hour = 2,674,800 s; from Mar 16 00:00 CET (Mar 15 23:00Z): 16 days - 1 h = 1,378,800 s;
        # 50 x 1378800/2674800 = 25.7739.. ; 99 x .. = 51.0322..
        ("berlin dst", 50, 99, "2026-02-28 23:00Z", "2026-03-31 22:00Z", "2026-03-15 23:00Z",
         (D(1378800), D(2674800), D("25.77"), D("51.03"), D("25.26"))),
        # yearly: Nov 1 2026 - Nov 1 2027 = 365 days; from May 1 2027, 184 days left:
        # 600 x 184/365 = 302.4657.., 1188 x 184/365 = 598.8821..
        ("yearly", 600, 1188, "2026-11-01 00:00Z", "2027-11-01 00:00Z", "2027-05-01 00:00Z",
         (D(184 * 86400), D(365 * 86400), D("302.47"), D("598.88"), D("296.41"))),
        # sub-second precision is kept: half a second of a 2-second period
        ("fractions", 1, 3, "2026-11-01 00:00:00Z", "2026-11-01 00:00:02Z", "2026-11-01 00:00:01.5Z",
         (D("0.5"), D(2), D("0.25"), D("0.75"), D("0.50"))),
    ],
)
def test_proration_against_hand_computed_figures(db, case, old, new, full_start, end, at, expected):
    assert prorate(db, old, new, full_start, end, at) == expected, case


# ----------------------------------------------------------------------------- the periods


@pytest.mark.parametrize(
    ("anchor", "zone", "cycle", "at", "full_start", "end"),
    [
        (1, "UTC", "monthly", "2026-11-16 10:00Z", "2026-11-01 00:00Z", "2026-12-01 00:00Z"),
        (1, "UTC", "monthly", "2028-02-29 12:00Z", "2028-02-01 00:00Z", "2028-03-01 00:00Z"),
        (31, "UTC", "monthly", "2026-02-15 00:00Z", "2026-01-31 00:00Z", "2026-02-28 00:00Z"),
        (31, "UTC", "monthly", "2026-03-30 00:00Z", "2026-02-28 00:00Z", "2026-03-31 00:00Z"),
        (1, "Europe/Berlin", "monthly", "2026-03-16 00:00Z", "2026-02-28 23:00Z", "2026-03-31 22:00Z"),
        # 23:30 UTC on Feb 28 is already March 1 in Berlin
        (1, "Europe/Berlin", "monthly", "2026-02-28 23:30Z", "2026-02-28 23:00Z", "2026-03-31 22:00Z"),
        (1, "UTC", "yearly", "2027-05-01 00:00Z", "2027-05-01 00:00Z", "2028-05-01 00:00Z"),
        # yearly on anchor 31: twelve calendar periods from Jan 31, 2026
        (31, "UTC", "yearly", "2026-02-10 00:00Z", "2026-01-31 00:00Z", "2027-01-31 00:00Z"),
    ],
)
def test_periods_follow_the_calendar(db, calendar_org, anchor, zone, cycle, at, full_start, end):
    org_id = calendar_org(anchor, zone)
    assert period(db, org_id, cycle, at) == (utc(full_start[:-1]), utc(end[:-1]))


# ----------------------------------------------------------------------------- through change_plan


def seconds(a: datetime, b: datetime) -> Decimal:
    return Decimal((b - a) // timedelta(microseconds=1)) / Decimal(1_000_000)


def cents(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"))


def test_a_mid_period_change_records_its_proration(db, calendar_org):
    org_id = calendar_org(1, "UTC")
    now = fetch(db, "select now()")[0][0]
    # two calendar periods back: a subscription on BYOK ($30) from the 10th of that month
    first = datetime(now.year, now.month, 1, tzinfo=UTC)
    for _ in range(2):
        first = (first - timedelta(days=1)).replace(day=1)
    started = first.replace(day=10)
    second = (first + timedelta(days=32)).replace(day=1)
    third = (second + timedelta(days=32)).replace(day=1)
    subscriptions.create_subscription(db, ROOT, org_id, "byok", started_at=started)

    # the first, shorter period is invoiced pro rata
    [invoice] = fetch(db, "select amount, external_ref, created_at from org_billing_history where event_type = 'invoice'")
    assert invoice.amount == cents(Decimal(30) * seconds(started, second) / seconds(first, second))
    assert invoice.external_ref == f"subscription-1/period-{started:%Y%m%d}T000000Z"

    change_at = second + timedelta(days=15, hours=6)
    left, full = seconds(change_at, third), seconds(second, third)
    credit, charge = cents(Decimal(30) * left / full), cents(Decimal(99) * left / full)

    before = snapshot(db)
    preview = subscriptions.preview_change(db, ROOT, org_id, "hybrid", at=change_at)
    assert snapshot(db) == before  # the preview wrote nothing (not even the catch-up invoice)
    change = subscriptions.change_plan(db, ROOT, org_id, "hybrid", occurred_at=change_at)
    assert preview == change
    assert (change.plan, change.price_amount, change.period_start, change.period_end) == ("hybrid", 99, second, third)
    assert (change.seconds_left, change.seconds_full) == (left, full)
    assert (change.credit, change.charge, change.amount) == (credit, charge, charge - credit)

    rows = fetch(db, "select event_type, amount, created_at, metadata from org_billing_history order by id")
    assert [(r.event_type, r.created_at) for r in rows] == [
        ("subscription_created", started), ("invoice", started), ("invoice", second),
        ("subscription_plan_changed", change_at),
    ]
    assert rows[2].amount == 30  # the catch-up invoice for the full second period, at the old price
    changed = rows[3]
    assert changed.amount == charge - credit
    assert Decimal(str(changed.metadata["proration"]["credit"])) == credit
    assert (changed.metadata["previous_plan"], changed.metadata["previous_price_amount"], changed.metadata["mrr_after"],
            changed.metadata["previous_mrr"]) == ("byok", 30, 99, 30)


def test_canceling_now_credits_the_unused_part(db, calendar_org):
    org_id = calendar_org(1, "UTC")
    now = fetch(db, "select now()")[0][0]
    first = (datetime(now.year, now.month, 1, tzinfo=UTC) - timedelta(days=1)).replace(day=1)
    second = (first + timedelta(days=32)).replace(day=1)
    subscriptions.create_subscription(db, ROOT, org_id, "platform", started_at=first)
    cancel_at = first + timedelta(days=7)
    amount = subscriptions.cancel(db, ROOT, org_id, at_period_end=False, occurred_at=cancel_at)
    assert amount == -cents(Decimal(50) * seconds(cancel_at, second) / seconds(first, second))
    [row] = fetch(db, "select amount, metadata from org_billing_history where event_type = 'subscription_canceled'")
    assert row.amount == amount and row.metadata["mrr_after"] == 0 and row.metadata["previous_mrr"] == 50
