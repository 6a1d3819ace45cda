"""The billing calendar: period bounds at month ends, leap days, anchor day 31 and time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from billing_core.database import fetch
from billing_core.errors import InvalidInput


def bounds(db, anchor: int, zone: str, at: str) -> tuple[datetime, datetime]:
    with db.connect() as conn:
        row = conn.execute(
            text("select period_start, period_end from billing_period_bounds(:a, :z, cast(:at as timestamptz))"),
            {"a": anchor, "z": zone, "at": at},
        ).one()
    return row[0].astimezone(UTC), row[1].astimezone(UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("anchor", "at", "start", "end"),
    [
        (1, "2026-03-15 12:00Z", utc(2026, 3, 1), utc(2026, 4, 1)),
        (1, "2026-03-01 00:00Z", utc(2026, 3, 1), utc(2026, 4, 1)),  # the boundary belongs to the new period
        (1, "2026-02-28 23:59:59.999999Z", utc(2026, 2, 1), utc(2026, 3, 1)),
        (15, "2026-03-10 00:00Z", utc(2026, 2, 15), utc(2026, 3, 15)),
        (31, "2026-02-15 00:00Z", utc(2026, 1, 31), utc(2026, 2, 28)),  # short month: its last day
        (31, "2026-02-28 00:00Z", utc(2026, 2, 28), utc(2026, 3, 31)),
        (31, "2028-02-28 12:00Z", utc(2028, 1, 31), utc(2028, 2, 29)),  # leap year
        (31, "2028-02-29 00:00Z", utc(2028, 2, 29), utc(2028, 3, 31)),
        (29, "2027-03-01 00:00Z", utc(2027, 2, 28), utc(2027, 3, 29)),
        (30, "2026-12-31 00:00Z", utc(2026, 12, 30), utc(2027, 1, 30)),  # across the year
        (31, "2027-01-15 00:00Z", utc(2026, 12, 31), utc(2027, 1, 31)),
    ],
)
def test_periods_in_utc(db, anchor, at, start, end):
    assert bounds(db, anchor, "UTC", at) == (start, end)


def test_periods_start_at_local_midnight(db):
    # Berlin is UTC+1 in winter, UTC+2 in summer: the March period starts at 23:00 UTC the day before
    assert bounds(db, 1, "Europe/Berlin", "2026-02-28 23:30Z") == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    assert bounds(db, 1, "Europe/Berlin", "2026-02-28 22:30Z") == (utc(2026, 1, 31, 23), utc(2026, 2, 28, 23))
    # New York is behind UTC: 02:00 UTC on the 1st is still the previous local day
    assert bounds(db, 1, "America/New_York", "2026-06-01 02:00Z") == (utc(2026, 5, 1, 4), utc(2026, 6, 1, 4))
    # consecutive periods leave no gap and no overlap, whatever the clock change
    _, end = bounds(db, 31, "America/New_York", "2026-01-31 12:00Z")
    for _ in range(14):
        nxt = bounds(db, 31, "America/New_York", end.isoformat())
        assert nxt[0] == end and nxt[1] - nxt[0] >= timedelta(days=27)
        end = nxt[1]


@pytest.mark.parametrize(
    ("anchor", "zone", "message"),
    [
        (0, "UTC", "The billing day must be a day of the month, 1 to 31 (got 0)."),
        (32, "UTC", "The billing day must be a day of the month, 1 to 31 (got 32)."),
        (1, "Mars/Olympus", "'Mars/Olympus' is not a time zone name: use a name such as UTC or Europe/Berlin."),
        (1, "'; drop table users; --", "is not a time zone name"),
    ],
)
def test_bad_calendars_are_refused(db, anchor, zone, message):
    with pytest.raises(InvalidInput) as caught:
        fetch(db, "select * from billing_period_bounds(:a, :z)", {"a": anchor, "z": zone})
    assert message in str(caught.value)
