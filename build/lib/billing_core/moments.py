"""Points in time given by callers: events reported after the fact carry the time they happened."""

from __future__ import annotations

from datetime import datetime

from billing_core.errors import InvalidInput


def aware(moment: datetime | None, what: str) -> datetime | None:
    """`moment` unchanged if it carries a timezone (None stays None); raises InvalidInput otherwise."""
    if moment is None:
        return None
    if not isinstance(moment, datetime):
        raise InvalidInput(f"{what} must be a date and time, not {type(moment).__name__}.")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{what} has no timezone: give an aware datetime (UTC, say).")
    return moment
